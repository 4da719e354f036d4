"""`kit bundle`: layout, manifest, determinism, wheels for what the image lacks, metadata checks, no secrets."""

import json
import re
import zipfile

import pytest
from packaging.requirements import Requirement

from kaggle_kit.errors import KitError
from kaggle_kit.fileio import sha256_file
from kaggle_kit.registry import get_competition
from kaggle_kit.ship.bundle import build_bundle
from kaggle_kit.ship.image import load_image_packages, missing_from_image
from kaggle_kit.ship.kaggle_metadata import LICENSES, validate_dataset_metadata, validate_kernel_metadata
from tests.helpers import assert_one_line_error, run_kit

pytestmark = pytest.mark.e2e
SECRET_KEY = "0123456789abcdef-not-a-real-kaggle-key"


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, ell_tiny_run, image_packages_of_this_env):
    """A bundle made while Kaggle credentials are set in the environment and in kaggle.json."""
    config_dir = tmp_path_factory.mktemp("kaggle-config")
    (config_dir / "kaggle.json").write_text(json.dumps({"username": "kit-tester", "key": SECRET_KEY}))
    out = tmp_path_factory.mktemp("bundles")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KAGGLE_CONFIG_DIR", str(config_dir))
        mp.setenv("KAGGLE_USERNAME", "kit-tester")
        mp.setenv("KAGGLE_KEY", SECRET_KEY)
        bundle = build_bundle(get_competition("ell"), [ell_tiny_run], out,
                              image=load_image_packages(image_packages_of_this_env), log=lambda _: None)
    return bundle.path


def all_files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_layout_and_manifest(bundle_dir, ell_tiny_run):
    dataset = bundle_dir / "dataset"
    name = ell_tiny_run.name
    for rel in ("dataset-metadata.json", "manifest.json", f"models/{name}/run_config.json", f"models/{name}/cv.json",
                f"models/{name}/backbone/config.json", f"models/{name}/tokenizer/tokenizer.json",
                f"models/{name}/fold0.safetensors", f"models/{name}/fold1.safetensors",
                f"models/{name}/run_manifest.json"):
        assert (dataset / rel).is_file(), rel
    assert [p.name for p in (dataset / "wheels").iterdir()] == ["kaggle_kit-0.1.0-py3-none-any.whl"]
    manifest = json.loads((dataset / "manifest.json").read_text())
    listed = set(manifest["files"])
    on_disk = {k for k in all_files(dataset) if k not in ("manifest.json", "dataset-metadata.json")}
    assert listed == on_disk
    for rel, entry in manifest["files"].items():
        assert entry == {"sha256": sha256_file(dataset / rel), "size": (dataset / rel).stat().st_size}
    cv = json.loads((ell_tiny_run / "cv.json").read_text())
    assert manifest["runs"] == [{"name": name, "path": f"models/{name}", "folds": [0, 1], "weight": 1.0,
                                 "cv_score": cv["score"], "cv_folds": [0, 1], "metric": "MCRMSE"}]
    assert manifest["competition"] == "ell" and manifest["kit_version"] == "0.1.0" and manifest["created"]
    assert manifest["wheels"] == ["wheels/kaggle_kit-0.1.0-py3-none-any.whl"]
    trained = json.loads((ell_tiny_run / "manifest.json").read_text())
    shipped = json.loads((dataset / f"models/{name}/run_manifest.json").read_text())
    assert trained["sessions"] and {"host", "pid", "pid_start"} <= set(trained["sessions"][0])
    assert shipped["sessions"] == [{k: v for k, v in s.items() if k not in ("host", "pid", "pid_start")}
                                   for s in trained["sessions"]]
    shipped.pop("sessions"), trained.pop("sessions")
    assert shipped == trained
    assert re.fullmatch(r"ell-[0-9a-f]{16}", manifest["bundle_id"]) and manifest["plugin"] is None
    from importlib.metadata import version

    assert manifest["assumed_versions"]["torch"] == version("torch")  # the image list of this env
    assert "kaggle-kit" not in manifest["assumed_versions"]
    notebook = (bundle_dir / "notebook" / "inference.ipynb").read_text()
    assert f"BUNDLE_ID = '{manifest['bundle_id']}'" in notebook


