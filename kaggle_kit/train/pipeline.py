"""`kit train`: validate everything, then run K folds into a run folder that can be resumed."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kaggle_kit.competition import Competition
from kaggle_kit.config import TrainConfig
from kaggle_kit.data.load import (
    SAMPLE,
    DataSource,
    find_extra_files,
    load_train,
    resolve_data_dir,
    resolve_data_source,
)
from kaggle_kit.device import describe, pick_device, seed_everything
from kaggle_kit.errors import KitError
from kaggle_kit.fileio import atomic_path, read_json, sha256_file, write_json
from kaggle_kit.models.decoder import is_decoder, prepare_tokenizer
from kaggle_kit.models.model import check_model_dir, default_model_path, load_backbone_config
from kaggle_kit.predict.fallback import fallback_record
from kaggle_kit.predict.inference import build_model_inputs, load_tokenizer
from kaggle_kit.registry import get_competition
from kaggle_kit.runs import plots
from kaggle_kit.runs.folder import RunDir, check_not_running, new_manifest, now_iso
from kaggle_kit.runs.monitor import NullMonitor, RunMonitor
from kaggle_kit.runs.tracker import check_tracker
from kaggle_kit.tasks.postprocess import LinearCalibration, calibration_and_crossfit, crossfit, fit_record
from kaggle_kit.tasks.targets import output_slices, prior_prediction
from kaggle_kit.train import distributed
from kaggle_kit.train.distributed import SINGLE, Dist
from kaggle_kit.train.preflight import assign_folds, check_devices, check_output_folder, resolved_config
from kaggle_kit.train.pseudo import PseudoRows, distilled_targets, load_pseudo, teacher_files
from kaggle_kit.train.session_limit import SessionLimit
from kaggle_kit.train.trainer import FoldData, FoldTrainer, save_fold_outcome

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run: RunDir
    cv: dict | None  # None in a process that does not finalize (ranks other than 0, fold workers)


def _fold_data(prep: Prepared, mask: np.ndarray, fit: bool = False) -> FoldData:
    """One side of a fold; `fit` gives the training side its (possibly distilled) targets."""
    index = np.flatnonzero(mask)
    y = prep.y_fit if fit and prep.y_fit is not None else prep.y
    return FoldData([prep.ids[i] for i in index], y[index], prep.row_ids[index])


@dataclass
class Prepared:
    """Everything validated and tokenised before the first file of a run is written; `cfg` as the run records it."""

    cfg: TrainConfig
    comp: Competition
    data: DataSource
    data_dir: Path
    model_path: Path
    device: torch.device
    train_df: pd.DataFrame
    folds: np.ndarray
    ids: list[list[int]]
    y: np.ndarray
    row_ids: np.ndarray
    tokenizer: object
    backbone_config: object
    files: dict[str, Path]
    y_fit: np.ndarray | None = None  # training targets when --distill mixes the teacher in; else y
    pseudo: PseudoRows | None = None


def train(cfg: TrainConfig, run_path: Path, resume: bool = False, dist: Dist = SINGLE,
          finalize_run: bool = True) -> TrainResult:
    """Validate inputs before anything is written; on resume, skip folds whose results are complete.

    With `dist` (torchrun) every rank runs this and rank 0 alone writes. `finalize_run=False` is a fold worker's:
    it trains its folds and leaves the run's reports to the process that started the workers.
    """
    run = RunDir(run_path)
    with held_records() as before_run:
        prep = dist.agree(lambda: prepare(cfg, run, resume, dist, fold_worker=not finalize_run))
    if dist.is_main:
        run.path.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(prep.cfg.threads or threads)
        with log_to_file(run, before_run if finalize_run else ()) if dist.is_main else contextlib.nullcontext():
            if prep.cfg.fold_workers > 1 and len([f for f in prep.cfg.fold_list() if not run.fold_done(f)]) > 1:
                return _train_in_workers(prep, run, resume)
            return _run_folds(prep.cfg, run, prep, resume, dist, finalize_run)
    finally:
        torch.set_num_threads(threads)


def prepare(cfg: TrainConfig, run: RunDir, resume: bool, dist: Dist = SINGLE, fold_worker: bool = False) -> Prepared:
    """Every check that can fail, and the tokenised data, before the run folder exists.

    Rank 0 alone checks the run folder: under torchrun the other ranks may be on machines that cannot see it. A
    fold worker resumes a run its parent process is running (that parent's session is the run's).
    """
    comp = get_competition(cfg.competition)
    if dist.is_main:
        check_output_folder(run.path, resume)
    check_tracker(cfg)
    data = _recorded_source(run, cfg) if resume and run.manifest.is_file() else None
    data = data or resolve_data_source(comp, cfg.data)
    data_dir = data.path
    train_df = load_train(comp, data_dir)
    if data.is_sample and dist.is_main:
        from kaggle_kit.data.sample import sample_info

        log.info("training on the embedded %s sample, %s: no --data and no data/%s/; `kit data %s` downloads "
                 "the full data", comp.name, sample_info(data_dir).describe(len(train_df)), comp.name, comp.name)
    elif dist.is_main:
        log.info("training on %s (%d rows; %s)", data_dir / "train.csv", len(train_df),
                 "--data" if data.kind == "option" else f"the default folder data/{comp.name}/, no --data")
    if resume and dist.is_main:
        _check_resumable(run, data_dir, fold_worker)
    model_path = check_model_dir(cfg.model) if cfg.model else default_model_path()
    backbone_config = load_backbone_config(model_path, cfg.backbone_dropout)
    device = distributed.training_device(dist, pick_device(cfg.device))
    cfg = resolved_config(cfg, comp, SAMPLE if data.is_sample else data_dir, device, backbone_config, model_path)
    cfg = check_launch(cfg, dist, resume)
    check_devices(cfg, device)
    carried = resume and (dist.is_main or run.config.is_file())
    files = _run_extra_files(comp, run) if carried else find_extra_files(comp, data_dir, cfg.extra)
    seed_everything(cfg.seed)
    if cfg.max_train_samples and cfg.max_train_samples < len(train_df):
        train_df = train_df.sample(n=cfg.max_train_samples, random_state=cfg.split_seed).sort_index().reset_index(
            drop=True)
    folds = assign_folds(comp, train_df, cfg, data_dir / "train.csv")
    tokenizer = load_tokenizer(model_path)
    if is_decoder(backbone_config):
        prepare_tokenizer(tokenizer, backbone_config)
    if cfg.head == "label-tokens" and cfg.label_tokens is None:  # a resumed run keeps the ids it recorded
        from kaggle_kit.models.label_tokens import resolve_label_tokens

        cfg = cfg.model_copy(update={"label_tokens": resolve_label_tokens(tokenizer, comp.schema.targets,
                                                                          cfg.label_cue, comp.label_words,
                                                                          cfg.label_token_mode)})
    targets = comp.schema.target_names
    cut: list[bool] = []
    ids = build_model_inputs(comp, train_df, tokenizer, cfg, data_dir, files, split="train", cut=cut)
    lengths, n_cut = np.array([len(x) for x in ids]), int(np.sum(cut))
    log.info("%s: %d rows, %d folds, tokens per row median %d, %.0f%% cut at --max-len %d%s", comp.name,
             len(train_df), cfg.folds, np.median(lengths), 100 * n_cut / len(ids), cfg.max_len,
             f" (keeping their last {cfg.tail_tokens} tokens)" if cfg.tail_tokens and n_cut else "")
    if (cfg.pooling == "last-token" and not cfg.tail_tokens and n_cut and cfg.head != "label-tokens"
            and getattr(tokenizer, "truncation_side", "right") == "right"):
        log.warning("WARNING: %d inputs are cut at --max-len %d and last-token pooling reads their last token, "
                    "which is then mid-text, not the prompt's end: --tail-tokens N keeps each input's last N "
                    "tokens", n_cut, cfg.max_len)
    y = train_df[targets].to_numpy(dtype=np.float32)
    fallback_record(comp, train_df[targets].to_numpy(float))  # a plugin fallback that does not fit stops here
    pseudo = load_pseudo(comp, cfg, train_df, tokenizer, data_dir, files, ids, folds) if cfg.pseudo else None
    y_fit = distilled_targets(comp, cfg, train_df, y) if cfg.distill else None
    return Prepared(cfg=cfg, comp=comp, data=data, data_dir=data_dir, model_path=model_path, device=device,
                    train_df=train_df, folds=folds, ids=ids, y=y, row_ids=train_df[comp.schema.id_column].to_numpy(),
                    tokenizer=tokenizer, backbone_config=backbone_config, files=files, y_fit=y_fit, pseudo=pseudo)


def _run_extra_files(comp: Competition, run: RunDir) -> dict[str, Path]:
    """On resume the run's own copies, never the data folder's current files."""
    files = {extra.name: run.extra_file(extra.name) for extra in comp.extra_files}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise KitError(f"--resume: {missing[0]} is missing from the run folder; start a new run instead")
    return files


class _LockedFileHandler(logging.FileHandler):
    """Appends under the run's lock: fold workers log into one train.log without tearing each other's lines."""

    def __init__(self, path: Path, lock):
        super().__init__(path, encoding="utf-8")
        self.run_lock = lock

    def emit(self, record: logging.LogRecord) -> None:
        with self.run_lock:
            super().emit(record)


class _HeldRecords(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]):
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def held_records() -> Iterator[list[logging.LogRecord]]:
    """What is logged while the run is prepared, before its folder exists (where the data came from, the token
    counts), kept so that train.log starts with it too."""
    records: list[logging.LogRecord] = []
    handler = _HeldRecords(records)
    logging.getLogger().addHandler(handler)
    try:
        yield records
    finally:
        logging.getLogger().removeHandler(handler)


@contextlib.contextmanager
def log_to_file(run: RunDir, earlier: Sequence[logging.LogRecord] = ()) -> Iterator[None]:
    """Everything logged during the run also lands in the run folder's train.log (appended on --resume), after
    the `earlier` records (logged before the folder existed, already shown on the console)."""
    handler = _LockedFileHandler(run.path / "train.log", run.lock())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for record in earlier:
        handler.handle(record)
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def check_launch(cfg: TrainConfig, dist: Dist, resume: bool) -> TrainConfig:
    """The launch must fit the run: a resumed run keeps its number of data-parallel processes (it sets the effective
    batch), and fold workers and frozen mode run without torchrun. Records the launch's world size."""
    launched = dist.world_size
    recorded = cfg.world_size if resume or "world_size" in cfg.model_fields_set else launched
    if recorded != launched:
        how = (f"`kit train {cfg.competition} --nproc-per-node {recorded}` (or torchrun with {recorded} processes "
               f"in all)" if recorded > 1 else "a launch without torchrun")
        raise KitError(f"{'--resume: the run' if resume else 'world_size in the settings:'} was trained in "
                       f"{recorded} data-parallel process(es), an effective batch of "
                       f"{cfg.batch_size * cfg.grad_accum * recorded} rows; this launch has {launched}: use {how}")
    if dist.active and cfg.fold_workers > 1:
        raise KitError(f"--fold-workers {cfg.fold_workers} under torchrun: choose one (whole folds in parallel, or one "
                       f"fold data-parallel)")
    if dist.active and cfg.mode == "frozen":
        raise KitError("--mode frozen under torchrun: frozen mode fits ridge heads, there is nothing to train "
                       "data-parallel; use --fold-workers to run its folds in parallel")
    return cfg.model_copy(update={"world_size": launched})


