"""The MLflow pyfunc face of a DeskPilot model, so MLflow's own tools (``mlflow models serve``) can run it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext

from deskpilot.models.artifact import TriageModel
from deskpilot.registry.base import ARTIFACT_KEY


class TriagePyfunc(PythonModel):
    """Input: a frame with a ``text`` column. Output: intent, confidence and route per row."""

    def load_context(self, context: PythonModelContext) -> None:
        self.model = TriageModel.load(Path(context.artifacts[ARTIFACT_KEY]))

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, str] | None = None
    ) -> pd.DataFrame:
        texts = [str(t) for t in model_input["text"]]
        predictions = self.model.predict(texts, top_k=1)
        return pd.DataFrame(
            {
                "intent": [p.intent for p in predictions],
                "confidence": [p.confidence for p in predictions],
                "route": [self.model.route_for(p.confidence).value for p in predictions],
            }
        )
