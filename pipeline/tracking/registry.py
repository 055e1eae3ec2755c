"""Logging the best model as an MLflow 3 logged model of the run, and registering it.

`mlflow.pyfunc.log_model` works on mlflow's fluent state (the tracking URI, the active
run), so it runs inside `_fluent_run`, which points that state at our store and run and
puts everything back afterwards; the rest of the package never uses the fluent API.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

MODEL_README = """\
{name}: the U-Net checkpoint of this run, saved by pipeline.model.save_model: a dict of
plain types and tensors (`format_version`, `state_dict`, `model_config`, `rgb_mean`,
`rgb_std`, `params`, `epoch`, `val_metrics`, ...) that loads with weights_only=True.
The same checkpoint is also the run's MLflow model (pyfunc: RGB uint8 images of any
size in, depth in metres out; the run's Models tab, and the Model Registry when
registered), which loads without this repository: mlflow.pyfunc.load_model(URI).

Load it from a checkout of the pipeline's repository (any input size the U-Net accepts):

    from pipeline.model import load_model
    model, meta = load_model("{name}", map_location="cpu")  # in eval mode
    depth = model(rgb)  # rgb (B,3,H,W) in [0,1] -> depth (B,1,H,W) in metres

Download: mlflow artifacts download -r {run_id} -a model -d .
sha256 of {name}: {sha256}
"""

MODEL_CODE = Path(__file__).with_name("model_code.py")  # run by MLflow to build the model (not imported here)
MODEL_NAME = "depth-unet"  # the logged model's name (the Models tab); the registry name is a param
REGISTRATION_WAIT_S = 60  # a server may take a moment to mark a version READY; sqlite does it at once
# What the model's code imports, pinned to this environment. Listing them skips MLflow's
# inference of requirements, which loads the model in a subprocess (seconds per run).
REQUIREMENTS = ("torch", "numpy", "pyyaml", "mlflow")


def requirements() -> list[str]:
    """`name==version` of each package the logged model needs, as installed here (local labels dropped)."""
    return [f"{name}=={importlib.metadata.version(name).split('+')[0]}" for name in REQUIREMENTS]


@contextlib.contextmanager
def _fluent_uri(uri: str) -> Iterator[None]:
    """`MLFLOW_TRACKING_URI` (and so the registry URI, unless set apart) pointed at `uri` for the block."""
    # The progress bars of the model's local copies would only clutter the stage's log.
    values = {"MLFLOW_TRACKING_URI": uri}
    values["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _fluent_run(uri: str, run_id: str) -> Iterator[None]:
    """MLflow's fluent API on `uri` with run `run_id` active; the environment and sys.path restored afterwards.

    The run's status stays the caller's Tracker's: ending the fluent run marks it
    FINISHED, which `Tracker.end` sets again (or overrides) right after.
    """
    import mlflow

    saved_path = list(sys.path)  # checking the input example loads the model, which prepends its code folder
    with _fluent_uri(uri):
        mlflow.start_run(run_id=run_id, log_system_metrics=False)
        try:
            yield
        finally:
            mlflow.end_run()
            sys.path[:] = saved_path


def log_depth_model(uri: str, run_id: str, checkpoint: Path, step: int) -> str:
    """Logs `checkpoint` as a pyfunc logged model of run `run_id`; returns its model id.

    Args:
        uri: the tracking URI.
        run_id: the run the model is an output of.
        checkpoint: the model.pt written by training.
        step: the best epoch: MLflow links that step's metrics (val/*, train/*) to the model.
    """
    import mlflow.pyfunc

    import pipeline
    from pipeline.tracking import pyfunc_model

    with _fluent_run(uri, run_id):
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(MODEL_CODE),  # a model from code: no pickle in the model
            artifacts={pyfunc_model.CHECKPOINT: str(checkpoint)},
            code_paths=[str(Path(pipeline.__file__).parent)],  # the package travels with the model
            signature=pyfunc_model.SIGNATURE,
            input_example=pyfunc_model.input_example(),
            pip_requirements=requirements(),
            step=step,
        )
    return str(info.model_id)


def register(uri: str, model_id: str, name: str) -> str:
    """Registers logged model `model_id` as a new version of `name` (created if needed); returns the version."""
    import mlflow

    with _fluent_uri(uri):
        version = mlflow.register_model(f"models:/{model_id}", name, await_registration_for=REGISTRATION_WAIT_S)
    return str(version.version)


def register_or_warn(uri: str, model_id: str, name: str) -> str | None:
    """`register`, with any failure (store unreachable or locked, a bad name) a warning; returns the version."""
    from pipeline.tracking.store import warn_unavailable

    try:
        version = register(uri, model_id, name)
    except Exception as e:
        warn_unavailable(uri, e, f"register the model as '{name}'")
        return None
    log.info("MLflow: registered models:/%s/%s", name, version)
    return version