def _write_run_setup(cfg: TrainConfig, run: RunDir, prep: Prepared) -> None:
    """The files a new run starts with: its settings, manifest, tokenizer, backbone config and folds."""
    comp = prep.comp
    write_json(run.config, cfg.to_dict())
    data_files = {"train.csv": prep.data_dir / "train.csv", **prep.files,
                  **({"pseudo": Path(cfg.pseudo)} if cfg.pseudo else {}),
                  **{"distill" if i == 0 else f"distill{i}": path
                     for i, path in enumerate(teacher_files(cfg.distill) if cfg.distill else [])}}
    manifest = new_manifest(cfg, data_files, describe(prep.device), prep.model_path, prep.data.record())
    manifest.update(world_size=cfg.world_size, effective_batch_size=cfg.effective_batch_size,
                    fold_workers=cfg.fold_workers)
    # tokens_per_row: what kit bundle projects the notebook's time from
    manifest["tokens_per_row"] = round(float(np.mean([min(len(x), cfg.max_len) for x in prep.ids])), 1)
    if prep.pseudo is not None:
        manifest["pseudo"] = {"rows": len(prep.pseudo.ids), "dropped_as_labelled": prep.pseudo.n_dropped,
                              "per_fold_labels": sorted(prep.pseudo.per_fold)}
    write_json(run.manifest, manifest)
    for name, source in prep.files.items():
        with atomic_path(run.extra_file(name)) as tmp:
            shutil.copyfile(source, tmp)
    prep.tokenizer.save_pretrained(str(run.tokenizer))
    prep.backbone_config.save_pretrained(str(run.backbone))
    with atomic_path(run.folds_csv) as tmp:
        pd.DataFrame({comp.schema.id_column: prep.row_ids, "fold": prep.folds}).to_csv(tmp, index=False)


