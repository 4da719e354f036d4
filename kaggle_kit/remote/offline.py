"""Run a pushed training notebook here, offline, the way Kaggle would: `kit simulate`'s machinery (a throwaway
venv over the image, the network cut, /kaggle/input laid out in the old or new layout) with the competition's
train.csv, and the upload dataset and notebook `kit remote train` wrote. What it leaves in its /kaggle/working is
what `kernels_output` would serve.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from kaggle_kit.errors import KitError
from kaggle_kit.fileio import read_json
from kaggle_kit.remote.notebook import NOTEBOOK_NAME
from kaggle_kit.ship.image import ImagePackages
from kaggle_kit.ship.simulate import (
    KERNEL_NAME,
    LAYOUTS,
    kernel_env,
    kernel_packages,
    make_kernel_venv,
    run_notebook,
    unshare_works,
    write_kernelspec,
)

COMPETITION_FILES = ("train.csv", "test.csv", "sample_submission.csv")


def lay_out_inputs(root: Path, upload_dir: Path, competition_slug: str, data_dir: Path, layout: str,
                   model_dir: Path | None = None) -> tuple[Path, Path]:
    """/kaggle/input (the competition's files, the upload dataset, an attached model) and an empty
    /kaggle/working under `root`; returns both."""
    if layout not in LAYOUTS:
        raise KitError(f"--layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    owner, slug = read_json(upload_dir / "dataset-metadata.json")["id"].split("/")
    inputs, working = root / "kaggle" / "input", root / "kaggle" / "working"
    working.mkdir(parents=True)
    competition = inputs / "competitions" / competition_slug if layout != "old" else inputs / competition_slug
    dataset = inputs / "datasets" / owner / slug if layout == "new" else inputs / slug
    competition.mkdir(parents=True)
    dataset.parent.mkdir(parents=True, exist_ok=True)
    dataset.symlink_to(Path(upload_dir).resolve(), target_is_directory=True)
    for name in COMPETITION_FILES:
        if (data_dir / name).is_file():
            shutil.copyfile(data_dir / name, competition / name)
    if model_dir is not None:  # attached as Kaggle mounts a Model
        name = Path(model_dir).resolve().name.lower()
        mount = (inputs / "models" / "owner" / name if layout == "new" else inputs / name) / "transformers/default/1"
        mount.parent.mkdir(parents=True)
        mount.symlink_to(Path(model_dir).resolve(), target_is_directory=True)
    return inputs, working


def run_offline(notebook_dir: Path, upload_dir: Path, competition_slug: str, data_dir: Path, output: Path,
                layout: str = "new", image: ImagePackages | None = None, model_dir: Path | None = None,
                timeout: int = 1800, log: Callable[[str], None] = print, use_image: bool = False,
                python: Path | None = None) -> Path:
    """Execute the training notebook offline; copy what it left in /kaggle/working (and the executed notebook,
    as <slug>.ipynb) to `output`. A failing cell is a KitError after the copy, so the output can be inspected.
    `use_image`: in the image venv `kit simulate --image` builds (the image's Python and pinned versions, `python`
    an interpreter of that version), instead of the stand-in of this interpreter's packages."""
    import nbformat

    from kaggle_kit.ship.image import load_image_packages
    from kaggle_kit.ship.notebook import inject_parameters, read_notebook

    image = image or load_image_packages()
    use_unshare = unshare_works()
    with tempfile.TemporaryDirectory(prefix="kit-remote-offline-") as tmp:
        root = Path(tmp)
        inputs, working = lay_out_inputs(root, upload_dir, competition_slug, data_dir, layout, model_dir)
        interpreter, site_dir, environment = kernel_packages(root, image, upload_dir / "wheels", use_image, python,
                                                             log)
        python = make_kernel_venv(root, interpreter, site_dir, block_with_socket_patch=not use_unshare)
        env = kernel_env(root, write_kernelspec(root, python))
        nb = inject_parameters(read_notebook(notebook_dir / NOTEBOOK_NAME),
                               {"INPUT_ROOT": str(inputs), "WORKING_DIR": str(working)})
        nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Kaggle image (simulated)",
                                     "language": "python"}
        nbformat.write(nb, str(root / "notebook.ipynb"))
        network = "unshare --net" if use_unshare else "socket patch"
        log(f"remote offline: running {notebook_dir / NOTEBOOK_NAME} ({network}, loopback only) in the "
            f"{environment}, {layout} layout")
        failure = None
        try:
            run_notebook(root / "notebook.ipynb", root / "executed.ipynb", working, env, use_unshare, timeout)
        except KitError as err:
            failure = err
        if output.exists():
            shutil.rmtree(output)
        shutil.copytree(working, output, symlinks=False)
        if (root / "executed.ipynb").is_file():
            shutil.copyfile(root / "executed.ipynb", output.parent / f"{output.name}.ipynb")
    if failure is not None:
        raise failure
    return output
