"""Load and validate competition CSVs. Every problem is one line naming the file, row and column."""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kaggle_kit.competition import Competition
from kaggle_kit.errors import KitError


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a CSV with every cell as a string, after checking it exists, is non-empty and is UTF-8."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"{path}: file not found")
    raw = path.read_bytes()
    if not raw.strip():
        raise KitError(f"{path}: file is empty")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        bad_byte = raw[err.start:err.start + 1]
        raise KitError(f"{path}: not valid UTF-8 (line {line}, byte {err.start}: {bad_byte!r})") from None
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.ParserError as err:
        raise KitError(f"{path}: cannot parse as CSV ({err})") from None
    if df.empty:
        raise KitError(f"{path}: has a header but no rows")
    return df


def _where(path: Path, df: pd.DataFrame, row: int, id_column: str, column: str) -> str:
    ident = df[id_column].iat[row] if id_column in df.columns else "?"
    return f"{path} row {row + 1} ({id_column}={ident}), column {column!r}"


def _require_columns(df: pd.DataFrame, path: Path, required: list[str]) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise KitError(f"{path}: missing column(s) {', '.join(map(repr, missing))} (found: {', '.join(df.columns)})")


def _check_ids(df: pd.DataFrame, path: Path, id_column: str) -> None:
    ids = df[id_column]
    empty = np.flatnonzero(ids.str.strip() == "")
    if len(empty):
        raise KitError(f"{path} row {empty[0] + 1}, column {id_column!r}: empty id")
    dup = ids.duplicated(keep="first").to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero((ids == ids.iat[row]).to_numpy())[0])
        raise KitError(f"{path} row {row + 1}, column {id_column!r}: duplicate id {ids.iat[row]!r} "
                       f"(first at row {first + 1})")


def validate_train(df: pd.DataFrame, path: Path, comp: Competition) -> pd.DataFrame:
    """Check columns, ids and labels; return a copy with the target columns as floats (a classification label as
    the index of its class, in the order the plugin declares).

    Unknown columns are rejected rather than ignored: an extra label column usually means the user expects
    it to be trained, and silently dropping it would hide that.
    """
    schema = comp.schema
    _require_columns(df, path, schema.train_columns())
    unknown = [c for c in df.columns if c not in schema.train_columns()]
    if unknown:
        raise KitError(f"{path}: unknown column(s) {', '.join(map(repr, unknown))}: not in the {comp.name} schema "
                       f"({', '.join(schema.train_columns())})")
    _check_ids(df, path, schema.id_column)
    out = encode_labels(df, path, comp)
    _check_inputs(df, path, comp)
    _check_row_files(df, path, comp, "train")
    return out


