"""The embedded ELL sample: what it holds, how it was picked, and that `kit train` falls back to it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from kaggle_kit.data.load import load_train, resolve_data_source
from kaggle_kit.data.sample import build, sample_dir, sample_info, select_rows
from kaggle_kit.errors import KitError
from kaggle_kit.fileio import sha256_file
from kaggle_kit.registry import get_competition
from kaggle_kit.runs.folder import RunDir
from tests.helpers import run_kit

ELL = get_competition("ell")
LEVELS = [1.0 + 0.5 * k for k in range(9)]


def test_the_sample_is_valid_labelled_data_with_every_score_level():
    folder = sample_dir("ell")
    train = load_train(ELL, folder)
    assert len(train) == 480 and sample_info(folder).rows_of == 3911
    for target in ELL.schema.target_names:
        assert sorted(train[target].unique()) == LEVELS, target


def test_the_sample_carries_its_licence_and_attribution():
    folder = sample_dir("ell")
    assert (folder / "LICENSE").read_text(encoding="utf-8").startswith(
        "Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International")
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "ELLIPSE" in readme and "CC BY-NC-SA 4.0" in readme and "not under the MIT licence" in readme
    assert "CC BY-NC-SA 4.0" in sample_info(folder).license


def test_the_sample_is_the_seeded_selection_of_the_real_data(ell_dir, tmp_path):
    """Rebuilding from the full data gives the shipped file byte for byte: the sample is reproducible."""
    folder = sample_dir("ell")
    assert sha256_file(ell_dir / "train.csv") == json.loads((folder / "sample.json").read_text())["source_sha256"]
    rebuilt = build("ell", ell_dir, 480, out=tmp_path)
    assert rebuilt.read_bytes() == (folder / "train.csv").read_bytes()


def test_select_rows_keeps_rare_levels_and_is_deterministic():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.choice([2.0, 3.0, 4.0], 300), "b": rng.choice([3.0, 3.5], 300)})
    frame.loc[[17, 250], "a"] = 1.0  # a level only two rows have
    frame.loc[99, "b"] = 5.0  # and one only one row has
    picked = select_rows(frame, ["a", "b"], 30)
    assert len(picked) == 30 and len(set(picked)) == 30 and list(picked) == sorted(picked)
    assert {17, 250, 99} <= set(picked)
    assert list(select_rows(frame, ["a", "b"], 30)) == list(picked)
    assert list(select_rows(frame, ["a", "b"], 30, seed=1)) != list(picked)


def test_select_rows_follows_the_score_distribution():
    frame = pd.DataFrame({"a": [3.0] * 800 + [4.0] * 200})
    picked = select_rows(frame, ["a"], 100)
    assert abs((frame["a"].iloc[picked] == 4.0).sum() - 20) <= 2


def test_data_folder_order_is_option_then_data_comp_then_sample(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = resolve_data_source(ELL, None)
    assert source.is_sample and source.path == sample_dir("ell")
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(sample_dir("ell") / "train.csv", mine / "train.csv")
    assert resolve_data_source(ELL, mine).kind == "option"
    (tmp_path / "data" / "ell").mkdir(parents=True)
    with pytest.raises(KitError, match=r"no train.csv in data/ell/: download the data with `kit data ell`"):
        resolve_data_source(ELL, None)  # a data/ell/ the user made is read, never silently replaced by the sample
    shutil.copy(sample_dir("ell") / "train.csv", tmp_path / "data" / "ell" / "train.csv")
    assert resolve_data_source(ELL, None).kind == "default"
    assert resolve_data_source(ELL, mine).path == mine
    assert resolve_data_source(ELL, "sample").kind == "sample"  # asked for by name, even with data/ell/ there


@pytest.mark.e2e
def test_train_without_data_uses_the_sample_says_so_and_records_it(tmp_path, monkeypatch, capsys, tiny_bert):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    code, _, err = run_kit(capsys, "train", "ell", "--model", tiny_bert, "--folds", "2", "--train-folds", "0",
                           "--epochs", "1", "--max-len", "32", "--batch-size", "8", "--max-train-samples", "48",
                           "--out", run)
    assert code == 0, err
    said = [line for line in err.splitlines() if "embedded ell sample" in line]
    assert len(said) == 1 and "480 of 3,911 essays" in said[0] and "CC BY-NC-SA 4.0" in said[0]
    assert "`kit data ell`" in said[0]
    logged = (run / "train.log").read_text()  # train.log too, though it was said before the run folder existed
    assert logged.count("training on the embedded ell sample") == 1 and "480 of 3,911 essays" in logged
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["data_source"]["kind"] == "sample"
    assert json.loads((run / "run_config.json").read_text())["data"] == "sample"  # not the package's install path
    assert manifest["data"]["train.csv"]["sha256"] == sha256_file(sample_dir("ell") / "train.csv")
    assert RunDir(run).data_dir() == sample_dir("ell")
    assert not (tmp_path / "data").exists()

    # The bundle's offline check takes its rows from the run's data folder: here, the sample.
    from kaggle_kit.ship import simulate as simulate_module

    seen = []
    monkeypatch.setattr(simulate_module, "simulate", lambda bundle, folder, **kwargs: seen.append(
        pd.read_csv(folder / "test.csv")["text_id"].tolist()))
    (tmp_path / "bundle" / "dataset").mkdir(parents=True)  # quick_check reads whether a base model is attached
    (tmp_path / "bundle" / "dataset" / "manifest.json").write_text(json.dumps({"files": {}}))
    simulate_module.quick_check(ELL, tmp_path / "bundle", run, log=lambda _: None)
    assert seen == [pd.read_csv(sample_dir("ell") / "train.csv")["text_id"].head(8).tolist()]

    # Data downloaded later does not change which data the run continues with.
    (tmp_path / "data" / "ell").mkdir(parents=True)
    pd.read_csv(sample_dir("ell") / "train.csv").head(60).to_csv(tmp_path / "data/ell/train.csv", index=False)
    code, _, err = run_kit(capsys, "train", "ell", "--resume", "--out", run)
    assert code == 0, err
