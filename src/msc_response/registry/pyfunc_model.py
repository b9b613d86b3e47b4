"""The MLflow pyfunc of a response model, logged as "model from code" (no pickled object).

MLflow runs this file when the model is loaded; ``mlflow.models.set_model`` names the
object to serve. ``predict`` returns the response probability (a column named
``probability``), not a class label. The artifacts are the model file (LightGBM text
or skops) and ``model_spec.json``: the experiment config the feature builder needs,
the feature columns, the threshold and the lab units the model was trained with.
"""

from __future__ import annotations

import json

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from msc_response.modeling.fitted import FittedModel


class ResponseModel(PythonModel):
    """Probability of response from the feature table."""

    def load_context(self, context):
        with open(context.artifacts["model_spec"]) as f:
            self.spec = json.load(f)
        self.fitted = FittedModel.load(self.spec, context.artifacts["model"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return pd.DataFrame(
            {"probability": self.fitted.predict_proba(model_input)}, index=model_input.index
        )


mlflow.models.set_model(ResponseModel())
