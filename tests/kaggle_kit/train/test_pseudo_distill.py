"""kit pseudo-label, kit train --pseudo (never in a validation fold; per-fold teacher labels) and --distill."""

import json

import numpy as np
import pandas as pd
import pytest

from kaggle_kit.runs.folder import RunDir
from tests.helpers import assert_one_line_error, run_kit

pytestmark = pytest.mark.e2e
TARGETS = ["cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions"]


def tiny_args(data, model):
    return ("--data", data, "--model", model, "--folds", "2", "--epochs", "1", "--max-len", "64", "--batch-size", "4",
            "--eval-every", "2", "--pooling", "attention", "--llrd", "0.8", "--fgm-eps", "0.5", "--ema", "0.9")


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory, ell_dir) -> pd.DataFrame:
    """16 real essays outside the 48 of ell_small_dir, plus 2 of those 48 under new ids (a scraped set often holds
    the training essays themselves)."""
    train = pd.read_csv(ell_dir / "train.csv", dtype=str, keep_default_na=False)
    fresh = train.iloc[60:76][["text_id", "full_text"]]
    copies = train.iloc[[0, 5]][["text_id", "full_text"]].assign(text_id=["COPY0", "COPY5"])
    return pd.concat([fresh, copies], ignore_index=True)


@pytest.fixture(scope="module")
def pseudo_file(tmp_path_factory, unlabelled, ell_tiny_run):
    from tests.helpers import invoke

    folder = tmp_path_factory.mktemp("pseudo")
    unlabelled.to_csv(folder / "texts.csv", index=False)
    assert invoke("pseudo-label", "ell", "--run", ell_tiny_run, "--texts", folder / "texts.csv",
                  "--out", folder / "pseudo.csv", "--device", "cpu") == 0
    return folder / "pseudo.csv"


def test_pseudo_label_writes_soft_labels_spread_and_per_fold_labels(pseudo_file, unlabelled, ell_tiny_run):
    df = pd.read_csv(pseudo_file)
    assert list(df["text_id"]) == list(unlabelled["text_id"]) and "full_text" in df.columns
    for t in TARGETS:
        members = df[[f"{t}@fold0", f"{t}@fold1"]].to_numpy()
        assert np.allclose(df[t], np.clip(members.mean(axis=1), 1, 5), atol=1e-5)  # folds averaged, then clipped
        assert np.allclose(df[f"{t}_spread"], members.std(axis=1), atol=1e-4)  # both inside 1-5 for a tiny model
        assert (df[f"{t}_spread"] > 0).all()
    side = json.loads(pseudo_file.with_name("pseudo.folds.json").read_text())
    folds = pd.read_csv(RunDir(ell_tiny_run).folds_csv, dtype=str)
    assert side["folds"] == 2 and side["fold_of"] == dict(zip(folds["text_id"], folds["fold"].astype(int), strict=True))


@pytest.fixture(scope="module")
def baseline_and_student(tmp_path_factory, ell_small_dir, tiny_bert, pseudo_file):
    from tests.helpers import invoke

    root = tmp_path_factory.mktemp("students")
    assert invoke("train", "ell", *tiny_args(ell_small_dir, tiny_bert), "--out", root / "base") == 0
    assert invoke("train", "ell", *tiny_args(ell_small_dir, tiny_bert), "--pseudo", pseudo_file,
                  "--pseudo-weight", "0.5", "--out", root / "student") == 0
    return RunDir(root / "base"), RunDir(root / "student")


def test_pseudo_rows_train_but_never_validate(baseline_and_student, ell_small_dir):
    base, student = baseline_and_student
    manifest = json.loads(student.manifest.read_text())
    assert manifest["pseudo"] == {"rows": 16, "dropped_as_labelled": 2, "per_fold_labels": [0, 1]}
    assert "pseudo" in manifest["data"]
    for fold in (0, 1):
        result = json.loads(student.fold_result(fold).read_text())
        assert result["n_pseudo"] == 16 and result["n_valid"] == json.loads(base.fold_result(fold).read_text())[
            "n_valid"]
    # the OOF holds exactly the labelled rows, each once: no pseudo row was validated
    labelled = pd.read_csv(ell_small_dir / "train.csv")["text_id"]
    assert list(pd.read_csv(student.oof)["text_id"]) == list(labelled)
    # the pseudo rows changed training (same settings and seed otherwise)
    assert base.folds_csv.read_text() == student.folds_csv.read_text()
    assert not np.allclose(pd.read_csv(base.oof)[TARGETS], pd.read_csv(student.oof)[TARGETS])
    steps = [json.loads(r.fold_result(0).read_text())["total_steps"] for r in (base, student)]
    assert steps[1] == steps[0] + int(np.ceil(16 / 4))  # 4 pseudo batches of 4 mixed into the epoch


def test_each_fold_trains_on_its_own_teachers_labels(pseudo_file):
    from kaggle_kit.train.pseudo import PseudoRows

    rows = PseudoRows([[1, 2]], np.array(["a"]), np.array([[3.0]]), {0: np.array([[1.0]]), 1: np.array([[5.0]])}, 0)
    assert rows.for_fold(0).y[0, 0] == 1.0 and rows.for_fold(1).y[0, 0] == 5.0 and rows.for_fold(None).y[0, 0] == 3.0


