"""Model-from-code entry point that MLflow records instead of a pickle (see ``mlflow.models.set_model``)."""

import mlflow.models

from deskpilot.registry.pyfunc import TriagePyfunc

mlflow.models.set_model(TriagePyfunc())
