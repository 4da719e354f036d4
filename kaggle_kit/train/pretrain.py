"""`kit pretrain`: domain-adaptive masked-LM pre-training, writing a local Hugging Face model folder any `--model`
takes.

Several ELL and USPPPM teams pre-trained on the competition's texts (or older competitions' essays) before
fine-tuning; it helped some and not others. This makes finding out one command: the held-out masked-LM loss
before and after is printed and saved, and the output folder trains like any other model.

Texts: .txt files (one text per line) or .csv files (the `--text-column`, else `full_text` or `text`). Long texts
are cut into windows of `max_len` tokens, so no text is wasted to truncation. Whole-word masking where the tokenizer
gives offsets (every fast tokenizer). A checkpoint every `save_every` steps makes an interrupted run resumable;
each step's batch and masks are seeded by the step number, so a resumed run ends with the same weights as one
that never stopped.
"""

from __future__ import annotations

import inspect
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from kaggle_kit.data.load import read_csv
from kaggle_kit.device import amp_dtype, autocast, optimizer_step, pick_device
from kaggle_kit.errors import KitError
from kaggle_kit.fileio import read_json, sha256_file, write_json

log = logging.getLogger(__name__)

TEXT_COLUMNS = ("full_text", "text")
HELD_OUT_SHARE = 0.05
RESULT_FILE = "pretrain.json"


@dataclass(frozen=True)
class PretrainSettings:
    max_len: int = 256
    epochs: int = 1
    batch_size: int = 16
    lr: float = 5e-5
    warmup: float = 0.06
    mlm_probability: float = 0.15
    whole_word: bool = True
    seed: int = 42
    save_every: int = 500
    text_column: str | None = None
    max_texts: int | None = None


def read_texts(paths: list[Path], text_column: str | None) -> list[str]:
    texts: list[str] = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise KitError(f"--texts {path}: file not found")
        if path.suffix == ".csv":
            df = read_csv(path)
            column = text_column or next((c for c in TEXT_COLUMNS if c in df.columns), None)
            if column is None or column not in df.columns:
                raise KitError(f"--texts {path}: no text column (looked for {text_column or ', '.join(TEXT_COLUMNS)};"
                               f" found {', '.join(df.columns)}); pass --text-column")
            texts += [t for t in df[column].tolist() if t.strip()]
        else:
            texts += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise KitError(f"--texts: no text found in {', '.join(map(str, paths))}")
    return texts


def windows(tokenizer, texts: list[str], max_len: int) -> list[list[int]]:
    """Each text's tokens cut into windows of at most max_len, special tokens in each (the fast tokenizer's
    overflowing tokens)."""
    if not tokenizer.is_fast:
        return tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]
    return tokenizer(texts, truncation=True, max_length=max_len, return_overflowing_tokens=True)["input_ids"]


def make_collator(tokenizer, settings: PretrainSettings, seed: int):
    from transformers import DataCollatorForLanguageModeling

    params = inspect.signature(DataCollatorForLanguageModeling).parameters
    kwargs: dict[str, Any] = {"mlm_probability": settings.mlm_probability}
    if "seed" in params:
        kwargs["seed"] = seed
    if settings.whole_word and "whole_word_mask" in params and tokenizer.is_fast:
        kwargs["whole_word_mask"] = True
    torch.manual_seed(seed)
    return DataCollatorForLanguageModeling(tokenizer, **kwargs), kwargs.get("whole_word_mask", False)


def batch_of(tokenizer, collator, rows: list[list[int]], whole_word: bool) -> dict[str, torch.Tensor]:
    if whole_word:  # the collator finds word boundaries from character offsets
        texts = [tokenizer.decode(r, skip_special_tokens=True) for r in rows]
        enc = tokenizer(texts, truncation=True, max_length=max(len(r) for r in rows) + 8, padding=True,
                        return_offsets_mapping=True, return_special_tokens_mask=True, return_tensors="np")
        features = [{k: enc[k][i] for k in ("input_ids", "attention_mask", "offset_mapping",
                                             "special_tokens_mask")} for i in range(len(texts))]
    else:
        features = [{"input_ids": r} for r in rows]
    return collator(features)


