"""Scale-out throughput: training samples/s in 1 vs N data-parallel processes, inference with 1 vs N devices, and
the time to load a fold model with and without random initialisation first. Prints ratios; repeat with
--repeats and read the spread (min / median / max), the machine may be shared.

Training runs the kit's own FoldTrainer.fit in each process (DDP over gloo on CPU, NCCL on GPUs), the same global
batch either way: 1 process x batch B*N vs N processes x batch B. Inference runs predict_runs on a run folder made
from the model (2 folds), 1 device vs every device (GPUs: all visible ones; CPU: N processes sharing the cores).

    python benchmarks/scale_out.py --data ../shared/data/ell [--model DIR] [--device cpu|cuda] [--processes 2]
    python benchmarks/scale_out.py --device cuda --precision fp16     # the lead's GPU run (bf16: --precision bf16)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_worker(rank: int, world: int, port: int, args, queue) -> None:
    """One process of the training measurement: the kit's fold loop on `args.train_samples` essays."""
    from kaggle_kit.config import TrainConfig
    from kaggle_kit.data.batching import tokenize
    from kaggle_kit.data.load import load_train
    from kaggle_kit.models.model import default_model_path, load_backbone_config
    from kaggle_kit.predict.inference import load_tokenizer
    from kaggle_kit.registry import get_competition
    from kaggle_kit.runs.folder import RunDir
    from kaggle_kit.train.distributed import Dist
    from kaggle_kit.train.trainer import FoldData, FoldTrainer

    threads = max(1, args.threads // world) if args.device == "cpu" else 1
    torch.set_num_threads(threads)
    device = torch.device(args.device if args.device == "cpu" else f"cuda:{rank}")
    dist = Dist(rank, world, rank)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank,
                                             world_size=world)
    comp = get_competition("ell")
    model_path = Path(args.model) if args.model else default_model_path()
    df = load_train(comp, Path(args.data)).sample(n=args.train_samples + 8, random_state=0).reset_index(drop=True)
    ids = tokenize(load_tokenizer(model_path), df["full_text"].tolist(), args.max_len)
    y = df[comp.schema.target_names].to_numpy(np.float32)
    train = FoldData(ids[:-8], y[:-8], np.arange(len(ids) - 8))
    valid = FoldData(ids[-8:], y[-8:], np.arange(8))
    cfg = TrainConfig(batch_size=args.batch_size * args.processes // world, epochs=1, max_len=args.max_len,
                      eval_every=1, precision=args.precision, loss="rmse", world_size=world, fgm_eps=args.fgm)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = FoldTrainer(cfg, comp, load_backbone_config(model_path, 0.0), model_path, 0, device,
                              RunDir(Path(tmp)), dist=dist)
        started = time.perf_counter()
        trainer.build(train.y)  # what fit() spends before its first step, measured apart and taken off
        build_seconds = time.perf_counter() - started
        started = time.perf_counter()
        trainer.fit(0, train, valid)
        seconds = time.perf_counter() - started - build_seconds
    if world > 1:
        torch.distributed.destroy_process_group()
    if rank == 0:
        queue.put({"processes": world, "samples_per_s": len(train.ids) / seconds, "seconds": seconds})