def test_metadata_files(bundle_dir):
    dataset_meta = json.loads((bundle_dir / "dataset" / "dataset-metadata.json").read_text())
    slug = bundle_dir.name
    assert dataset_meta["id"] == f"kit-tester/{slug}" and dataset_meta["licenses"] == [{"name": "CC0-1.0"}]
    assert 6 <= len(dataset_meta["title"]) <= 50
    kernel = json.loads((bundle_dir / "notebook" / "kernel-metadata.json").read_text())
    assert kernel["enable_internet"] is False and kernel["enable_gpu"] is True
    assert kernel["machine_shape"] == "NvidiaTeslaT4"  # GPU T4 x2, Kaggle's default; without it Kaggle may pick P100
    assert kernel["kernel_type"] == "notebook" and kernel["language"] == "python"
    assert kernel["dataset_sources"] == [f"kit-tester/{slug}"]
    assert kernel["competition_sources"] == ["feedback-prize-english-language-learning"]
    assert (bundle_dir / "notebook" / kernel["code_file"]).is_file()


def test_same_runs_give_identical_bytes(bundle_dir, ell_tiny_run, image_packages_of_this_env, tmp_path, capsys,
                                        monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "kit-tester")
    code, _, err = run_kit(capsys, "bundle", "ell", "--run", ell_tiny_run, "--out", tmp_path, "--no-check",
                           "--image-packages", image_packages_of_this_env)
    assert code == 0, err
    again = tmp_path / bundle_dir.name
    assert all_files(again) == all_files(bundle_dir)


def test_no_credentials_in_the_bundle(bundle_dir):
    """Neither the key from the environment nor the one in kaggle.json ends up in any file, zipped or not."""
    for rel, data in all_files(bundle_dir).items():
        assert SECRET_KEY.encode() not in data, rel
        if rel.endswith(".whl"):
            with zipfile.ZipFile(bundle_dir / rel) as wheel:
                for member in wheel.namelist():
                    assert SECRET_KEY.encode() not in wheel.read(member), f"{rel}:{member}"


def test_wheel_holds_the_kit_and_its_image_list(bundle_dir):
    (wheel,) = (bundle_dir / "dataset" / "wheels").glob("kaggle_kit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("kaggle_kit/ship/kaggle_runtime.py", "kaggle_kit/predict/inference.py", "competitions/ell.py",
                   "kaggle_kit/ship/kaggle_image.txt"):
        assert needed in names
    assert not any("__pycache__" in n for n in names)
    assert not any("/samples/" in n for n in names)  # the embedded data keeps its own licence: never uploaded


def test_requirements_the_image_lacks_are_downloaded(ell_tiny_run, tmp_path):
    """An image without safetensors and with an old numpy: exactly those two go to the downloader."""
    from importlib.metadata import version

    image_file = tmp_path / "image.txt"
    image_file.write_text(
        "# date: 2026-01-01\n# python: 3.12\n"
        + "\n".join(f"{n}=={version(n)}" for n in ("torch", "transformers", "pandas", "scikit-learn",
                                                   "iterative-stratification", "typer", "rich", "matplotlib",
                                                   "pyyaml", "packaging", "filelock", "scipy", "pydantic"))
        + "\nnumpy==1.20.0\ntokenizers==0.19.0\n" + f"tqdm=={'.'.join(version('tqdm').split('.')[:2])}.999\n")
    calls = []

    def fake_download(requirements, dest, image):
        calls.append(([r.name for r in requirements], image.python))
        for r in requirements:
            (dest / f"{r.name}-9.9-py3-none-any.whl").write_bytes(b"wheel")

    lines = []
    bundle = build_bundle(get_competition("ell"), [ell_tiny_run], tmp_path / "out", owner="kit-tester",
                          image=load_image_packages(image_file), downloader=fake_download, log=lines.append)
    assert calls == [(["safetensors", "numpy"], "3.12")] or calls == [(["numpy", "safetensors"], "3.12")]
    # whose versions differ and whether it matters: a newer tokenizers here does, a patch release of tqdm does not
    said = "\n".join(lines)
    assert (f"warning: this machine has tokenizers {version('tokenizers')}, the Kaggle image list the bundle assumes "
            f"(image.txt, 2026-01-01) 0.19.0: newer on the saving side") in said
    assert "kit simulate --bundle BUNDLE --data DATA --image" in said
    harmless = next(line for line in lines if line.startswith("versions: this machine vs"))
    assert "tqdm" in harmless and "do not matter" in harmless and "tokenizers" not in harmless
    assert "numpy" not in said.split("downloading")[-1]  # downloaded, so not assumed of the image
    manifest = json.loads((bundle.dataset / "manifest.json").read_text())
    assert "wheels/numpy-9.9-py3-none-any.whl" in manifest["wheels"]
    assert "wheels/numpy-9.9-py3-none-any.whl" in manifest["files"]
    notebook = (bundle.notebook / "inference.ipynb").read_text()
    assert "numpy-9.9-py3-none-any.whl" in notebook and "--no-index" in notebook


