"""Sliding windows: inputs beyond the model's positions (or --window-len) run as overlapping windows whose token
states are stitched back before pooling, in training, validation, kit predict and thus the notebook."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from kaggle_kit.models.model import build_model, load_backbone_config
from kaggle_kit.runs.folder import RunDir
from tests.helpers import run_kit


def _model(tiny_bert, window, pooling="mean"):
    torch.manual_seed(0)
    return build_model(load_backbone_config(tiny_bert, 0.0), 6, pooling, weights_from=tiny_bert, window=window).eval()


@pytest.mark.parametrize("pooling", ["mean", "attention", "weighted-layer"])
def test_windows_see_every_token_each_window_within_the_limit(tiny_bert, pooling):
    model = _model(tiny_bert, (16, 8), pooling)
    lengths = []
    real_forward = model.backbone.forward
    model.backbone.forward = lambda **kw: lengths.append(kw["input_ids"].shape[1]) or real_forward(**kw)
    ids = torch.randint(1000, 2000, (1, 40))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        before = model(ids, mask)
        changed = ids.clone()
        changed[0, 37] = 2500  # a token far beyond the first window
        after = model(changed, mask)
    assert lengths == [16, 16] and not torch.allclose(before, after)


def test_short_inputs_and_padding_are_unaffected(tiny_bert):
    plain, windowed = _model(tiny_bert, None), _model(tiny_bert, (16, 8))
    windowed.load_state_dict(plain.state_dict())
    short = torch.randint(1000, 2000, (1, 12))
    with torch.no_grad():
        assert torch.allclose(plain(short, torch.ones_like(short)), windowed(short, torch.ones_like(short)))
        # a short row padded beside a long one gives what it gives alone: padding-only windows are skipped and
        # stitching counts real tokens only
        long = torch.randint(1000, 2000, (1, 40))
        batch = torch.zeros(2, 40, dtype=torch.long)
        batch[0], batch[1, :12] = long[0], short[0]
        mask = (torch.arange(40) < torch.tensor([[40], [12]])).long()
        together = windowed(batch, mask)
        assert torch.allclose(together[1], windowed(short, torch.ones_like(short))[0], atol=1e-5)
        assert torch.allclose(together[0], windowed(long, torch.ones_like(long))[0], atol=1e-5)


@pytest.mark.e2e
def test_windowed_run_records_the_window_and_predicts_like_validation(tmp_path, ell_small_dir, tiny_bert, capsys,
                                                                     monkeypatch):
    from kaggle_kit.models.model import KitModel
    from kaggle_kit.predict.inference import predict_runs
    from kaggle_kit.registry import get_competition

    calls = []
    real = KitModel.windowed
    monkeypatch.setattr(KitModel, "windowed", lambda self, *a: calls.append(self.training) or real(self, *a))
    out = tmp_path / "win"
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert, "--folds", "2",
                           "--train-folds", "0", "--epochs", "1", "--max-len", "96", "--window-len", "32",
                           "--batch-size", "4", "--out", out)
    assert code == 0, err
    assert True in calls and False in calls  # training steps and validation ran through the windows
    calls.clear()
    cfg = json.loads(RunDir(out).config.read_text())
    assert (cfg["window_len"], cfg["window_stride"]) == (32, 16)
    # kit predict (and the notebook, which calls the same code) windows as validation did: fold 0 predicting its own
    # validation rows gives back their OOF predictions
    comp = get_competition("ell")
    oof = pd.read_csv(RunDir(out).oof)
    train = pd.read_csv(ell_small_dir / "train.csv", dtype=str, keep_default_na=False)
    rows = train.set_index("text_id").loc[oof["text_id"]].reset_index()[["text_id", "full_text"]]
    pred = predict_runs(comp, rows, [out], folds=[[0]], device="cpu")
    assert calls and np.allclose(pred, oof.iloc[:, 1:].to_numpy(), atol=1e-4)


def test_model_limit_picks_the_window_and_deberta_needs_none(tiny_bert, tiny_deberta):
    from kaggle_kit.config import TrainConfig
    from kaggle_kit.train.preflight import window_settings

    bert, deberta = load_backbone_config(tiny_bert, 0.0), load_backbone_config(tiny_deberta, 0.0)
    assert window_settings(TrainConfig(max_len=1024), bert) == {"window_len": 512, "window_stride": 256}
    assert window_settings(TrainConfig(max_len=512), bert) == {}
    assert window_settings(TrainConfig(max_len=1024), deberta) == {}  # relative positions: longer just works


def test_a_tokens_states_are_the_mean_over_the_windows_that_hold_it(tiny_bert):
    model = _model(tiny_bert, (16, 8))
    ids = torch.randint(1000, 2000, (1, 40))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        stitched, _ = model.windowed(ids, mask)
        starts = [0, 8, 16, 24]  # every 8 tokens; the last window ends at the row's last token
        alone = {s: model.backbone(input_ids=ids[:, s:s + 16], attention_mask=mask[:, s:s + 16]).last_hidden_state[0]
                 for s in starts}
    for token in (0, 10, 20, 30, 39):
        holding = [alone[s][token - s] for s in starts if s <= token < s + 16]
        assert torch.allclose(stitched[0, token], torch.stack(holding).mean(0), atol=1e-5), token
    assert not torch.allclose(alone[0][10], alone[8][2], atol=1e-3)  # the windows do see token 10 differently