def encode_labels(df: pd.DataFrame, path: Path, comp: Competition) -> pd.DataFrame:
    """A copy of `df` with its target columns as floats (a class label as its class's index); a bad label is one
    line naming the file, row and column."""
    schema = comp.schema
    out = df.copy()
    for target in schema.targets:
        raw = df[target.name]
        if target.kind != "regression":
            out[target.name] = _encode_classes(raw, target, path, df, schema.id_column)
            continue
        values = pd.to_numeric(raw.str.strip(), errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            row = int(bad[0])
            shown = raw.iat[row]
            what = "empty (NaN)" if shown.strip() in ("", "nan", "NaN", "NA") else f"{shown!r} is not a number"
            raise KitError(f"{_where(path, df, row, schema.id_column, target.name)}: label {what}")
        for row, value in enumerate(values):
            problem = target.problem(float(value))
            if problem:
                raise KitError(f"{_where(path, df, row, schema.id_column, target.name)}: label {problem}")
        out[target.name] = values
    return out


def _encode_classes(raw: pd.Series, target, path: Path, df: pd.DataFrame, id_column: str) -> np.ndarray:
    """Class indices of a classification column; an unknown label is one line naming its row and the classes."""
    index = {label: target.class_index(label) for label in raw.unique()}
    unknown = [label for label, i in index.items() if i is None]
    if unknown:
        row = int(np.flatnonzero(raw.isin(unknown).to_numpy())[0])
        shown = raw.iat[row]
        what = "is empty" if not shown.strip() else f"{shown!r} is not one of the classes"
        raise KitError(f"{_where(path, df, row, id_column, target.name)}: label {what} "
                       f"({', '.join(map(str, target.classes))})")
    return raw.map(index).to_numpy(dtype=np.float64)


def _check_row_files(df: pd.DataFrame, path: Path, comp: Competition, split: str) -> None:
    """Each row's own files (FBE's essays) must exist: a missing one is one line naming the file and the row."""
    for row_file in comp.row_files:
        values = df[row_file.column]
        for value in values.unique():
            file = row_file.path(path.parent, split, value)
            if not file.is_file():
                row = int(np.flatnonzero((values == value).to_numpy())[0])
                raise KitError(f"{file}: file not found (the {row_file.column} of "
                               f"{_where(path, df, row, comp.schema.id_column, row_file.column)})")


def copy_row_files(comp: Competition, df: pd.DataFrame, source: Path, source_split: str, dest: Path,
                   dest_split: str) -> None:
    """Copy the row files of `df`'s rows from one data folder to another (`kit simulate` lays out the Kaggle
    competition folder; its quick check poses training rows as test rows)."""
    for row_file in comp.row_files:
        for value in df[row_file.column].unique():
            if not row_file.path(source, source_split, value).is_file():
                continue  # a lenient test file's missing row file stays missing, as on Kaggle
            target = row_file.path(dest, dest_split, value)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(row_file.path(source, source_split, value), target)


def _check_inputs(df: pd.DataFrame, path: Path, comp: Competition) -> None:
    """An empty input would be predicted from the model's bias alone: refuse it with its row and column."""
    for column in comp.schema.input_columns:
        empty = np.flatnonzero(df[column].str.strip() == "")
        if len(empty):
            raise KitError(f"{_where(path, df, int(empty[0]), comp.schema.id_column, column)}: empty input text")


def validate_test(df: pd.DataFrame, path: Path, comp: Competition, lenient: bool = False) -> pd.DataFrame:
    """`lenient` (the notebook, `kit predict --lenient`): only the file's structure is checked (columns, ids); rows
    with an empty text or a missing row file are left to kaggle_kit.predict.fallback, which gives them the fallback
    prediction instead of stopping."""
    schema = comp.schema
    _require_columns(df, path, schema.test_columns())
    _check_ids(df, path, schema.id_column)
    if not lenient:
        _check_inputs(df, path, comp)
        _check_row_files(df, path, comp, "test")
    return df


@dataclass(frozen=True)
class DataSource:
    """The data folder a command reads and why that one: `--data`, the default data/<comp>/, or the sample."""

    path: Path
    kind: str  # "option" (--data), "default" (data/<comp>/) or "sample" (embedded in the package)

    @property
    def is_sample(self) -> bool:
        return self.kind == "sample"

    def record(self) -> dict[str, str]:
        """What the run manifest keeps, so a bundle or an ensemble finds the same folder later (the sample by
        name: its path depends on where the package is installed)."""
        return {"kind": self.kind, "dir": str(self.path.resolve())}


SAMPLE = "sample"  # `--data sample`, and how run_config.json records a run on the embedded sample


def resolve_data_source(comp: Competition, data_dir: str | Path | None) -> DataSource:
    """`--data`, else data/<comp>/, else the embedded sample (kaggle_kit/data/samples/<comp>/), in that order;
    `--data sample` asks for the sample by name (a run on it records that, not the package's install path).

    A data/<comp>/ folder that exists without train.csv is an error rather than a silent fall-back to the sample:
    the user put something there and expects it to be read.
    """
    if str(data_dir) == SAMPLE:
        from kaggle_kit.data.sample import sample_dir

        sample = sample_dir(comp.name)
        if sample is None:
            raise KitError(f"--data sample: kaggle-kit ships no {comp.name} sample; pass --data DIR")
        return DataSource(sample, "sample")
    if data_dir:
        folder, kind = Path(data_dir), "option"
    else:
        folder, kind = Path("data") / comp.name, "default"
        if not folder.exists():
            from kaggle_kit.data.sample import sample_dir

            sample = sample_dir(comp.name)
            if sample is not None:
                return DataSource(sample, "sample")
    if not (folder / "train.csv").is_file():
        hint = f"; {comp.data_hint}" if comp.data_hint else ""
        raise KitError(f"no train.csv in {folder}/: download the data with `{comp.download_command()}`, "
                       f"or pass --data DIR{hint}")
    return DataSource(folder, kind)


def resolve_data_dir(comp: Competition, data_dir: str | Path | None) -> Path:
    return resolve_data_source(comp, data_dir).path


def find_extra_files(comp: Competition, data_dir: Path | None, options: dict) -> dict[str, Path]:
    """Where each of the plugin's extra files is when a run starts: `extra: {option: PATH}`, else the file (or one
    of its alternative names) in the data folder. A missing file is one line listing what was tried."""
    found = {}
    for extra in comp.extra_files:
        candidates = [Path(options[extra.option])] if extra.option and options.get(extra.option) else []
        if data_dir is not None:
            candidates += [Path(data_dir) / name for name in (extra.name, *extra.alternatives)]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            tried = ", ".join(map(str, candidates)) or "nothing (no data folder)"
            raise KitError(f"{comp.name} needs {extra.name}; tried {tried}{': ' + extra.hint if extra.hint else ''}")
        found[extra.name] = path
    return found


def load_train(comp: Competition, data_dir: Path) -> pd.DataFrame:
    path = data_dir / "train.csv"
    return validate_train(read_csv(path), path, comp)


def load_test(comp: Competition, path: Path, lenient: bool = False) -> pd.DataFrame:
    return validate_test(read_csv(path), path, comp, lenient)