def measure_training(args, world: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    processes = [ctx.Process(target=_train_worker, args=(rank, world, port, args, queue)) for rank in range(world)]
    for p in processes:
        p.start()
    result = queue.get()
    for p in processes:
        p.join()
    return result


def make_run(model_path: Path, folder: Path, folds: int = 2) -> Path:
    """A run folder predict_runs accepts, with `folds` copies of the model plus a random head (no training)."""
    from safetensors.torch import save_file

    from kaggle_kit.config import TrainConfig
    from kaggle_kit.fileio import write_json
    from kaggle_kit.models.model import build_model, load_backbone_config
    from kaggle_kit.predict.inference import load_tokenizer

    config = load_backbone_config(model_path, 0.0)
    write_json(folder / "run_config.json", TrainConfig(loss="rmse", input_format="essay", precision="fp32",
                                                       pooling="mean").to_dict())
    config.save_pretrained(str(folder / "backbone"))
    load_tokenizer(model_path).save_pretrained(str(folder / "tokenizer"))
    torch.manual_seed(0)
    model = build_model(config, 6, "mean", weights_from=model_path)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    for fold in range(folds):
        save_file(state, str(folder / f"fold{fold}.safetensors"))
    return folder


def measure_inference(args, run: Path, slots: int) -> dict:
    import pandas as pd

    from kaggle_kit.data.load import load_train
    from kaggle_kit.predict.inference import PredictionReport, predict_runs
    from kaggle_kit.registry import get_competition

    comp = get_competition("ell")
    df = load_train(comp, Path(args.data)).sample(n=args.infer_samples, random_state=0).reset_index(drop=True)
    df = pd.DataFrame({"text_id": df["text_id"], "full_text": df["full_text"]})
    report = PredictionReport()
    device = "cpu" if args.device == "cpu" else "cuda"
    started = time.perf_counter()
    preds = predict_runs(comp, df, [run], device=device, folds=[list(range(args.folds))], report=report,
                         workers=slots if device == "cpu" else None,
                         devices=list(range(slots)) if device == "cuda" else None)
    seconds = time.perf_counter() - started
    return {"devices": slots, "samples_per_s": len(df) * args.folds / seconds, "seconds": seconds, "preds": preds}


def measure_load(run: Path, repeats: int) -> dict:
    """Seconds to get fold 0 ready: random init then load (before) vs meta device then assign (now)."""
    from safetensors.torch import load_file

    from kaggle_kit.models.model import build_model, load_backbone_config
    from kaggle_kit.predict.inference import load_fold_model
    from kaggle_kit.runs.folder import RunDir

    r = RunDir(run)
    cfg = r.load_config()
    cpu = torch.device("cpu")
    load_fold_model(r, cfg, 6, 0, cpu)  # imports and file cache warm for both
    before, now = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        model = build_model(load_backbone_config(r.backbone, 0.0), 6, cfg.pooling)
        model.load_state_dict(load_file(str(r.weights(0))))
        before.append(time.perf_counter() - started)
        started = time.perf_counter()
        load_fold_model(r, cfg, 6, 0, cpu)
        now.append(time.perf_counter() - started)
    return {"random_init_then_load": before, "meta_then_assign": now}


def spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/ell")
    parser.add_argument("--model", default=None, help="HF model folder [default: embedded all-MiniLM-L6-v2]")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--processes", type=int, default=None,
                        help="processes / devices to compare with 1 [default: 2 on CPU, every GPU on CUDA]")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads in all")
    parser.add_argument("--max-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4, help="per process with --processes; global = x N")
    parser.add_argument("--train-samples", type=int, default=64)
    parser.add_argument("--infer-samples", type=int, default=128)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--precision", default="fp32", help="fp32, or fp16 (grad scaler) / bf16 on CUDA")
    parser.add_argument("--fgm", type=float, default=0.0, help="FGM eps during training (0 = off)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma list of train,infer,load to skip")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    n = args.processes or (torch.cuda.device_count() if args.device != "cpu" else 2)
    args.processes = n
    skip = set(args.skip.split(",")) - {""}
    results: dict = {"args": vars(args)}
    model_path = Path(args.model) if args.model else None
    if model_path is None:
        from kaggle_kit.models.model import default_model_path

        model_path = default_model_path()

    if "train" not in skip:
        rows = []
        for _ in range(args.repeats):
            one, many = measure_training(args, 1), measure_training(args, n)
            rows.append((one["samples_per_s"], many["samples_per_s"]))
            print(f"train: 1 process {one['samples_per_s']:.2f} samples/s, {n} processes "
                  f"{many['samples_per_s']:.2f} samples/s, ratio {many['samples_per_s'] / one['samples_per_s']:.2f}x",
                  flush=True)
        results["train"] = rows
    tmp = Path(tempfile.mkdtemp(prefix="kit-bench-run-"))
    try:
        run = make_run(model_path, tmp / "run", args.folds)
        if "infer" not in skip:
            rows = []
            for _ in range(args.repeats):
                one, many = measure_inference(args, run, 1), measure_inference(args, run, n)
                diff = float(np.abs(one["preds"] - many["preds"]).max())
                rows.append((one["samples_per_s"], many["samples_per_s"], diff))
                ratio = many["samples_per_s"] / one["samples_per_s"]
                print(f"infer: 1 device {one['samples_per_s']:.2f} samples/s, {n} devices "
                      f"{many['samples_per_s']:.2f} samples/s, ratio {ratio:.2f}x, max |difference| {diff:.1e}",
                      flush=True)
            results["infer"] = rows
        if "load" not in skip:
            load = measure_load(run, args.repeats)
            results["load"] = load
            print(f"load fold model: random init + load {spread(load['random_init_then_load'])} s, meta + assign "
                  f"{spread(load['meta_then_assign'])} s (min / median / max)", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    name = model_path.parent.name if model_path.name == "model" else model_path.name
    print(f"\nmodel={name} device={args.device} processes/devices={n} threads={args.threads} max_len={args.max_len} "
          f"batch={args.batch_size}x{n} precision={args.precision} repeats={args.repeats}")
    if "train" in results:
        ratios = [b / a for a, b in results["train"]]
        print(f"training samples/s, {n} processes / 1 process: {spread(ratios)} (min / median / max)")
    if "infer" in results:
        ratios = [b / a for a, b, _ in results["infer"]]
        print(f"inference samples/s, {n} devices / 1 device: {spread(ratios)}; max |difference| "
              f"{max(d for _, _, d in results['infer']):.1e}")
    if "load" in results:
        ratio = statistics.median(results["load"]["random_init_then_load"]) / statistics.median(
            results["load"]["meta_then_assign"])
        print(f"fold model load, random init + load / meta + assign: {ratio:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