def test_missing_from_image_compares_versions(tmp_path):
    image_file = tmp_path / "image.txt"
    image_file.write_text("# python: 3.12\nTorch==2.10.0+cpu\nscikit_learn==1.2.2\n")
    image = load_image_packages(image_file)
    reqs = [Requirement("torch>=2.1"), Requirement("scikit-learn>=1.3"), Requirement("iterative-stratification")]
    assert [r.name for r in missing_from_image(reqs, image)] == ["scikit-learn", "iterative-stratification"]


def test_default_image_list_is_dated_and_parses():
    """The date is the source commit's (2026-06-17), the list is the CPU image's, and the GPU torch is recorded."""
    image = load_image_packages()
    assert image.date == "2026-06-17" and image.python == "3.12"
    assert "1ebea3c5" in image.header["source"] and "CPU image" in image.header["source"]
    assert image.versions["torch"] == "2.10.0+cpu" and image.gpu_torch == "2.10.0+cu128"
    assert image.versions["transformers"] == "5.0.0" and image.versions["pandas"] == "2.3.3"
    assert len(image.versions) > 800  # the whole freeze, not a hand-picked subset


def test_bad_image_list_names_the_line(tmp_path):
    bad = tmp_path / "image.txt"
    bad.write_text("# python: 3.12\ntorch 2.1\n")
    with pytest.raises(KitError, match=r"image.txt line 2: expected `name==version`"):
        load_image_packages(bad)


GOOD_DATASET = {"title": "ELL kit bundle", "id": "someone/ell-kit-bundle", "licenses": [{"name": "CC0-1.0"}]}