def _start_run(cfg: TrainConfig, run: RunDir, prep: Prepared, resume: bool) -> None:
    """A new run writes its setup; a resumed one records --full-train if this launch adds it."""
    if not resume:
        _write_run_setup(cfg, run, prep)
    elif cfg.full_train and not run.load_config().full_train:
        write_json(run.config, {**read_json(run.config), "full_train": True})


def _train_in_workers(prep: Prepared, run: RunDir, resume: bool) -> TrainResult:
    """Fold-parallel: the run folder is set up here, each fold trains in a worker process, and this process pools
    the folds once the last one is in."""
    from kaggle_kit.train.fold_workers import train_in_workers

    _start_run(prep.cfg, run, prep, resume)
    log.info("run folder: %s (%d fold workers)", run.path, prep.cfg.fold_workers)
    for fold in filter(run.fold_done, prep.cfg.fold_list()):
        log.info("fold %d: already finished (%s), skipping", fold, run.fold_result(fold).name)
    monitor = RunMonitor(run)  # the workers' parent holds the run's session: heartbeat, tracker, fold results
    limit = SessionLimit(prep.cfg.stop_after_hours)
    with monitor.session(prep.cfg):
        stopped = train_in_workers(prep.cfg, run, [f for f in prep.cfg.fold_list() if not run.fold_done(f)],
                                   prep.device, monitor, limit)
        if prep.cfg.full_train and not stopped and not run.fold_done(prep.cfg.full_fold):
            # the full-train model needs the folds' best steps: a worker trains it once they are all in
            train_in_workers(prep.cfg, run, [prep.cfg.full_fold], prep.device, monitor)
        cv = finalize(run, prep.comp, prep.train_df, prep.folds)
        record_stop(run, stopped)
        monitor.finished(cv)
    return TrainResult(run, cv)


