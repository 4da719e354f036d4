"""The heavy imports of a `kit` process run with the cyclic collector paused, and what they built is frozen: a
`kit predict` process runs no full collection over torch's and transformers' objects, and a model built after the
imports is still collected."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import pytest

import kaggle_kit
from kaggle_kit.models.model import build_model, import_model_code, load_backbone_config
from kaggle_kit.startup import frozen_imports


@pytest.fixture
def fresh_module(tmp_path, monkeypatch):
    """A module never imported before, whose import builds 5,000 tracked objects."""
    (tmp_path / "kit_startup_probe.py").write_text("ROWS = [[i] for i in range(5000)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "kit_startup_probe"
    sys.modules.pop("kit_startup_probe", None)


def test_the_collector_is_paused_inside_and_running_after():
    assert gc.isenabled()
    with frozen_imports():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_error_in_the_block_still_restarts_the_collector():
    with pytest.raises(ImportError), frozen_imports():
        import kit_no_such_module  # noqa: F401
    assert gc.isenabled()


def test_a_collector_paused_before_stays_paused():
    gc.disable()
    try:
        with frozen_imports():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_what_an_import_builds_is_frozen(fresh_module):
    before = gc.get_freeze_count()
    with frozen_imports():
        __import__(fresh_module)
    assert gc.get_freeze_count() >= before + 5000


def test_a_block_that_imports_nothing_freezes_nothing():
    before = gc.get_freeze_count()
    garbage = [[i] for i in range(1000)]
    with frozen_imports():
        import json  # noqa: F401  (loaded long ago)
    assert gc.get_freeze_count() == before
    del garbage


def test_a_model_built_after_its_code_was_imported_is_still_collected(tiny_bert):
    """The model is built outside the frozen block: a reference cycle through it is collected as before (a frozen
    fold model would stay in memory until the process ends)."""
    config = load_backbone_config(tiny_bert, 0.0)
    import_model_code(config)
    model = build_model(config, 6, "mean", 2, weights_from=tiny_bert)
    model.itself = [model]  # a reference cycle: only the cyclic collector frees it
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None


class Held:
    """Stands for a fold model: something big in a local of a function that runs a frozen import."""


def test_the_imports_own_cyclic_garbage_is_not_frozen(tmp_path, monkeypatch):
    """torch.fx's `wrap()` (run while transformers' model code is imported) keeps its own frame in a local: a cycle
    whose `f_back` chain reaches every frame running the import. Frozen, it would keep the caller's locals (the
    fold model being built) until the process ends."""
    (tmp_path / "kit_startup_frames.py").write_text(textwrap.dedent("""
        import inspect

        def wrap():
            frame = inspect.currentframe()  # a frame that refers to itself: garbage only the collector frees
            return frame.f_back.f_code.co_name

        wrap()
        """))
    monkeypatch.syspath_prepend(str(tmp_path))

    def build() -> weakref.ref:
        model = Held()
        with frozen_imports():
            import kit_startup_frames  # noqa: F401
        return weakref.ref(model)

    try:
        alive = build()
        gc.collect()
        assert alive() is None
    finally:
        sys.modules.pop("kit_startup_frames", None)


def test_a_process_first_fold_model_is_collected(tiny_bert):
    """In a fresh process, where building the model also imports transformers' model code (in the suite it is
    imported long before), the model is freed once dropped: nothing the freeze kept holds it."""
    script = textwrap.dedent(f"""
        import gc, sys, weakref
        from kaggle_kit.models.model import build_model, load_backbone_config
        loaded = "transformers.models.bert.modeling_bert" in sys.modules
        config = load_backbone_config({str(tiny_bert)!r}, 0.0)
        model = build_model(config, 6, "mean", 2, weights_from={str(tiny_bert)!r})
        alive = weakref.ref(model)
        del model
        gc.collect()
        print("imported-before", loaded, "frozen", gc.get_freeze_count(), "alive", alive() is not None)
        """)
    code = str(Path(kaggle_kit.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([code, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    words = done.stdout.split()
    assert words[words.index("imported-before") + 1] == "False", done.stdout  # the import ran inside the build
    assert int(words[words.index("frozen") + 1]) > 200_000, done.stdout  # and was frozen
    assert words[words.index("alive") + 1] == "False", done.stdout


def test_a_kit_predict_process_never_walks_what_its_imports_built(ell_tiny_run, ell_small_dir, tmp_path):
    """Without the pause, importing torch, pandas and transformers' model code runs 4-6 full collections, each
    walking every object built so far (millions in all), and one more at exit; in `kit predict` the full
    collections (release_memory's, after each fold) walk only what was built after the freeze. Counted in a fresh
    process, as a user runs it: the objects each full collection is about to walk, summed."""
    script = textwrap.dedent(f"""
        import atexit, gc, sys
        walked = [0]
        def count(phase, info):
            if phase == "start" and info["generation"] == 2:
                walked[0] += len(gc.get_objects())
        gc.callbacks.append(count)
        atexit.register(lambda: print("walked", walked[0], "frozen", gc.get_freeze_count()))
        from kaggle_kit.cli import main
        sys.argv = ["kit", "predict", "ell", "--run", {str(ell_tiny_run)!r}, "--device", "cpu",
                    "--input", {str(ell_small_dir / "test.csv")!r}, "--output", {str(tmp_path / "sub.csv")!r}]
        main()
        """)
    code = str(Path(kaggle_kit.__file__).parents[1])  # the kit under test, also where it is a copy of the checkout
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([code, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    words = done.stdout.split()
    walked, frozen = int(words[words.index("walked") + 1]), int(words[words.index("frozen") + 1])
    assert frozen > 200_000  # torch's and transformers' objects, out of every later collection's way
    assert walked < frozen / 4, done.stdout
