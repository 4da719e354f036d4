import logging
import textwrap
from importlib.metadata import EntryPoint

import pytest

from kaggle_kit import registry
from kaggle_kit.competition import Competition
from kaggle_kit.errors import KitError
from tests.helpers import assert_one_line_error, run_kit


def test_builtin_ell_is_registered():
    comp = registry.get_competition("ell")
    assert isinstance(comp, Competition)
    assert comp.schema.target_names == ["cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions"]
    assert comp.metric.name == "MCRMSE" and comp.default_loss == "rmse" and comp.n_outputs == 6


def test_third_party_entry_point_is_discovered(monkeypatch):
    import dataclasses

    fake = dataclasses.replace(registry.get_competition("ell"), name="my-comp")
    monkeypatch.setitem(__import__("sys").modules, "my_plugin", type("M", (), {"COMPETITION": fake}))
    entry = EntryPoint(name="my-comp", value="my_plugin:COMPETITION", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [entry] if group == registry.ENTRY_POINT_GROUP else [])
    registry.all_competitions.cache_clear()
    try:
        assert registry.get_competition("my-comp") is fake
        assert "ell" in registry.all_competitions()
    finally:
        registry.all_competitions.cache_clear()


def test_entry_point_that_is_not_a_competition(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "bad_plugin", type("M", (), {"COMPETITION": 42}))
    entry = EntryPoint(name="bad", value="bad_plugin:COMPETITION", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [entry])
    registry.all_competitions.cache_clear()
    try:
        assert "ell" in registry.all_competitions()
        assert registry.broken_plugins()["bad"].line() == (
            "bad (bad_plugin:COMPETITION): COMPETITION is a int, not a kaggle_kit.competition.Competition")
        with pytest.raises(KitError, match="is a int, not a kaggle_kit.competition.Competition"):
            registry.get_competition("bad")
    finally:
        registry.all_competitions.cache_clear()


# A new user's plugins for a two-text binary AUC competition: three broken ways, one working.
HEAD = textwrap.dedent("""\
    from dataclasses import replace

    from competitions.ell import COMPETITION as ELL
    from kaggle_kit.competition import Competition, Schema, Target
    from kaggle_kit.data.folds import kfold
    """)
PAIRS = textwrap.dedent("""
    COMPETITION = Competition(
        name="{name}", title="two texts", kaggle_slug="two-texts",
        schema=Schema("id", ("text_a", "text_b"), (Target("same", kind="binary"),)),
        build_inputs=lambda df, ctx: (df["text_a"] + ctx.sep_token + df["text_b"]).tolist(),
        input_formats=("pair",), metric={metric}, default_loss="{loss}", fold_strategy=kfold)
    """)
PLUGINS = {
    "bad-import": HEAD + "from kaggle_kit.tasks.metrics import AUCC\n" + PAIRS.format(
        name="bad-import", metric="AUCC", loss="bce"),
    "string-metric": HEAD + PAIRS.format(name="string-metric", metric='"roc_auc"', loss="bce"),
    "unknown-loss": HEAD + "from kaggle_kit.tasks.metrics import AUC\n" + PAIRS.format(
        name="unknown-loss", metric="AUC", loss="focal"),
    "good-pairs": HEAD + "COMPETITION = replace(ELL, name='good-pairs', title='a working plugin')\n",
}


@pytest.fixture
def broken_plugins(tmp_path, monkeypatch):
    """The four plugins as installed packages would be: modules on sys.path, registered as entry points."""
    entries = []
    for name, source in PLUGINS.items():
        module = name.replace("-", "_") + "_plugin"
        (tmp_path / f"{module}.py").write_text(source)
        entries.append(EntryPoint(name=name, value=f"{module}:COMPETITION", group=registry.ENTRY_POINT_GROUP))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "entry_points", lambda group: entries if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setenv("COLUMNS", "200")
    registry.all_competitions.cache_clear()
    yield tmp_path
    registry.all_competitions.cache_clear()