@pytest.mark.parametrize("change, message", [
    ({"title": "short"}, "title 'short' must be 6-50 characters"),
    ({"title": "x" * 51}, "must be 6-50 characters"),
    ({"id": "someone/Bad_Slug"}, "slug must be"),
    ({"id": "someone/abc"}, "slug must be"),
    ({"id": "no-owner-here"}, "must be `owner/slug`"),
    ({"licenses": [{"name": "WTFPL"}]}, "'WTFPL' is not one of the license names Kaggle documents"),
    ({"licenses": [{"name": "MIT"}]}, "'MIT' is not one of the license names Kaggle documents"),
    ({"licenses": [{"name": "CC0-1.0"}, {"name": "CC-BY-4.0"}]}, "exactly one license"),
    ({"licenses": []}, "exactly one license"),
])
def test_dataset_metadata_validation(change, message):
    validate_dataset_metadata(GOOD_DATASET)
    with pytest.raises(KitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_dataset_metadata({**GOOD_DATASET, **change})


@pytest.mark.parametrize("name", ["CC0-1.0", "CC-BY-SA-3.0", "CC-BY-NC-SA-4.0", "apache-2.0", "GPL-3.0", "FDL-1.3",
                                  "US-Government-Works", "EU-ODP-Legal-Notice"])
def test_documented_licenses_are_accepted(name):
    validate_dataset_metadata({**GOOD_DATASET, "licenses": [{"name": name}]})


def test_license_list_is_exactly_kaggles_documented_one():
    """kaggle-cli docs/datasets_metadata.md lists 28 names, and MIT is not one of them."""
    assert len(LICENSES) == len(set(LICENSES)) == 28
    assert "MIT" not in LICENSES and "CC-BY-SA-3.0" in LICENSES and "ODC-BY-1.0" in LICENSES


@pytest.mark.parametrize("args, shape, enable_gpu", [
    ((), "NvidiaTeslaT4", True),
    (("--accelerator", "none"), None, False),
    (("--no-gpu",), None, False),
    (("--gpu",), "NvidiaTeslaT4", True),
    (("--accelerator", "l4"), "NvidiaL4", True),
])
def test_accelerator_writes_machine_shape_as_the_client_reads_it(ell_tiny_run, tmp_path, capsys,
                                                                 image_packages_of_this_env, args, shape, enable_gpu):
    code, _, err = run_kit(capsys, "bundle", "ell", "--run", ell_tiny_run, "--owner", "kit-tester", "--out", tmp_path,
                           "--no-check", "--image-packages", image_packages_of_this_env, *args)
    assert code == 0, err
    (folder,) = tmp_path.iterdir()
    kernel = json.loads((folder / "notebook" / "kernel-metadata.json").read_text())
    assert kernel.get("machine_shape") == shape and kernel["enable_gpu"] is enable_gpu


@pytest.mark.parametrize("change, message", [
    ({"machine_shape": "NvidiaTeslaP100"}, "machine_shape NvidiaTeslaP100: P100 is retired"),
    ({"machine_shape": "NvidiaTeslaK80"}, "machine_shape 'NvidiaTeslaK80' is not one Kaggle documents"),
    ({"machine_shape": "NvidiaTeslaT4", "enable_gpu": False}, "machine_shape NvidiaTeslaT4 needs enable_gpu true"),
    ({"machine_shape": None}, "enable_gpu is true but machine_shape is missing"),
])
def test_kernel_metadata_machine_shape_is_checked(bundle_dir, change, message):
    folder = bundle_dir / "notebook"
    meta = {k: v for k, v in json.loads((folder / "kernel-metadata.json").read_text()).items()}
    meta.update(change)
    meta = {k: v for k, v in meta.items() if v is not None}
    with pytest.raises(KitError, match=message):
        validate_kernel_metadata(meta, folder)


def test_kernel_metadata_requires_internet_written_off(bundle_dir):
    folder = bundle_dir / "notebook"
    meta = json.loads((folder / "kernel-metadata.json").read_text())
    validate_kernel_metadata(meta, folder)
    without = {k: v for k, v in meta.items() if k != "enable_internet"}
    with pytest.raises(KitError, match="enable_internet must be written as false"):
        validate_kernel_metadata(without, folder)
    with pytest.raises(KitError, match="slugify to the id"):
        validate_kernel_metadata({**meta, "title": "Something else entirely"}, folder)


@pytest.mark.parametrize("args, fragment", [
    (("--slug", "Bad Slug"), "--slug 'Bad Slug'"),
    (("--license", "MIT"), "'MIT' is not one of the license names Kaggle documents"),
    (("--accelerator", "p100"), "--accelerator p100: P100 is retired on Kaggle"),
    (("--accelerator", "v100"), "--accelerator 'v100': choose one of none, t4x2"),
    (("--no-gpu", "--accelerator", "t4x2"), "--no-gpu (= --accelerator none) contradicts --accelerator t4x2"),
    (("--weights", "0.5,0.5"), "--weights: 2 weight(s) for 1 --run"),
])
def test_bad_options_are_one_line_errors(ell_tiny_run, tmp_path, capsys, args, fragment):
    code, _, err = run_kit(capsys, "bundle", "ell", "--run", ell_tiny_run, "--owner", "kit-tester", "--out", tmp_path,
                           "--no-check", *args)
    assert_one_line_error(code, err, fragment)
    assert not any(tmp_path.iterdir())


def test_bundle_without_owner_says_how(ell_tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "nowhere"))
    code, _, err = run_kit(capsys, "bundle", "ell", "--run", ell_tiny_run, "--out", tmp_path / "b", "--no-check")
    assert_one_line_error(code, err, "--owner")