def _run_folds(cfg: TrainConfig, run: RunDir, prep: Prepared, resume: bool, dist: Dist = SINGLE,
               finalize_run: bool = True) -> TrainResult:
    comp = prep.comp
    device = prep.device
    if dist.is_main and (finalize_run or not resume):  # a fold worker resumes the run its parent set up
        _start_run(cfg, run, prep, resume)
    distributed.check_same_data(dist, prep.folds, prep.y, [len(x) for x in prep.ids])
    log.info("run folder: %s (device %s%s)", run.path, describe(device),
             f", {dist.world_size} data-parallel processes" if dist.active else "")
    log.info("effective batch: %d rows per optimizer step (batch size %d x grad accum %d x %d process%s)",
             cfg.effective_batch_size, cfg.batch_size, cfg.grad_accum, cfg.world_size,
             "es" if cfg.world_size > 1 else "")

    trainer_class = FoldTrainer
    if cfg.mode == "frozen":
        from kaggle_kit.train.frozen import FrozenFoldTrainer as trainer_class
    # rank 0 of the process that owns the run reports its heartbeat and tracker; a fold worker's parent does that
    monitor = RunMonitor(run) if dist.is_main and finalize_run else NullMonitor()
    limit, stopped = SessionLimit(cfg.stop_after_hours), None
    with monitor.session(cfg):
        trainer = trainer_class(cfg, comp, prep.backbone_config, prep.model_path, prep.tokenizer.pad_token_id or 0,
                                device, run, monitor=monitor, dist=dist)
        for fold in cfg.fold_list():
            if fold == cfg.full_fold:  # a fold worker sent to train the full-train model (below)
                continue
            with claim_fold(run, fold, dist) as claim:
                if claim == "done":
                    log.info("fold %d: already finished (%s), skipping", fold, run.fold_result(fold).name)
                    continue
                if claim == "busy":
                    log.warning("fold %d: another process is training it (its lock is held), skipping", fold)
                    continue
                stopped = limit.agreed_stop_reason(dist)
                if stopped:
                    log.warning("fold %d: not started, %s; the run is left resumable", fold, stopped)
                    break
                fold_started = limit.elapsed()
                train_part = _fold_data(prep, prep.folds != fold, fit=True)
                valid_part = _fold_data(prep, prep.folds == fold)
                pseudo_part = prep.pseudo.for_fold(fold) if prep.pseudo is not None else None
                log.info("fold %d: %d train / %d valid%s", fold, len(train_part.ids), len(valid_part.ids),
                         f" + {len(pseudo_part.ids)} pseudo-labelled" if pseudo_part is not None else "")
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                outcome = trainer.fit(fold, train_part, valid_part, pseudo=pseudo_part)
                if dist.is_main:
                    save_fold_outcome(run, outcome, valid_part, comp)
                    monitor.fold_done(fold, read_json(run.fold_result(fold)))
                log.info("fold %d: best %s %.4f at step %d (%.0fs, %s)", fold, comp.metric.name, outcome.score,
                         outcome.best_step, outcome.seconds, fold_throughput(cfg, train_part, outcome.seconds, device))
                limit.fold_done(limit.elapsed() - fold_started)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        # the full-train model after the folds: in the process that owns the run, or in the fold worker sent for it
        if cfg.full_train and not stopped and (finalize_run or cfg.fold_list() == [cfg.full_fold]):
            with claim_fold(run, cfg.full_fold, dist) as claim:
                if claim == "train":
                    train_full(cfg, run, prep, trainer, dist)
        if not finalize_run or not dist.is_main:
            return TrainResult(run, None)
        cv = finalize(run, comp, prep.train_df, prep.folds)
        record_stop(run, stopped)
        monitor.finished(cv)
    return TrainResult(run, cv)


