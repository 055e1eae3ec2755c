"""Scoring camera motion as the field does.

RPE and ATE with evo, the identity and Open3D baselines, and published TUM RGB-D results.
"""
