"""`kit predict` as a whole process against the reference notebook's inference loop, phase by phase.

Both predict the same essays with the same fold model of a run, each in a fresh process timed from its start to its
exit: the kit as `kit predict` (in fp32; with --unpacked also in fp32 on torch's nn.Linear instead of oneDNN's
packed kernels, "kit-plain"; with --int8 also in int8; with --unfrozen also with the garbage collector running
through the kit's imports, "kit-unfrozen"), the loop as the seed notebook does it (tokenise whole
essays, build the model and load the fold's weights, pad every essay to max_len, batches of --seed-batch-size in
file order, fp32; the batches are throughput.py's `plain_batches`). The variants run interleaved, in a rotating
order, --repeats times; the medians and their ratio are printed with the load average before and after (on a shared
machine read the ratio, not the seconds), and a table of each phase's share: start-up (interpreter, imports, plugin
lookup, reading the CSV), tokenisation (tokenizer load included), model load, batches, and the rest (writing the
submission, exit). A third child, "imports", only imports what any prediction with a Hugging Face model must
(torch, pandas, transformers' tokenizer and the run's model code, with the kit's paused collector) and exits: its
time is the fixed-cost floor, and the line under each table says what the kit could reach with its batches as
measured and nothing but that floor around them.

    python benchmarks/predict_profile.py --run runs/ell/RUN256 --run runs/ell/RUN512 [--essays 400] [--int8]
        [--unpacked] [--unfrozen]

The ratio is printed for wall time and for CPU time (user + system of the child; on a busy machine threads that
wait for each other inflate both: `--threads 1` gives every variant one thread).

A run to profile: `kit train ell --data ../shared/data/ell --preset quick --max-train-samples 160 --folds 2
--train-folds 0 --max-len 256 --out runs/ell/quick256` (and --max-len 512); the essays are sampled from train.csv.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PHASES = ("start-up", "tokenisation", "model load", "batches", "writing, exit")


class PhaseClock:
    """Wall-clock marks in a child process, measured from the moment the parent started it."""

    def __init__(self, spawned: float):
        self.spawned = spawned
        self.spans: dict[str, list[float]] = {}

    def wrap(self, phase: str, fn):
        def timed(*args, **kwargs):
            with self.span(phase):
                return fn(*args, **kwargs)

        return timed

    @contextlib.contextmanager
    def span(self, phase: str):
        start = time.time()
        try:
            yield
        finally:
            self.add(phase, start)

    def add(self, phase: str, start: float) -> None:
        first, seconds = self.spans.get(phase, [start, 0.0])
        self.spans[phase] = [min(first, start), seconds + time.time() - start]

    def write(self, path: str) -> None:
        Path(path).write_text(json.dumps({"spawned": self.spawned, "spans": self.spans, "exit": time.time()}))


def kit_child(args) -> None:
    """`kit predict` in this process, with the prediction code's phases timed through its module functions."""
    clock = PhaseClock(args.spawned)
    from kaggle_kit import startup

    if args.child == "kit-unfrozen":
        startup.frozen_imports = contextlib.nullcontext
    with startup.frozen_imports():  # as `kit predict` imports it (cli/predict.py)
        from kaggle_kit.predict import inference

    for name, phase in (("load_tokenizer", "tokenisation"), ("build_model_inputs", "tokenisation"),
                        ("load_fold_model", "model load"), ("infer", "batches")):
        setattr(inference, name, clock.wrap(phase, getattr(inference, name)))
    if args.child == "kit-plain":
        from kaggle_kit.predict import cpu_packing

        cpu_packing.pack_for_cpu = lambda model: 0
    from kaggle_kit.cli import main

    sys.argv = ["kit", "predict", "ell", "--run", args.run, "--input", args.input, "--output", args.output,
                "--device", "cpu", *(["--quantize", "int8"] if args.child == "int8" else [])]
    try:
        main()
    finally:
        clock.write(args.phases)


