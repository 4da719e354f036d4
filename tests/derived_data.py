"""Small FBE and AES2 data sets in those competitions' real file formats, derived from the ELL essays.

Their data is not here, and all three competitions draw on the same corpus family (essays of U.S. grade 6-12
students), so the ELL essays stand in for the texts. The labels are DERIVED, not real:

- AES2 (essay_id, full_text, score 1-6): the mean of the essay's six ELL analytic scores (1-5) mapped linearly
  onto 1-6 and rounded. essay_id is the first 7 characters of the ELL text_id, lower-cased (AES2 ids are 7 hex
  characters).
- FBE (discourse_id, essay_id, discourse_text, discourse_type, discourse_effectiveness): each paragraph of an
  essay becomes a discourse element (the first a Lead, the second a Position, the last a Concluding Statement,
  the ones between Claim and Evidence in turn); its effectiveness comes from the essay's mean ELL score moved
  by the element's length (+0.25 above 60 words, -0.25 below 15): Ineffective under 2.75, Effective from 3.5,
  else Adequate. discourse_id is 12 hex characters of a hash of (essay, element). The essay itself is
  train/<essay_id>.txt (test/<essay_id>.txt for test.csv), as in the competition's folder.

Both test sets are the three essays of ELL's public test.csv, as the competitions' public test sets are a
handful of rows; sample_submission.csv has the competitions' columns.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

ELL_TARGETS = ["cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions"]
FBE_CLASSES = ("Ineffective", "Adequate", "Effective")


def _ell(ell_dir: Path, n_essays: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    train = pd.read_csv(ell_dir / "train.csv", dtype={"text_id": str}).head(n_essays)
    test = pd.read_csv(ell_dir / "test.csv", dtype={"text_id": str})
    return train, test


def aes2_score(ell_rows: pd.DataFrame) -> np.ndarray:
    mean = ell_rows[ELL_TARGETS].mean(axis=1).to_numpy()
    return np.clip(np.round(1 + (mean - 1) * 5 / 4), 1, 6).astype(int)


def build_aes2(ell_dir: Path, out: Path, n_essays: int = 48) -> Path:
    train, test = _ell(ell_dir, n_essays)
    out.mkdir(parents=True, exist_ok=True)
    ids = train["text_id"].str.lower().str[:7]
    assert ids.is_unique
    pd.DataFrame({"essay_id": ids, "full_text": train["full_text"], "score": aes2_score(train)}).to_csv(
        out / "train.csv", index=False)
    test_ids = test["text_id"].str.lower().str[:7]
    pd.DataFrame({"essay_id": test_ids, "full_text": test["full_text"]}).to_csv(out / "test.csv", index=False)
    pd.DataFrame({"essay_id": test_ids, "score": 3}).to_csv(out / "sample_submission.csv", index=False)
    return out


def _elements(essay_id: str, text: str) -> list[tuple[str, str, str]]:
    """(discourse_id, type, text) for each paragraph of an essay."""
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
    if len(paragraphs) < 3:  # one block of text: three parts of its sentences
        sentences = [s.strip() + "." for s in " ".join(paragraphs).split(".") if s.strip()]
        cut = np.array_split(np.arange(len(sentences)), 3)
        paragraphs = [" ".join(sentences[i] for i in part) for part in cut if len(part)]
    out = []
    for i, paragraph in enumerate(paragraphs):
        if i == 0:
            kind = "Lead"
        elif i == len(paragraphs) - 1:
            kind = "Concluding Statement"
        elif i == 1:
            kind = "Position"
        else:
            kind = "Claim" if i % 2 == 0 else "Evidence"
        discourse_id = hashlib.sha1(f"{essay_id}/{i}".encode()).hexdigest()[:12]
        out.append((discourse_id, kind, paragraph))
    return out


def fbe_effectiveness(essay_mean: float, words: int) -> str:
    value = essay_mean + (0.25 if words > 60 else 0.0) - (0.25 if words < 15 else 0.0)
    return "Ineffective" if value < 2.75 else "Effective" if value >= 3.5 else "Adequate"


def _fbe_rows(essays: pd.DataFrame, labelled: bool) -> list[dict]:
    rows = []
    means = essays[ELL_TARGETS].mean(axis=1).to_numpy() if labelled else [None] * len(essays)
    for essay_id, text, mean in zip(essays["text_id"], essays["full_text"], means, strict=True):
        for discourse_id, kind, element in _elements(essay_id, text):
            row = {"discourse_id": discourse_id, "essay_id": essay_id, "discourse_text": element,
                   "discourse_type": kind}
            if labelled:
                row["discourse_effectiveness"] = fbe_effectiveness(mean, len(element.split()))
            rows.append(row)
    return rows


def build_fbe(ell_dir: Path, out: Path, n_essays: int = 24) -> Path:
    train, test = _ell(ell_dir, n_essays)
    for split, essays in (("train", train), ("test", test)):
        (out / split).mkdir(parents=True, exist_ok=True)
        for essay_id, text in zip(essays["text_id"], essays["full_text"], strict=True):
            (out / split / f"{essay_id}.txt").write_text(text, encoding="utf-8")
    pd.DataFrame(_fbe_rows(train, labelled=True)).to_csv(out / "train.csv", index=False)
    test_rows = pd.DataFrame(_fbe_rows(test, labelled=False))
    test_rows.to_csv(out / "test.csv", index=False)
    sample = pd.DataFrame({"discourse_id": test_rows["discourse_id"], "Ineffective": 0.2, "Adequate": 0.6,
                           "Effective": 0.2})
    sample.to_csv(out / "sample_submission.csv", index=False)
    return out


if __name__ == "__main__":  # python -m tests.derived_data ELL_DIR OUT_DIR: both sets, for manual runs
    import sys

    ell, root = Path(sys.argv[1]), Path(sys.argv[2])
    print(build_fbe(ell, root / "fbe"), build_aes2(ell, root / "aes2"))
