"""The embedded samples: a few hundred real training rows shipped inside the package, so that `kit train COMP`
runs from a fresh clone with no data beside it.

A sample is a folder kaggle_kit/data/samples/<competition>/ laid out like the competition's data (train.csv),
with the data's own licence (LICENSE), its attribution (README.md) and sample.json (source, licence name, the
sha256 of the full train.csv the rows were picked from). The data keeps its own licence: it is not part of the
code's MIT licence, and `kit bundle` leaves it out of the kaggle-kit wheel it ships.

`python -m kaggle_kit.data.sample ell --data ../shared/data/ell --rows 480` rebuilds the ELL sample from the full
data; the rows are picked deterministically, so the same data and arguments always give the same file.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.fileio import atomic_path, read_json

SAMPLES_ROOT = Path(__file__).resolve().parent / "samples"
SAMPLE_INFO = "sample.json"
# Every (target, level) pair of the full data appears at least this often (or as often as it exists).
MIN_ROWS_PER_LEVEL = 2


@dataclass(frozen=True)
class SampleInfo:
    """What sample.json says: where the rows come from and under which licence."""

    path: Path
    source: str
    license: str
    rows_of: int

    def describe(self, rows: int) -> str:
        """'480 of 3,911 essays of the ELLIPSE corpus (the ELL training data), CC BY-NC-SA 4.0'"""
        return f"{rows} of {self.rows_of:,} {self.source}, {self.license}"


def sample_dir(competition: str) -> Path | None:
    """The embedded sample's folder for a competition, or None when the package ships none."""
    folder = SAMPLES_ROOT / competition
    return folder if (folder / "train.csv").is_file() else None


def sample_info(folder: Path) -> SampleInfo:
    info = read_json(folder / SAMPLE_INFO)
    return SampleInfo(folder, info["source"], info["license"], int(info["rows_of"]))


def select_rows(train: pd.DataFrame, targets: list[str], rows: int, seed: int = 0) -> np.ndarray:
    """Positions of `rows` training rows, in file order, such that every label level of every target appears
    (rarest levels first, MIN_ROWS_PER_LEVEL each), the rest stratified on the rounded mean label so the sample's
    score distribution follows the full data's. Deterministic for a given frame, row count and seed."""
    if rows >= len(train):
        return np.arange(len(train))
    labels = train[targets].to_numpy(dtype=np.float64)
    order = np.random.default_rng(seed).permutation(len(train))
    chosen: list[int] = []
    taken = np.zeros(len(train), dtype=bool)
    levels = [(j, value) for j in range(len(targets)) for value in np.unique(labels[:, j])]
    levels.sort(key=lambda lv: (int((labels[:, lv[0]] == lv[1]).sum()), lv[0], lv[1]))
    for j, value in levels:
        have = int((labels[chosen, j] == value).sum()) if chosen else 0
        for i in order:
            if have >= MIN_ROWS_PER_LEVEL or len(chosen) >= rows:
                break
            if not taken[i] and labels[i, j] == value:
                chosen.append(int(i))
                taken[i] = True
                have += 1
    strata = np.round(labels.mean(axis=1) * 2) / 2
    rest = [int(i) for i in order if not taken[i]]
    need = rows - len(chosen)
    values, counts = np.unique(strata[rest], return_counts=True)
    quota = counts * need / counts.sum()
    take = np.floor(quota).astype(int)
    for k in np.argsort(-(quota - take), kind="stable")[: need - take.sum()]:
        take[k] += 1
    for value, k in zip(values, take, strict=True):
        chosen += [i for i in rest if strata[i] == value][:k]
    return np.sort(np.asarray(chosen))


def build(competition: str, data_dir: Path, rows: int, out: Path | None = None, seed: int = 0) -> Path:
    """Write the sample's train.csv: the picked rows of `data_dir`/train.csv, unchanged, in file order."""
    from kaggle_kit.data.load import load_train, read_csv
    from kaggle_kit.registry import get_competition

    comp = get_competition(competition)
    validated = load_train(comp, data_dir)
    raw = read_csv(data_dir / "train.csv")
    picked = raw.iloc[select_rows(validated, comp.schema.target_names, rows, seed)]
    out = out or SAMPLES_ROOT / competition
    with atomic_path(out / "train.csv") as tmp:
        picked.to_csv(tmp, index=False)
    return out / "train.csv"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rebuild an embedded sample's train.csv from the full data.")
    parser.add_argument("competition")
    parser.add_argument("--data", type=Path, required=True, help="folder with the full train.csv")
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", type=Path, help="[default: kaggle_kit/data/samples/<competition>/]")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = build(args.competition, args.data, args.rows, args.out, args.seed)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
