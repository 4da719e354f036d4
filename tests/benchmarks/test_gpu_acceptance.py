"""benchmarks/gpu_acceptance.py: its dry mode runs every stage on the CPU, and a stage that silently does nothing
(no rows, or a PASS without a measurement) fails the run."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_acceptance.py"


def load_script():
    """The script as a module (a fresh copy each time: tests patch its STAGES)."""
    spec = importlib.util.spec_from_file_location("gpu_acceptance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_acceptance"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory, ell_dir):
    """The whole dry mode once, as CI runs it: a subprocess on the CPU (about 1-2 minutes on a loaded machine)."""
    out = tmp_path_factory.mktemp("gpu-acceptance") / "result.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--dry", "--out", str(out),
                             "--carry", str(out.parent / "no-carry")], cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    return result, json.loads(out.read_text()) if out.is_file() else None


@pytest.mark.e2e
def test_dry_mode_passes_and_every_stage_leaves_rows(dry_run):
    result, report = dry_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert report["machine"]["dry"] is True and "nominal" in report["machine"]["peak"]
    rows = report["rows"]
    assert {row["stage"] for row in rows} == {1, 2, 3, 4, 5}
    assert all(row["status"] in ("PASS", "SKIP") for row in rows)
    for stage in (1, 2, 3, 5):  # stage 4 needs 2+ GPUs: skipped in dry mode, and says why
        assert any(row["status"] == "PASS" and row["measured"] for row in rows if row["stage"] == stage), stage
    assert all(row["note"].startswith("skipped: ") for row in rows if row["status"] == "SKIP")
    assert {row["note"] for row in rows if row["stage"] == 3 and "4-bit" in row["what"]} <= {
        "skipped: bitsandbytes not installed", "skipped: 4-bit needs CUDA"}


@pytest.mark.e2e
def test_dry_mode_measurements_are_finite_and_positive(dry_run):
    rows = dry_run[1]["rows"]
    units = {row["unit"] for row in rows if row["measured"]}
    assert {"samples/s", "%", "tokens/s", "MiB", "tests passed", "s"} <= units
    for row in rows:
        if row["measured"] and row["status"] == "PASS":
            assert math.isfinite(row["figure"]) and row["figure"] > 0, row
    mfu = [row for row in rows if row["unit"] == "%"]
    assert len(mfu) == 4 and all("nominal" in row["note"] for row in mfu)


@pytest.mark.e2e
def test_the_json_matches_the_printed_table(dry_run):
    result, report = dry_run
    table = result.stdout[result.stdout.index("\nstage what"):]
    lines = [line for line in table.splitlines() if line[:1].isdigit() and line[1:6] == " " * 5]
    assert len(lines) == len(report["rows"])
    for line, row in zip(lines, report["rows"], strict=True):
        assert line.startswith(str(row["stage"])) and row["what"] in line and f" {row['status']} " in line
        if row["figure"] is not None:
            assert row["unit"] in line


@pytest.mark.e2e
def test_the_json_becomes_the_readme_table(dry_run):
    report = dry_run[1]
    text = load_script().markdown(report)
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith(("| stage", "| ---"))]
    assert len(rows) == len(report["rows"])
    assert all(f"| {row['what']} |" in line and f"| {row['status']} |" in line for line, row in
               zip(rows, report["rows"], strict=True))
    assert "nominal" in text


def run_with(module, monkeypatch, tmp_path, stage_function) -> tuple[int, dict]:
    """main() on stage 2 only, replaced by `stage_function`."""
    monkeypatch.setitem(module.STAGES, 2, ("encoders", stage_function))
    out = tmp_path / "result.json"
    code = module.main(["--dry", "--stages", "2", "--out", str(out), "--carry", str(tmp_path)])
    return code, json.loads(out.read_text())


def test_a_stage_that_returns_nothing_fails_the_run(monkeypatch, tmp_path):
    module = load_script()
    code, report = run_with(module, monkeypatch, tmp_path, lambda ctx: [])
    assert code == 1
    assert [(row["status"], row["note"]) for row in report["rows"]] == [("FAIL", "the stage produced no rows")]


@pytest.mark.parametrize("figure", [None, 0.0, float("nan"), float("inf"), -3.0])
def test_a_pass_without_a_measurement_is_a_fail(monkeypatch, tmp_path, figure):
    module = load_script()
    code, report = run_with(module, monkeypatch, tmp_path, lambda ctx: [
        module.Row(2, "train samples/s", "PASS", figure, "samples/s", measured=True),
        module.Row(2, "infer samples/s", "PASS", 12.5, "samples/s", measured=True)])
    assert code == 1
    assert [row["status"] for row in report["rows"]] == ["FAIL", "PASS"]
    assert report["rows"][0]["note"].startswith("claims a measurement but its figure is")


def test_a_stage_of_only_skips_fails_but_a_raising_stage_does_not_stop_the_others(monkeypatch, tmp_path):
    module = load_script()
    code, report = run_with(module, monkeypatch, tmp_path, lambda ctx: [module.Row(2, "x", "SKIP", note="skipped")])
    assert code == 1 and report["rows"][-1]["note"] == "every row was skipped"

    def broken(ctx):
        raise RuntimeError("first line\nCUDA out of memory")

    monkeypatch.setitem(module.STAGES, 2, ("encoders", broken))
    passing = [module.Row(3, "y", "PASS", 1.0, "s", measured=True)]
    monkeypatch.setitem(module.STAGES, 3, ("decoders", lambda ctx: passing))
    out = tmp_path / "result2.json"
    assert module.main(["--dry", "--stages", "2,3", "--out", str(out), "--carry", str(tmp_path)]) == 1
    rows = json.loads(out.read_text())["rows"]
    assert [(row["stage"], row["status"]) for row in rows] == [(2, "FAIL"), (3, "PASS")]
    assert rows[0]["note"] == "RuntimeError: CUDA out of memory"


@pytest.mark.parametrize("name, peak", [("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0),
                                        ("NVIDIA H200", 989.0), ("NVIDIA A100-SXM4-80GB", 312.0),
                                        ("NVIDIA L4", 121.0), ("NVIDIA L40S", 362.0), ("Tesla T4", 65.0),
                                        ("Some Future GPU", None)])
def test_peak_flops_are_read_from_the_device_name(name, peak):
    assert load_script().peak_tflops(name) == peak


def test_model_flops_follow_the_config():
    """deberta-v3-base: 12 layers x (4 x 768^2 + 2 x 768 x 3072) = 84.9M layer weights (its 86M backbone less the
    embeddings' LayerNorm and relative-position tables); a 1.1B Llama with 4 key/value heads and a gated MLP."""
    module = load_script()
    base = module.encoder_config("deberta-v3-base", dry=False)
    assert module.layer_weights(base) == 12 * (4 * 768**2 + 2 * 768 * 3072)
    per_token = 2 * module.layer_weights(base) + 4 * 12 * 768 * 512
    assert module.model_flops(base, 1000, 512, training=False) == pytest.approx(1000 * per_token)
    assert module.model_flops(base, 1000, 512, training=True) == pytest.approx(3000 * per_token)
    llama = module.decoder_config("1.1B", dry=False)
    assert module.layer_weights(llama) == 22 * (2 * 2048 * 2048 + 2 * 2048 * 256 + 3 * 2048 * 5632)


def test_the_readme_gives_the_command_the_script_prints():
    """The one line a session runs on the GPU machine: the README's copy is the script's, and fits the 2,000
    characters of the device tool's command line."""
    command = load_script().GPU_COMMAND.format(carry="gpu_carry")
    assert command in (REPO / "README.md").read_text()
    assert len(command) < 2000
