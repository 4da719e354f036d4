"""The training loop's mechanics: no host sync per step."""

import inspect

import numpy as np
import torch

from kaggle_kit.config import TrainConfig
from kaggle_kit.models.model import load_backbone_config
from kaggle_kit.registry import get_competition
from kaggle_kit.runs.folder import RunDir
from kaggle_kit.train import trainer as trainer_module
from kaggle_kit.train.trainer import FoldData, FoldTrainer

SYNCING = ("item", "tolist", "numpy", "__bool__", "__float__")


def test_no_host_sync_per_step(tiny_bert, tmp_path, monkeypatch):
    """Reading a value back from the device waits for it. Counted where kaggle_kit code does it: per validation
    and per LOG_EVERY steps, never per step (before: loss.item() and float(grad_norm) every step, and AWP one
    `if` per weight tensor)."""
    comp = get_competition("ell")
    cfg = TrainConfig(epochs=2, batch_size=2, max_len=32, eval_every=1, fgm_eps=0.5, awp_lr=0.1, awp_start_epoch=0,
                      ema=0.9, loss="rmse", precision="fp32", pooling="mean")
    rng = np.random.default_rng(0)
    data = [FoldData([list(rng.integers(1000, 2000, n)) for n in rng.integers(4, 30, rows)],
                     rng.uniform(1, 5, (rows, 6)).astype(np.float32), np.arange(rows)) for rows in (24, 6)]
    fold_trainer = FoldTrainer(cfg, comp, load_backbone_config(tiny_bert, 0.0), tiny_bert, 0, torch.device("cpu"),
                               RunDir(tmp_path))
    calls = []
    for name in SYNCING:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            caller = inspect.currentframe().f_back.f_globals.get("__name__", "")
            if caller.startswith("kaggle_kit"):
                calls.append((_name, caller))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    monkeypatch.setattr(trainer_module, "LOG_EVERY", 10)
    outcome = fold_trainer.fit(0, *data)
    steps, evaluations = 2 * 12, 2
    assert outcome.best_step > 0
    assert len(calls) <= evaluations * 3 + steps // 10 + evaluations, calls
    logged = (tmp_path / "folds" / "fold0_metrics.csv").read_text().splitlines()
    assert len(logged) == 1 + steps + evaluations  # every step is still logged
