"""Feedback Prize - Predicting Effective Arguments: how effective one argumentative element of a student essay
is (Ineffective, Adequate, Effective), multi-class log loss.

A row of train.csv is one discourse element (discourse_id) of an essay (essay_id): its text and type (Lead,
Position, Claim, Counterclaim, Rebuttal, Evidence, Concluding Statement). The whole essay is
train/<essay_id>.txt for train.csv's rows and test/<essay_id>.txt for test.csv's, in the competition folder.
The model reads the type, the element's text and then the essay (so truncation cuts the essay's end first).
Folds are grouped by essay: elements of one essay share its writer and topic, so splitting an essay across train
and validation would flatter the CV score.
"""

from __future__ import annotations

import pandas as pd

from kaggle_kit.competition import Competition, InputContext, RowFile, Schema, Target
from kaggle_kit.data.folds import stratified_group
from kaggle_kit.errors import KitError
from kaggle_kit.tasks.metrics import LOG_LOSS
from kaggle_kit.tasks.postprocess import TemperatureScaling

CLASSES = ("Ineffective", "Adequate", "Effective")
ESSAYS = RowFile("essay_id", "{split}/{value}.txt")


def essay_texts(df: pd.DataFrame, ctx: InputContext) -> dict[str, str]:
    """Each essay of the rows read once (an essay has about 9 elements)."""
    texts = {}
    for essay_id in df["essay_id"].unique():
        path = ctx.row_file(ESSAYS, essay_id)
        try:
            texts[essay_id] = " ".join(path.read_text(encoding="utf-8").split())
        except UnicodeDecodeError as err:
            raise KitError(f"{path}: not valid UTF-8 (byte {err.start})") from None
    return texts


def element_text(df: pd.DataFrame, ctx: InputContext) -> list[str]:
    """`type [SEP] element text [SEP] essay`, or without the essay (input format type-text)."""
    sep = f" {ctx.sep_token} "
    heads = (df["discourse_type"].str.strip() + sep + df["discourse_text"].str.strip()).tolist()
    if ctx.input_format == "type-text":
        return heads
    essays = essay_texts(df, ctx)
    return [head + sep + essays[essay_id] for head, essay_id in zip(heads, df["essay_id"], strict=True)]


COMPETITION = Competition(
    name="fbe",
    title="Feedback Prize - Predicting Effective Arguments",
    kaggle_slug="feedback-prize-effectiveness",
    schema=Schema(
        id_column="discourse_id",
        input_columns=("essay_id", "discourse_text", "discourse_type"),
        targets=(Target("discourse_effectiveness", kind="multiclass", classes=CLASSES),),
    ),
    build_inputs=element_text,
    input_formats=("type-text-essay", "type-text"),
    metric=LOG_LOSS,
    default_loss="cross-entropy",
    fold_strategy=stratified_group("essay_id"),
    postprocessor=TemperatureScaling(),
    hidden_test_size=36765,  # not published: assumed as large as train.csv, so runtime projections err safe
    row_files=(ESSAYS,),
    presets={
        # The element and its start of the essay; one fold on a CPU.
        "quick": {"folds": 4, "train_folds": [0], "epochs": 1, "max_len": 256, "batch_size": 16, "eval_every": 2},
    },
    data_hint="the essays must sit beside train.csv in train/<essay_id>.txt (and test/<essay_id>.txt for test.csv)",
)
