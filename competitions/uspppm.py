"""U.S. Patent Phrase to Phrase Matching: how similar two patent phrases are within a CPC context, Pearson r.

A row is (anchor, target, context) with a score in {0, 0.25, 0.5, 0.75, 1}. The context is a CPC class code
such as A47; the model reads it as text - the section title plus the class title, lower-cased - taken from a
CPC titles file (`code, title` columns at least; Kaggle's cpc-codes `titles.csv` works as is). The kit finds that
file when a run starts and the run carries a copy (see ExtraFile).
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.competition import Competition, DatasetFile, ExtraFile, InputContext, Schema, Target
from kaggle_kit.data.folds import stratified_group
from kaggle_kit.errors import KitError
from kaggle_kit.tasks.metrics import PEARSON

TITLES_FILE = "cpc_titles.csv"
# Kaggle's "cpc-codes" dataset names the same table titles.csv.
TITLES_FALLBACK = "titles.csv"
TITLES_OPTION = "cpc_titles"
GROUP_JOINER = "; "


@lru_cache(maxsize=4)
def _load_titles(path: str, mtime_ns: int, size: int) -> dict[str, str]:
    """code -> title for all 260k CPC codes; cached per file version (it is read once per fold set and run)."""
    try:
        df = pd.read_csv(path, usecols=["code", "title"], dtype=str, keep_default_na=False)
    except ValueError as err:
        raise KitError(f"{path}: expected columns code,title ({err})") from None
    return dict(zip(df["code"].str.strip(), df["title"].str.strip(), strict=True))


def load_titles(path: Path) -> dict[str, str]:
    stat = path.stat()
    return _load_titles(str(path), stat.st_mtime_ns, stat.st_size)


def context_texts(codes: pd.Series, titles: dict[str, str], titles_path: Path, ids: pd.Series) -> list[str]:
    """'A47' -> 'human necessities. furniture; domestic articles or appliances; ...' (section, then class)."""
    texts = {}
    unknown = []
    for code in codes.unique():
        section, klass = titles.get(code[:1]), titles.get(code) if len(code) > 1 else ""
        if section is None or klass is None:
            unknown.append(code)
            continue
        texts[code] = ". ".join(t for t in (section, klass) if t).lower()
    if unknown:
        unknown = sorted(unknown)
        first = ids[codes.isin(unknown)].iloc[0]
        raise KitError(f"{titles_path}: no title for {len(unknown)} context code(s): "
                       f"{', '.join(map(repr, unknown[:5]))}{' ...' if len(unknown) > 5 else ''} "
                       f"(first in row id={first}); context must be a CPC class code such as A47")
    return [texts[c] for c in codes]


def group_targets(df: pd.DataFrame, seed: int) -> list[str]:
    """For each row, the other targets of its (anchor, context) group in `df`, shuffled, joined by '; '.

    Never the row's own target (nor a duplicate of its text), and never a label: only input phrases. Each row's
    shuffle is seeded by (seed, row id), so it does not depend on row order or on which other rows were sampled.

    Why this does not leak during training: the pipeline builds inputs once on the whole train frame, before
    splitting it into folds, and the folds are grouped by anchor. A whole (anchor, context) group is therefore
    on one side of every split, so a validation row only ever sees other validation rows' target phrases - as a
    test row sees other test rows' - and a training row only training rows'.
    """
    keys = df["anchor"] + "\x00" + df["context"]
    members = df.groupby(keys, sort=False)["target"].agg(list).to_dict()
    out = []
    for key, own, row_id in zip(keys, df["target"], df["id"], strict=True):
        others = sorted({t for t in members[key] if t != own})
        rng = np.random.default_rng([seed, zlib.crc32(str(row_id).encode())])
        out.append(GROUP_JOINER.join(others[i] for i in rng.permutation(len(others))))
    return out


def pair_text(df: pd.DataFrame, ctx: InputContext) -> list[str]:
    """`anchor [SEP] target [SEP] context text`, with the tokenizer's own separator, or a variant of it."""
    sep = f" {ctx.sep_token} "
    parts = [df["anchor"].str.strip(), df["target"].str.strip()]
    if ctx.input_format != "anchor-target":
        path = ctx.files[TITLES_FILE]
        parts.append(pd.Series(context_texts(df["context"].str.strip(), load_titles(path), path, df["id"]),
                               index=df.index))
    if ctx.input_format == "anchor-target-context-group":
        parts.append(pd.Series(group_targets(df, ctx.seed), index=df.index))
    return [sep.join(p for p in row if p) for row in zip(*parts, strict=True)]


COMPETITION = Competition(
    name="uspppm",
    title="U.S. Patent Phrase to Phrase Matching",
    kaggle_slug="us-patent-phrase-to-phrase-matching",
    schema=Schema(
        id_column="id",
        input_columns=("anchor", "target", "context"),
        targets=(Target("score", low=0.0, high=1.0, allowed=(0.0, 0.25, 0.5, 0.75, 1.0)),),
    ),
    build_inputs=pair_text,
    input_formats=("anchor-target-context", "anchor-target", "anchor-target-context-group"),
    metric=PEARSON,
    default_loss="bce",
    fold_strategy=stratified_group("anchor"),
    hidden_test_size=12000,
    presets={
        # Sized for a 2-core CPU in under 10 minutes with all-MiniLM-L6-v2: see README "Presets".
        "quick": {"folds": 4, "train_folds": [0], "epochs": 1, "max_len": 64, "batch_size": 32,
                  "eval_batch_size": 128, "lr": 1e-4, "head_lr": 1e-3, "eval_every": 2},
    },
    data_hint="the CPC titles must sit beside train.csv as cpc_titles.csv: `kit data uspppm` saves the titles.csv "
              "of the Kaggle dataset xhlulu/cpc-codes under that name",
    extra_files=(ExtraFile(TITLES_FILE, alternatives=(TITLES_FALLBACK,), option=TITLES_OPTION,
                           hint="the CPC titles (code,title) turn context codes into text: `kit data uspppm` puts "
                                "cpc_titles.csv beside train.csv (Kaggle's cpc-codes titles.csv), or set "
                                "`extra: {cpc_titles: PATH}` in --config",
                           source=DatasetFile("xhlulu/cpc-codes", TITLES_FALLBACK)),),
)
