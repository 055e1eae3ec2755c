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
from pipeline.tracking.redact import redact_uri, safe_items
from pipeline.tracking.store import warn_unavailable

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

# MLflow's per-request limits for log_batch.
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_PARAM_CHARS = 6000  # longer values are rejected by the store
MAX_TAG_CHARS = 5000

MODEL_README = """\
{name}: the U-Net checkpoint of this run, saved by pipeline.model.save_model: a dict of
plain types and tensors (`format_version`, `state_dict`, `model_config`, `rgb_mean`,
`rgb_std`, `params`, `epoch`, `val_metrics`, ...) that loads with weights_only=True.
It is not an MLflow model flavour: MLflow's pt2 export would fix the input size.

Load it from a checkout of the pipeline's repository (any input size the U-Net accepts):

    from pipeline.model import load_model
    model, meta = load_model("{name}", map_location="cpu")  # in eval mode
    depth = model(rgb)  # rgb (B,3,H,W) in [0,1] -> depth (B,1,H,W) in metres

Download: mlflow artifacts download -r {run_id} -a model -d .
sha256 of {name}: {sha256}
"""


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
        """Logs metrics at one step (MLflow's default step 0 when None); non-numbers are skipped."""
        self._log_metric_rows([(step or 0, metrics)])

    @_never_raises
    def log_metrics_history(self, rows: list[dict[str, Any]], step_key: str = "epoch") -> None:
        """Logs every value of every row with `step=row[step_key]`, in as few requests as possible.

        Args:
            rows: e.g. the train log, `[{"epoch": 1, "train_loss": 0.3, "val_abs_rel": 0.2}, ...]`;
                keys are used as metric names. A row without `step_key` uses its index.
            step_key: the column holding the step; it is not logged as a metric.
        """
        self._log_metric_rows(
            [(int(row.get(step_key, i)), {k: v for k, v in row.items() if k != step_key}) for i, row in enumerate(rows)]
        )

    def _log_metric_rows(self, rows: list[tuple[int, dict[str, Any]]]) -> None:
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        metrics = [
            Metric(key, x, now_ms, step)
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
        client, run_id = self._live
        digest = sha256_file(model_path)
        client.log_artifact(run_id, str(model_path), "model")
        with tempfile.TemporaryDirectory() as tmp:
            readme = Path(tmp) / "README.txt"
            readme.write_text(MODEL_README.format(name=Path(model_path).name, run_id=run_id, sha256=digest))
            client.log_artifact(run_id, str(readme), "model")
        client.set_tag(run_id, "model_sha256", digest)

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

    def end(self, status: str = "FINISHED") -> None:
        """Marks the run FINISHED (or FAILED / KILLED); later calls do nothing."""
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
