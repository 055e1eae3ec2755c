"""System metrics during training: MLflow's own monitor, pointed at our run and store.

CPU utilisation, memory, disk and network (psutil), plus NVIDIA GPU utilisation and
memory when `nvidia-ml-py` (pynvml) is installed and a GPU is visible, sampled every
`mlflow.system_metrics_interval` seconds in a background thread and logged as
`system/<name>` metrics (step = sample number). The monitor stops by itself when the
run ends or the store fails; a failure never reaches the training loop.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def start_monitor(run_id: str, uri: str, interval_s: float) -> Any:
    """Starts sampling into run `run_id`; returns the monitor for `stop_monitor`.

    Raises:
        Exception: anything from mlflow while setting up (the caller warns).
    """
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    # resume_logging: a run reopened after a resume continues the sample numbers.
    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, resume_logging=True, tracking_uri=uri)
    monitor.start()
    return monitor


def stop_monitor(monitor: Any) -> None:
    """Stops the thread and flushes the last samples; never raises."""
    try:
        monitor.finish()
        # MLflow's loop publishes a sample only after waiting a full interval, and drops the
        # one it holds when stopped: a run shorter than one interval logged nothing (a
        # flaky test found it). Publish what it holds, so every run has its last sample.
        last = monitor.aggregate_metrics()
        if last:
            monitor.publish_metrics(last)
            monitor.mlflow_logger.flush()
    except Exception as e:  # mlflow logs its own errors; sampling must never fail a stage
        log.warning("MLflow: stopping the system-metrics monitor failed (%s)", e)
