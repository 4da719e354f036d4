"""A `kit` process's start-up: the heavy imports without the cyclic garbage collector walking them.

Importing torch, pandas and transformers' model code builds about 430,000 long-lived objects (functions, classes,
dicts). While they are being built the collector runs a full collection every time the heap has grown by a quarter,
each walking every object built so far, and once more when the process exits: 0.7-1.5 s of a 10-17 s `kit predict`
on a CPU (measured: `benchmarks/predict_profile.py --unfrozen`). Inside `frozen_imports()` the collector is
paused, and what the imports built is frozen afterwards (`gc.freeze()`: moved where no later collection walks it).
Frozen objects are still freed by reference counting; only a reference cycle among them is never collected, which is
why the block is for imports, with nothing big alive that could become cyclic garbage (not around building or
loading a model).

The block's own cyclic garbage is collected before the freeze: a young collection, which walks only what was built
since the last one (with the collector paused, all the block built): about 0.1 s of a `kit predict`. Frozen, that
garbage would stay for good, and with it whatever it reaches: torch.fx's `wrap()`, run while
transformers' model code is imported, keeps its own frame in a local, a cycle whose `f_back` chain reaches every
frame that was running the import, each holding its locals once its function returns. Inside a model build that
pinned the first fold's model (and in `kit train` its optimizer) until the process ended.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def frozen_imports() -> Iterator[None]:
    """Run the block's imports with the collector paused; freeze what they built when they imported anything (an
    import of modules already loaded freezes nothing)."""
    loaded = len(sys.modules)
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if len(sys.modules) > loaded:
            gc.collect(0)  # garbage first: a frozen cycle is never freed, nor anything it refers to
            gc.freeze()
        if enabled:
            gc.enable()
