import json

import numpy as np
import pandas as pd
import pytest

from competitions.uspppm import group_targets
from kaggle_kit.competition import InputContext
from kaggle_kit.data.load import find_extra_files, load_test, load_train
from kaggle_kit.errors import KitError
from kaggle_kit.predict.ensemble import ensemble_report
from kaggle_kit.registry import get_competition
from tests.helpers import assert_one_line_error, invoke, run_kit

USPPPM = get_competition("uspppm")


@pytest.fixture
def titles_dir(tmp_path):
    """A Kaggle cpc-codes style titles.csv (extra columns, upper case) and no cpc_titles.csv."""
    pd.DataFrame({
        "code": ["A", "A47", "H", "H04"],
        "title": ["HUMAN NECESSITIES", "FURNITURE; DOMESTIC ARTICLES", "ELECTRICITY", "ELECTRIC COMMUNICATION"],
        "section": ["A", "A", "H", "H"],
        "class": ["", "47", "", "04"],
    }).to_csv(tmp_path / "titles.csv", index=False)
    return tmp_path


def _rows(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"id": [f"r{i}" for i in range(n)], "anchor": ["abatement"] * n, "target": [f"t{i}" for i in range(n)],
            "context": ["A47"] * n}
    return pd.DataFrame({**base, **columns})


def _ctx(fmt="anchor-target-context", sep="[SEP]", seed=0, data_dir=None, options=None):
    """The context a run gets: the kit finds the extra files (as when a run starts) and hands their paths over."""
    files = find_extra_files(USPPPM, data_dir, options or {}) if fmt != "anchor-target" else {}
    return InputContext(sep_token=sep, input_format=fmt, seed=seed, data_dir=data_dir, options=options or {},
                        files=files)


def test_default_input_uses_the_tokenizers_separator_and_lower_cased_section_and_class_titles(titles_dir):
    df = _rows(target=["act of abating", "Radio Link"], context=["A47", "H04"])
    texts = USPPPM.build_inputs(df, _ctx(sep="</s>", data_dir=titles_dir))
    assert texts == ["abatement </s> act of abating </s> human necessities. furniture; domestic articles",
                     "abatement </s> Radio Link </s> electricity. electric communication"]


def test_anchor_target_format_needs_no_titles(tmp_path):
    texts = USPPPM.build_inputs(_rows(target=["x"]), _ctx("anchor-target", data_dir=tmp_path))
    assert texts == ["abatement [SEP] x"]


