"""Training: the train stage's core is `pipeline.training.train.run(params, root)`.

Modules: `train` (the run: set-up, epochs, best model), `loop` (one epoch, one
validation pass), `device_data` (the split on the device, batched and augmented there),
`resume` (the resume checkpoint), `optim`, `seeding`, `distributed` (DDP), `runlog` (TSV).
"""
