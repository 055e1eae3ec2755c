"""Reader of NYUDv2's raw files: `nyu_depth_v2_labeled.mat` (v7.3/HDF5) and `splits.mat` (v5).

The labeled file is read one frame at a time through h5py, so memory holds one frame
(~3 MB) however big the file is (2.97 GB for the real one). Layout: see
`pipeline.data.matlab`, which writes the same thing.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import h5py
import numpy as np
import scipy.io

from pipeline.data.matlab import HEIGHT, WIDTH, Frame
from pipeline.errors import PipelineError

_REDOWNLOAD = "delete it and re-run `dvc repro download`"
# h5py's view of each array (MATLAB's dims reversed) after the leading frame axis, for
# frames of width W and height H: NYUDv2's are 640x480; the synthetic source may render
# smaller ones (`data.synthetic.height/width`), and the real file's size is checked at download.
# Here: the axes before (W, H) after the frame axis (images' 3 colours).
_LEADING_AXES: dict[str, tuple[int, ...]] = {"images": (3,), "depths": (), "rawDepths": ()}
_CELLS = ("scenes", "sceneTypes")
# Real MATLAB files compress in chunks that may span several frames; a 32 MiB chunk
# cache per dataset keeps a decompressed chunk around for the next frame's read
# (3 datasets -> at most ~100 MB) instead of re-inflating it for every frame.
_CHUNK_CACHE_BYTES = 32 << 20


def _open_hdf5(path: Path) -> h5py.File:
    if not path.is_file():
        raise PipelineError(f"{path}: not found; run `dvc repro download` (or set paths.labeled)")
    if not h5py.is_hdf5(path):
        with open(path, "rb") as fh:
            head = fh.read(128)
        kind = "a MATLAB v5 MAT-file" if head.startswith(b"MATLAB 5.0") else "not HDF5"
        raise PipelineError(f"{path}: is not MATLAB v7.3/HDF5 ({kind}); the NYUDv2 labeled file is v7.3; {_REDOWNLOAD}")
    try:
        return h5py.File(path, "r", rdcc_nbytes=_CHUNK_CACHE_BYTES)
    except OSError as e:
        raise PipelineError(f"{path}: cannot be opened as HDF5 ({e}); {_REDOWNLOAD}") from None


def _validate(f: h5py.File, path: Path) -> tuple[int, tuple[int, int]]:
    """Checks keys, shapes and dtypes; returns the number of frames and their (height, width)."""
    for key in (*_LEADING_AXES, *_CELLS):
        if key not in f or not isinstance(f[key], h5py.Dataset):
            raise PipelineError(f"{path}: missing dataset '{key}'; this is not NYUDv2's labeled file; {_REDOWNLOAD}")
    depths = f["depths"]  # its (N, W, H) sets the count and the frame size the others must have
    n, w, h = depths.shape if depths.ndim == 3 else (-1, WIDTH, HEIGHT)
    for key, leading in _LEADING_AXES.items():
        ds = f[key]
        want = (*leading, w, h)
        if ds.shape != (n, *want) or min(w, h) < 1 or n < 0:
            raise PipelineError(
                f"{path}: '{key}' has shape {ds.shape}; expected ({n if n >= 0 else 'N'}, "
                f"{', '.join(map(str, want))}) (MATLAB's {h}x{w} frames; NYUDv2's are {HEIGHT}x{WIDTH}); {_REDOWNLOAD}"
            )
        ok = ds.dtype == np.uint8 if key == "images" else ds.dtype.kind == "f"
        if not ok:
            want_dtype = "uint8" if key == "images" else "float (metres)"
            raise PipelineError(f"{path}: '{key}' has dtype {ds.dtype}; expected {want_dtype}; {_REDOWNLOAD}")
    for key in _CELLS:
        ds = f[key]
        if h5py.check_dtype(ref=ds.dtype) is not h5py.Reference or ds.size != n:
            raise PipelineError(
                f"{path}: '{key}' is {ds.dtype} with shape {ds.shape}; expected a MATLAB cell array "
                f"of {n} strings (object references); {_REDOWNLOAD}"
            )
    return n, (h, w)


def _decode_char(f: h5py.File, ref: h5py.Reference, path: Path, key: str) -> str:
    """A MATLAB char array (uint16 UTF-16 code units, (len,1) in h5py) as a str."""
    try:
        ds = f[ref]
    except (ValueError, KeyError):
        raise PipelineError(f"{path}: '{key}' holds a dangling reference; {_REDOWNLOAD}") from None
    if ds.attrs.get("MATLAB_empty", 0):
        return ""
    codes = np.asarray(ds[()]).ravel()
    if codes.dtype.kind not in "ui":
        raise PipelineError(f"{path}: '{key}' entry is {codes.dtype}, not a MATLAB char array; {_REDOWNLOAD}")
    return codes.astype("<u2").tobytes().decode("utf-16-le", errors="replace")


class NyuLabeled:
    """`nyu_depth_v2_labeled.mat`, opened and validated; frames read one at a time.

    Use as a context manager. Indices are 0-based (frame i is MATLAB's index i+1).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f = _open_hdf5(self.path)
        try:
            self._n, self._frame_hw = _validate(self._f, self.path)
        except BaseException:
            self._f.close()
            raise

    def __len__(self) -> int:
        return self._n

    @property
    def frame_hw(self) -> tuple[int, int]:
        """Every frame's (height, width): (480, 640) for NYUDv2's file."""
        return self._frame_hw

    def scene(self, i: int) -> str:
        """Scene name of frame i (e.g. "kitchen_0004")."""
        return _decode_char(self._f, self._f["scenes"][()].ravel()[i], self.path, "scenes")

    def scene_type(self, i: int) -> str:
        """Scene type of frame i (e.g. "kitchen")."""
        return _decode_char(self._f, self._f["sceneTypes"][()].ravel()[i], self.path, "sceneTypes")

    def scenes(self) -> list[str]:
        """Scene names of all frames (small: one short string per frame)."""
        refs = self._f["scenes"][()].ravel()
        return [_decode_char(self._f, r, self.path, "scenes") for r in refs]

    def scene_types(self) -> list[str]:
        """Scene types of all frames (e.g. "kitchen")."""
        refs = self._f["sceneTypes"][()].ravel()
        return [_decode_char(self._f, r, self.path, "sceneTypes") for r in refs]

    def frame(self, i: int, scene: str | None = None, scene_type: str | None = None) -> Frame:
        """Frame i (0-based) exactly as MATLAB shows `images(:,:,:,i+1)`: (480,640,3) for NYUDv2, top row first.

        Args:
            i: 0-based frame index.
            scene: the already-decoded scene name (saves a read when iterating).
            scene_type: the already-decoded scene type (likewise).
        """
        if not 0 <= i < self._n:
            raise IndexError(f"frame {i} out of range 0..{self._n - 1}")
        rgb = self._f["images"][i].transpose(2, 1, 0)  # (3,W,H) -> (H,W,3)
        depth = self._f["depths"][i].T.astype(np.float32, copy=False)  # (W,H) -> (H,W)
        raw = self._f["rawDepths"][i].T.astype(np.float32, copy=False)
        if scene is None:
            scene = self.scene(i)
        if scene_type is None:
            scene_type = self.scene_type(i)
        # Contiguous copies: the transposes are views with MATLAB's strides.
        return Frame(np.ascontiguousarray(rgb), np.ascontiguousarray(depth), np.ascontiguousarray(raw),
                     scene, scene_type)  # fmt: skip

    def close(self) -> None:
        """Closes the file."""
        self._f.close()

    def __enter__(self) -> NyuLabeled:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _split_array(mat: dict, key: str, path: Path, n_images: int) -> np.ndarray:
    if key not in mat:
        raise PipelineError(f"{path}: missing '{key}'; this is not NYUDv2's splits.mat; {_REDOWNLOAD}")
    arr = np.asarray(mat[key])
    if arr.size == 0 or arr.ndim > 2 or min(arr.shape) != 1:
        raise PipelineError(f"{path}: '{key}' has shape {arr.shape}; expected a non-empty (N,1) vector; {_REDOWNLOAD}")
    arr = arr.ravel()
    # MATLAB often saves indices as double; accept those only if every value is whole.
    if arr.dtype.kind not in "ui" and not (arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0)):
        raise PipelineError(f"{path}: '{key}' holds {arr.dtype} non-integer values; expected 1-based indices")
    arr = arr.astype(np.int64)
    bad = arr[(arr < 1) | (arr > n_images)]
    if bad.size:
        raise PipelineError(
            f"{path}: '{key}' has indices out of 1..{n_images} (e.g. {bad[0]}); "
            "splits.mat does not match the labeled file; re-download both"
        )
    if np.unique(arr).size != arr.size:
        raise PipelineError(f"{path}: '{key}' lists some image twice; re-download splits.mat")
    return arr


def read_splits(path: str | Path, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Reads and validates `splits.mat`: 1-based (train, test) indices, in file order.

    Raises:
        PipelineError: if the file is missing/unreadable, a key is missing, or the indices
            are not integers in 1..n_images without duplicates and without overlap.
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: not found; run `dvc repro download` (or set paths.splits)")
    try:
        mat = scipy.io.loadmat(path)
    except (ValueError, NotImplementedError, TypeError, OSError) as e:
        raise PipelineError(f"{path}: not a readable MATLAB v5 MAT-file ({e}); {_REDOWNLOAD}") from None
    train = _split_array(mat, "trainNdxs", path, n_images)
    test = _split_array(mat, "testNdxs", path, n_images)
    both = np.intersect1d(train, test)
    if both.size:
        raise PipelineError(
            f"{path}: 'trainNdxs' and 'testNdxs' share {both.size} indices (e.g. {both[0]}); re-download splits.mat"
        )
    return train, test
