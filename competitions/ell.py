"""Feedback Prize - English Language Learning: six analytic scores of student essays, MCRMSE."""

from kaggle_kit.competition import Competition, InputContext, Schema, Target, clip
from kaggle_kit.data.folds import multilabel_stratified
from kaggle_kit.tasks.metrics import MCRMSE

TARGETS = ("cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions")


def essay_text(df, ctx: InputContext) -> list[str]:
    """The essay itself; the model sees nothing else."""
    return df["full_text"].tolist()


COMPETITION = Competition(
    name="ell",
    title="Feedback Prize - English Language Learning",
    kaggle_slug="feedback-prize-english-language-learning",
    schema=Schema(
        id_column="text_id",
        input_columns=("full_text",),
        targets=tuple(Target(name, low=1.0, high=5.0, step=0.5) for name in TARGETS),
    ),
    build_inputs=essay_text,
    input_formats=("essay",),
    metric=MCRMSE,
    default_loss="rmse",
    fold_strategy=multilabel_stratified,
    postprocess=clip(1.0, 5.0),
    hidden_test_size=2700,
    presets={
        # Sized for a 2-core CPU in under 10 minutes with all-MiniLM-L6-v2: see README "Presets".
        "quick": {"folds": 4, "train_folds": [0], "epochs": 1, "max_len": 256, "batch_size": 8, "eval_every": 2},
    },
)
