from importlib.metadata import EntryPoint

import pytest

from kaggle_kit import registry
from kaggle_kit.competition import Competition
from kaggle_kit.errors import KitError


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
        with pytest.raises(KitError, match="is not a kaggle_kit Competition"):
            registry.all_competitions()
    finally:
        registry.all_competitions.cache_clear()
