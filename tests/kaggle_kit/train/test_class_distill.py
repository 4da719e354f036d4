"""--distill for multi-class targets: the teachers' OOF class distributions teach the student through a KL term."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers import assert_one_line_error, run_kit

COLUMNS = ["Ineffective", "Adequate", "Effective"]


def _oof(run):
    return pd.read_csv(run / "oof.csv", dtype={"discourse_id": str}).set_index("discourse_id")[COLUMNS]


def _kl(teacher: np.ndarray, student: np.ndarray) -> float:
    teacher, student = np.clip(teacher, 1e-7, 1), np.clip(student, 1e-7, 1)
    return float(np.mean(np.sum(teacher * (np.log(teacher) - np.log(student)), axis=1)))


def _train(capsys, data, model, out, *flags):
    code, _, err = run_kit(capsys, "train", "fbe", "--data", data, "--model", model, "--folds", "2", "--epochs", "2",
                           "--max-len", "32", "--batch-size", "8", "--lr", "1e-4", "--input-format", "type-text",
                           "--head-lr", "1e-2", "--threads", "1", "--out", out, *flags)
    assert code == 0, err
    return out


def test_a_student_distilled_from_two_teachers_is_closer_to_them(fbe_small_dir, tiny_bert, tiny_deberta, tmp_path,
                                                                 capsys, image_packages_of_this_env):
    teachers = [_train(capsys, fbe_small_dir, tiny_bert, tmp_path / "t1", "--seed", "1"),
                _train(capsys, fbe_small_dir, tiny_bert, tmp_path / "t2", "--seed", "2", "--pooling", "max")]
    ensemble = (_oof(teachers[0]) + _oof(teachers[1])) / 2
    plain = _train(capsys, fbe_small_dir, tiny_deberta, tmp_path / "plain")
    student = _train(capsys, fbe_small_dir, tiny_deberta, tmp_path / "student", "--distill",
                     f"{teachers[0]},{teachers[1] / 'oof.csv'}", "--distill-weight", "0.9",
                     "--distill-temperature", "1")
    rows = ensemble.index
    kl_plain = _kl(ensemble.to_numpy(), _oof(plain).loc[rows].to_numpy())
    kl_student = _kl(ensemble.to_numpy(), _oof(student).loc[rows].to_numpy())
    assert kl_student < 0.8 * kl_plain, (kl_student, kl_plain)

    # the notebook ships the student alone: its two fold files, none of the teachers'
    from kaggle_kit.registry import get_competition
    from kaggle_kit.ship.bundle import build_bundle
    from kaggle_kit.ship.image import load_image_packages

    bundle = build_bundle(get_competition("fbe"), [student], tmp_path / "bundles", owner="kit-tester",
                          image=load_image_packages(image_packages_of_this_env), log=lambda _: None)
    shipped = json.loads((bundle.dataset / "manifest.json").read_text())["files"]
    weights = [f for f in shipped if f.endswith(".safetensors") and "fold" in f]
    assert len(weights) == 2 and len(json.loads((bundle.dataset / "manifest.json").read_text())["runs"]) == 1


@pytest.mark.skipif(not __import__("importlib").util.find_spec("peft"), reason="peft")
def test_a_label_token_student_learns_from_the_teachers(fbe_small_dir, fbe_tiny_run, tiny_qwen2, tmp_path, capsys):
    teacher = _oof(fbe_tiny_run)
    flags = ("--head", "label-tokens", "--lora-r", "4")
    plain = _train(capsys, fbe_small_dir, tiny_qwen2, tmp_path / "plain", *flags)
    student = _train(capsys, fbe_small_dir, tiny_qwen2, tmp_path / "student", *flags, "--distill",
                     str(fbe_tiny_run), "--distill-weight", "0.9", "--distill-temperature", "1")
    rows = teacher.index
    kl_plain = _kl(teacher.to_numpy(), _oof(plain).loc[rows].to_numpy())
    kl_student = _kl(teacher.to_numpy(), _oof(student).loc[rows].to_numpy())
    assert kl_student < 0.8 * kl_plain, (kl_student, kl_plain)


def test_distill_loss_mixes_cross_entropy_and_tempered_kl():
    from kaggle_kit.tasks.losses import LOSSES, DistillLoss, TargetLoss
    from kaggle_kit.tasks.targets import Target

    targets = [Target("t", kind="multiclass", classes=("a", "b", "c"))]
    hard = TargetLoss(LOSSES["cross-entropy"], targets)
    loss = DistillLoss(hard, targets, temperature=2.0, weight=0.25)
    out = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    teacher = torch.tensor([[0.2, 0.5, 0.3], [float("nan")] * 3])
    target = torch.cat([torch.tensor([[0.0], [1.0]]), teacher], dim=1)
    ce = torch.nn.functional.cross_entropy(out, torch.tensor([0, 1]))
    student = torch.log_softmax(out[:1] / 2.0, dim=-1)
    kl = (teacher[:1] * (teacher[:1].log() - student)).sum() * 4.0 * 0.5  # one of two rows has a teacher
    torch.testing.assert_close(loss(out, target), 0.75 * ce + 0.25 * kl)
    torch.testing.assert_close(loss(out, target[:, :1]), ce)  # no teacher columns: cross-entropy alone


def test_distill_refuses_a_missing_teacher(fbe_small_dir, tiny_bert, tmp_path, capsys):
    code, _, err = run_kit(capsys, "train", "fbe", "--data", fbe_small_dir, "--model", tiny_bert, "--folds", "2",
                           "--distill", tmp_path / "nowhere", "--out", tmp_path / "run")
    assert_one_line_error(code, err, "--distill", "not an OOF file, nor a run folder")


def test_frozen_mode_refuses_a_multiclass_teacher(fbe_small_dir, tiny_bert, tmp_path, capsys):
    """The ridge head of --mode frozen never sees a KL term: the teacher would be ignored without a word."""
    teacher = tmp_path / "teacher.csv"
    pd.DataFrame({"discourse_id": ["x"], **{c: [1 / 3] for c in COLUMNS}}).to_csv(teacher, index=False)
    code, _, err = run_kit(capsys, "train", "fbe", "--data", fbe_small_dir, "--model", tiny_bert, "--folds", "2",
                           "--mode", "frozen", "--distill", teacher, "--out", tmp_path / "run")
    assert_one_line_error(code, err, "--distill with --mode frozen", "'discourse_effectiveness'")
    assert not (tmp_path / "run").exists()
