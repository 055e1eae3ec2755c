"""The depth network as an MLflow pyfunc model: RGB uint8 images of any size in, metres out.

    model = mlflow.pyfunc.load_model("models:/nyu-depth-unet/1")
    depth = model.predict(rgb)   # (H, W, 3) uint8 -> (H, W) float32 metres
    depth = model.predict(rgbs)  # (N, H, W, 3) uint8 -> (N, H, W) float32 metres

The logged model carries the checkpoint (artifact `checkpoint`) and the `pipeline`
package (`code_paths`), so it loads in a process with no access to the repository.
Inference is the evaluate stage's own (`predict_batch`): each image is resized to the
training resolution on the depth grid and the prediction interpolated back to the
image's size (`pipeline.resample`). This module is imported only where MLflow is
installed (it subclasses MLflow's `PythonModel`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import Schema, TensorSpec

CHECKPOINT = "checkpoint"  # the artifact key of the model.pt file

# MLflow checks a tensor signature's number of dimensions exactly, so a shape like
# (-1, -1, -1, 3) would refuse a single (H, W, 3) image. The input is declared as an
# array of any shape and checked here instead (`as_images`), with errors that say what
# is expected; the output is the batch form, float32 metres.
SIGNATURE = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype(object), (-1,))]),
    outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, -1))]),
)


def input_example(height: int = 12, width: int = 16) -> np.ndarray:
    """A small (height, width, 3) uint8 image (a colour ramp), stored with the model as its input example."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), np.full_like(x, 128)], -1)
    return rgb.astype(np.uint8)


def _bad_input(message: str) -> MlflowException:
    """An error the scoring server answers with HTTP 400 (a bad request, not a server fault)."""
    return MlflowException.invalid_parameter_value(message)


def as_images(model_input: Any) -> tuple[np.ndarray, bool]:
    """The input as an (N, H, W, 3) uint8 batch, and whether it was a single (H, W, 3) image.

    Accepts uint8 arrays, and integer arrays or nested lists with values in 0..255 (what a
    JSON request carries).

    Raises:
        MlflowException: (INVALID_PARAMETER_VALUE) naming what was given and what is expected.
    """
    array = model_input
    try:
        if not isinstance(array, np.ndarray) or array.dtype == object:  # nested lists (JSON): numbers inside
            array = np.asarray(array.tolist() if isinstance(array, np.ndarray) else array)
    except (ValueError, TypeError):
        raise _bad_input("expected RGB images of one size: an (H, W, 3) or (N, H, W, 3) array") from None
    if array.ndim not in (3, 4) or array.shape[-1] != 3 or 0 in array.shape:
        raise _bad_input(f"expected an RGB image (H, W, 3) or a batch (N, H, W, 3) of one size, got {array.shape}")
    if array.dtype != np.uint8:
        if array.dtype.kind not in "iu" or array.min() < 0 or array.max() > 255:
            raise _bad_input(f"expected uint8 RGB values 0..255, got {array.dtype} (convert floats: (x * 255).round())")
        array = array.astype(np.uint8)
    single = array.ndim == 3
    return (array[None] if single else array), single


class DepthModel(PythonModel):
    """The checkpoint behind MLflow's pyfunc interface (one instance per loaded model)."""

    def load_context(self, context: Any) -> None:
        """Loads the checkpoint onto the best device here (CUDA, then MPS, then the CPU), in eval mode."""
        from pipeline.device import pick_device
        from pipeline.evaluation.inference import train_resolution
        from pipeline.model import load_model

        self._net, meta = load_model(context.artifacts[CHECKPOINT], map_location=pick_device("auto"))
        self._train_hw = train_resolution(meta)

    # `model_input: np.ndarray` is a hint MLflow infers no schema from (other hints it would
    # turn into a signature of its own); `SIGNATURE` and `as_images` do the checking.
    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        """(H, W, 3) or (N, H, W, 3) uint8 RGB -> (H, W) or (N, H, W) float32 depth in metres."""
        from pipeline.evaluation.inference import predict_batch

        images, single = as_images(model_input)
        depth = predict_batch(self._net, images, self._train_hw)  # (N, H, W) float32 metres
        return depth[0] if single else depth
