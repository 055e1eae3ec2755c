"""Published NYUDv2 results, for context only: copied from the papers, not reproduced here.

The numbers are those the papers report on the 654 official test images. Training data
and protocol differ between papers (how many frames of the raw videos, filled or raw
ground truth, crop), which matters as much as the model, so each row carries both.
Where a detail is not certain from the paper itself we say "as reported in the paper".
Two details change a number as much as a better model does and are easy to miss, so
they get their own columns: test-time augmentation (averaging each prediction with the
one of the mirrored image) and how the metrics are averaged (per image, then over
images, as here; or pooled over all pixels of all images).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from pipeline.report.tables import MISSING, Table, fmt, metric_label

# The columns every paper here reports; the other metrics are not reported by all.
PUBLISHED_METRICS = ("delta1", "abs_rel", "rmse")
NOT_REPRODUCED = "published, not reproduced here"
NOT_STATED = "not stated"
PER_IMAGE = "per image, then over images"
POOLED = "pooled over all pixels of all images"


@dataclass(frozen=True)
class PublishedResult:
    """One paper's NYUDv2 test-set numbers with what they were trained and scored on."""

    method: str
    citation: str  # short form shown in the table
    reference: str  # full reference for the list under the table
    metrics: dict[str, float]  # subset of PUBLISHED_METRICS; absent = not reported
    training_data: str
    protocol: str  # ground truth, crop, depth range
    tta: str  # test-time augmentation
    averaging: str  # how per-pixel errors become one number


PUBLISHED: tuple[PublishedResult, ...] = (
    PublishedResult(
        "Multi-scale CNN (coarse+fine)",
        "Eigen et al., NIPS 2014",
        "D. Eigen, C. Puhrsch, R. Fergus. Depth Map Prediction from a Single Image using a Multi-Scale Deep "
        "Network. NIPS 2014.",
        {"delta1": 0.611, "abs_rel": 0.215, "rmse": 0.907},
        "~120k frames sampled from the raw video sequences",
        "filled (in-painted) ground truth, Eigen crop",
        NOT_STATED,
        NOT_STATED,
    ),
    PublishedResult(
        "Multi-scale CNN (VGG)",
        "Eigen & Fergus, ICCV 2015",
        "D. Eigen, R. Fergus. Predicting Depth, Surface Normals and Semantic Labels with a Common Multi-Scale "
        "Convolutional Architecture. ICCV 2015.",
        {"delta1": 0.769, "abs_rel": 0.158, "rmse": 0.641},
        "frames from the raw video sequences (as reported in the paper)",
        "filled ground truth, Eigen crop (as reported in the paper)",
        NOT_STATED,
        NOT_STATED,
    ),
    PublishedResult(
        "FCRN (ResNet-50)",
        "Laina et al., 3DV 2016",
        "I. Laina, C. Rupprecht, V. Belagiannis, F. Tombari, N. Navab. Deeper Depth Prediction with Fully "
        "Convolutional Residual Networks. 3DV 2016.",
        {"delta1": 0.811, "abs_rel": 0.127, "rmse": 0.573},
        "~12k raw video frames, augmented to ~95k pairs",
        "filled ground truth (as reported in the paper)",
        NOT_STATED,
        NOT_STATED,
    ),
    PublishedResult(
        "DenseDepth (DenseNet-169)",
        "Alhashim & Wonka, arXiv 2018",
        "I. Alhashim, P. Wonka. High Quality Monocular Depth Estimation via Transfer Learning. arXiv:1812.11941, 2018.",
        {"delta1": 0.846, "abs_rel": 0.123, "rmse": 0.465},
        "~50k frames from the raw set, missing depth in-painted",
        "filled ground truth, its own crop (not exactly Eigen's)",
        "flip TTA",
        POOLED,
    ),
    PublishedResult(
        "BTS (DenseNet-161)",
        "Lee et al., arXiv 2019",
        "J. H. Lee, M.-K. Han, D. W. Ko, I. H. Suh. From Big to Small: Multi-Scale Local Planar Guidance for "
        "Monocular Depth Estimation. arXiv:1907.10326, 2019.",
        {"delta1": 0.885, "abs_rel": 0.110, "rmse": 0.392},
        "24,231 pairs from the raw set (its own list)",
        "raw ground truth, Eigen crop, 0.001–10 m",
        "none",
        PER_IMAGE,
    ),
    PublishedResult(
        "AdaBins (EfficientNet-B5 + mini-ViT)",
        "Bhat et al., CVPR 2021",
        "S. F. Bhat, I. Alhashim, P. Wonka. AdaBins: Depth Estimation Using Adaptive Bins. CVPR 2021.",
        {"delta1": 0.903, "abs_rel": 0.103, "rmse": 0.364},
        "its code trains on BTS's 24,231-pair list (the paper says ~50k frames)",
        "raw ground truth, Eigen crop, 0.001–10 m",
        "flip TTA",
        PER_IMAGE,
    ),
)


def is_comparable(source: str) -> bool:
    """Published NYUDv2 numbers mean something next to ours only on the real NYUDv2 data."""
    return source == "nyudv2"


def omitted_note(source: str) -> str:
    """Why the published table is absent for a non-NYUDv2 source."""
    return (
        f"Published NYUDv2 results are omitted: this run used the '{source}' data source, "
        "whose numbers are not comparable with results on the real NYU Depth V2 test set."
    )


def published_table(ours: dict[str, float], ours_training: str, ours_protocol: str, ours_tta: bool) -> Table:
    """Our metrics above the published ones, each paper with its citation, data and protocol.

    Args:
        ours: our metrics (at least PUBLISHED_METRICS).
        ours_training: our training data, in words.
        ours_protocol: our evaluation protocol (ground truth, crop, range), in words.
        ours_tta: whether our evaluation used flip TTA (`eval.flip_tta`).

    Returns:
        One row per method: Method, Citation, Status, the metrics, Training data, Protocol,
        Test-time augmentation, Metrics averaged; our row first and bold.
    """
    ours_row = PublishedResult(
        "U-Net (this pipeline)",
        "–",
        "",
        ours,
        ours_training,
        ours_protocol,
        "flip TTA" if ours_tta else "none",
        PER_IMAGE,
    )
    rows = [_row(ours_row, "measured here")] + [_row(r, NOT_REPRODUCED) for r in PUBLISHED]
    frame = pd.DataFrame(rows)
    caption = (
        f"NYUDv2 test set (654 images). Rows other than ours are {NOT_REPRODUCED}: copied from the papers, "
        f"trained on far more data than ours; {MISSING} = not reported."
    )
    return Table(frame, caption, frozenset((0, c) for c in frame.columns))


def _row(r: PublishedResult, status: str) -> dict:
    values = {metric_label(m): fmt(r.metrics.get(m)) for m in PUBLISHED_METRICS}
    return {
        "Method": r.method,
        "Citation": r.citation,
        "Status": status,
        **values,
        "Training data": r.training_data,
        "Protocol": r.protocol,
        "Test-time augmentation": r.tta,
        "Metrics averaged": r.averaging,
    }


def references() -> list[str]:
    """Full references of the published results, in table order."""
    return [r.reference for r in PUBLISHED]
