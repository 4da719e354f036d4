"""Training and inference throughput of kaggle-kit against the reference notebook's plain loop.

The plain loop pads every batch to max_len, takes batches in random order and steps a default AdamW;
the kit tokenises once, pads each batch to its longest member, groups similar lengths (bucketed for
training, sorted for inference) and steps its own optimizer (fused AdamW over the LLRD groups). Same
model, data, batch size and max_len; each variant runs in a fresh process so its peak RSS is its own.
Prints samples/s and the kit/plain ratios. With --quantize int8 it also times one of the model's own linear layers in
fp32 and in int8 on this CPU, in the same process: int8 can only speed up the linear layers by that much (large on a
CPU with AVX-512 VNNI or AMX, little on one with AVX2 only), so the end-to-end ratio is read against it.

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
    return plain_batches(len(ids), args.batch_size if train else args.eval_batch_size, train)


def plain_batches(n_rows: int, size: int, train: bool) -> list[np.ndarray]:
    """The reference notebook's batches: random order for training, file order for inference (each is then padded
    to max_len). benchmarks/predict_profile.py times its inference loop with these too."""
    order = np.random.default_rng(0).permutation(n_rows) if train else np.arange(n_rows)
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

        widest = max((m for m in model.backbone.modules() if isinstance(m, torch.nn.Linear)),
                     key=lambda m: m.in_features * m.out_features)
        gemm_shape = (widest.in_features, widest.out_features)
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
    if not train and args.variant == "kit" and args.quantize and device.type == "cpu":
        rows = args.eval_batch_size * int(np.median([len(x) for x in ids]))
        result["int8_gemm"] = int8_gemm_speedup(*gemm_shape, rows)
    queue.put(result)


def cpu_int8_features() -> str:
    """The CPU's vector level and the int8 dot-product instructions it has (they decide what int8 can gain)."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    int8 = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return f"{torch.backends.cpu.get_cpu_capability()}, int8 dot products: {', '.join(int8) or 'none (no VNNI/AMX)'}"


def int8_gemm_speedup(in_features: int, out_features: int, rows: int, repeats: int = 5) -> dict:
    """fp32 vs int8-dynamic time of a linear layer of the backbone's widest shape on `rows` tokens: int8's ceiling
    here (random weights: the time does not depend on the values)."""
    import warnings

    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    layer = torch.nn.Linear(in_features, out_features).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layer.qconfig = torch.ao.quantization.default_dynamic_qconfig
        quantized = DynamicLinear.from_float(layer)
    x = torch.randn(rows, layer.in_features)

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    with torch.inference_mode():
        fp32, int8 = best(lambda: layer(x)), best(lambda: quantized(x))
    return {"shape": f"{rows}x{layer.in_features} @ {layer.in_features}x{layer.out_features}",
            "fp32_ms": fp32 * 1e3, "int8_ms": int8 * 1e3, "speedup": fp32 / int8,
            "fp32_gflops": 2 * rows * layer.in_features * layer.out_features / fp32 / 1e9}


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
    for _, kit, _ in rows:
        if "int8_gemm" in kit:
            gemm = kit["int8_gemm"]
            print(f"int8 ceiling on this CPU ({cpu_int8_features()}): the widest linear layer, {gemm['shape']}, "
                  f"{gemm['fp32_ms']:.1f} ms fp32 ({gemm['fp32_gflops']:.0f} GFLOP/s) vs {gemm['int8_ms']:.1f} ms int8 "
                  f"= {gemm['speedup']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps([{"phase": p, "kit": k, "plain": q} for p, k, q in rows], indent=2))


if __name__ == "__main__":
    main()
