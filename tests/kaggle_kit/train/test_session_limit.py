"""`--stop-after-hours` on a fake clock: a fold that would end past the limit is not started, the run is left
partial and `--resume` trains exactly the folds that were left."""

import pandas as pd

from kaggle_kit.fileio import read_json
from kaggle_kit.runs.folder import RunDir
from kaggle_kit.train import session_limit
from kaggle_kit.train.session_limit import SessionLimit
from tests.helpers import SteppingClock, run_kit


def test_the_limit_projects_the_slowest_fold(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(session_limit, "clock", lambda: now[0])
    limit = SessionLimit(10.0)
    assert limit.stop_reason() is None  # nothing measured yet: the first fold always starts
    now[0] = 3 * 3600
    limit.fold_done(3 * 3600)
    assert limit.stop_reason() is None  # 3 h + 3 h <= 10 h
    now[0] = 7.5 * 3600
    limit.fold_done(1 * 3600)
    assert "next fold would end at 10.50 h" in limit.stop_reason()  # the slowest fold (3 h) counts, not the last
    assert SessionLimit(None).stop_reason() is None


def test_training_stops_between_folds_and_resume_trains_the_rest(ell_small_dir, tiny_bert, tmp_path, capsys,
                                                                  monkeypatch):
    # each clock reading is 0.4 h later: start, fold 0 start, fold 0 end -> fold 0 "took" 0.4 h, and at the check
    # before fold 1 it is 1.2 h, so fold 1 would end at 1.6 h, past --stop-after-hours 1.5
    monkeypatch.setattr(session_limit, "clock", SteppingClock(0.4 * 3600))
    out = tmp_path / "run"
    args = ["--data", ell_small_dir, "--model", tiny_bert, "--folds", "3", "--epochs", "1", "--max-len", "32",
            "--batch-size", "8", "--precision", "fp32"]
    code, _, err = run_kit(capsys, "train", "ell", *args, "--stop-after-hours", "1.5", "--out", out)
    assert code == 0, err
    run = RunDir(out)
    assert run.finished_folds() == [0]
    manifest = read_json(run.manifest)
    assert manifest["status"] == "partial"
    assert "--stop-after-hours 1.5" in manifest["stopped"]
    assert "fold 1: not started" in err
    assert read_json(run.config)["stop_after_hours"] == 1.5
    first_fold = (out / "fold0.safetensors").read_bytes()

    monkeypatch.setattr(session_limit, "clock", SteppingClock(1.0))  # a fast session: everything fits
    code, _, err = run_kit(capsys, "train", "ell", "--resume", "--out", out, "--stop-after-hours", "11")
    assert code == 0, err
    assert run.finished_folds() == [0, 1, 2]
    manifest = read_json(run.manifest)
    assert manifest["status"] == "complete" and "stopped" not in manifest
    assert (out / "fold0.safetensors").read_bytes() == first_fold  # fold 0 was not trained again
    assert len(pd.read_csv(run.oof)) == 48


def test_fold_workers_start_no_fold_past_the_limit(ell_small_dir, tiny_bert, tmp_path, capsys, monkeypatch):
    # the parent's clock, 0.5 h per reading: 2 workers start folds 0 and 1 (nothing measured yet, at 0.5 h and 1 h);
    # whichever ends first, its fold "took" 0.5-1 h and the next would end at 2.5 h or later: past 2 h, so folds 2
    # and 3 are not started (the workers race: fold 1 may end first, and at 0.4 h per reading it then seemed to
    # take 0.4 h and fold 2 to end at exactly 2 h, which is allowed)
    monkeypatch.setattr(session_limit, "clock", SteppingClock(0.5 * 3600))
    out = tmp_path / "run"
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert, "--folds", "4",
                           "--epochs", "1", "--max-len", "32", "--batch-size", "8", "--precision", "fp32",
                           "--fold-workers", "2", "--threads", "2", "--device", "cpu", "--stop-after-hours", "2",
                           "--out", out)
    assert code == 0, err
    run = RunDir(out)
    assert run.finished_folds() == [0, 1]
    assert "fold(s) 2, 3: not started" in err
    manifest = read_json(run.manifest)
    assert manifest["status"] == "partial" and "--stop-after-hours 2" in manifest["stopped"]


def _rank_decides(rank: int, init_file: str, answers: str) -> None:
    """One gloo rank: rank 0 has measured a 3 h fold at 9 h (stop), rank 1 a 1 h fold at 1 h (go on)."""
    import torch.distributed

    from kaggle_kit.train.distributed import Dist

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        now = 9 * 3600 if rank == 0 else 3600
        session_limit.clock = lambda: now
        limit = SessionLimit(10.0)
        limit.started = 0.0
        limit.fold_done(3 * 3600 if rank == 0 else 3600)
        with open(f"{answers}.{rank}", "w", encoding="utf-8") as handle:
            handle.write(repr(limit.agreed_stop_reason(Dist(rank=rank, world_size=2, local_rank=rank))))
    finally:
        torch.distributed.destroy_process_group()


def test_ranks_stop_together_on_rank_0s_decision(tmp_path):
    """Under --nproc-per-node each rank measures its own folds: rank 1 alone would train on while rank 0 stops
    (and it would wait in the next fold's first collective forever). Both get rank 0's decision."""
    import torch.multiprocessing

    answers = tmp_path / "answer"
    torch.multiprocessing.spawn(_rank_decides, args=(str(tmp_path / "init"), str(answers)), nprocs=2)
    rank0, rank1 = (answers.with_suffix(f".{r}").read_text() for r in (0, 1))
    assert "next fold would end at 12.00 h" in rank0
    assert rank1 == rank0