def test_two_runs_get_weights_fitted_on_their_oof(tmp_path, ell_tiny_run, ell_small_dir, tiny_bert,
                                                  image_packages_of_this_env):
    from tests.helpers import invoke

    second = tmp_path / "ell-tiny-mean"
    assert invoke("train", "ell", "--data", ell_small_dir, "--model", tiny_bert, "--folds", "2", "--epochs", "1",
                  "--max-len", "32", "--batch-size", "8", "--pooling", "mean", "--out", second) == 0
    messages = []
    image = load_image_packages(image_packages_of_this_env)
    bundle = build_bundle(get_competition("ell"), [ell_tiny_run, second], tmp_path / "out", owner="kit-tester",
                          image=image, log=messages.append)
    manifest = json.loads((bundle.path / "dataset" / "manifest.json").read_text())
    weights = [r["weight"] for r in manifest["runs"]]
    assert all(w >= 0 for w in weights) and sum(weights) == pytest.approx(1.0)
    ensemble = manifest["ensemble"]
    assert ensemble["fitted"] is True and ensemble["n_oof_rows"] == 48
    assert set(ensemble["run_oof_scores"]) == {ell_tiny_run.name, second.name}
    assert ensemble["blend_oof_score"] <= min(ensemble["run_oof_scores"].values()) + 1e-9
    assert any("fitted on OOF" in m and "blend" in m for m in messages)

    given = build_bundle(get_competition("ell"), [ell_tiny_run, second], tmp_path / "given", owner="kit-tester",
                         image=image, weights=[3, 1], log=lambda _: None)
    manifest = json.loads((given.path / "dataset" / "manifest.json").read_text())
    assert [r["weight"] for r in manifest["runs"]] == [0.75, 0.25]
    assert manifest["ensemble"]["fitted"] is False


def test_image_list_is_refreshed_from_a_pip_freeze(tmp_path, capsys):
    """`kit image-list` reads the freeze a kit notebook saves (`# python:` first line, `@ file://` lines skipped)."""
    freeze = tmp_path / "kaggle_image_freeze.txt"
    freeze.write_text("# python: 3.12.12\ntorch==2.11.0+cu128\nPandas==3.0.1\n"
                      "kagglehub @ file:///tmp/kagglehub-0.4.0-py3-none-any.whl\nnumpy==2.5.0\n")
    out = tmp_path / "image.txt"
    code, _, err = run_kit(capsys, "image-list", freeze, "--out", out, "--date", "2026-11-20", "--source",
                           "notebook me/x version 3")
    assert code == 0, err
    assert "3 packages, Python 3.12, dated 2026-11-20; skipped 1 without a version: kagglehub" in err
    image = load_image_packages(out)
    assert image.python == "3.12" and image.date == "2026-11-20" and image.header["source"] == "notebook me/x version 3"
    assert image.versions == {"torch": "2.11.0+cu128", "pandas": "3.0.1", "numpy": "2.5.0"}
    freeze.write_text("torch==2.11.0\n")
    code, _, err = run_kit(capsys, "image-list", freeze, "--out", out)
    assert_one_line_error(code, err, "--python: the freeze does not say which Python")
    freeze.write_text("# python: 3.12\nthis is not a freeze\n")
    code, _, err = run_kit(capsys, "image-list", freeze, "--out", out)
    assert_one_line_error(code, err, "line 2: not a pip freeze line")


def test_a_run_without_fallback_json_gets_one_computed_in_the_bundle(ell_tiny_run, ell_small_dir, tmp_path,
                                                                     image_packages_of_this_env):
    """Runs trained before runs recorded their fallback: the bundle computes it (here from the run's train.csv),
    so the notebook always has one, and lists it in the manifest like every other file."""
    import shutil

    import pandas as pd

    old = tmp_path / "ell-old"
    shutil.copytree(ell_tiny_run, old)
    (old / "fallback.json").unlink()
    lines = []
    bundle = build_bundle(get_competition("ell"), [old], tmp_path / "bundles", owner="kit-tester",
                          image=load_image_packages(image_packages_of_this_env), log=lines.append)
    manifest = json.loads((bundle.dataset / "manifest.json").read_text())
    shipped = bundle.dataset / "models" / "ell-old" / "fallback.json"
    assert manifest["files"]["models/ell-old/fallback.json"]["sha256"] == sha256_file(shipped)
    record = json.loads(shipped.read_text())
    targets = ["cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions"]
    mean = pd.read_csv(ell_small_dir / "train.csv")[targets].mean()
    assert [round(record["prediction"][t], 6) for t in targets] == [round(v, 6) for v in mean]
    assert "computed from" in record["source"]
    assert any("ell-old: no fallback.json" in line for line in lines)