def seed_child(args) -> None:
    """The seed notebook's inference: whole-essay tokenisation, a model built then loaded, every essay padded to
    max_len, file order, fp32."""
    clock = PhaseClock(args.spawned)
    import pandas as pd
    import torch
    from safetensors.torch import load_file
    from throughput import plain_batches
    from transformers import AutoTokenizer

    from kaggle_kit.data.batching import collate
    from kaggle_kit.models.model import build_model, load_backbone_config
    from kaggle_kit.runs.folder import RunDir

    run = RunDir(Path(args.run))
    cfg = json.loads((run.path / "run_config.json").read_text())
    df = pd.read_csv(args.input)
    with clock.span("tokenisation"):
        tokenizer = AutoTokenizer.from_pretrained(str(run.tokenizer))
        ids = tokenizer(df["full_text"].tolist(), truncation=True, max_length=cfg["max_len"])["input_ids"]
    with clock.span("model load"):
        config = load_backbone_config(run.backbone, 0.0)
        # the notebook's AutoModel imports the model code with the collector running (the kit's build pauses it)
        from transformers.models.auto.modeling_auto import MODEL_MAPPING

        MODEL_MAPPING[type(config)]
        model = build_model(config, 6, cfg["pooling"], cfg["pooling_layers"])
        model.load_state_dict(load_file(str(run.weights(0))))
        model.eval()
    outputs = []
    with clock.span("batches"), torch.inference_mode():
        for rows in plain_batches(len(ids), args.seed_batch_size, train=False):
            batch = collate([ids[i] for i in rows], tokenizer.pad_token_id or 0, cfg["max_len"])
            outputs.append(model(**batch).float())
    preds = np.clip(torch.cat(outputs).numpy(), 1.0, 5.0)
    columns = ["cohesion", "syntax", "vocabulary", "phraseology", "grammar", "conventions"]
    pd.concat([df[["text_id"]], pd.DataFrame(preds, columns=columns)], axis=1).to_csv(args.output, index=False)
    clock.write(args.phases)


def imports_child(args) -> None:
    """Nothing but the imports every prediction with this run's model pays, timed one by one (the model code as the
    kit imports it before a build)."""
    clock = PhaseClock(args.spawned)
    from kaggle_kit.startup import frozen_imports

    with clock.span("torch, pandas"), frozen_imports():
        import pandas  # noqa: F401 - the import is what is timed
        import torch  # noqa: F401
    from kaggle_kit.models.model import import_model_code, load_backbone_config
    from kaggle_kit.runs.folder import RunDir

    with clock.span("transformers' tokenizer"), frozen_imports():
        from transformers import AutoTokenizer  # noqa: F401
    with clock.span("model code"):
        import_model_code(load_backbone_config(RunDir(Path(args.run)).backbone, None))
    clock.write(args.phases)


