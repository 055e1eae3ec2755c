"""ImageNet weights for a backbone (`model.pretrained`): from a local file or through the hub.

`model.weights: <path>` reads a timm or torchvision state dict (for ResNets the two use
the same key names). Otherwise timm's default weights for `model.encoder` come from the
Hugging Face hub (`HF_ENDPOINT`, cached in `HF_HUB_CACHE`, ~/.cache/huggingface/hub by
default), never into `models/`. Without network access that fails fast, in one line
that names what could not be fetched and says that `model.weights` is the way out:
huggingface_hub alone retries an unreachable host with back-off for minutes.

Used by training only: a checkpoint holds every weight, so loading it never comes here.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pipeline.config import ModelParams
from pipeline.errors import PipelineError
from pipeline.model._timm_compat import import_timm

# One hub request (connect, then the first byte): the hub answers in well under a second.
HUB_TIMEOUT_S = 15
# The whole reachability check, name resolution included (getaddrinfo has no timeout of
# its own, so it runs in a thread that is abandoned after this): well inside 2 minutes.
HUB_DEADLINE_S = 40
# Wrappers that training scripts put around the state dict (timm's train.py, torchvision's references).
_WRAPPERS = ("state_dict", "model")
# Classifier heads: not part of the feature model, dropped from the file and not required of it.
_HEADS = ("fc", "classifier", "head")
_WEIGHTS_HINT = "set `model.weights: <path>` to a timm or torchvision state dict of this backbone"


def encoder_state(cfg: ModelParams, root: Path) -> dict[str, torch.Tensor] | None:
    """The backbone's starting weights for training, or None (random init).

    Args:
        cfg: the model params (`encoder`, `pretrained`, `weights`).
        root: the folder a relative `model.weights` is resolved against (the repository).

    Raises:
        PipelineError: one line naming the file or the hub file that could not be used.
    """
    if not cfg.pretrained:
        return None
    if cfg.weights is not None:
        path = cfg.weights if cfg.weights.is_absolute() else root / cfg.weights
        return read_weights(path, cfg.encoder, "model.weights")
    return read_weights(fetch_hub_weights(cfg.encoder), cfg.encoder, "the hub's file")


def read_weights(path: Path, encoder: str, what: str = "model.weights") -> dict[str, torch.Tensor]:
    """A state dict of timm's `encoder` from `path` (.safetensors or a torch file), checked.

    A `state_dict`/`model` wrapper and DDP's `module.` prefix are removed, and so is the
    classifier (`fc`, `classifier`, `head`); every other key of timm's model must be there
    with its shape.

    Raises:
        PipelineError: the file is missing, unreadable, or not this backbone's weights.
    """
    if not path.is_file():
        raise PipelineError(f"{what}: {path} not found; {_WEIGHTS_HINT} (absolute, or relative to the repository)")
    try:
        if path.suffix == ".safetensors":
            import safetensors.torch

            raw: Any = safetensors.torch.load_file(str(path))
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's unpickling errors, safetensors' SafetensorError, I/O: all one line
        raise PipelineError(
            f"{what}: {path} is not a readable state dict ({_first_line(e)}); {_WEIGHTS_HINT}"
        ) from None
    state = _unwrap(raw)
    if state is None:
        raise PipelineError(f"{what}: {path} holds no state dict (a mapping of names to tensors); {_WEIGHTS_HINT}")
    _check_keys(state, encoder, path, what)
    return state


def _unwrap(raw: Any) -> dict[str, torch.Tensor] | None:
    if isinstance(raw, dict):
        for key in _WRAPPERS:
            if isinstance(raw.get(key), dict):
                raw = raw[key]
                break
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        return None
    prefix = "module."  # saved from a DistributedDataParallel wrapper
    state = {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in raw.items()}
    return {k: v for k, v in state.items() if not _is_head(k)}


def _is_head(key: str) -> bool:
    return key.split(".", 1)[0] in _HEADS


def _check_keys(state: dict[str, torch.Tensor], encoder: str, path: Path, what: str) -> None:
    """Every non-classifier key of timm's full `encoder` model, with its shape, and nothing else."""
    timm = import_timm()
    with torch.device("meta"):  # shapes only: no memory, no init
        expected = {k: v.shape for k, v in timm.create_model(encoder, pretrained=False).state_dict().items()}
    # Old torchvision files predate BatchNorm's counter; loading fills it in.
    missing = [k for k in expected if k not in state and not _is_head(k) and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in state if k in expected and state[k].shape != expected[k]]
    if not (missing or unexpected or wrong):
        return
    parts = [
        f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong))
        if keys
    ]
    raise PipelineError(
        f"{what}: {path} does not hold weights of timm's {encoder!r}: keys {'; '.join(parts)}; {_WEIGHTS_HINT}"
    )


def fetch_hub_weights(encoder: str, endpoint: str | None = None, cache_dir: Path | None = None) -> Path:
    """The path of timm's default ImageNet weights for `encoder`: from the local hub cache, or fetched.

    Args:
        encoder: a timm model name.
        endpoint: the hub; None = huggingface_hub's (`HF_ENDPOINT`, else huggingface.co).
        cache_dir: the hub cache; None = huggingface_hub's (`HF_HUB_CACHE`, ...).

    Raises:
        PipelineError: the hub cannot be reached within `HUB_DEADLINE_S`, or has no such file.
    """
    timm = import_timm()
    import huggingface_hub as hub

    cfg = timm.models.get_pretrained_cfg(encoder)
    if cfg is None or not cfg.hf_hub_id:
        raise PipelineError(f"model.pretrained: timm has no hub weights for {encoder!r}; {_WEIGHTS_HINT}")
    repo = cfg.hf_hub_id
    # timm's own order: safetensors first, the pickle-based file as a fallback.
    files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    for name in files:
        cached = hub.try_to_load_from_cache(repo, name, cache_dir=cache_dir)
        if isinstance(cached, str):
            return Path(cached)
    endpoint = endpoint or hub.constants.ENDPOINT
    reason = "not found"
    for name in files:
        url = hub.hf_hub_url(repo, name, endpoint=endpoint)
        reason = _probe(functools.partial(hub.get_hf_file_metadata, url, timeout=HUB_TIMEOUT_S))
        if reason == "":
            try:
                path = hub.hf_hub_download(
                    repo, name, endpoint=endpoint, cache_dir=cache_dir, etag_timeout=HUB_TIMEOUT_S
                )
                return Path(path)
            except Exception as e:  # any failure of the transfer: the same one-line way out
                reason = _first_line(e)
        if reason != "not found":
            break
    raise PipelineError(
        f"model.pretrained: could not fetch the ImageNet weights of {encoder!r} ({repo}/{name} from {endpoint}: "
        f"{reason}); without network access, {_WEIGHTS_HINT}"
    )


def _probe(request: Callable[[], object]) -> str:
    """Runs one hub request with a hard deadline: '' if it succeeded, 'not found', or why it failed."""
    outcome: list[str] = []

    def attempt() -> None:
        try:
            request()
            outcome.append("")
        except Exception as e:  # connection, DNS, proxy, offline mode, HTTP errors alike
            status = getattr(getattr(e, "response", None), "status_code", None)
            outcome.append("not found" if status == 404 else _first_line(e))

    worker = threading.Thread(target=attempt, name="hub-probe", daemon=True)  # abandoned if it hangs
    worker.start()
    worker.join(HUB_DEADLINE_S)
    return outcome[0] if outcome else f"no answer within {HUB_DEADLINE_S} s"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__