def record_stop(run: RunDir, stopped: str | None) -> None:
    """Why --stop-after-hours left the run partial, in its manifest; dropped once a resume gets past it."""
    manifest = run.load_manifest()
    if stopped or "stopped" in manifest:
        write_json(run.manifest, {**{k: v for k, v in manifest.items() if k != "stopped"},
                                  **({"stopped": stopped} if stopped else {})})


def fold_throughput(cfg: TrainConfig, train_part: FoldData, seconds: float, device: torch.device) -> str:
    """Training tokens per second over the fold's wall time (validation included), and the peak GPU memory: the
    two numbers that size a bigger model or a longer max_len on the same GPU."""
    tokens = sum(min(len(x), cfg.max_len) for x in train_part.ids) * cfg.epochs
    text = f"{tokens / max(seconds, 1e-9):,.0f} training tokens/s"
    if device.type == "cuda":
        text += f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 1024**3:.1f} GiB"
    return text


def _recorded_source(run: RunDir, cfg: TrainConfig) -> DataSource | None:
    """On --resume, the data folder the run started with, unless --data names another (the sample stays the
    sample, wherever the package now lives); None for runs that predate the record."""
    source = run.data_source() if run.manifest.is_file() else {}
    if not source or (cfg.data and cfg.data != run.load_config().data):
        return None
    folder = run.data_dir()
    return DataSource(folder, source["kind"]) if folder is not None else None


