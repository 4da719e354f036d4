"""CPU time per token of one inference batch against its shape: why CPU inference batches hold at most
CPU_BATCH_TOKENS padded tokens (kaggle_kit/data/loader.py).

Full-length batches of 1 to 32 rows of the embedded MiniLM (random ids, every shape the same number of tokens),
timed on one thread with the thread's own CPU clock, so other jobs on a shared machine barely move the numbers; the
shapes run interleaved for --repeats rounds and the medians are printed, with and without an attention mask.

    python benchmarks/cpu_batch_shapes.py --max-len 256 --max-len 512
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from kaggle_kit.models.model import build_model, default_model_path, load_backbone_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-len", type=int, action="append", help="row length (repeat) [default: 256 and 512]")
    parser.add_argument("--rows", default="1,2,4,8,16,32", help="rows per batch, comma-separated")
    parser.add_argument("--tokens", type=int, default=4096, help="tokens timed per shape and round")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = default_model_path()
    model = build_model(load_backbone_config(path, 0.0), 6, "mean", weights_from=path).eval()
    rows = [int(r) for r in args.rows.split(",")]
    for length in args.max_len or [256, 512]:
        masked = {r: [] for r in rows}
        unmasked = {r: [] for r in rows}
        with torch.inference_mode():
            for _ in range(args.repeats):
                for r in rows:
                    ids = torch.randint(1000, 20000, (r, length))
                    mask = torch.ones_like(ids)
                    n = max(1, args.tokens // (r * length))
                    model(ids, mask)
                    start = time.thread_time()
                    for _ in range(n):
                        model(ids, mask)
                    masked[r].append((time.thread_time() - start) / (n * r * length) * 1e6)
                    start = time.thread_time()
                    for _ in range(n):
                        model.backbone(input_ids=ids)
                    unmasked[r].append((time.thread_time() - start) / (n * r * length) * 1e6)
        print(f"max_len {length}, 1 thread, load {os.getloadavg()[0]:.1f}; CPU us per token, with mask | without: "
              + ", ".join(f"{r} rows {np.median(masked[r]):.0f} | {np.median(unmasked[r]):.0f}" for r in rows))


if __name__ == "__main__":
    main()
