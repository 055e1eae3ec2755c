"""The model-from-code file of the logged depth model: MLflow runs it to build the model.

Logging the model stores this file with it (`mlflow.pyfunc.log_model(python_model=<this
file>)`), so loading it executes code that travels with the model instead of unpickling
an object: checkpoints here load with `weights_only=True` for the same reason.
"""

import mlflow.models

from pipeline.tracking.pyfunc_model import DepthModel

mlflow.models.set_model(DepthModel())
