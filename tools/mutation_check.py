#!/usr/bin/env python3
"""Break kaggle-kit on purpose, one break at a time, and check that the tests notice.

A developer tool, not part of the suite. Each break is a text patch (`old` -> `new`; `old` must occur exactly
once, so a patch that no longer fits the code is reported as STALE instead of passing silently). It is applied to
a temporary copy of the working tree (tracked files and untracked ones git does not ignore), and pytest runs in
that copy, which it puts first on sys.path (checked before anything runs). The checkout itself is never written
to. A test that starts a separate Python which imports the installed kit gets the unbroken checkout's code there.

    python tools/mutation_check.py              # every break, against the tests meant to catch it
    python tools/mutation_check.py --full 1 5   # breaks 1 and 5, each against the whole suite
    python tools/mutation_check.py --list

Prints one row per break: caught (the first failing test), MISSED (the tests passed), STALE or ERROR.
Run it with the project's virtual environment (its python has pytest and the kit's dependencies).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TRAINER = "kaggle_kit/train/trainer.py"
OPTIONS = "tests/kaggle_kit/train/test_trainer_options.py"
LEARNING = "tests/kaggle_kit/train/test_learning.py"
PREDICT = "tests/kaggle_kit/predict/test_predict_runs.py"
RUNTIME = "tests/kaggle_kit/ship/test_kaggle_runtime.py"
FOLDS = "tests/kaggle_kit/data/test_folds.py"
POOLING = "tests/kaggle_kit/models/test_pooling.py"
PSEUDO = "tests/kaggle_kit/train/test_pseudo_distill.py"
WINDOWS = "tests/kaggle_kit/models/test_windows.py"
DISTRIBUTED = "tests/kaggle_kit/train/test_distributed.py"
LOADER = "tests/kaggle_kit/data/test_loader.py"
PACKING = "tests/kaggle_kit/predict/test_cpu_packing.py"
STARTUP = "tests/kaggle_kit/test_startup.py"


@dataclass(frozen=True)
class Break:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


BREAKS = [
    # ---- the eight of issue 8 ----
    Break("scaler.step(optimizer) removed: the optimizer never steps", "kaggle_kit/device.py",
          "    scaler.step(optimizer)\n", "", (OPTIONS, LEARNING)),
    Break("the last validation kept instead of the best", TRAINER,
          "improved = self.comp.metric.better(score, best.score)", "improved = True", (OPTIONS,)),
    Break("FGM never attacks", TRAINER, "attacks = [a for a in (fgm, awp", "attacks = [a for a in (None, awp",
          (OPTIONS,)),
    Break("AWP never attacks", TRAINER, "(fgm, awp if epoch >= cfg.awp_start_epoch else None)", "(fgm, None)",
          (OPTIONS,)),
    Break("gradient accumulation ignored: a step on every micro-batch", TRAINER,
          "last_micro_step = i % cfg.grad_accum == 0 or i == n_batches", "last_micro_step = True", (OPTIONS,)),
    Break("EMA weights not used for evaluation and saving", TRAINER,
          "                    with ema.applied() if ema is not None else contextlib.nullcontext():\n"
          "                        pred, score, per_target = self.evaluate(core, valid)\n",
          "                    with contextlib.nullcontext():\n"
          "                        pred, score, per_target = self.evaluate(core, valid)\n", (OPTIONS,)),
    Break("the loss link skipped in predict_runs", "kaggle_kit/predict/inference.py",
          "in_plugin_order(apply_link(loss_spec, torch.from_numpy(raw_outputs[i, fold]), p.trained).numpy(),",
          "in_plugin_order(raw_outputs[i, fold],", (PREDICT,)),
    Break("the LLRD parameter groups replaced by one group", TRAINER,
          "groups = llrd_param_groups(model, cfg.lr, cfg.head_lr, cfg.llrd, cfg.weight_decay)",
          'groups = [{"name": "all", "params": [p for p in model.parameters() if p.requires_grad]}]', (OPTIONS,)),
    # ---- more of the same kind ----
    Break("output bias not initialised to the training mean", TRAINER,
          "        model.init_output_bias(initial_bias(y_train, self.targets, self.loss_spec))\n", "",
          (OPTIONS,)),
    Break("bce output bias set to the mean instead of its logit", "kaggle_kit/tasks/losses.py",
          'if spec.bias in ("logit", "log_prior"):', 'if spec.bias == "log_prior":', (OPTIONS,)),
    Break("gradient clipping skipped", "kaggle_kit/device.py",
          "clip_grad_norm_(parameters, max_grad_norm)",
          'clip_grad_norm_(parameters, float("inf"))', (OPTIONS,)),
    Break("scheduler never stepped", TRAINER, "                    scheduler.step()\n", "", (OPTIONS,)),
    Break("schedule length ignores gradient accumulation", TRAINER,
          "total_steps = max(1, sum(math.ceil(len(stage) / cfg.grad_accum) for stage in stages))",
          "total_steps = max(1, sum(len(stage) for stage in stages))", (OPTIONS,)),
    Break("head_lr ignored (the head trains at lr)", "kaggle_kit/models/model.py",
          'key, group_lr = "head", head_lr', 'key, group_lr = "head", lr', (OPTIONS,)),
    Break("weight decay on biases and LayerNorm too", "kaggle_kit/models/model.py",
          '"weight_decay": 0.0 if no_decay else weight_decay,', '"weight_decay": weight_decay,', (OPTIONS,)),
    Break("backbone dropout setting ignored", "kaggle_kit/models/model.py",
          "    if dropout is not None:\n", "    if False:\n", (OPTIONS,)),
    Break("no per-fold seed (a resumed fold trains differently)", TRAINER,
          "        torch.manual_seed(cfg.seed + fold)\n", "", (OPTIONS,)),
    Break("gradients zeroed before every micro-batch (accumulation keeps only the last)", TRAINER,
          "                backward(loss)\n",
          "                optimizer.zero_grad(set_to_none=True)\n                backward(loss)\n", (OPTIONS,)),
    Break("FGM/AWP attack never undone", TRAINER, "                    attack.restore()\n", "", (OPTIONS,)),
    Break("AWP starts one epoch late", TRAINER, "epoch >= cfg.awp_start_epoch", "epoch > cfg.awp_start_epoch",
          (OPTIONS,)),
    Break("EMA never updated", TRAINER, "                        ema.update()\n", "                        pass\n",
          (OPTIONS,)),
    Break("the OOF of the last validation recorded with the best weights", TRAINER,
          "time.monotonic() - started, best.pred,", "time.monotonic() - started, pred,", (OPTIONS,)),
    Break("the final live weights saved instead of the best state", TRAINER,
          "self._save_weights(fold, best.state)", "self._save_weights(fold, self._state(model))", (OPTIONS,)),
    Break("validation skips the loss link and post-processing", TRAINER,
          "pred = self.comp.postprocess(apply_link(self.loss_spec, torch.from_numpy(raw), self.targets).numpy())",
          "pred = raw",
          (OPTIONS,)),
    Break("--reinit-layers ignored by the trainer", TRAINER,
          "        reinit_top_layers(model, cfg.reinit_layers)\n", "", (OPTIONS,)),
    Break("--freeze-embeddings / --freeze-layers ignored by the trainer", TRAINER,
          "        freeze_bottom(model, cfg.freeze_embeddings, cfg.freeze_layers)\n", "", (OPTIONS,)),
    Break("training folds include the validation rows", "kaggle_kit/train/pipeline.py",
          "train_part = _fold_data(prep, prep.folds != fold, fit=True)",
          "train_part = _fold_data(prep, prep.folds >= 0, fit=True)",
          (LEARNING,)),
    Break("sorted batches written back in sorted order", "kaggle_kit/predict/inference.py",
          "out[rows] = torch.cat(outputs).cpu().numpy()", "out[np.sort(rows)] = torch.cat(outputs).cpu().numpy()",
          (PREDICT,)),
    Break("padding leaks into attention (mask of ones)", "kaggle_kit/data/batching.py",
          "attention_mask[row, : len(seq)] = 1", "attention_mask[row, :] = 1", (PREDICT,)),
    Break("post-processing skipped in predict_runs", "kaggle_kit/predict/inference.py",
          "preds = comp.postprocess(blended / used_weight)", "preds = blended / used_weight", (PREDICT,)),
    Break("ensemble weights ignored in predict_runs (equal blend)", "kaggle_kit/predict/inference.py",
          "weights = list(weights) if weights is not None else [1.0 / len(run_paths)] * len(run_paths)",
          "weights = [1.0 / len(run_paths)] * len(run_paths)", (PREDICT,)),
    Break("fitted ensemble weights minimise Pearson", "kaggle_kit/predict/ensemble.py",
          "sign = -1.0 if metric.greater_is_better else 1.0", "sign = 1.0", ("tests/kaggle_kit/predict",)),
    Break("folds leak groups (every row its own group)", "kaggle_kit/data/folds.py",
          "groups = df[group_column].astype(str).to_numpy()", "groups = np.arange(len(df))", (FOLDS,)),
    Break("grouped folds not stratified", "kaggle_kit/data/folds.py",
          "strata = np.searchsorted(levels, score) if len(levels) <= 20 else pd.qcut(score, n_bins, labels=False)",
          "strata = np.zeros(len(df), dtype=int)", (FOLDS,)),
    Break("deadline guard never stops", "kaggle_kit/ship/kaggle_runtime.py",
          "if elapsed + per_fold > self.budget_seconds:", "if False:", (RUNTIME,)),
    Break("deadline guard stops as soon as all folds would overrun", "kaggle_kit/ship/kaggle_runtime.py",
          "if elapsed + per_fold > self.budget_seconds:", "if projected > self.budget_seconds:", (RUNTIME,)),
    Break("deadline guard (called without fold_seconds) projects with the total fold time",
          "kaggle_kit/ship/kaggle_runtime.py", "else seconds / max(done, 1)", "else seconds", (RUNTIME,)),
    Break("deadline guard ignores the setup time", "kaggle_kit/ship/kaggle_runtime.py",
          "elapsed = self.clock() - self.started_at", "elapsed = seconds", (RUNTIME,)),
    Break("verify_files skips the sha256 check", "kaggle_kit/ship/kaggle_runtime.py",
          'if os.path.getsize(path) != expected["size"] or digest.hexdigest() != expected["sha256"]:',
          'if os.path.getsize(path) != expected["size"]:', (RUNTIME,)),
    Break("verify_files checks only the model weights", "kaggle_kit/ship/kaggle_runtime.py",
          "        path = os.path.join(dataset_dir, name)\n",
          '        path = os.path.join(dataset_dir, name)\n        if not name.endswith(".safetensors"):\n'
          "            continue\n", (RUNTIME,)),
    # ---- added with main's newer parts: plugins with fitted post-processors, ensembles files, GeM, LoRA ----
    Break("the run's fitted post-processor (thresholds, temperature) not applied by predict_runs",
          "kaggle_kit/predict/inference.py",
          "    return apply_record(comp.postprocessor, postprocess_state, preds, comp.schema.targets, where)\n",
          "    return preds\n", (PREDICT,)),
    Break("a multiclass output bias not started at the log class priors", "kaggle_kit/tasks/losses.py",
          '        elif spec.bias == "log_prior":\n', "        elif False:\n",
          ("tests/kaggle_kit/tasks/test_losses.py",)),
    Break("ensemble file's weights ignored when blending the OOF predictions (equal blend)",
          "kaggle_kit/predict/ensemble_file.py",
          "sum(output_weights(matrix[i], targets) * np.asarray(p, dtype=np.float64) for i, p in enumerate(preds))",
          "sum(np.asarray(p, dtype=np.float64) / len(preds) for p in preds)",
          ("tests/kaggle_kit/predict/test_ensemble_file.py",)),
    Break("GeM pooling is the plain mean (p fixed at 1)", "kaggle_kit/models/pooling.py",
          "        p = self.p.clamp(min=1.0)\n", "        p = torch.ones_like(self.p)\n", (POOLING,)),
    Break("LoRA adapters never trained (frozen with the base)", "kaggle_kit/models/lora.py",
          "    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)\n",
          "    model.requires_grad_(False)\n"
          "    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)\n",
          ("tests/kaggle_kit/models/test_lora.py",)),
    # ---- the winners' toolbox and scale-out ----
    Break("LSTM pooling skipped (the mean of the backbone's states)", "kaggle_kit/models/pooling.py",
          "        return self.mean(out, attention_mask).to(last_hidden.dtype)",
          "        return self.mean(last_hidden, attention_mask).to(last_hidden.dtype)", (POOLING,)),
    Break("LSTM runs over the padding (no packing by length)", "kaggle_kit/models/pooling.py",
          "lengths = attention_mask.sum(1).clamp(min=1).cpu()",
          "lengths = torch.full_like(attention_mask.sum(1), attention_mask.shape[1]).cpu()", (POOLING,)),
    Break("per-target ensemble weights averaged into one", "kaggle_kit/tasks/targets.py",
          "        return np.repeat(values, widths)", "        return np.full(sum(widths), float(values.mean()))",
          ("tests/kaggle_kit/predict", "tests/kaggle_kit/tasks")),
    Break("pseudo rows: every fold trains on the blended teacher labels", "kaggle_kit/train/pseudo.py",
          "y = self.per_fold.get(fold, self.blend) if fold is not None else self.blend", "y = self.blend",
          (PSEUDO,)),
    Break("pseudo rows that are labelled rows kept", "kaggle_kit/train/pseudo.py",
          "keep = np.array([tuple(x) not in labelled and str(i) not in labelled_ids",
          "keep = np.array([True", (PSEUDO,)),
    Break("pseudo rows never join training", TRAINER,
          "pseudo_lengths = [len(x) for x in pseudo.ids] if pseudo is not None else []", "pseudo_lengths = []",
          (PSEUDO,)),
    Break("distillation ignores the teacher (weight 0)", "kaggle_kit/train/pseudo.py",
          "    w = cfg.distill_weight\n", "    w = 0.0\n", (PSEUDO,)),
    Break("full-train model trains its whole schedule instead of the folds' median best step",
          "kaggle_kit/train/pipeline.py", 'fractions.append(record["best_step"] / total)', "fractions.append(1.0)",
          ("tests/kaggle_kit/train/test_seeds_full_train.py",)),
    Break("sliding windows: the last window does not reach the row's end", "kaggle_kit/models/model.py",
          "[*range(0, n - length, stride), n - length]", "[*range(0, n - length, stride)]", (WINDOWS,)),
    Break("sliding windows: overlapping token states summed, not averaged", "kaggle_kit/models/model.py",
          "stitched.append(merged / count.clamp(min=1))", "stitched.append(merged)", (WINDOWS,)),
    Break("--quantize int8 leaves the model in fp32", "kaggle_kit/predict/quantize.py",
          "model.backbone = quantize_dynamic(model.backbone, {nn.Linear}, dtype=torch.qint8)",
          "model.backbone = model.backbone", ("tests/kaggle_kit/predict/test_parallel.py",)),
    Break("fp32 CPU folds load on nn.Linear: oneDNN packing never applied", "kaggle_kit/predict/inference.py",
          "        pack_for_cpu(model)\n", "        pass\n", (PACKING,)),
    Break("merged LoRA folds left on nn.Linear (not packed)", "kaggle_kit/predict/inference.py",
          'device.type == "cpu" and (adapters is None or merge):', 'device.type == "cpu" and adapters is None:',
          (PACKING,)),
    Break("oneDNN packing: the feed-forward's GELU never fused", "kaggle_kit/predict/cpu_packing.py",
          'gelu = gelu_algorithm(getattr(parent, "intermediate_act_fn", None)) if name == "dense" else None',
          "gelu = None", (PACKING,)),
    Break("oneDNN packing: a kernel that disagrees with nn.Linear is swapped in anyway",
          "kaggle_kit/predict/cpu_packing.py", "        if not right:", "        if False:", (PACKING,)),
    Break("kit predict imports torch and pandas with the collector running", "kaggle_kit/cli/predict.py",
          "    with frozen_imports():  # torch and pandas", "    if True:  # torch and pandas",
          (STARTUP,)),
    Break("the model code imported with the collector running", "kaggle_kit/models/model.py",
          "    import_model_code(config)\n", "", (STARTUP,)),
    Break("frozen imports freeze nothing", "kaggle_kit/startup.py", "            gc.freeze()\n", "            pass\n",
          (STARTUP,)),
    Break("frozen imports freeze their own cyclic garbage (and the frames it reaches)", "kaggle_kit/startup.py",
          "            gc.collect(0)  # garbage first", "            pass  # garbage first", (STARTUP,)),
    Break("data parallel: every rank takes rank 0's rows", "kaggle_kit/data/loader.py",
          "mine = rows[rank::world_size]", "mine = rows[0::world_size]", (DISTRIBUTED, LOADER)),
    Break("data parallel: uneven shards weighted as even ones", "kaggle_kit/data/loader.py",
          "scale * len(mine) * world_size / len(rows), pseudo)", "scale, pseudo)", (DISTRIBUTED, LOADER)),
    Break("data-parallel validation: every rank predicts rank 0's rows", "kaggle_kit/train/distributed.py",
          "return order[dist.rank::dist.world_size]", "return order[::dist.world_size]", (DISTRIBUTED,)),
    Break("--tail-tokens ignored when building a run's inputs (plain truncation)", "kaggle_kit/predict/inference.py",
          "cfg.max_len, tail_tokens=tail, cut=cut)", "cfg.max_len, cut=cut)",
          ("tests/kaggle_kit/data/test_batching.py",)),
    Break("predict_runs gives the deadline guard the total fold time, not the mean", "kaggle_kit/predict/inference.py",
          "fold_seconds = float(np.mean(list(report.seconds.values())))",
          "fold_seconds = float(np.sum(list(report.seconds.values())))", (PREDICT,)),
    Break("head+tail truncation keeps the head only", "kaggle_kit/data/batching.py",
          "x[:head] + x[-tail_tokens:]", "x[:max_len]", ("tests/kaggle_kit/data/test_batching.py",)),
]


def working_tree_files(repo: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                         check=True, capture_output=True).stdout.decode()
    return [name for name in out.split("\0") if name and (repo / name).is_file()]


def copy_tree(repo: Path, dest: Path) -> None:
    for name in working_tree_files(repo):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, target)


def pytest_env() -> dict[str, str]:
    """No PYTHONPATH: pytest (run from the copy, whose tests/ is a package) puts the copy first on sys.path, so
    the kit and the plugins import from it; PYTHONPATH would also leak into the subprocesses some tests start
    (the simulated Kaggle kernel must not see the kit), and the unbroken suite would fail."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "TQDM_DISABLE": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def check_imports_come_from(copy: Path) -> None:
    code = "import kaggle_kit, competitions, tests; print(kaggle_kit.__file__, competitions.__file__, tests.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=copy, env=pytest_env(), capture_output=True,
                         text=True, check=True).stdout.split()
    stray = [path for path in out if not Path(path).resolve().is_relative_to(copy.resolve())]
    if stray:
        sys.exit(f"the copy's packages are shadowed by {stray}: run this with the project's venv python")


