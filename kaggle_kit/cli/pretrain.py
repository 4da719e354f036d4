"""`kit pretrain`: masked-LM domain adaptation of an encoder on unlabelled texts."""

from __future__ import annotations

from pathlib import Path

import typer

from kaggle_kit.cli.app import app, quiet_transformers, say, setup_logging


@app.command()
def pretrain(
    texts: list[Path] = typer.Option(..., "--texts", metavar="FILE",
                                     help="Unlabelled texts: .txt (one per line) or .csv; repeat for more files."),
    model: Path = typer.Option(None, "--model", metavar="DIR",
                               help="Local Hugging Face encoder folder [default: embedded all-MiniLM-L6-v2]."),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="Where the adapted model folder is written."),
    max_len: int = typer.Option(256, min=8, metavar="N", help="Tokens per window (long texts become several)."),
    epochs: int = typer.Option(1, min=1, metavar="N", help="Passes over the texts."),
    batch_size: int = typer.Option(16, min=1, metavar="N", help="Windows per step."),
    lr: float = typer.Option(5e-5, min=0.0, metavar="X", help="Peak learning rate (linear decay, 6% warmup)."),
    mlm_probability: float = typer.Option(0.15, min=0.01, max=0.9, metavar="X", help="Share of tokens masked."),
    whole_word: bool = typer.Option(True, "--whole-word/--no-whole-word",
                                    help="Mask whole words (all their sub-tokens) where the tokenizer allows."),
    text_column: str = typer.Option(None, metavar="NAME", help="CSV column with the text [default: full_text or "
                                                                "text]."),
    max_texts: int = typer.Option(None, min=1, metavar="N", help="Use only the first N texts."),
    save_every: int = typer.Option(500, min=1, metavar="N", help="Steps between resumable checkpoints."),
    seed: int = typer.Option(42, metavar="N", help="Seed for the held-out split, batches and masks."),
    device: str = typer.Option("auto", metavar="auto|cpu|cuda", help="Where to train."),
    threads: int = typer.Option(None, min=1, metavar="N", help="CPU threads for torch [default: all cores]."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out from its checkpoint."),
) -> None:
    """Masked-LM pre-training on your texts (the competition's, or older competitions' essays): writes a model
    folder to train with `kit train --model OUT`, and prints the held-out masked-LM loss before and after."""
    from kaggle_kit.models.model import default_model_path
    from kaggle_kit.train.pretrain import PretrainSettings
    from kaggle_kit.train.pretrain import pretrain as run_pretrain

    setup_logging()
    quiet_transformers()
    settings = PretrainSettings(max_len=max_len, epochs=epochs, batch_size=batch_size, lr=lr,
                                mlm_probability=mlm_probability, whole_word=whole_word, seed=seed,
                                save_every=save_every, text_column=text_column, max_texts=max_texts)
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        run_pretrain(list(texts), model or default_model_path(), out, settings, device, resume=resume,
                     log_line=say)
    finally:
        torch.set_num_threads(previous)