def run_child(variant: str, run: str, test_csv: Path, out: Path, seed_batch_size: int, threads: int | None = None
              ) -> dict:
    phases = out / f"{variant}.json"
    output = out / f"{variant}.csv"
    spawned = time.time()
    command = [sys.executable, __file__, "--child", variant, "--spawned", repr(spawned), "--run", run,
               "--input", str(test_csv), "--output", str(output), "--phases", str(phases),
               "--seed-batch-size", str(seed_batch_size)]
    env = {**os.environ, "TQDM_DISABLE": "1", **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    total = time.time() - spawned
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime
    record = json.loads(phases.read_text())
    spans = record["spans"]
    if variant == "imports":
        return {"total": total, "cpu": cpu, "phases": {phase: seconds for phase, (_, seconds) in spans.items()}}
    first = min(start for start, _ in spans.values()) if spans else record["exit"]
    shares = {"start-up": first - spawned, **{p: spans[p][1] for p in PHASES[1:4] if p in spans}}
    shares["writing, exit"] = total - sum(shares.values())
    return {"total": total, "cpu": cpu, "phases": shares, "output": output}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="an ELL run folder (repeat: one per max_len)")
    parser.add_argument("--data", default="../shared/data/ell", help="ELL folder with train.csv")
    parser.add_argument("--essays", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--seed-batch-size", type=int, default=8)
    parser.add_argument("--int8", action="store_true", help="also time `kit predict --quantize int8`")
    parser.add_argument("--unpacked", action="store_true",
                        help="also time `kit predict` in fp32 on torch's nn.Linear (kit-plain) instead of oneDNN's "
                             "packed kernels (predict/cpu_packing.py): what the packing wins")
    parser.add_argument("--unfrozen", action="store_true",
                        help="also time `kit predict` with the garbage collector running through its imports "
                             "(kit-unfrozen; kaggle_kit/startup.py): what pausing and freezing it wins")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of every variant (OMP_NUM_THREADS) [default: all cores]; on a loaded "
                             "machine 1 keeps the ratio from measuring how threads wait for each other")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--spawned", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--input", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--phases", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.run = args.run[0]
        {"seed": seed_child, "imports": imports_child}.get(args.child, kit_child)(args)
        return

    import pandas as pd

    variants = ["seed", "kit", *(["kit-plain"] if args.unpacked else []), *(["int8"] if args.int8 else []),
                *(["kit-unfrozen"] if args.unfrozen else [])]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        test_csv = Path(tmp) / "test.csv"
        train = pd.read_csv(Path(args.data) / "train.csv")
        train.sample(n=args.essays, random_state=0)[["text_id", "full_text"]].to_csv(test_csv, index=False)
        results = []
        for run in args.run:
            max_len = json.loads((Path(run) / "run_config.json").read_text())["max_len"]
            timings: dict[str, list[dict]] = {v: [] for v in [*variants, "imports"]}
            for repeat in range(args.repeats):
                shift = repeat % len(variants)
                for variant in variants[shift:] + variants[:shift] + ["imports"]:
                    timings[variant].append(run_child(variant, run, test_csv, Path(tmp), args.seed_batch_size,
                                                      args.threads))
                    print(f"max_len {max_len} round {repeat + 1} {variant}: {timings[variant][-1]['total']:.1f} s, "
                          f"CPU {timings[variant][-1]['cpu']:.1f} s (load {os.getloadavg()[0]:.1f})", flush=True)
            diff = (pd.read_csv(timings["kit"][-1]["output"]).iloc[:, 1:].to_numpy()
                    - pd.read_csv(timings["seed"][-1]["output"]).iloc[:, 1:].to_numpy())
            results.append((max_len, timings, float(np.abs(diff).max())))
    load_after = os.getloadavg()

    print(f"\n{args.essays} ELL essays, {args.repeats} interleaved rounds, medians; load average (1/5/15 min) "
          f"{'/'.join(f'{x:.1f}' for x in load_before)} before, {'/'.join(f'{x:.1f}' for x in load_after)} after, "
          f"{os.cpu_count()} CPUs, {args.threads or 'all'} thread(s) per process")
    for max_len, timings, diff in results:
        median = {v: float(np.median([t["total"] for t in ts])) for v, ts in timings.items()}
        ratios = ", ".join(f"{v} {median['seed'] / median[v]:.2f}x" for v in variants[1:])
        floor = timings.pop("imports")
        cpu = {v: float(np.median([t["cpu"] for t in ts])) for v, ts in timings.items()}
        cpu_ratios = ", ".join(f"{v} {cpu['seed'] / cpu[v]:.2f}x" for v in variants[1:])
        print(f"\nmax_len {max_len}: seed loop {median['seed']:.1f} s, "
              + ", ".join(f"{v} {median[v]:.1f} s" for v in variants[1:])
              + f"; whole process vs the seed loop: {ratios} (CPU time: seed {cpu['seed']:.1f} s, {cpu_ratios}); "
              f"max |kit - seed| prediction {diff:.2g}")
        width = {v: max(12, len(v) + 4) for v in variants}
        print(f"{'phase':<16}" + "".join(f"{v + ' s':>{width[v]}}{'share':>8}" for v in variants))
        for phase in PHASES:
            cells = ""
            for v in variants:
                seconds = float(np.median([t["phases"].get(phase, 0.0) for t in timings[v]]))
                cells += f"{seconds:>{width[v]}.1f}{seconds / median[v]:>8.0%}"
            print(f"{phase:<16}{cells}")
        parts = {p: float(np.median([t["phases"][p] for t in floor])) for p in floor[0]["phases"]}
        batches = float(np.median([t["phases"].get("batches", 0.0) for t in timings["kit"]]))
        reach = median["seed"] / (median["imports"] + batches)
        print(f"fixed-cost floor: a process that only imports takes {median['imports']:.1f} s ("
              + ", ".join(f"{p} {s:.1f} s" for p, s in parts.items())
              + f"); the kit's batches ({batches:.1f} s) with that floor alone around them: {reach:.2f}x the seed "
              f"loop (the kit: {median['seed'] / median['kit']:.2f}x)")


if __name__ == "__main__":
    main()
