"""Published TUM RGB-D results (placeholder; filled below)."""
