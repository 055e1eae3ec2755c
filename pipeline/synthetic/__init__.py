"""The built-in synthetic NYUDv2 (`data.source: synthetic`): procedural rooms, ray cast.

    write_synthetic_nyu(labeled_path, splits_path, params.data.synthetic)

Modules, imports pointing one way: `textures` (materials, procedural albedo) ->
`furniture` (cuboids) -> `spec` (scene and camera types) -> `raycast` (RGB, z-depth,
Kinect holes) -> `scenes` (sampling rooms and camera poses) -> `dataset` (frames into
the labeled file's exact layout, train/test split by scene).
"""