def test_per_fold_labels_refused_when_the_student_splits_differently(pseudo_file, ell_small_dir, tiny_bert, tmp_path,
                                                                      capsys):
    code, _, err = run_kit(capsys, "train", "ell", *tiny_args(ell_small_dir, tiny_bert), "--pseudo", pseudo_file,
                           "--fold-seed", "7", "--out", tmp_path / "r")
    assert_one_line_error(code, err, "--pseudo", "the teacher had it in", "leak")
    assert not (tmp_path / "r").exists()


def test_pseudo_file_of_labelled_rows_only_is_refused(ell_small_dir, tiny_bert, tmp_path, capsys):
    train = pd.read_csv(ell_small_dir / "train.csv")
    train.to_csv(tmp_path / "leaky.csv", index=False)  # the training rows themselves, true labels as "soft" labels
    code, _, err = run_kit(capsys, "train", "ell", *tiny_args(ell_small_dir, tiny_bert), "--pseudo",
                           tmp_path / "leaky.csv", "--out", tmp_path / "r")
    assert_one_line_error(code, err, "--pseudo", "every row is a labelled row")


def test_distilled_targets_mix_the_teachers_oof():
    from kaggle_kit import config
    from kaggle_kit.registry import get_competition
    from kaggle_kit.train.pseudo import distilled_targets

    comp = get_competition("ell")
    train = pd.DataFrame({"text_id": ["a", "b", "c"]})
    y = np.full((3, 6), 2.0, dtype=np.float32)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        oof = Path(tmp) / "oof.csv"
        pd.DataFrame({"text_id": ["b", "a"], **{t: [4.0, 3.0] for t in TARGETS}}).to_csv(oof, index=False)
        cfg = config.TrainConfig(distill=str(oof), distill_weight=0.25)
        mixed = distilled_targets(comp, cfg, train, y)
    assert np.allclose(mixed[:, 0], [0.75 * 2 + 0.25 * 3, 0.75 * 2 + 0.25 * 4, 2.0])


def test_distill_changes_training_and_keeps_validation_labels(ell_tiny_run, baseline_and_student, ell_small_dir,
                                                              tiny_bert, tmp_path, capsys):
    base, _ = baseline_and_student
    code, _, err = run_kit(capsys, "train", "ell", *tiny_args(ell_small_dir, tiny_bert), "--distill",
                           RunDir(ell_tiny_run).oof, "--distill-weight", "0.7", "--out", tmp_path / "d")
    assert code == 0, err
    run = RunDir(tmp_path / "d")
    assert not np.allclose(pd.read_csv(base.oof)[TARGETS], pd.read_csv(run.oof)[TARGETS])
    # scored against the true labels, not the mixed targets
    truth = pd.read_csv(ell_small_dir / "train.csv")[TARGETS].to_numpy()
    oof = pd.read_csv(run.oof)[TARGETS].to_numpy()
    cv = json.loads(run.cv.read_text())
    assert cv["score"] == pytest.approx(np.sqrt(((oof - truth) ** 2).mean(axis=0)).mean(), abs=1e-6)


@pytest.mark.parametrize("stage", ["mix", "pretrain"])
def test_pseudo_batches_are_apart_and_placed_by_stage(stage):
    from kaggle_kit.config import TrainConfig
    from kaggle_kit.train.trainer import FoldTrainer

    trainer = FoldTrainer.__new__(FoldTrainer)
    trainer.cfg = TrainConfig(epochs=2, batch_size=4, pseudo_stage=stage)
    stages = trainer.batch_plan(12, [10] * 12, [10] * 8, np.random.default_rng(0))
    for plan in stages:
        for batch, is_pseudo in plan:
            assert (batch >= 12).all() if is_pseudo else (batch < 12).all()  # never a mixed batch
    flags = [[p for _, p in plan] for plan in stages]
    if stage == "pretrain":
        assert flags == [[True, True], [False] * 3, [False] * 3]
    else:
        assert [sorted(f) for f in flags] == [[False] * 3 + [True] * 2] * 2


def test_uspppm_full_train_pseudo_label_and_student(uspppm_small_dir, tiny_bert, tmp_path, capsys):
    args = ("--data", uspppm_small_dir, "--model", tiny_bert, "--folds", "2", "--epochs", "1", "--max-len", "32",
            "--batch-size", "16", "--max-train-samples", "200")
    code, _, err = run_kit(capsys, "train", "uspppm", *args, "--full-train", "--out", tmp_path / "teacher")
    assert code == 0, err
    assert RunDir(tmp_path / "teacher").finished_folds() == [0, 1, 2]
    code, _, err = run_kit(capsys, "pseudo-label", "uspppm", "--run", tmp_path / "teacher", "--texts",
                           uspppm_small_dir / "test.csv", "--out", tmp_path / "pseudo.csv", "--device", "cpu")
    assert code == 0, err
    pseudo = pd.read_csv(tmp_path / "pseudo.csv")
    test = pd.read_csv(uspppm_small_dir / "test.csv")
    assert list(pseudo.columns[:4]) == ["id", "anchor", "target", "context"] and len(pseudo) == len(test)
    assert pseudo["score"].between(0, 1).all() and {"score@fold0", "score@fold1", "score_spread"} <= set(pseudo)
    code, _, err = run_kit(capsys, "train", "uspppm", *args, "--pseudo", tmp_path / "pseudo.csv", "--out",
                           tmp_path / "student")
    assert code == 0, err
    student = RunDir(tmp_path / "student")
    assert json.loads(student.manifest.read_text())["pseudo"]["rows"] == len(test)
    assert sorted(pd.read_csv(student.oof)["id"]) == sorted(pd.read_csv(student.folds_csv)["id"])