def test_titles_path_from_options_wins_and_a_stale_recorded_path_falls_back(titles_dir, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    pd.DataFrame({"code": ["A", "A47"], "title": ["SECTION A", "CLASS A47"]}).to_csv(elsewhere / "mine.csv",
                                                                                      index=False)
    df = _rows(target=["x"])
    given = USPPPM.build_inputs(df, _ctx(data_dir=titles_dir, options={"cpc_titles": str(elsewhere / "mine.csv")}))
    assert given == ["abatement [SEP] x [SEP] section a. class a47"]
    stale = USPPPM.build_inputs(df, _ctx(data_dir=titles_dir, options={"cpc_titles": "/gone/cpc_titles.csv"}))
    assert stale == ["abatement [SEP] x [SEP] human necessities. furniture; domestic articles"]


def test_missing_titles_file_says_where_it_looked(tmp_path):
    with pytest.raises(KitError, match="needs cpc_titles.csv; tried .*cpc_titles.csv, .*titles.csv: the CPC titles"):
        find_extra_files(USPPPM, tmp_path, {})


def test_unknown_context_codes_are_listed_not_a_key_error(titles_dir):
    df = _rows(target=["a", "b", "c", "d"], context=["A47", "Z99", "A12", "Z99"])
    with pytest.raises(KitError) as err:
        USPPPM.build_inputs(df, _ctx(data_dir=titles_dir))
    message = str(err.value)
    assert "titles.csv: no title for 2 context code(s): 'A12', 'Z99'" in message and "id=r1" in message
    assert "\n" not in message


def test_group_targets_never_hold_the_rows_own_target_and_are_seeded():
    targets = [f"phrase {i}" for i in range(12)]
    df = pd.concat([_rows(target=targets),
                    _rows(target=["phrase 0", "other"], context=["H04", "H04"]).assign(id=["h0", "h1"])],
                   ignore_index=True)
    groups = group_targets(df, seed=1)
    for own, row_context, joined in zip(df["target"], df["context"], groups, strict=True):
        parts = joined.split("; ")
        assert own not in parts
        expected = {t for t in df.loc[df["context"] == row_context, "target"] if t != own}
        assert set(parts) == expected
    assert groups == group_targets(df, seed=1)
    assert groups != group_targets(df, seed=2)
    reordered = group_targets(df.iloc[::-1].reset_index(drop=True), seed=1)[::-1]
    assert reordered == groups


def test_group_format_appends_other_targets_and_no_labels(titles_dir):
    df = _rows(target=["alpha", "beta", "gamma"], score=[0.25, 0.5, 1.0])
    texts = USPPPM.build_inputs(df, _ctx("anchor-target-context-group", data_dir=titles_dir))
    head = "abatement [SEP] alpha [SEP] human necessities. furniture; domestic articles [SEP] "
    assert texts[0].startswith(head) and set(texts[0][len(head):].split("; ")) == {"beta", "gamma"}
    assert not any(s in t for t in texts for s in ("0.25", "0.5", "1.0"))


def test_grouped_folds_keep_each_anchor_on_one_side_and_stratify(uspppm_dir):
    df = load_train(USPPPM, uspppm_dir)
    folds = USPPPM.fold_strategy(df, ["score"], 4, 42)
    assert set(folds) == {0, 1, 2, 3}
    assert (df.assign(fold=folds).groupby("anchor")["fold"].nunique() == 1).all()
    # each fold's share of every score level within 0.5 points of the overall share (measured 0.15 points;
    # grouping by anchor without stratifying gives 1.3-2.0)
    overall = df["score"].value_counts(normalize=True)
    for f in range(4):
        share = df.loc[folds == f, "score"].value_counts(normalize=True).reindex(overall.index, fill_value=0)
        assert (share - overall).abs().max() < 0.005, f
    assert np.array_equal(folds, USPPPM.fold_strategy(df, ["score"], 4, 42))


def test_scores_outside_the_allowed_set_are_rejected_with_the_row(tmp_path, uspppm_small_dir):
    df = pd.read_csv(uspppm_small_dir / "train.csv", dtype=str, keep_default_na=False)
    df.loc[2, "score"] = "0.3"
    df.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(KitError, match=rf"row 3 \(id={df.loc[2, 'id']}\), column 'score': label 0.3 is not one of "
                                       r"0, 0.25, 0.5, 0.75, 1"):
        load_train(USPPPM, tmp_path)


def test_every_real_context_code_has_a_title(uspppm_dir):
    for name in ("train.csv", "test.csv"):
        df = load_train(USPPPM, uspppm_dir) if name == "train.csv" else load_test(USPPPM, uspppm_dir / name)
        texts = USPPPM.build_inputs(df, _ctx(data_dir=uspppm_dir))
        contexts = [t.split(" [SEP] ")[2] for t in texts]
        assert all(t.count(" [SEP] ") == 2 for t in texts) and all(c and c == c.lower() for c in contexts)


def test_quick_preset_is_cpu_sized():
    quick = USPPPM.presets["quick"]
    assert quick["max_len"] <= 64 and quick["epochs"] == 1 and len(quick["train_folds"]) == 1


@pytest.mark.e2e
def test_train_predict_and_ensemble_on_real_pairs(tmp_path, uspppm_small_dir, uspppm_tiny_run, tiny_bert, capsys):
    """Two tiny runs (default format + BCE, the shared fixture; group format + Pearson loss with the titles file
    given through --config), each predicting the public test.csv, then an ensemble fitted on their OOF predictions."""
    common = ["--model", tiny_bert, "--folds", "2", "--epochs", "1", "--max-len", "32", "--batch-size", "16",
              "--eval-every", "1"]
    first = uspppm_tiny_run

    folds = pd.read_csv(first / "folds.csv").merge(pd.read_csv(uspppm_small_dir / "train.csv"), on="id")
    assert (folds.groupby("anchor")["fold"].nunique() == 1).all() and set(folds["fold"]) == {0, 1}
    oof = pd.read_csv(first / "oof.csv")
    assert list(oof.columns) == ["id", "score"] and len(oof) == len(folds)
    assert oof["score"].between(0, 1).all()
    cv = json.loads((first / "cv.json").read_text())
    assert cv["metric"] == "Pearson" and set(cv["folds"]) == {"fold0", "fold1"}
    manifest = json.loads((first / "manifest.json").read_text())
    assert set(manifest["data"]) == {"train.csv", "cpc_titles.csv"}

    train_only = tmp_path / "train_only"
    train_only.mkdir()
    (train_only / "train.csv").write_bytes((uspppm_small_dir / "train.csv").read_bytes())
    config = tmp_path / "group.yaml"
    config.write_text(f"input_format: anchor-target-context-group\nloss: pearson\n"
                      f"extra:\n  cpc_titles: {uspppm_small_dir / 'cpc_titles.csv'}\n")
    second = tmp_path / "group"
    code, _, err = run_kit(capsys, "train", "uspppm", "--data", train_only, "--config", config, *common,
                           "--max-len", "96", "--train-folds", "0", "--out", second)
    assert code == 0, err
    recorded = json.loads((second / "run_config.json").read_text())
    assert recorded["extra"]["cpc_titles"].endswith("cpc_titles.csv")
    assert recorded["input_format"] == "anchor-target-context-group"

    sample = pd.read_csv(uspppm_small_dir / "sample_submission.csv")
    for run in (first, second):
        out = tmp_path / f"{run.name}.csv"
        code, _, err = run_kit(capsys, "predict", "uspppm", "--run", run, "--input", uspppm_small_dir / "test.csv",
                               "--output", out)
        assert code == 0, err
        sub = pd.read_csv(out)
        assert list(sub.columns) == ["id", "score"] and list(sub["id"]) == list(sample["id"])
        assert sub["score"].notna().all()

    report = ensemble_report(USPPPM, [first, second], data_dir=uspppm_small_dir)
    assert report.n_rows == (folds["fold"] == 0).sum()
    assert np.all(report.weights >= 0) and report.weights.sum() == pytest.approx(1.0)
    assert report.blend_score >= max(report.run_scores) - 1e-9


@pytest.mark.e2e
def test_unknown_context_code_in_train_is_one_line_error(tmp_path, uspppm_small_dir, tiny_bert, capsys):
    df = pd.read_csv(uspppm_small_dir / "train.csv", dtype=str, keep_default_na=False)
    df.loc[5, "context"] = "Q99"
    df.to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "cpc_titles.csv").write_bytes((uspppm_small_dir / "cpc_titles.csv").read_bytes())
    code = invoke("train", "uspppm", "--data", tmp_path, "--model", tiny_bert, "--folds", "2",
                  "--out", tmp_path / "run")
    _, err = capsys.readouterr()
    assert_one_line_error(code, err, "no title for 1 context code(s): 'Q99'", f"id={df.loc[5, 'id']}")
    assert not (tmp_path / "run").exists()