def masked_lm_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The masked-LM loss with the vocabulary head applied to the masked positions only.

    The head projects every position onto the whole vocabulary (30-128k outputs): on all positions it costs more
    than the encoder itself, while only the ~15% masked positions count. The head is the masked-LM model's
    children other than its base model, applied in order (BERT/DeBERTa `cls`, RoBERTa `lm_head`, ELECTRA's
    two); where that does not give vocabulary logits the plain forward is used."""
    labels = batch["labels"]
    base = model.base_model
    head = [module for module in model.children() if module is not base]
    hidden = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    picked = labels != -100
    logits = hidden[picked]
    try:
        for module in head:
            logits = module(logits)
    except (TypeError, RuntimeError):
        logits = None
    if logits is None or logits.shape[-1] != model.config.vocab_size:
        return model(**batch).loss
    return torch.nn.functional.cross_entropy(logits.float(), labels[picked])


@torch.no_grad()
def held_out_loss(model, tokenizer, rows: list[list[int]], settings: PretrainSettings, device, dtype) -> float:
    """Mean masked-LM loss on the held-out windows, with fixed masks (same seed before and after)."""
    model.eval()
    collator, whole_word = make_collator(tokenizer, settings, seed=settings.seed + 10**6)
    total, count = 0.0, 0
    for start in range(0, len(rows), settings.batch_size):
        batch = {k: v.to(device) for k, v in batch_of(tokenizer, collator, rows[start:start + settings.batch_size],
                                                       whole_word).items()}
        with autocast(device, dtype):
            loss = masked_lm_loss(model, batch)
        n = int((batch["labels"] != -100).sum())
        total += float(loss) * n
        count += n
    model.train()
    return total / max(count, 1)


def pretrain(texts: list[Path], model_dir: Path, out: Path, settings: PretrainSettings, device_name: str = "auto",
             resume: bool = False, stop_after: int | None = None,
             log_line: Callable[[str], None] = print) -> dict[str, Any]:
    """Masked-LM training of `model_dir` on `texts`; writes the adapted model to `out` and returns the summary.

    `stop_after` ends the run after that many steps, as an interruption would (for tests)."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer, get_linear_schedule_with_warmup

    from kaggle_kit.models.model import check_model_dir, weights_dtype

    model_dir = check_model_dir(model_dir)
    out = Path(out)
    checkpoint = out / "checkpoint"
    if out.exists() and any(out.iterdir()) and not resume:
        raise KitError(f"--out {out}: exists and is not empty; pass --resume to continue it or choose a new --out")
    if resume and not (checkpoint / "state.json").is_file():
        raise KitError(f"--resume: no checkpoint in {out} to continue")
    device = pick_device(device_name)
    dtype = amp_dtype("auto", device)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    rows = windows(tokenizer, read_texts(texts, settings.text_column)[: settings.max_texts], settings.max_len)
    order = np.random.default_rng(settings.seed).permutation(len(rows))
    n_held = max(1, int(len(rows) * HELD_OUT_SHARE))
    held, train_rows = [rows[i] for i in order[:n_held]], [rows[i] for i in order[n_held:]]
    if not train_rows:
        raise KitError(f"--texts: {len(rows)} window(s) of {settings.max_len} tokens is too little to pre-train on")
    steps_per_epoch = math.ceil(len(train_rows) / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    source = checkpoint / "model" if resume else model_dir
    torch.manual_seed(settings.seed)  # a head the checkpoint lacks starts the same in every run with this seed
    model = AutoModelForMaskedLM.from_pretrained(str(source), **weights_dtype()).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(settings.warmup * total_steps), total_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    state = {"step": 0, "losses": [], "held_out_before": None}
    if resume:
        state = read_json(checkpoint / "state.json")
        if state["settings"] != asdict(settings):
            raise KitError(f"--resume: the settings differ from the checkpoint's ({checkpoint / 'state.json'})")
        saved = torch.load(checkpoint / "optimizer.pt", map_location=device, weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        log_line(f"pretrain: resuming {out} at step {state['step']} of {total_steps}")
    else:
        state["held_out_before"] = held_out_loss(model, tokenizer, held, settings, device, dtype)
    log_line(f"pretrain: {len(train_rows)} windows of <= {settings.max_len} tokens ({len(held)} held out), "
             f"{total_steps} steps, whole-word masking {'on' if settings.whole_word else 'off'}, device {device}")
    model.train()
    started = time.monotonic()
    bar = tqdm(total=total_steps, initial=state["step"], desc="pretrain", unit="step", dynamic_ncols=True)
    while state["step"] < total_steps:
        step = state["step"]
        epoch, index = divmod(step, steps_per_epoch)
        epoch_order = np.random.default_rng([settings.seed, epoch]).permutation(len(train_rows))
        picked = [train_rows[i] for i in epoch_order[index * settings.batch_size:(index + 1) * settings.batch_size]]
        collator, whole_word = make_collator(tokenizer, settings, seed=settings.seed + step)
        batch = {k: v.to(device) for k, v in batch_of(tokenizer, collator, picked, whole_word).items()}
        with autocast(device, dtype):
            loss = masked_lm_loss(model, batch)
        scaler.scale(loss).backward()
        optimizer_step(optimizer, scaler, model.parameters(), 1.0)
        scheduler.step()
        state["step"] = step + 1
        state["losses"].append(round(float(loss.detach()), 5))
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(state['losses'][-50:]):.3f}")
        if state["step"] % settings.save_every == 0 or state["step"] == stop_after:
            save_checkpoint(checkpoint, model, optimizer, scheduler, state, settings)
        if state["step"] == stop_after:
            bar.close()
            return {"stopped_at": state["step"]}
    bar.close()
    after = held_out_loss(model, tokenizer, held, settings, device, dtype)
    summary = {"model": str(model_dir), "texts": {str(p): sha256_file(p) for p in texts}, "settings": asdict(settings),
               "windows": len(train_rows), "held_out_windows": len(held), "steps": total_steps,
               "held_out_loss_before": state["held_out_before"], "held_out_loss_after": after,
               "seconds": round(time.monotonic() - started, 1), "train_loss": state["losses"]}
    write_model(out, model, tokenizer, summary)
    log_line(f"pretrain: held-out masked-LM loss {state['held_out_before']:.4f} -> {after:.4f} "
             f"(perplexity {math.exp(state['held_out_before']):.1f} -> {math.exp(after):.1f}); "
             f"train with --model {out}")
    return summary


def save_checkpoint(folder: Path, model, optimizer, scheduler, state: dict, settings: PretrainSettings) -> None:
    """Model, optimizer and step written beside the old checkpoint, then swapped in: never half a checkpoint."""
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging / "model"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, staging / "optimizer.pt")
    write_json(staging / "state.json", {**state, "settings": asdict(settings)})
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def write_model(out: Path, model, tokenizer, summary: dict) -> None:
    """The adapted model as a plain Hugging Face folder (config, weights, tokenizer) plus pretrain.json."""
    staging = out / ".final.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    for item in staging.iterdir():
        target = out / item.name
        if target.exists():
            target.unlink()
        item.rename(target)
    staging.rmdir()
    write_json(out / RESULT_FILE, summary)
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
