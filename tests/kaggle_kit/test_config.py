import json

import pytest

from kaggle_kit.config import PRESETS, TrainConfig, resolve
from kaggle_kit.errors import KitError


def test_layering_defaults_preset_file_flags(tmp_path):
    config_file = tmp_path / "cfg.yaml"
    config_file.write_text("epochs: 7\nlr: 3.0e-5\npooling: attention\n")
    cfg = resolve("ell", {"quick": {"max_len": 200}}, "quick", config_file, {"lr": 1e-4, "seed": None})
    assert cfg.folds == PRESETS["quick"]["folds"]  # generic preset
    assert cfg.max_len == 200  # competition preset refines the generic one
    assert cfg.epochs == 7 and cfg.pooling == "attention"  # file over preset
    assert cfg.lr == 1e-4  # flag over file
    assert cfg.seed == TrainConfig().seed  # None flags do not override
    assert cfg.preset == "quick"


def test_config_roundtrips_through_json(tmp_path):
    cfg = resolve("ell", {}, "full", None, {"train_folds": "0,2"})
    assert cfg.train_folds == [0, 2]
    again = resolve("ell", {}, None, None, {})
    from kaggle_kit.config import apply

    apply(again, json.loads(json.dumps(cfg.to_dict())), "json")
    assert again == cfg


@pytest.mark.parametrize("overrides, message", [
    ({"folds": 1}, "--folds: must be at least 2"),
    ({"folds": 3, "train_folds": "0,3"}, "--train-folds: fold 3 does not exist"),
    ({"llrd": 1.5}, "--llrd"),
    ({"scheduler": "step"}, "--scheduler"),
    ({"precision": "int8"}, "--precision"),
    ({"max_len": 2}, "--max-len"),
])
def test_invalid_options(overrides, message):
    with pytest.raises(KitError, match=message):
        resolve("ell", {}, None, None, overrides)


def test_bad_config_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    with pytest.raises(KitError, match="unknown setting 'epochz'"):
        resolve("ell", {}, None, bad, {})
    bad.write_text("epochs: many\n")
    with pytest.raises(KitError, match="epochs = 'many' is not a valid int"):
        resolve("ell", {}, None, bad, {})
    with pytest.raises(KitError, match="file not found"):
        resolve("ell", {}, None, tmp_path / "nope.yaml", {})


def test_unknown_preset():
    with pytest.raises(KitError, match="--preset 'fast' is unknown"):
        resolve("ell", {}, "fast", None, {})
