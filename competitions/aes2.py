"""Learning Agency Lab - Automated Essay Scoring 2.0: a holistic score 1-6 per essay, quadratic weighted kappa.

The model regresses the score (MSE); the cut points between scores are then fitted on the out-of-fold
predictions to maximise QWK (what every top solution did: plain rounding leaves a few hundredths of QWK behind).
The submission is the score as a whole number.
"""

from __future__ import annotations

import pandas as pd

from kaggle_kit.competition import Competition, InputContext, Schema, Target, clip
from kaggle_kit.data.folds import multilabel_stratified
from kaggle_kit.tasks.metrics import QWK
from kaggle_kit.tasks.postprocess import OrdinalThresholds


def essay_text(df: pd.DataFrame, ctx: InputContext) -> list[str]:
    return df["full_text"].tolist()


COMPETITION = Competition(
    name="aes2",
    title="Learning Agency Lab - Automated Essay Scoring 2.0",
    kaggle_slug="learning-agency-lab-automated-essay-scoring-2",
    schema=Schema(
        id_column="essay_id",
        input_columns=("full_text",),
        targets=(Target("score", low=1, high=6, step=1, submit="integer"),),
    ),
    build_inputs=essay_text,
    input_formats=("essay",),
    metric=QWK,
    default_loss="mse",
    fold_strategy=multilabel_stratified,  # one target: stratified on the score
    postprocess=clip(1.0, 6.0),
    postprocessor=OrdinalThresholds(),
    hidden_test_size=8000,  # about 8,000 essays in the hidden test, as the data page says
    presets={
        "quick": {"folds": 4, "train_folds": [0], "epochs": 1, "max_len": 256, "batch_size": 8, "eval_every": 2},
    },
)