def run_pytest(copy: Path, tests: tuple[str, ...]) -> tuple[str, str, float]:
    """(outcome, detail, seconds): outcome is 'pass', 'fail' (detail: the first failing test) or 'error'."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=copy, env=pytest_env(), capture_output=True, text=True)
    seconds = time.monotonic() - start
    if proc.returncode == 0:
        return "pass", "", seconds
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, flags=re.MULTILINE)
    if proc.returncode == 1 and failed:
        return "fail", failed[0], seconds
    last_lines = (proc.stdout + proc.stderr).strip().splitlines()[-1:]
    return "error", f"exit {proc.returncode}: {' '.join(last_lines)}", seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("numbers", nargs="*", type=int, help="breaks to try (1-based, see --list) [default: all]")
    parser.add_argument("--full", action="store_true", help="run the whole suite for each break")
    parser.add_argument("--list", action="store_true", help="list the breaks and exit")
    parser.add_argument("--no-baseline", action="store_true", help="skip checking that the unbroken tests pass")
    args = parser.parse_args()
    if args.list:
        for number, brk in enumerate(BREAKS, start=1):
            print(f"{number:3d}  {brk.name}  ({brk.path}; {', '.join(brk.tests)})")
        return 0
    chosen = [(n, BREAKS[n - 1]) for n in (args.numbers or range(1, len(BREAKS) + 1))]
    # a `kill` cleans up like Ctrl-C: the running pytest is stopped and the temporary copy removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    status_before = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout

    rows = []
    with tempfile.TemporaryDirectory(prefix="kit-mutation-") as tmp:
        copy = Path(tmp) / REPO.name
        copy_tree(REPO, copy)
        shared = REPO.parent / "shared"
        if shared.is_dir():  # the tests find the real data at ../shared/data
            (Path(tmp) / "shared").symlink_to(shared, target_is_directory=True)
        check_imports_come_from(copy)
        if not args.no_baseline:
            suite = () if args.full else tuple(sorted({t for _, brk in chosen for t in brk.tests}))
            outcome, detail, seconds = run_pytest(copy, suite)
            print(f"baseline ({' '.join(suite) or 'whole suite'}): {outcome} {detail} ({seconds:.0f} s)", flush=True)
            if outcome != "pass":
                print("the unbroken tests do not pass: fix that first", file=sys.stderr)
                return 2
        for number, brk in chosen:
            target = copy / brk.path
            original = target.read_text(encoding="utf-8")
            if original.count(brk.old) != 1:
                rows.append((number, brk.name, "STALE", f"patch text found {original.count(brk.old)} times", 0.0))
                print(f"{number:3d} STALE  {brk.name}", flush=True)
                continue
            target.write_text(original.replace(brk.old, brk.new), encoding="utf-8")
            try:
                outcome, detail, seconds = run_pytest(copy, () if args.full else brk.tests)
            finally:
                target.write_text(original, encoding="utf-8")
            verdict = {"fail": "caught", "pass": "MISSED", "error": "ERROR"}[outcome]
            rows.append((number, brk.name, verdict, detail, seconds))
            print(f"{number:3d} {verdict:6s} {brk.name}: {detail} ({seconds:.0f} s)", flush=True)

    status_after = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
    if status_after != status_before:
        print("warning: the checkout's git status changed while this ran (another process?)", file=sys.stderr)
    print("\n| # | break | result | first failing test | s |\n| --- | --- | --- | --- | --- |")
    for number, name, verdict, detail, seconds in rows:
        print(f"| {number} | {name} | {verdict} | {detail.replace('|', '/')} | {seconds:.0f} |")
    return 0 if all(verdict == "caught" for _, _, verdict, _, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
