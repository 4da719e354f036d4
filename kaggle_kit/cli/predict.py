"""`kit predict`."""

from __future__ import annotations

from pathlib import Path

import typer

from kaggle_kit.cli.app import (
    app,
    folds_option,
    parse_folds,
    parse_weights,
    quiet_transformers,
    say,
    setup_logging,
    ttt_option,
)
from kaggle_kit.errors import KitError
from kaggle_kit.startup import frozen_imports


@app.command()
def predict(
    competition: str = typer.Argument(..., help="Competition plugin name."),
    run: list[Path] = typer.Option(None, "--run", help="Run folder(s) from `kit train`; repeat to ensemble."),
    ensemble: Path = typer.Option(None, "--ensemble", metavar="FILE",
                                  help="An ensemble file from `kit ensemble`: its runs, folds and per-target weights."),
    input: Path = typer.Option(..., "--input", help="test.csv to predict."),
    output: Path = typer.Option(Path("submission.csv"), help="Where to write the submission CSV."),
    sample_submission: Path = typer.Option(
        None, help="Row/column order to follow [default: sample_submission.csv beside --input]."),
    weights: str = typer.Option(None, help="Comma-separated ensemble weights, one per --run [default: equal]."),
    batch_size: int = typer.Option(None, help="Inference batch size [default: the run's]."),
    device: str = typer.Option("auto", help="auto, cpu, cuda ..."),
    base_model: Path = typer.Option(None, "--base-model", metavar="DIR",
                                    help="LoRA runs: the base model folder [default: where training found it]; "
                                         "refused unless it is the base the run recorded."),
    merge: bool = typer.Option(False, "--merge", help="LoRA runs: fold the adapters into the base weights before "
                                                      "predicting (no adapter matmuls; 16/32-bit bases only)."),
    devices: str = typer.Option(None, metavar="LIST", help="GPUs to spread the folds over, e.g. 0,1 [default: every "
                                                         "visible GPU when predicting on cuda]."),
    workers: int = typer.Option(None, min=1, help="Folds predicted at once: on a CPU, processes sharing the cores "
                                                  "[default: 1]; on GPUs, at most this many of --devices."),
    quantize: str = typer.Option(None, "--quantize", metavar="int8",
                                 help="On a CPU: int8 dynamic quantisation of the backbone's linear layers (faster, "
                                      "slightly different predictions; see `kit bundle --quantize`)."),
    lenient: bool = typer.Option(False, "--lenient",
                                 help="As the Kaggle notebook does: rows with an empty or blank text, or whose input "
                                      "cannot be built, get the runs' fallback prediction (counted in the log) "
                                      "instead of stopping with an error."),
    folds_text: str = folds_option(),
    ttt: str = ttt_option(),
) -> None:
    """Fold-averaged, post-processed predictions in the sample submission's row and column order."""
    with frozen_imports():  # torch and pandas: their start-up is a share of a CPU prediction's seconds
        from kaggle_kit.config import check_value
        from kaggle_kit.data.load import load_test, read_csv
        from kaggle_kit.fileio import atomic_path
        from kaggle_kit.predict.inference import predict_runs
        from kaggle_kit.predict.submission import submission_frame
        from kaggle_kit.predict.test_time import parse_spec
        from kaggle_kit.registry import get_competition

    setup_logging()
    quiet_transformers()
    comp = get_competition(competition)
    test_df = load_test(comp, input, lenient=lenient)
    sample_path = sample_submission or input.parent / "sample_submission.csv"
    sample = read_csv(sample_path) if sample_path.is_file() else None
    folds, postprocess_state = parse_folds(folds_text, len(run or []), ensemble is not None), None
    cv = chosen_folds_cv(comp, run[0], folds[0]) if folds is not None else None
    if ensemble is not None:
        from kaggle_kit.predict.ensemble_file import load_ensemble, read_ensemble_file

        if run or weights:
            raise KitError("--ensemble names its runs and weights: drop --run/--weights")
        run, weight_list, folds = load_ensemble(ensemble, comp)
        postprocess_state = read_ensemble_file(ensemble).get("postprocess")  # fitted on the blended OOF
    elif not run:
        raise KitError("give --run RUN_DIR (repeat to blend) or --ensemble FILE")
    else:
        weight_list = parse_weights(weights)
    options = dict(device=device, batch_size=batch_size, base_model=base_model, folds=folds,
                   postprocess_state=postprocess_state, merge_lora=merge,
                   devices=check_value("devices", devices, "command line"), workers=workers, quantize=quantize,
                   test_time=parse_spec(ttt))
    if lenient:
        from kaggle_kit.predict.fallback import predict_with_fallback

        preds, fallback = predict_with_fallback(comp, test_df, run, weight_list, data_dir=input.parent, **options)
        say(fallback.summary())
    else:
        preds = predict_runs(comp, test_df, run, weight_list, data_dir=input.parent, **options)
    sub = submission_frame(comp, test_df, preds, sample)
    with atomic_path(output) as tmp:
        sub.to_csv(tmp, index=False)
    say(f"wrote {output} ({len(sub)} rows, columns: {', '.join(sub.columns)})")
    if folds is not None:
        say(describe_folds_cv(run[0], folds[0], cv))


def chosen_folds_cv(comp, run_path: Path, folds: list[int]) -> dict | None:
    """The run's CV on the OOF rows of `folds`, after the run's competition and those folds' files are checked."""
    from kaggle_kit.predict.inference import check_run_for
    from kaggle_kit.runs.folder import RunDir
    from kaggle_kit.train.pipeline import cv_on_folds

    run = RunDir(run_path)
    check_run_for(comp, run)
    return cv_on_folds(comp, run, run.select_folds(folds))


def describe_folds_cv(run_path: Path, folds: list[int], cv: dict | None) -> str:
    from kaggle_kit.fileio import read_json
    from kaggle_kit.runs.folder import RunDir

    shown = ",".join(map(str, folds))
    if cv is None:
        return f"--folds {shown}: no validated fold among them (the full-train model has no OOF rows), so no CV"
    whole = RunDir(run_path).cv
    all_folds = f" (all folds: {read_json(whole)['score']:.4f})" if whole.is_file() else ""
    return (f"CV on folds {shown}: {cv['metric']} {cv['score']:.4f} over their {cv['n_oof']} OOF rows"
            f"{all_folds}")
