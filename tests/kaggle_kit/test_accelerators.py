"""One table of Kaggle's accelerators feeds kernel-metadata.json, the time projection and the placement rule."""

from kaggle_kit.accelerators import ACCELERATORS, DEFAULT_ACCELERATOR, SHAPES, fits_one_gpu, fits_split
from kaggle_kit.ship.projection import RunCost, project


def test_every_offered_accelerator_has_what_the_projection_needs():
    offered = [a for a in ACCELERATORS.values() if not a.retired]
    assert ACCELERATORS[DEFAULT_ACCELERATOR] in offered and SHAPES["NvidiaTeslaT4"].gpus == 2
    for machine in offered:
        assert machine.tflops is not None and (machine.gpus == 0) == (machine.machine_shape is None), machine.name
        assert machine.enable_gpu == (machine.memory_gib > 0), machine.name
        run = RunCost("r", 1e8, folds=2, tokens_per_row=100.0)
        assert project([run], 1000, machine.name).per_run["r"] > 0, machine.name


def test_memory_fit_keeps_headroom_per_gpu():
    assert fits_one_gpu(13.0, 15.0) and not fits_one_gpu(13.5, 15.0)
    assert fits_split(26.0, [15.0, 15.0]) and not fits_split(26.5, [15.0, 15.0])