@contextlib.contextmanager
def claim_fold(run: RunDir, fold: int, dist: Dist = SINGLE) -> Iterator[str]:
    """"train" while this process holds the fold's lock, "done" when the fold is finished, "busy" while another
    process holds the lock. Rank 0 decides (the other ranks may not see the run folder) and tells them."""
    from filelock import Timeout

    lock = run.fold_lock(fold) if dist.is_main else None
    claim = "train"
    if lock is not None:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            claim = "busy"
        else:
            claim = "done" if run.fold_done(fold) else "train"
    claim = dist.broadcast(claim)
    try:
        yield claim
    finally:
        if lock is not None and lock.is_locked:
            lock.release()


def _check_resumable(run: RunDir, data_dir: Path, fold_worker: bool = False) -> None:
    if not fold_worker:
        check_not_running(run)
    recorded = run.load_manifest().get("data", {}).get("train.csv", {}).get("sha256")
    actual = sha256_file(data_dir / "train.csv")
    if recorded and recorded != actual:
        raise KitError(f"--resume: {data_dir / 'train.csv'} changed since the run started "
                       f"(sha256 {actual[:12]} != {recorded[:12]}); start a new run instead")


def finalize(run: RunDir, comp, train_df: pd.DataFrame, folds: np.ndarray) -> dict:
    """Pool the finished folds into oof.csv, cv.json, metrics.csv and plots; fit the plugin's post-processor on
    the pooled OOF predictions (postprocess.json); mark the run complete.

    Under the run's lock, so that no other process (a fold worker, a second --resume) sees a half-pooled run."""
    with run.lock():
        cv = _finalize(run, comp, train_df, folds)
    log.info("finalized: oof.csv and cv.json over folds %s, %s %.4f", cv["folds_trained"], cv["metric"], cv["score"])
    return cv


