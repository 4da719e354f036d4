"""Bad input: one clear line naming the file, row and column; see also tests/kaggle_kit/test_cli.py."""

import pandas as pd
import pytest

from kaggle_kit.data.load import load_test, load_train, read_csv, resolve_data_dir
from kaggle_kit.errors import KitError
from kaggle_kit.registry import get_competition

ELL = get_competition("ell")
HEADER = "text_id,full_text,cohesion,syntax,vocabulary,phraseology,grammar,conventions\n"


def _write(tmp_path, body: str, header: str = HEADER):
    (tmp_path / "train.csv").write_text(header + body, encoding="utf-8")
    return tmp_path


def _error(tmp_path) -> str:
    with pytest.raises(KitError) as info:
        load_train(ELL, tmp_path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_valid_file_loads_with_float_targets(tmp_path):
    df = load_train(ELL, _write(tmp_path, "a,hello world,3,3.5,4,2.5,1,5\n"))
    assert df["syntax"].dtype == float and df["syntax"].iat[0] == 3.5


def test_missing_column(tmp_path):
    message = _error(_write(tmp_path, "a,text,3,3,3,3,3\n", header=HEADER.replace(",conventions", "")))
    assert "train.csv" in message and "missing column(s) 'conventions'" in message


def test_extra_unknown_target_column(tmp_path):
    message = _error(_write(tmp_path, "a,text,3,3,3,3,3,3,2\n", header=HEADER.strip() + ",fluency\n"))
    assert "unknown column(s) 'fluency'" in message


@pytest.mark.parametrize("value, expected", [
    ("", "empty (NaN)"), ("NaN", "empty (NaN)"), ("good", "'good' is not a number"),
])
def test_nan_or_non_numeric_label(tmp_path, value, expected):
    message = _error(_write(tmp_path, f"a,text,3,3,3,3,3,3\nb,text,3,{value},3,3,3,3\n"))
    assert "row 2 (text_id=b), column 'syntax'" in message and expected in message


@pytest.mark.parametrize("value, expected", [("5.5", "above the maximum 5"), ("0.5", "below the minimum 1"),
                                             ("3.25", "not on the 0.5 grid")])
def test_label_out_of_range_or_step(tmp_path, value, expected):
    message = _error(_write(tmp_path, f"a,text,3,3,3,3,3,{value}\n"))
    assert "row 1 (text_id=a), column 'conventions'" in message and expected in message


def test_duplicate_ids(tmp_path):
    message = _error(_write(tmp_path, "a,t,3,3,3,3,3,3\nb,t,3,3,3,3,3,3\na,t,3,3,3,3,3,3\n"))
    assert "row 3, column 'text_id': duplicate id 'a' (first at row 1)" in message


def test_empty_file(tmp_path):
    (tmp_path / "train.csv").write_text("")
    assert "file is empty" in _error(tmp_path)


def test_header_only(tmp_path):
    assert "no rows" in _error(_write(tmp_path, ""))


def test_non_utf8_file(tmp_path):
    (tmp_path / "train.csv").write_bytes(HEADER.encode() + "a,caf\xe9,3,3,3,3,3,3\n".encode("latin-1"))
    message = _error(tmp_path)
    assert "not valid UTF-8 (line 2" in message


def test_empty_text(tmp_path):
    assert "column 'full_text': empty input text" in _error(_write(tmp_path, "a,  ,3,3,3,3,3,3\n"))


def test_missing_data_dir_says_how_to_download(tmp_path):
    with pytest.raises(KitError, match=r"no train.csv in .*nowhere/: download the data with `kit data ell`"):
        resolve_data_dir(ELL, tmp_path / "nowhere")


def test_test_file_needs_id_and_text(tmp_path):
    (tmp_path / "test.csv").write_text("text_id\nx\n")
    with pytest.raises(KitError, match="missing column"):
        load_test(ELL, tmp_path / "test.csv")


def test_real_data_loads(ell_dir):
    df = load_train(ELL, ell_dir)
    assert len(df) == len(read_csv(ell_dir / "train.csv")) and not df.isna().any().any()
    assert isinstance(df, pd.DataFrame)


def _classification(tmp_path, labels: list[str], classes=("low", "mid", "high"), kind="multiclass"):
    """A one-target plugin whose labels are classes, and a train.csv holding `labels`."""
    from kaggle_kit.competition import Competition, Schema, Target
    from kaggle_kit.data.folds import kfold
    from kaggle_kit.tasks.metrics import ACCURACY

    comp = Competition(name="cls", title="classes", kaggle_slug="cls",
                       schema=Schema("id", ("text",), (Target("label", kind=kind, classes=classes),)),
                       build_inputs=lambda df, ctx: df["text"].tolist(), input_formats=("text",), metric=ACCURACY,
                       default_loss="cross-entropy", fold_strategy=kfold)
    rows = "".join(f"r{i},some text,{label}\n" for i, label in enumerate(labels))
    (tmp_path / "train.csv").write_text("id,text,label\n" + rows, encoding="utf-8")
    return comp


def test_string_labels_become_class_indices_in_declared_order(tmp_path):
    comp = _classification(tmp_path, ["high", "low", " mid ", "high"])
    assert load_train(comp, tmp_path)["label"].tolist() == [2.0, 0.0, 1.0, 2.0]


def test_int_classes_match_their_written_forms(tmp_path):
    comp = _classification(tmp_path, ["1", "0", "1.0", "0"], classes=(0, 1), kind="binary")
    assert load_train(comp, tmp_path)["label"].tolist() == [1.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize("label, expected", [("great", "label 'great' is not one of the classes (low, mid, high)"),
                                             ("", "label is empty (low, mid, high)")])
def test_a_label_outside_the_classes_is_one_line_with_row_and_column(tmp_path, label, expected):
    comp = _classification(tmp_path, ["low", "mid", label, "high"])
    with pytest.raises(KitError) as info:
        load_train(comp, tmp_path)
    assert str(info.value) == f"{tmp_path / 'train.csv'} row 3 (id=r2), column 'label': {expected}"
