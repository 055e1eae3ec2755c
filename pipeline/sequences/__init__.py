"""RGB-D sequences with ground-truth camera motion in TUM RGB-D's layout: synthetic, TUM's own, or on disk."""
