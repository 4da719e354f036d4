"""A third-party competition plugin, a package outside this repository registered through the entry-point group,
goes train -> bundle -> simulate: the bundle builds the plugin's own wheel and the notebook installs it. Without
that wheel the simulated Kaggle kernel does not know the competition, as Kaggle would not."""

import json
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import invoke

pytestmark = pytest.mark.e2e
PLUGIN = "kit-plugin-essays"


def write_plugin(folder):
    """A plugin package of its own: pyproject with the entry point, one module reusing ELL's declarations."""
    (folder / "kit_plugin_essays").mkdir(parents=True)
    (folder / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{PLUGIN}"
        version = "0.3.0"
        dependencies = ["kaggle-kit"]

        [project.entry-points."kaggle_kit.competitions"]
        essays = "kit_plugin_essays.comp:COMPETITION"

        [tool.setuptools]
        packages = ["kit_plugin_essays"]
        """))
    (folder / "kit_plugin_essays" / "__init__.py").write_text("")
    (folder / "kit_plugin_essays" / "comp.py").write_text(textwrap.dedent("""\
        from dataclasses import replace

        from competitions.ell import COMPETITION as ELL

        COMPETITION = replace(ELL, name="essays", title="Essays, a third-party plugin")
        """))
    return folder


@pytest.fixture
def installed_plugin(tmp_path):
    """pip-installs the plugin into this environment (not editable, from its folder), uninstalls it afterwards."""
    from kaggle_kit.registry import all_competitions

    source = write_plugin(tmp_path / "plugin-src")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", "--no-index", str(source)], check=True)
    all_competitions.cache_clear()
    try:
        yield source
    finally:
        subprocess.run([*pip, "uninstall", "--yes", PLUGIN], check=True)
        all_competitions.cache_clear()


def test_a_plugin_outside_the_repo_trains_bundles_and_runs_offline(installed_plugin, tmp_path, ell_small_dir,
                                                                   tiny_bert, image_packages_of_this_env, monkeypatch):
    from kaggle_kit.registry import get_competition
    from kaggle_kit.ship import bundle as bundle_module
    from kaggle_kit.ship.bundle import build_bundle
    from kaggle_kit.ship.image import load_image_packages
    from kaggle_kit.ship.simulate import simulate

    run = tmp_path / "run"
    assert invoke("train", "essays", "--data", ell_small_dir, "--model", tiny_bert, "--folds", "2", "--train-folds",
                  "0", "--epochs", "1", "--max-len", "32", "--batch-size", "16", "--out", run) == 0
    # The image list of this environment, without the plugin: Kaggle's image does not have it.
    image_file = tmp_path / "image.txt"
    image_file.write_text("\n".join(line for line in image_packages_of_this_env.read_text().splitlines()
                                    if not line.startswith(f"{PLUGIN}==")) + "\n")
    image = load_image_packages(image_file)
    comp = get_competition("essays")
    lines = []
    before = sorted(installed_plugin.rglob("*"))
    bundle = build_bundle(comp, [run], tmp_path / "bundles", owner="kit-tester", image=image, log=lines.append)
    manifest = json.loads((bundle.dataset / "manifest.json").read_text())
    assert manifest["plugin"] == {"distribution": PLUGIN, "version": "0.3.0",
                                  "wheel": "wheels/kit_plugin_essays-0.3.0-py3-none-any.whl"}
    assert manifest["plugin"]["wheel"] in manifest["wheels"] and manifest["plugin"]["wheel"] in manifest["files"]
    assert any(f"building its wheel from {installed_plugin}" in line for line in lines)
    notebook = (bundle.notebook / "inference.ipynb").read_text()
    assert "kit_plugin_essays-0.3.0-py3-none-any.whl" in notebook
    assert sorted(installed_plugin.rglob("*")) == before  # built from a copy: the plugin's folder is left as it was

    sim = simulate(bundle.path, ell_small_dir, log=lambda _: None, image=image)
    assert sim.rows == 3 and sim.max_abs_diff <= 1e-4  # simulate compares with `kit predict` on the same rows

    # Without its wheel the plugin is unknown in the simulated image, although it is installed here.
    from kaggle_kit.errors import KitError

    monkeypatch.setattr(bundle_module, "plugin_distribution", lambda comp: None)
    bare = build_bundle(comp, [run], tmp_path / "bare", owner="kit-tester", image=image, log=lambda _: None)
    with pytest.raises(KitError, match="cell 'predict': KitError: unknown competition 'essays'"):
        simulate(bare.path, ell_small_dir, log=lambda _: None, image=image)
