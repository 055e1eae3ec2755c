"""Scoring camera motion the way the field does: RPE and ATE with evo, the identity and Open3D baselines, published TUM RGB-D results."""
