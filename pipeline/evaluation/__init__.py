"""Evaluation on the standard NYUDv2 protocol.

The stage's core is `pipeline.evaluation.evaluate.run(params, root)`. Beside it:
`inference` (the one inference path, shared with the `predict` CLI), `protocol` (the
streamed test loop), `baseline` (the constant-depth baseline), `depth_bins` (error by
depth) and `formats` (the output formats the report reads).
"""
