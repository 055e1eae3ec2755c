"""The evaluate stage's file formats, defined once: evaluate writes them, the report reads them."""

# reports/predictions.npz: one array per key, K kept test images.
EXAMPLE_KEYS = ("index", "rgb", "gt", "pred", "scene", "scene_type")
# reports/error_by_depth.csv: pixel-pooled metrics per ground-truth depth bin.
BIN_COLUMNS = ("depth_bin_lo", "depth_bin_hi", "n_pixels", "abs_rel", "rmse", "delta1")
