"""Feedback Prize - English Language Learning: six analytic scores of student essays, MCRMSE."""

from kaggle_kit.competition import Competition, InputContext, Schema, Target, clip
from kaggle_kit.data.folds import multilabel_stratified
from kaggle_kit.tasks.metrics import MCRMSE

TARGETS = ("cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions")


INSTRUCTION = ("Rate this essay by an English language learner for cohesion, syntax, vocabulary, phraseology, "
               "grammar and conventions.\n\n")


def essay_text(df, ctx: InputContext) -> list[str]:
    """`essay`: the essay itself. `instruct`: the essay in a user message behind an instruction, rendered with the
    tokenizer's chat template (for instruction-tuned decoder LLMs)."""
    if ctx.input_format == "instruct":
        return [ctx.chat([{"role": "user", "content": INSTRUCTION + text}]) for text in df["full_text"]]
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
    input_formats=("essay", "instruct"),
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
