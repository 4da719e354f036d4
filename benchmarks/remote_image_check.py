"""`kit remote`'s training notebook in the Kaggle image venv, end to end, on this machine.

The venv is the one `kit simulate --image` builds (the image list's Python and pinned versions, torch from PyPI:
a download of several GB the first time, cached after). Steps: `kit remote train ell` of a tiny random BERT on
real ELL rows, pushed to a scripted Kaggle double, with the wheels the image lacks downloaded for the image's
Python as the real command does; the pushed notebook run offline (network cut) in that venv under the new and the
old input layout; each output pulled like a finished kernel's; the pulled run's OOF compared with the same settings
trained here, and the new-layout run bundled and simulated.

    python benchmarks/remote_image_check.py --data ../shared/data/ell [--rows 48] [--work /tmp/remote-image]

Prints one line per step and the OOF difference; exits non-zero on any failure. Needs the network for the first
venv build (PyPI) and a Python of the image's version (pyenv's, or --python).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def small_data(source: Path, dest: Path, rows: int) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    csv.field_size_limit(1 << 30)
    with open(source / "train.csv", newline="", encoding="utf-8") as src:
        lines = list(csv.reader(src))
    with open(dest / "train.csv", "w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows(lines[:rows + 1])
    for name in ("test.csv", "sample_submission.csv"):
        shutil.copyfile(source / name, dest / name)
    return dest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ell")
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--work", type=Path, default=Path("/tmp/kit-remote-image-check"))
    parser.add_argument("--python", type=Path, default=None, help="an interpreter of the image's Python version")
    parser.add_argument("--layouts", default="new,old")
    args = parser.parse_args()

    import numpy as np
    import pandas as pd

    from kaggle_kit import config as config_mod
    from kaggle_kit.fileio import read_json
    from kaggle_kit.registry import get_competition
    from kaggle_kit.remote.flow import pull_run, push_training
    from kaggle_kit.remote.offline import run_offline
    from kaggle_kit.runs.folder import RunDir
    from kaggle_kit.ship.bundle import build_bundle, pip_download
    from kaggle_kit.ship.image import load_image_packages
    from kaggle_kit.ship.simulate import simulate
    from tests.conftest import _tiny_model
    from tests.helpers import invoke
    from tests.kaggle_kit.remote.conftest import SETTINGS, RemoteKaggle, client_of, waiter

    if args.work.exists():
        shutil.rmtree(args.work)
    work = args.work
    ell = get_competition("ell")
    image = load_image_packages()  # the kit's dated list of the real Kaggle image
    data = small_data(args.data, work / "data", args.rows)
    model = _tiny_model(work / "tiny-bert", "bert")
    flags = dict(zip((s[2:].replace("-", "_") for s in SETTINGS[::2]), SETTINGS[1::2], strict=True))
    cfg = config_mod.resolve("ell", ell.presets, None, None, {**flags, "model": str(model)})
    started = time.monotonic()
    result = push_training(ell, cfg, client_of(RemoteKaggle()), "kit-tester", "t4x2", "copy", image, pip_download,
                           waiter(), work / "remote", log=print, runs_root=work / "runs")
    print(f"push: {time.monotonic() - started:.0f} s; upload wheels: "
          f"{', '.join(p.name for p in sorted((result.upload.path / 'wheels').glob('*.whl')))}")
    local = work / "local-run"
    assert invoke("train", "ell", "--data", data, "--model", model, *SETTINGS, "--out", local) == 0
    worst = 0.0
    for layout in args.layouts.split(","):
        started = time.monotonic()
        output = run_offline(result.notebook, result.upload.path, ell.kaggle_slug, data, work / f"output-{layout}",
                             layout, image=image, log=print, use_image=True, python=args.python)
        print(f"{layout} layout: the notebook ran in {time.monotonic() - started:.0f} s")
        record = {**result.record, "run_name": f"{result.record['run_name']}-{layout}"}
        dest = pull_run(record, client_of(RemoteKaggle(output=output)), waiter(), work / "remote", work / "pulled",
                        log=print)
        pulled = RunDir(dest)
        ours, theirs = pd.read_csv(pulled.oof), pd.read_csv(RunDir(local).oof)
        diff = float(np.max(np.abs(ours[ell.schema.target_names].to_numpy()
                                   - theirs[ell.schema.target_names].to_numpy())))
        worst = max(worst, diff)
        versions = read_json(pulled.manifest).get("versions", {})
        print(f"{layout} layout: pulled {dest.name}, folds {pulled.finished_folds()}, CV "
              f"{read_json(pulled.cv)['score']:.5f} (local {read_json(RunDir(local).cv)['score']:.5f}), OOF max "
              f"|diff| {diff:.2e}; trained with python {versions.get('python')}, torch {versions.get('torch')}, "
              f"transformers {versions.get('transformers')}")
        if layout == "new":
            bundle = build_bundle(ell, [dest], work / "bundles", owner="kit-tester", image=image, log=lambda _: None,
                                  downloader=pip_download)
            sim = simulate(bundle.path, data, image=image, log=lambda _: None, use_image=True, python=args.python)
            print(f"bundle + simulate --image of the pulled run: {sim.rows} rows, max |diff| to kit predict "
                  f"{sim.max_abs_diff:.1e}, {sim.environment}")
    print(f"RESULT: OOF of the runs trained in the image venv vs here: max |diff| {worst:.2e}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
