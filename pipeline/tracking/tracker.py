"""`Tracker`: one MLflow run addressed by its id, whose methods never fail the pipeline.

We use `MlflowClient` with an explicit run id, not mlflow's fluent `mlflow.start_run()`:
the run spans three stages (three processes) and parallel experiments, where a global
"active run" is the wrong model. Any error from the store gives one warning, after
which the tracker is a no-op: a store that failed once (unreachable, locked for 20 s,
broken) would otherwise stall every later call, and tracking is never worth that.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.io import sha256_file, write_json_atomic
from pipeline.tracking.names import mlflow_key
from pipeline.tracking.redact import redact_uri, safe_items
from pipeline.tracking.store import warn_unavailable

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import DatasetInput
    from torch import nn

    from pipeline.config import Params
    from pipeline.tracking.panels import PanelImages

log = logging.getLogger(__name__)

# MLflow's per-request limits for log_batch.
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_PARAM_CHARS = 6000  # longer values are rejected by the store
MAX_TAG_CHARS = 5000


def _as_float(value: Any) -> float | None:
    """A metric value as float, or None if it is not a number (strings, None, arrays)."""
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _never_raises(method: Callable[..., None]) -> Callable[..., None]:
    """Makes a Tracker method a no-op once disabled, and turns any error into one warning."""

    @functools.wraps(method)
    def wrapper(self: Tracker, *args: Any, **kwargs: Any) -> None:
        if self._client is None:
            return
        try:
            method(self, *args, **kwargs)
        except Exception as e:
            self._client = None  # a store that failed once would stall or fail every later call
            if not self._warned:
                self._warned = True
                warn_unavailable(self._uri or "?", e, f"{method.__name__.lstrip('_')}()")

    return wrapper


class Tracker:
    """One MLflow run. Methods never raise; a disabled or failed tracker does nothing.

    Build one with `start_run` or `resume_run`; `Tracker()` is the no-op tracker.
    """

    def __init__(
        self,
        client: MlflowClient | None = None,
        run_id: str | None = None,
        experiment_id: str | None = None,
        uri: str | None = None,
    ) -> None:
        self._client = client if run_id else None
        self._run_id = run_id
        self._experiment_id = experiment_id
        self._uri = uri
        self._warned = False
        self._monitor: Any = None  # mlflow's SystemMetricsMonitor, while it samples
        self._panels: PanelImages | None = None  # the validation images drawn every epoch, read once
        self._panels_failed = False

    @property
    def run_id(self) -> str | None:
        """The MLflow run id, or None if no run exists (disabled or unreachable store)."""
        return self._run_id

    @property
    def _live(self) -> tuple[MlflowClient, str]:
        """The client and run id of a live tracker (`_never_raises` only calls methods then)."""
        assert self._client is not None and self._run_id is not None
        return self._client, self._run_id

    @property
    def active(self) -> bool:
        """Whether calls still reach MLflow (False once disabled or after a failure)."""
        return self._client is not None

    def _log_batch(self, size: int, **batch: list) -> None:
        """One `log_batch` request per `size` items of the single list in `batch`."""
        ((kind, items),) = batch.items()
        client, run_id = self._live
        for i in range(0, len(items), size):
            client.log_batch(run_id, **{kind: items[i : i + size]})  # type: ignore[arg-type]

    @_never_raises
    def log_params(self, flat: dict[str, Any]) -> None:
        """Logs params (dotted keys), skipping secret-named ones and ones already logged (URLs lose their credentials).

        MLflow params are immutable: a key already logged with another value (e.g. an
        `eval.*` param changed since train created the run) is skipped with a warning.
        """
        from mlflow.entities import Param

        kept, dropped = safe_items(flat)
        if dropped:
            log.warning("not logging %d secret-named param(s) to MLflow: %s", len(dropped), ", ".join(dropped))
        values = {k: str(v)[:MAX_PARAM_CHARS] for k, v in kept.items()}
        client, run_id = self._live
        existing = client.get_run(run_id).data.params
        changed = sorted(k for k, v in values.items() if k in existing and existing[k] != v)
        if changed:
            log.warning("MLflow params are immutable; keeping the run's first value of: %s", ", ".join(changed))
        self._log_batch(MAX_PARAMS_PER_BATCH, params=[Param(k, v) for k, v in values.items() if k not in existing])

    @_never_raises
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Logs metrics at one step (MLflow's default step 0 when None); non-numbers are skipped.

        Keys are the pipeline's names (train_log.tsv columns, metrics.json keys); MLflow
        gets them grouped by section (`val_abs_rel` -> `val/abs_rel`, see `names.mlflow_key`).
        """
        self._log_metric_rows([(step or 0, metrics)])

    @_never_raises
    def log_metrics_history(self, rows: list[dict[str, Any]], step_key: str = "epoch") -> None:
        """Logs every value of every row with `step=row[step_key]`, in as few requests as possible.

        Args:
            rows: e.g. the train log, `[{"epoch": 1, "train_loss": 0.3, "val_abs_rel": 0.2}, ...]`;
                keys are sectioned as in `log_metrics`. A row without `step_key` uses its index.
            step_key: the column holding the step; it is not logged as a metric.
        """
        self._log_metric_rows(
            [(int(row.get(step_key, i)), {k: v for k, v in row.items() if k != step_key}) for i, row in enumerate(rows)]
        )

    def _log_metric_rows(self, rows: list[tuple[int, dict[str, Any]]]) -> None:
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        metrics = [
            Metric(mlflow_key(key), x, now_ms, step)
            for step, values in rows
            for key, value in values.items()
            if (x := _as_float(value)) is not None  # NaN is kept: a diverged loss is worth seeing
        ]
        # One request per 1000 values: one request per value takes minutes on sqlite.
        self._log_batch(MAX_METRICS_PER_BATCH, metrics=metrics)

    @_never_raises
    def set_tags(self, tags: dict[str, Any]) -> None:
        """Sets run tags (values as strings); secret-named ones are dropped, URLs lose their credentials."""
        from mlflow.entities import RunTag

        kept, dropped = safe_items(tags)
        if dropped:
            log.warning("not setting %d secret-named tag(s) in MLflow: %s", len(dropped), ", ".join(dropped))
        items = [RunTag(k, str(v)[:MAX_TAG_CHARS]) for k, v in kept.items() if v is not None]
        self._log_batch(MAX_TAGS_PER_BATCH, tags=items)

    @_never_raises
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Copies one file into the run's artifacts (under `artifact_path` if given)."""
        if not Path(path).is_file():
            log.warning("MLflow: artifact %s is not a file; not logged", path)
            return
        client, run_id = self._live
        client.log_artifact(run_id, str(path), artifact_path)

    @_never_raises
    def log_artifacts(self, dir: str | Path, artifact_path: str | None = None) -> None:
        """Copies a folder's contents into the run's artifacts (under `artifact_path` if given)."""
        if not Path(dir).is_dir():
            log.warning("MLflow: artifact folder %s does not exist; not logged", dir)
            return
        client, run_id = self._live
        client.log_artifacts(run_id, str(dir), artifact_path)

    @_never_raises
    def log_model(self, model_path: str | Path) -> None:
        """Logs the checkpoint as `model/<name>` plus `model/README.txt` on how to load it."""
        if not Path(model_path).is_file():
            log.warning("MLflow: model %s is not a file; not logged", model_path)
            return
        from pipeline.tracking.registry import MODEL_README

        client, run_id = self._live
        digest = sha256_file(model_path)
        client.log_artifact(run_id, str(model_path), "model")
        with tempfile.TemporaryDirectory() as tmp:
            readme = Path(tmp) / "README.txt"
            readme.write_text(MODEL_README.format(name=Path(model_path).name, run_id=run_id, sha256=digest))
            client.log_artifact(run_id, str(readme), "model")
        client.set_tag(run_id, "model_sha256", digest)

    @_never_raises
    def log_servable_model(self, model_path: str | Path, registered_model: str, step: int) -> None:
        """Logs the checkpoint as the run's MLflow model (pyfunc, any image size) and registers it.

        Args:
            model_path: the best epoch's checkpoint.
            registered_model: Model Registry name for a new version; '' = don't register.
                A registry failure warns and leaves the tracker working.
            step: the best epoch, whose metrics MLflow links to the model.
        """
        if not Path(model_path).is_file():
            log.warning("MLflow: model %s is not a file; not logged", model_path)
            return
        from pipeline.tracking import registry

        _, run_id = self._live
        assert self._uri is not None  # a live tracker knows its store
        model_id = registry.log_depth_model(self._uri, run_id, Path(model_path), step)
        log.info("MLflow: logged model models:/%s (pyfunc)", model_id)
        if registered_model:
            registry.register_or_warn(self._uri, model_id, registered_model)

    @_never_raises
    def log_inputs(self, inputs: list[DatasetInput]) -> None:
        """Links datasets to the run (`datasets.split_input`: the runs table's Dataset column)."""
        client, run_id = self._live
        client.log_inputs(run_id, datasets=inputs)

    def log_splits(self, params: Params, processed_dir: Path, splits: tuple[str, ...]) -> None:
        """Logs the processed `splits` (e.g. ("train", "val")) as the run's dataset inputs.

        A split file that cannot be read warns and is not logged (the stage reports it
        itself where it matters); the tracker stays active.
        """
        if not self.active:
            return
        from pipeline.tracking.datasets import split_input

        try:
            inputs = [split_input(params, processed_dir, split) for split in splits]
        except Exception as e:
            log.warning("MLflow: could not describe the processed data (%s: %s); no dataset logged",
                        type(e).__name__, e)  # fmt: skip
            return
        self.log_inputs(inputs)

    def log_val_panels(self, net: nn.Module, val_path: Path, n_images: int, step: int) -> None:
        """Logs the depth panels of `n_images` fixed validation images at `step` (`panels.PANEL_KEY`).

        The images are read from `val_path` on the first call. A failure to draw (not to
        log) warns once and stops the panels only; the rest of the tracking goes on.
        """
        if not self.active or n_images == 0 or self._panels_failed:
            return
        from pipeline.tracking import panels

        try:
            if self._panels is None:
                self._panels = panels.load_panel_images(val_path, n_images)
            image = panels.render_panels(self._panels, panels.predict_panels(net, self._panels))
        except Exception as e:
            self._panels_failed = True
            log.warning("MLflow: could not draw the validation depth panels (%s: %s); not logging them",
                        type(e).__name__, e)  # fmt: skip
            return
        self._log_image(panels.PANEL_KEY, panels.panel_png(image), step)

    @_never_raises
    def _log_image(self, key: str, image: Any, step: int) -> None:
        client, run_id = self._live
        client.log_image(run_id, image, key=key, step=step)

    def start_system_metrics(self, interval_s: float) -> None:
        """Logs `system/...` metrics (CPU, memory, disk, network, NVIDIA GPUs) every `interval_s` until `end`."""
        if self.active and self._monitor is None:
            self._start_monitor(interval_s)

    @_never_raises
    def _start_monitor(self, interval_s: float) -> None:
        from pipeline.tracking.system_metrics import start_monitor

        _, run_id = self._live
        self._monitor = start_monitor(run_id, self._uri or "", interval_s)

    def write_run_id(self, path: str | Path) -> None:
        """Writes `{"run_id", "experiment_id", "tracking_uri"}` JSON atomically (nulls when disabled).

        The file is a DVC output of train, so it is written even without a run; the URI
        has any credentials stripped. Unlike the other methods this can raise (OSError):
        a stage that cannot write its outputs must fail.
        """
        write_json_atomic(
            path,
            {
                "run_id": self._run_id,
                "experiment_id": self._experiment_id,
                "tracking_uri": redact_uri(self._uri) if self._uri else None,
            },
        )

    def logged(self) -> tuple[set[str], set[str]]:
        """(metric keys, top-level artifact names) the run holds; empty sets without a live run or on an error."""
        if self._client is None or self._run_id is None:
            return set(), set()
        try:
            run = self._client.get_run(self._run_id)
            artifacts = {Path(a.path).name for a in self._client.list_artifacts(self._run_id)}
        except Exception as e:  # tracking never fails the pipeline
            log.warning("MLflow: could not read run %s (%s)", self._run_id, e)
            return set(), set()
        return set(run.data.metrics), artifacts

    def end(self, status: str = "FINISHED") -> None:
        """Stops the system metrics and marks the run FINISHED (or FAILED / KILLED); later calls do nothing."""
        if self._monitor is not None:
            from pipeline.tracking.system_metrics import stop_monitor

            stop_monitor(self._monitor)
            self._monitor = None
        self._end(status)
        self._client = None

    @_never_raises
    def _end(self, status: str) -> None:
        client, run_id = self._live
        client.set_terminated(run_id, status)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is KeyboardInterrupt:
            self.end("KILLED")
        else:
            self.end("FAILED" if exc_type else "FINISHED")