def test_a_broken_plugin_is_recorded_and_the_others_load(broken_plugins, caplog):
    assert {"ell", "uspppm", "fbe", "aes2", "good-pairs"} <= set(registry.all_competitions())
    broken = registry.broken_plugins()
    assert set(broken) == {"bad-import", "string-metric", "unknown-loss"}
    assert broken["bad-import"].source == "bad_import_plugin:COMPETITION"
    assert broken["bad-import"].error.startswith("ImportError: cannot import name 'AUCC' from "
                                                 "'kaggle_kit.tasks.metrics'")
    assert broken["bad-import"].error.endswith(f"(at {broken_plugins / 'bad_import_plugin.py'}:6)")
    assert broken["string-metric"].error.startswith(
        "ValueError: string-metric: metric 'roc_auc' is a str, not a kaggle_kit.tasks.metrics.Metric; "
        "did you mean AUC?")
    assert broken["unknown-loss"].error.startswith(
        "ValueError: unknown-loss: default_loss 'focal' is not a built-in loss or one of the plugin's losses (")
    with caplog.at_level(logging.WARNING, logger="kaggle_kit.registry"):
        assert registry.get_competition("good-pairs").title == "a working plugin"
        registry.get_competition("ell")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3 and all(w.startswith("warning: broken competition plugin left out: ") for w in warnings)


def test_kit_list_shows_a_broken_plugin_as_one_line_beside_the_working_ones(broken_plugins, capsys):
    code, out, err = run_kit(capsys, "list")
    assert code == 0, err
    assert "Traceback" not in out + err
    names = [line.split("│")[1].strip() for line in out.splitlines() if line.count("│") > 2]
    assert {"ell", "uspppm", "fbe", "aes2", "good-pairs"} <= set(names)
    broken = [line for line in out.splitlines() if line.startswith("broken: ")]
    assert len(broken) == 3
    assert broken[0].startswith("broken: bad-import (bad_import_plugin:COMPETITION): ImportError: cannot import "
                                "name 'AUCC'")
    assert broken[1].startswith("broken: string-metric (string_metric_plugin:COMPETITION): ValueError: "
                                "string-metric: metric 'roc_auc' is a str")


def test_kit_train_of_a_broken_plugin_is_one_line_and_other_competitions_train(broken_plugins, capsys, tmp_path,
                                                                             ell_small_dir, tiny_bert, monkeypatch):
    import logging

    # as in a fresh `kit` process: no handler an earlier test left on a captured stream that is closed by now
    for name in (None, "kaggle_kit", "kaggle_kit.registry"):
        monkeypatch.setattr(logging.getLogger(name), "handlers", [])
    code, _, err = run_kit(capsys, "train", "bad-import", "--data", ell_small_dir, "--out", tmp_path / "refused")
    assert_one_line_error(code, err, "competition plugin bad-import (bad_import_plugin:COMPETITION) is broken: "
                                     "ImportError: cannot import name 'AUCC'")
    code, _, err = run_kit(capsys, "train", "string-metric", "--out", tmp_path / "refused")
    assert_one_line_error(code, err, "string-metric (string_metric_plugin:COMPETITION) is broken", "'roc_auc'")
    assert not (tmp_path / "refused").exists()

    run = tmp_path / "ell-run"
    code, _, err = run_kit(capsys, "train", "ell", "--data", ell_small_dir, "--model", tiny_bert, "--folds", "2",
                           "--train-folds", "0", "--epochs", "1", "--max-len", "32", "--batch-size", "16",
                           "--out", run)
    assert code == 0, err
    assert (run / "oof.csv").is_file() and "Traceback" not in err


def test_kit_doctor_fails_on_a_broken_plugin(broken_plugins, capsys):
    code, out, err = run_kit(capsys, "doctor")
    assert code == 1
    fail_rows = [line for line in out.splitlines() if "plugin " in line and "fail" in line]
    assert {row.split("│")[1].strip() for row in fail_rows} == {
        "plugin bad-import", "plugin string-metric", "plugin unknown-loss"}
    assert "plugin bad-import" in err.splitlines()[-1]


def test_a_plugin_module_of_the_kit_that_breaks_is_isolated_too(monkeypatch):
    """A built-in module in competitions/ that fails to import leaves the others usable (and kaggle-kit's own
    entry point for it does not import it a second time)."""
    real_import = registry.importlib.import_module

    def failing_fbe(name):
        if name == "competitions.fbe":
            raise ImportError("cannot import name 'LOG_LOS' from 'kaggle_kit.tasks.metrics'")
        return real_import(name)

    monkeypatch.setattr(registry.importlib, "import_module", failing_fbe)
    registry.all_competitions.cache_clear()
    try:
        assert "ell" in registry.all_competitions() and "fbe" not in registry.all_competitions()
        assert registry.broken_plugins()["fbe"].source == "competitions.fbe"
        with pytest.raises(KitError, match=r"plugin fbe \(competitions.fbe\) is broken: ImportError: .*LOG_LOS"):
            registry.get_competition("fbe")
    finally:
        registry.all_competitions.cache_clear()
