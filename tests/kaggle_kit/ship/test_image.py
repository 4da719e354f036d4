"""Version differences between this machine, an image list and a bundle: whose, and whether they matter."""

from importlib.metadata import version

import pytest

from kaggle_kit.ship.image import (
    ImagePackages,
    explain_differences,
    version_difference,
    version_differences,
)
from kaggle_kit.ship.simulate import image_list_mismatch, stand_in_differences


@pytest.mark.parametrize("name, ours, theirs, matters", [
    ("transformers", "5.25.0", "5.0.0", True),  # saved here, read there by an older minor
    ("tokenizers", "0.23.3", "0.22.2", True),
    ("transformers", "5.0.3", "5.0.0", False),  # a patch release keeps the formats
    ("transformers", "4.57.0", "5.0.0", True),  # a major version
    ("tokenizers", "0.21.0", "0.22.2", False),  # older on the saving side: the newer reads it
    ("numpy", "2.4.6", "2.3.0", False),  # a minor release of a package whose files the notebook does not read
    ("numpy", "2.4.6", "1.26.4", True),
])
def test_which_differences_matter(name, ours, theirs, matters):
    difference = version_difference(name, ours, theirs)
    assert difference.matters is matters and difference.why


def test_a_local_build_tag_is_no_difference():
    assert version_difference("torch", "2.10.0+cpu", "2.10.0") is None
    assert version_differences({"Torch": "2.10.0", "numpy": "2.4.6"}, {"torch": "2.10.0+cu128"}) == []


def test_explained_differences_name_both_sides_and_what_to_do():
    differences = version_differences({"transformers": "5.25.0", "tqdm": "4.67.1", "pandas": "2.3.4"},
                                       {"transformers": "5.0.0", "tqdm": "4.67.3", "pandas": "2.3.3"})
    lines = explain_differences(differences, "this machine", "the image list", "run X")
    assert lines == ["warning: this machine has transformers 5.25.0, the image list 5.0.0: newer on the saving "
                     "side: the older version must read the tokenizer and config files it writes; run X",
                     "versions: this machine vs the image list differ only in ways that do not matter (patch or "
                     "minor releases): pandas 2.3.4 vs 2.3.3, tqdm 4.67.1 vs 4.67.3"]
    assert explain_differences([], "a", "b", "c") == []


def _image(tmp_path, name, **versions):
    return ImagePackages(tmp_path / name, "3.12", "2026-02-02", versions)


def test_simulating_with_another_image_list_says_whether_the_bundles_versions_differ(tmp_path):
    manifest = {"image_packages": {"file": "old.txt", "date": "2026-01-01"},
                "assumed_versions": {"transformers": "5.0.0", "numpy": "2.4.6"}}
    same = image_list_mismatch(manifest, _image(tmp_path, "new.txt", transformers="5.0.0", numpy="2.4.6", tqdm="1"))
    assert len(same) == 1 and "agree on every version the bundle assumes" in same[0] and "old.txt" in same[0]
    older = image_list_mismatch(manifest, _image(tmp_path, "new.txt", transformers="4.57.0", numpy="2.4.7"))
    assert older[0].startswith("warning: the bundle (built for old.txt, 2026-01-01) has transformers 5.0.0, "
                               f"this simulation's list {tmp_path / 'new.txt'} (2026-02-02) 4.57.0: major version")
    assert "--image-packages" in older[0] and "numpy 2.4.6 vs 2.4.7" in older[1]


def test_the_stand_in_says_when_it_runs_versions_that_differ_from_the_image(tmp_path):
    here = version("transformers")
    manifest = {"assumed_versions": {"transformers": "4.40.0"}}
    said = stand_in_differences(manifest, _image(tmp_path, "list.txt", transformers="4.40.0"))
    assert said == [f"warning: the stand-in runs this machine's transformers {here}, not the image list's 4.40.0 "
                    f"(newer on the saving side: the older version must read the tokenizer and config files it "
                    f"writes): `kit simulate --image` runs the image's versions"]
    assert stand_in_differences(manifest, _image(tmp_path, "list.txt", transformers=here)) == []