def pooled_oof(run: RunDir, comp: Competition, train_df: pd.DataFrame, folds_used: list[int]
               ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """The OOF predictions of `folds_used` pooled in train.csv order: the frame, the truth, the predictions, and
    each row's position in `train_df`. What cv.json scores."""
    targets = comp.schema.target_names
    id_col = comp.schema.id_column
    parts = [pd.read_csv(run.fold_oof(f), dtype={id_col: str}) for f in folds_used]
    oof = pd.concat(parts, ignore_index=True)
    order = {v: i for i, v in enumerate(train_df[id_col].astype(str))}
    unknown = [v for v in oof[id_col].astype(str) if v not in order]
    if unknown:
        raise KitError(f"{run.path}: OOF row {unknown[0]!r} is not in train.csv; was the run trained on other data?")
    oof = oof.iloc[np.argsort([order[v] for v in oof[id_col].astype(str)], kind="stable")].reset_index(drop=True)
    truth = train_df.set_index(train_df[id_col].astype(str)).loc[oof[id_col].astype(str), targets].to_numpy(float)
    rows = np.array([order[v] for v in oof[id_col].astype(str)], dtype=np.int64)
    return oof, truth, oof[comp.schema.output_columns].to_numpy(float), rows


def cv_on_folds(comp: Competition, run: RunDir, folds_used: list[int], data_dir: Path | None = None) -> dict | None:
    """cv.json's pooled score recomputed on the OOF rows of `folds_used` alone (what predicting with `--folds`
    stands for), with the same metric and code as cv.json; None when they hold no validated fold (the full-train
    model alone). The labels come from the run's train.csv (`data_dir` by default the run's data folder).

    Scored before the plugin's fitted post-processor, as cv.json's `score` is; the run's postprocess.json (fitted
    on every fold's OOF rows) is kept as it is: it was fitted on labelled training rows, whichever fold models
    then predict."""
    validated = [f for f in folds_used if not run.is_full_train_fold(f)]
    if not validated:
        return None
    try:
        train_df = load_train(comp, resolve_data_dir(comp, data_dir or run.data_dir()))
    except KitError as err:
        raise KitError(f"--folds {','.join(map(str, folds_used))}: the CV of these folds is scored on their OOF rows "
                       f"against the run's train.csv, which is not available ({err})") from None
    oof, truth, pred, _ = pooled_oof(run, comp, train_df, validated)
    pooled = comp.metric(truth, pred, comp.schema.targets)
    return {"metric": comp.metric.name, "greater_is_better": comp.metric.greater_is_better, "score": pooled.score,
            "per_target": pooled.per_target, "folds_trained": validated, "n_oof": len(oof)}


def _finalize(run: RunDir, comp, train_df: pd.DataFrame, folds: np.ndarray) -> dict:
    targets = comp.schema.target_names
    done = run.cv_folds()
    oof, truth, pred, rows = pooled_oof(run, comp, train_df, done)
    pooled = comp.metric(truth, pred, comp.schema.targets)
    oof_folds = folds[rows]

    baseline_pred = np.zeros_like(pred)
    for f in done:
        mask_valid = oof_folds == f
        baseline_pred[mask_valid] = prior_prediction(train_df.loc[folds != f, targets].to_numpy(float),
                                                     comp.schema.targets)
    baseline = comp.metric(truth, baseline_pred, comp.schema.targets)

    fold_results = {f"fold{f}": read_json(run.fold_result(f)) for f in done}
    cv = {
        "metric": comp.metric.name,
        "greater_is_better": comp.metric.greater_is_better,
        "score": pooled.score,
        "per_target": pooled.per_target,
        "folds": fold_results,
        "folds_trained": done,
        "n_oof": len(oof),
        "baseline_train_mean": {"score": baseline.score, "per_target": baseline.per_target},
    }
    cfg = run.load_config()
    if comp.postprocessor is not None:
        cv["postprocess"] = fit_postprocessor(run, comp, pred, truth, oof_folds, pooled)
    elif cfg.head == "label-tokens":
        cv["postprocess"] = fit_label_calibration(run, comp, pred, truth, oof_folds, pooled)
    with atomic_path(run.oof) as tmp:
        oof.to_csv(tmp, index=False)
    metrics = pd.concat([pd.read_csv(run.fold_log(f)) for f in done if run.fold_log(f).is_file()], ignore_index=True)
    with atomic_path(run.metrics) as tmp:
        metrics.to_csv(tmp, index=False)
    curves = plots.write_run_plots(run.plots, metrics, comp.metric.name, truth, pred, comp.schema.targets)
    if curves:
        cv["classification_curves"] = curves
        for name, record in curves.items():
            log.info("OOF %s", plots.scores_line(name, record))
    write_json(run.cv, cv)
    # what hidden-test rows that cannot be predicted get (kit predict --lenient, the notebook)
    write_json(run.fallback, fallback_record(comp, train_df[targets].to_numpy(float)))
    manifest = run.load_manifest()
    complete = set(done) >= set(cfg.fold_list()) and (not cfg.full_train or run.fold_done(cfg.full_fold))
    manifest.update(status="complete" if complete else "partial", finished=now_iso(),
                    folds_finished=run.finished_folds())
    write_json(run.manifest, manifest)
    return cv


def fit_postprocessor(run: RunDir, comp: Competition, pred: np.ndarray, truth: np.ndarray, folds: np.ndarray,
                      before) -> dict:
    """Fit the plugin's post-processor on the pooled OOF predictions, save its state as postprocess.json and say
    what it did: the score before, after (fitted and scored on the same rows: optimistic) and cross-fitted (each
    fold's rows post-processed with a state fitted on the other folds: the honest estimate)."""
    targets = comp.schema.targets
    record = fit_record(comp.postprocessor, pred, truth, targets)
    write_json(run.postprocess, record)
    after = comp.metric(truth, comp.postprocessor.apply(pred, record["state"], targets), targets)
    crossfitted = crossfit(comp.postprocessor, pred, truth, targets, folds)
    honest = comp.metric(truth, crossfitted, targets).score if crossfitted is not None else None
    log.info("%s fitted on %d OOF rows: %s %.4f -> %.4f%s", comp.postprocessor.name, len(pred), comp.metric.name,
             before.score, after.score, f" (cross-fitted {honest:.4f})" if honest is not None else "")
    return {"name": comp.postprocessor.name, "file": run.postprocess.name, "score_before": before.score,
            "score_after": after.score, "per_target_after": after.per_target, "score_after_crossfit": honest,
            "state": record["state"]}


def fit_label_calibration(run: RunDir, comp: Competition, pred: np.ndarray, truth: np.ndarray, folds: np.ndarray,
                          before) -> dict | None:
    """A label-token run's expected values over score levels crowd toward the middle: fit a line per score target
    on the OOF predictions, kept per target only where it lowers the cross-fitted metric (tasks/postprocess.py
    adopt_calibration), saved as postprocess.json, which kit predict and the bundle apply. None (and no
    postprocess.json, also not one an earlier finalize left) when no target gains."""
    targets = comp.schema.targets
    record, crossfitted = calibration_and_crossfit(pred, truth, targets, folds, comp.metric)
    if record is None:
        run.postprocess.unlink(missing_ok=True)
        return None
    write_json(run.postprocess, record)
    calibration = LinearCalibration()
    after = comp.metric(truth, calibration.apply(pred, record["state"], targets), targets)
    kept, adopted = np.array(pred, dtype=np.float64, copy=True), set(record["state"]["calibration"])
    for target, columns in zip(targets, output_slices(targets), strict=True):  # unadopted targets pass through
        if target.name in adopted:
            kept[:, columns] = crossfitted[:, columns]
    honest = comp.metric(truth, kept, targets).score
    log.info("calibration of %s fitted on %d OOF rows: %s %.4f -> %.4f (cross-fitted %.4f)",
             ", ".join(sorted(adopted)), len(pred), comp.metric.name, before.score, after.score, honest)
    return {"name": calibration.name, "file": run.postprocess.name, "score_before": before.score,
            "score_after": after.score, "per_target_after": after.per_target, "score_after_crossfit": honest,
            "state": record["state"]}


def full_train_stop(run: RunDir, folds: list[int]) -> tuple[float, dict[str, dict]]:
    """Where the full-train model stops, as a fraction of its schedule: the median over the CV folds of the best
    validation's step over the fold's scheduled steps. A fraction, not a step count, because the full model sees
    K/(K-1) times the rows per epoch: it keeps the folds' epochs and schedule shape and stops at the same point."""
    records = {f"fold{f}": read_json(run.fold_result(f)) for f in folds}
    fractions = []
    for name, record in records.items():
        total = record.get("total_steps")
        if not total:
            raise KitError(f"--full-train: {run.fold_result(int(name[4:]))} has no total_steps (a run from an "
                           f"older kaggle-kit); retrain the CV folds")
        fractions.append(record["best_step"] / total)
    return float(np.median(fractions)), {n: {"best_step": r["best_step"], "total_steps": r["total_steps"],
                                             "score": r["score"]} for n, r in records.items()}


def train_full(cfg: TrainConfig, run: RunDir, prep: Prepared, trainer: FoldTrainer, dist: Dist = SINGLE) -> None:
    """Train the full-train model on every row (and every pseudo-labelled row) after the CV folds."""
    from kaggle_kit.train.trainer import save_full_train_outcome

    def stop() -> tuple[list[int], float, dict[str, dict]]:
        cv_folds = run.cv_folds()
        if set(cv_folds) < set(range(cfg.folds)) and not cv_folds:
            raise KitError("--full-train: no finished CV fold to take the step count from")
        return cv_folds, *full_train_stop(run, cv_folds)

    # rank 0 reads the folds' results (the other ranks may not see the run folder) and tells them
    cv_folds, stop_at, from_folds = dist.broadcast(dist.agree(lambda: stop() if dist.is_main else None))
    fold = cfg.full_fold
    every = _fold_data(prep, np.ones(len(prep.ids), dtype=bool), fit=True)
    pseudo_part = prep.pseudo.for_fold(None) if prep.pseudo is not None else None
    log.info("full train (saved as fold %d): %d rows%s, no validation, stopping at %.0f%% of the schedule (the "
             "median best step of folds %s)", fold, len(every.ids),
             f" + {len(pseudo_part.ids)} pseudo-labelled" if pseudo_part is not None else "", 100 * stop_at,
             ",".join(map(str, cv_folds)))
    outcome = trainer.fit(fold, every, None, pseudo=pseudo_part, stop_at=stop_at)
    if not dist.is_main:
        return
    save_full_train_outcome(run, outcome, len(every.ids), len(pseudo_part.ids) if pseudo_part is not None else 0,
                            stop_at, from_folds)
    log.info("full train: %d of %d steps (%.0fs)", outcome.best_step, outcome.total_steps, outcome.seconds)
