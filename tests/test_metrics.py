"""The one metrics implementation against a slow loop reference written from the formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline.config import ParamsError
from pipeline.metrics import (
    HIGHER_IS_BETTER,
    METRIC_NAMES,
    average_metrics,
    depth_metrics,
    depth_metrics_per_image,
    eigen_crop_bounds,
    eval_mask,
    per_image_metrics_torch,
    protocol_metrics_torch,
)


def _reference_one(pred: np.ndarray, gt: np.ndarray, min_d: float, max_d: float, rows, cols) -> dict[str, float]:
    """Metrics of one image with explicit Python loops, straight from the definitions."""
    pairs = []
    for i in rows:
        for j in cols:
            g = float(gt[i, j])
            if math.isfinite(g) and min_d < g < max_d:
                pairs.append((min(max(float(pred[i, j]), min_d), max_d), g))
    n = len(pairs)
    if n == 0:
        return {k: math.nan for k in METRIC_NAMES}
    out = {}
    for k in (1, 2, 3):
        out[f"delta{k}"] = sum(max(p / g, g / p) < 1.25**k for p, g in pairs) / n
    out["abs_rel"] = sum(abs(p - g) / g for p, g in pairs) / n
    out["sq_rel"] = sum((p - g) ** 2 / g for p, g in pairs) / n
    out["rmse"] = math.sqrt(sum((p - g) ** 2 for p, g in pairs) / n)
    d = [math.log(p) - math.log(g) for p, g in pairs]
    out["rmse_log"] = math.sqrt(sum(x * x for x in d) / n)
    out["log10"] = sum(abs(math.log10(p) - math.log10(g)) for p, g in pairs) / n
    out["silog"] = 100 * math.sqrt(sum(x * x for x in d) / n - (sum(d) / n) ** 2)
    return out


def _random_pair(n: int, h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.3, 11.0, (n, h, w))  # some beyond max_depth = 10
    gt[rng.random((n, h, w)) < 0.15] = 0.0  # Kinect holes
    gt[0, 5, 5] = np.nan
    pred = gt * rng.uniform(0.7, 1.4, (n, h, w)) + rng.normal(0, 0.2, (n, h, w))
    pred[rng.random((n, h, w)) < 0.05] = 15.0  # beyond max_depth: clipped
    pred[0, 6, 6] = -1.0  # below min_depth: clipped
    return pred, gt


@pytest.mark.parametrize("crop", ["eigen", "none"])
def test_matches_loop_reference(crop: str) -> None:
    pred, gt = _random_pair(3, 24, 32)
    got = depth_metrics_per_image(pred, gt, min_depth=0.5, max_depth=10.0, crop=crop)
    top, bottom, left, right = eigen_crop_bounds(24, 32) if crop == "eigen" else (0, 24, 0, 32)
    assert (top, bottom, left, right) != (0, 24, 0, 32) or crop == "none"
    for i in range(3):
        ref = _reference_one(pred[i], gt[i], 0.5, 10.0, range(top, bottom), range(left, right))
        for name in METRIC_NAMES:
            assert got[name][i] == pytest.approx(ref[name], rel=1e-10, abs=1e-12), name
    mean = depth_metrics(pred, gt, min_depth=0.5, max_depth=10.0, crop=crop)
    assert set(mean) == set(METRIC_NAMES)
    for name in METRIC_NAMES:
        assert mean[name] == pytest.approx(float(np.mean(got[name])), rel=1e-12)


def test_perfect_prediction() -> None:
    _, gt = _random_pair(2, 24, 32)
    m = depth_metrics(np.where(np.isfinite(gt), gt, 1.0), gt)
    for k in ("delta1", "delta2", "delta3"):
        assert m[k] == 1.0
    for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog"):
        assert m[k] == 0.0, k


def test_eigen_crop_bounds() -> None:
    assert eigen_crop_bounds(480, 640) == (45, 471, 41, 601)
    assert eigen_crop_bounds(240, 320) == (23, 236, 21, 301)  # halves rounded half up
    mask = eval_mask(np.full((480, 640), 2.0), 1e-3, 10.0, "eigen")
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (45, 471, 41, 601)
    assert mask.sum() == (471 - 45) * (601 - 41)


def test_eval_mask_range_and_types() -> None:
    gt = np.array([[0.0, 0.001, 0.5, 10.0, 9.99, np.nan, np.inf]])
    np.testing.assert_array_equal(eval_mask(gt, 1e-3, 10.0, "none"), [[False, False, True, False, True, False, False]])
    t = eval_mask(torch.from_numpy(gt), 1e-3, 10.0, "none")
    assert isinstance(t, torch.Tensor) and t.tolist() == [[False, False, True, False, True, False, False]]
    with pytest.raises(ParamsError, match=r"eval\.crop.*eigen \| none"):
        eval_mask(gt, 1e-3, 10.0, "garg")


def test_per_image_average_not_pooled() -> None:
    gt = np.full((2, 4, 4), 2.0)
    gt[1, :, 1:] = 0.0  # image 1 has 4 valid pixels, image 0 has 16
    pred = np.full((2, 4, 4), 2.0)
    pred[1] = 3.0  # abs_rel 0.5 on image 1, 0 on image 0
    m = depth_metrics(pred, gt, crop="none")
    assert m["abs_rel"] == pytest.approx(0.25)  # mean of (0, 0.5); pooling would give 0.1
    assert m["delta1"] == pytest.approx(0.5)


def test_empty_image_is_nan_and_skipped() -> None:
    gt = np.full((2, 4, 4), 2.0)
    gt[1] = 0.0
    per = depth_metrics_per_image(np.full((2, 4, 4), 2.5), gt, crop="none")
    assert all(np.isnan(v[1]) and not np.isnan(v[0]) for v in per.values())
    m = depth_metrics(np.full((2, 4, 4), 2.5), gt, crop="none")
    assert m["abs_rel"] == pytest.approx(0.25)
    assert math.isnan(average_metrics({"rmse": np.array([np.nan])})["rmse"])


def test_clipping_applied() -> None:
    gt = np.full((4, 4), 9.0)
    m = depth_metrics(np.full((4, 4), 50.0), gt, max_depth=10.0, crop="none")
    assert m["abs_rel"] == pytest.approx(1.0 / 9.0)  # 50 m clipped to 10 m
    m = depth_metrics(np.zeros((4, 4)), gt, min_depth=0.1, crop="none")
    assert m["abs_rel"] == pytest.approx(8.9 / 9.0)  # 0 clipped to min_depth: finite logs
    assert all(math.isfinite(v) for v in m.values())


def test_accepts_hw_and_nhw() -> None:
    pred, gt = _random_pair(1, 24, 32)
    two = depth_metrics(pred[0], gt[0])
    three = depth_metrics(pred, gt)
    assert two == three
    with pytest.raises(ValueError, match="differ in shape"):
        depth_metrics(pred, gt[:, :-1])
    with pytest.raises(ValueError, match=r"\(H, W\) or \(N, H, W\)"):
        depth_metrics(pred[None], gt[None])


def test_torch_paths_agree_with_numpy() -> None:
    pred, gt = _random_pair(2, 24, 32)
    expected = depth_metrics_per_image(pred, gt)
    p32, g32 = torch.from_numpy(pred).float()[:, None], torch.from_numpy(gt).float()[:, None]  # (B, 1, H, W)
    got = protocol_metrics_torch(p32, g32)
    for name in METRIC_NAMES:
        assert got[name].dtype == torch.float32 and got[name].shape == (2,)
        np.testing.assert_allclose(got[name].numpy(), expected[name], rtol=1e-4, err_msg=name)
    core = per_image_metrics_torch(p32.clamp(1e-3, 10.0), g32, eval_mask(g32, 1e-3, 10.0, "eigen"))
    assert all(torch.equal(core[k], got[k]) for k in METRIC_NAMES)


def test_names() -> None:
    assert METRIC_NAMES == ("delta1", "delta2", "delta3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog")
    assert {"delta1", "delta2", "delta3"} == HIGHER_IS_BETTER


def test_nonfinite_prediction_scored_as_bts_and_every_metric_averages_the_same_images() -> None:
    pred, gt = _random_pair(3, 20, 24, seed=4)
    gt[~np.isfinite(gt)] = 0.0
    bad = pred.copy()
    bad[1, 10, 10], bad[1, 11, 11], bad[2, 3, 3] = np.nan, np.inf, -np.inf
    fixed = pred.copy()
    fixed[1, 10, 10], fixed[1, 11, 11], fixed[2, 3, 3] = 1e-3, 10.0, 1e-3  # BTS: NaN/-inf -> min, +inf -> max
    per_bad = depth_metrics_per_image(bad, gt, crop="none")
    per_fixed = depth_metrics_per_image(fixed, gt, crop="none")
    for name in METRIC_NAMES:
        assert np.isfinite(per_bad[name]).all(), name  # no image silently dropped from any mean
        np.testing.assert_allclose(per_bad[name], per_fixed[name], rtol=1e-12)


def test_count_nonfinite() -> None:
    from pipeline.metrics import clip_prediction, count_nonfinite

    x = torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), 20.0])
    assert int(count_nonfinite(x)) == 3
    assert clip_prediction(x, 0.5, 10.0).tolist() == [1.0, 0.5, 10.0, 0.5, 10.0]
