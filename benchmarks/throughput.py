"""Training and inference throughput of kaggle-kit against the reference notebook's plain loop.

The plain loop pads every batch to max_len, takes batches in random order and steps a default AdamW;
the kit tokenises once, pads each batch to its longest member, groups similar lengths (bucketed for
training, sorted for inference) and steps its own optimizer (fused AdamW over the LLRD groups). Same
model, data, batch size and max_len; each variant runs in a fresh process so its peak RSS is its own.
Prints samples/s and the kit/plain ratios.

    python benchmarks/throughput.py --data ../shared/data/ell [--model DIR] [--max-len 512]
    python benchmarks/throughput.py --phases infer --quantize int8     # the kit's CPU inference in int8
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path

import numpy as np
import torch


def _setup(args):
    from kaggle_kit.data.load import load_train
    from kaggle_kit.models.model import build_model, default_model_path, load_backbone_config
    from kaggle_kit.predict.inference import load_tokenizer
    from kaggle_kit.registry import get_competition

    torch.manual_seed(0)
    comp = get_competition("ell")
    model_path = Path(args.model) if args.model else default_model_path()
    n = args.train_samples if args.phase == "train" else args.infer_samples
    df = load_train(comp, Path(args.data)).sample(n=n, random_state=0).reset_index(drop=True)
    tokenizer = load_tokenizer(model_path)
    model = build_model(load_backbone_config(model_path, 0.0), comp.n_outputs, "mean", weights_from=model_path)
    y = torch.as_tensor(df[comp.schema.target_names].to_numpy(np.float32))
    device = torch.device(args.device)
    return comp, df, tokenizer, model.to(device), y, device


def _batches(args, ids, train: bool):
    from kaggle_kit.data.batching import bucketed_batches, sorted_batches

    if args.variant == "kit":
        lengths = [len(x) for x in ids]
        if train:
            return bucketed_batches(lengths, args.batch_size, np.random.default_rng(0))
        return sorted_batches(lengths, args.eval_batch_size)
    size = args.batch_size if train else args.eval_batch_size
    order = np.random.default_rng(0).permutation(len(ids)) if train else np.arange(len(ids))
    return [order[i:i + size] for i in range(0, len(order), size)]


def _amp(args, device):
    from kaggle_kit.device import amp_dtype, autocast

    dtype = amp_dtype(args.precision, device)
    return lambda: autocast(device, dtype)


def measure(args, queue) -> None:
    """Runs in a child process: time one variant, report samples/s and peak RSS."""
    from kaggle_kit.data.batching import collate, tokenize

    comp, df, tokenizer, model, y, device = _setup(args)
    texts = df["full_text"].tolist()
    ids = tokenize(tokenizer, texts, args.max_len)
    pad_to = None if args.variant == "kit" else args.max_len
    amp = _amp(args, device)
    pad_id = tokenizer.pad_token_id or 0

    def run_batch(batch_idx, train: bool):
        batch = {k: v.to(device) for k, v in collate([ids[i] for i in batch_idx], pad_id, pad_to).items()}
        with amp():
            out = model(**batch)
        if train:
            loss = torch.nn.functional.mse_loss(out.float(), y[batch_idx].to(device))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return out

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    train = args.phase == "train"
    optimizer = None
    if train and args.variant == "kit":
        from kaggle_kit.config import TrainConfig
        from kaggle_kit.train.trainer import make_optimizer

        optimizer = make_optimizer(model, TrainConfig(lr=1e-5, head_lr=1e-5))
    elif train:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train(train)
    if not train and args.variant == "kit" and args.quantize:
        from kaggle_kit.predict.quantize import quantize_model

        model = quantize_model(model, args.quantize)
    batches = _batches(args, ids, train=train)
    with torch.inference_mode(not train):
        run_batch(batches[0], train)
        sync()
        start = time.perf_counter()
        for batch_idx in batches:
            run_batch(batch_idx, train)
        sync()
        seconds = time.perf_counter() - start
    result = {"variant": args.variant}
    real_tokens = sum(len(x) for x in ids)
    padded_tokens = sum(len(b) * (pad_to or max(len(ids[i]) for i in b)) for b in batches)
    result.update(samples_per_s=len(ids) / seconds, seconds=seconds, padded_tokens=padded_tokens,
                  real_tokens=real_tokens, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if device.type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    queue.put(result)


def run_variant(args, phase: str, variant: str) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child_args = argparse.Namespace(**{**vars(args), "phase": phase, "variant": variant})
    process = ctx.Process(target=measure, args=(child_args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/ell", help="ELL folder with train.csv")
    parser.add_argument("--model", default=None, help="HF model folder [default: embedded all-MiniLM-L6-v2]")
    parser.add_argument("--max-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-batch-size", type=int, default=32)
    parser.add_argument("--train-samples", type=int, default=128, help="essays per training measurement")
    parser.add_argument("--infer-samples", type=int, default=512, help="essays per inference measurement")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="fp32", help="fp32, or fp16/bf16 on CUDA (both variants)")
    parser.add_argument("--plain-precision", default=None, help="precision of the plain loop [default: --precision]")
    parser.add_argument("--quantize", default=None, help="int8: the kit's inference with int8 dynamic quantisation "
                                                         "(CPU; the plain loop stays fp32)")
    parser.add_argument("--phases", default="train,infer", help="comma list: train, infer")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    rows = []
    for phase in args.phases.split(","):
        kit = run_variant(args, phase, "kit")
        plain_args = argparse.Namespace(**{**vars(args), "precision": args.plain_precision or args.precision})
        plain = run_variant(plain_args, phase, "plain")
        rows.append((phase, kit, plain))

    print(f"\nmodel={args.model or 'all-MiniLM-L6-v2 (embedded)'} device={args.device} max_len={args.max_len} "
          f"batch={args.batch_size}/{args.eval_batch_size} samples={args.train_samples}/{args.infer_samples} "
          f"precision kit={args.precision}{' + ' + args.quantize if args.quantize else ''} "
          f"plain={args.plain_precision or args.precision} threads={torch.get_num_threads()}")
    print(f"{'phase':<7}{'plain samples/s':>17}{'kit samples/s':>15}{'ratio':>8}{'padded tokens kit/plain':>26}"
          f"{'peak RSS MB plain/kit':>24}")
    for phase, kit, plain in rows:
        ratio = kit["samples_per_s"] / plain["samples_per_s"]
        tokens = kit["padded_tokens"] / plain["padded_tokens"]
        print(f"{phase:<7}{plain['samples_per_s']:>17.2f}{kit['samples_per_s']:>15.2f}{ratio:>7.2f}x{tokens:>26.2f}"
              f"{plain['peak_rss_mb']:>13.0f} / {kit['peak_rss_mb']:<9.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps([{"phase": p, "kit": k, "plain": q} for p, k, q in rows], indent=2))


if __name__ == "__main__":
    main()
