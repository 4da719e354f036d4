"""Settings are declared once: layering, checking, --resume rules, the CLI and the README all derive from them."""

import json
import re
from pathlib import Path
from typing import get_args

import pytest

from kaggle_kit import config
from kaggle_kit.config import FIELDS, PRESETS, TrainConfig, from_dict, resolve, resume_changes
from kaggle_kit.errors import KitError
from tests.helpers import run_kit

README = Path(__file__).resolve().parents[2] / "README.md"


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


def test_config_roundtrips_through_json():
    cfg = resolve("ell", {}, "full", None, {"train_folds": "0,2"})
    assert cfg.train_folds == [0, 2]
    again = from_dict(json.loads(json.dumps(cfg.to_dict())), "json")
    assert again == cfg


@pytest.mark.parametrize("overrides, message", [
    ({"folds": 1}, "--folds: must be at least 2 (got 1): K-fold CV needs a held-out fold"),
    ({"folds": 3, "train_folds": "0,3"}, "--train-folds: fold 3 does not exist with --folds 3"),
    ({"train_folds": "a"}, "--train-folds: 'a' is not a whole number"),
    ({"llrd": 1.5}, "--llrd: must be at most 1"),
    ({"scheduler": "step"}, "--scheduler: 'step' is unknown; choose one of: linear, cosine, constant"),
    ({"precision": "int8"}, "--precision: 'int8' is unknown"),
    ({"pooling": "sum"}, "--pooling: 'sum' is unknown; choose one of: mean, max"),
    ({"max_len": 2}, "--max-len: must be at least 8"),
    ({"device": "gpu"}, "--device: 'gpu' is not a device"),
    ({"warmup": 1.0}, "--warmup: must be below 1"),
    ({"max_train_samples": 200, "folds": 500}, "--max-train-samples 200 with --folds 500"),
    ({"awp_lr": 0.1, "epochs": 2, "awp_start_epoch": 2}, "--awp-start-epoch 2: AWP would never run with --epochs 2"),
    ({"lora_r": 8, "reinit_layers": 1}, "--reinit-layers: with --lora-r the base weights are frozen"),
    ({"lora_r": 8, "freeze_layers": 2}, "--freeze-embeddings/--freeze-layers: with --lora-r every base weight"),
    ({"lora_r": 8, "fgm_eps": 0.5}, "--fgm-eps: FGM perturbs the word embeddings"),
    ({"load_in_4bit": True}, "--load-in-4bit: quantised weights cannot be trained directly"),
])
def test_invalid_options(overrides, message):
    with pytest.raises(KitError, match=re.escape(message)):
        resolve("ell", {}, None, None, overrides)


def test_bad_config_file_names_the_file_and_the_closest_setting(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    with pytest.raises(KitError, match=r"bad.yaml: unknown setting 'epochz' \(did you mean 'epochs'\?\)"):
        resolve("ell", {}, None, bad, {})
    bad.write_text("max-lenn: 3\n")
    with pytest.raises(KitError, match="did you mean 'max_len'"):
        resolve("ell", {}, None, bad, {})
    bad.write_text("epochs: many\n")
    with pytest.raises(KitError, match=r"bad.yaml: epochs: 'many' is not a whole number"):
        resolve("ell", {}, None, bad, {})
    bad.write_text("pooling: sum\n")
    with pytest.raises(KitError, match=r"bad.yaml: pooling: 'sum' is unknown"):
        resolve("ell", {}, None, bad, {})
    with pytest.raises(KitError, match="file not found"):
        resolve("ell", {}, None, tmp_path / "nope.yaml", {})


def test_unknown_preset():
    with pytest.raises(KitError, match="--preset 'fast' is unknown; choose one of: full, quick"):
        resolve("ell", {}, "fast", None, {})


def test_presets_hold_only_valid_settings():
    from kaggle_kit.registry import all_competitions

    for name, values in PRESETS.items():
        config.checked_values(values, f"preset {name}")
    for comp in all_competitions().values():
        for name in comp.presets:
            resolve(comp.name, comp.presets, name, None, {})


def test_every_setting_has_help_and_the_cli_takes_exactly_the_flag_settings(capsys):
    code, out, _ = run_kit(capsys, "train", "--help")
    assert code == 0
    flags = {name for name in FIELDS if config.field_info(name).get("flag", True)}
    for name in FIELDS:
        assert FIELDS[name].description, f"{name} has no help text"
        assert (config.option_name(name) in out) == (name in flags), name
    options = set(re.findall(r"^\s+(--[a-z0-9-]+)", out, flags=re.M))
    assert options - {"--config", "--out", "--resume", "--seeds", "--help"} == {config.option_name(n) for n in flags}


def test_choices_come_from_the_declaration():
    from kaggle_kit.models.pooling import POOLINGS

    assert config.choices("pooling") == get_args(config.Pooling) and set(POOLINGS) == set(config.choices("pooling"))
    assert config.choices("scheduler") == ("linear", "cosine", "constant")
    assert config.choices("lr") is None


def test_readme_options_table_is_current():
    """`python -m kaggle_kit.config --readme` regenerates it; this test fails when a setting changed without it."""
    text = README.read_text(encoding="utf-8")
    start, end = "<!-- options-table:start -->", "<!-- options-table:end -->"
    assert start in text and end in text, "README lacks the generated options table markers"
    current = text.split(start)[1].split(end)[0].strip()
    assert current == config.options_table(), "README options table is stale: run python -m kaggle_kit.config --readme"


def _bad_value(name: str):
    """A value the declaration of `name` rules out, derived from its type, choices and bounds."""
    info = FIELDS[name]
    if config.choices(name):
        return "not-a-choice"
    bounds = {type(m).__name__: m for m in info.metadata}
    if "Ge" in bounds:
        return bounds["Ge"].ge - 1
    if "Gt" in bounds:
        return bounds["Gt"].gt
    if "Lt" in bounds:
        return bounds["Lt"].lt
    if name == "device":
        return "gpu"
    if name == "train_folds":
        return "x"
    return None


BAD_CLI_VALUES = [(n, _bad_value(n)) for n in FIELDS if config.field_info(n).get("flag", True)
                  and _bad_value(n) is not None]


def test_most_settings_have_a_derivable_bad_value():
    assert len(BAD_CLI_VALUES) >= 30


@pytest.mark.parametrize("name, value", BAD_CLI_VALUES)
def test_a_bad_value_for_any_option_is_one_line_and_no_folder(tmp_path, capsys, ell_small_dir, tiny_bert, name, value):
    from tests.helpers import assert_one_line_error

    out = tmp_path / "run"
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert,
                           config.option_name(name), value, "--out", out)
    assert_one_line_error(code, err, config.option_name(name))
    assert not out.exists()


def test_resume_accepts_only_settings_that_cannot_change_results():
    recorded = resolve("ell", {}, None, None, {"train_folds": "0,1", "pooling": "attention"})
    assert resume_changes(recorded, {"device": "cpu", "threads": 1, "eval_batch_size": 64, "train_folds": [1],
                                     "pooling": "attention"}) == {
        "device": "cpu", "threads": 1, "eval_batch_size": 64, "train_folds": [1]}
    with pytest.raises(KitError, match="--resume: --pooling mean would change the run, which was trained with "
                                       "--pooling attention"):
        resume_changes(recorded, {"pooling": "mean"})
    with pytest.raises(KitError, match="--train-folds 2 is not a subset of the run's folds 0,1"):
        resume_changes(recorded, {"train_folds": [2]})
