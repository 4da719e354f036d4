"""Shared fixtures: the real ELL data beside the repo, and tiny random-weight models built from configs."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# KIT_SHARED_DATA: the data folder on a machine without ../shared (the GPU acceptance run carries a slice of it)
SHARED_DATA = Path(os.environ.get("KIT_SHARED_DATA") or REPO.parent / "shared" / "data")


def tokenizer_dir() -> Path:
    """The tiny models' tokenizer: the embedded MiniLM's, or KIT_TEST_TOKENIZER's copy of it where the 88 MB
    package is not installed (the GPU acceptance run)."""
    from kaggle_kit.models.model import default_model_path

    return Path(os.environ["KIT_TEST_TOKENIZER"]) if os.environ.get("KIT_TEST_TOKENIZER") else default_model_path()


@pytest.fixture(autouse=True, scope="session")
def test_precision():
    """KIT_TEST_PRECISION (auto, fp16, bf16, fp32) replaces the precision setting's default for every run the tests
    start, so benchmarks/gpu_acceptance.py runs the same tests under each mixed precision on a GPU."""
    precision = os.environ.get("KIT_TEST_PRECISION")
    if not precision:
        yield
        return
    from kaggle_kit.config import TrainConfig

    info = TrainConfig.model_fields["precision"]
    before = info.default
    info.default = precision
    TrainConfig.model_rebuild(force=True)
    yield
    info.default = before
    TrainConfig.model_rebuild(force=True)


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tiny test models run many small ops; with one thread they skip a synchronisation per op, which on a
    shared 2-core machine made training them 5-15x slower (kit train runs take the thread count they find)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _shared_data(competition: str, *files: str) -> Path:
    """A competition's real data beside the repo; the tests that need it skip where it is absent."""
    folder = SHARED_DATA / competition
    if not all((folder / name).is_file() for name in files):
        pytest.skip(f"real {competition} data ({', '.join(files)}) not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def ell_dir() -> Path:
    return _shared_data("ell", "train.csv")


@pytest.fixture(scope="session")
def ell_small_dir(tmp_path_factory, ell_dir) -> Path:
    """The first 48 real essays, plus the real test.csv and sample_submission.csv."""
    out = tmp_path_factory.mktemp("ell_small")
    csv.field_size_limit(1 << 30)
    with open(ell_dir / "train.csv", newline="", encoding="utf-8") as src:
        rows = list(csv.reader(src))
    with open(out / "train.csv", "w", newline="", encoding="utf-8") as dst:
        csv.writer(dst).writerows(rows[:49])
    for name in ("test.csv", "sample_submission.csv"):
        (out / name).write_bytes((ell_dir / name).read_bytes())
    return out


@pytest.fixture(scope="session")
def fbe_small_dir(tmp_path_factory, ell_dir) -> Path:
    """Feedback Prize - Effective Arguments in its real file layout (train.csv, test.csv, sample_submission.csv,
    train/<essay_id>.txt, test/<essay_id>.txt), 141 elements of 24 real ELL essays with DERIVED labels: see
    tests/derived_data.py for how."""
    from tests.derived_data import build_fbe

    return build_fbe(ell_dir, tmp_path_factory.mktemp("fbe_small"))


@pytest.fixture(scope="session")
def aes2_small_dir(tmp_path_factory, ell_dir) -> Path:
    """Automated Essay Scoring 2.0 in its real file format, 48 real ELL essays with a DERIVED holistic score 1-6
    (tests/derived_data.py)."""
    from tests.derived_data import build_aes2

    return build_aes2(ell_dir, tmp_path_factory.mktemp("aes2_small"))


def _tiny_model(folder: Path, arch: str) -> Path:
    """A random-weight encoder with a real WordPiece tokenizer (the embedded MiniLM's)."""
    from transformers import AutoModel, AutoTokenizer, BertConfig, DebertaV2Config

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir()))
    common = dict(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=48, max_position_embeddings=512)
    if arch == "bert":
        config = BertConfig(**common)
    else:
        config = DebertaV2Config(**common, relative_attention=True, position_buckets=32, max_relative_positions=64,
                                 pos_att_type=["p2c", "c2p"], position_biased_input=False)
    import torch

    torch.manual_seed(0)
    model = AutoModel.from_config(config, attn_implementation="eager")
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def _tiny_decoder(folder: Path, family: str) -> Path:
    """A random-weight decoder (Llama, Qwen2 or Gemma2 family) with the embedded MiniLM's tokenizer, whose pad
    token is removed so the kit's pad-token handling is exercised as with real decoder tokenizers."""
    import torch
    from transformers import AutoModel, AutoTokenizer, Gemma2Config, LlamaConfig, Qwen2Config

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir()))
    common = dict(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    if family == "gemma2":
        config = Gemma2Config(**common, head_dim=8, query_pre_attn_scalar=8, sliding_window=64)
    else:
        config = {"llama": LlamaConfig, "qwen2": Qwen2Config}[family](**common)
    torch.manual_seed(0)
    model = AutoModel.from_config(config, attn_implementation="eager")
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tokenizer.eos_token = tokenizer.sep_token
    tokenizer.pad_token = None
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return _tiny_decoder(tmp_path_factory.mktemp("models") / "tiny-llama", "llama")


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory) -> Path:
    return _tiny_decoder(tmp_path_factory.mktemp("models") / "tiny-qwen2", "qwen2")


@pytest.fixture(scope="session")
def tiny_gemma2(tmp_path_factory) -> Path:
    return _tiny_decoder(tmp_path_factory.mktemp("models") / "tiny-gemma2", "gemma2")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return _tiny_model(tmp_path_factory.mktemp("models") / "tiny-bert", "bert")


@pytest.fixture(scope="session")
def tiny_deberta(tmp_path_factory) -> Path:
    return _tiny_model(tmp_path_factory.mktemp("models") / "tiny-deberta-v2", "deberta")


def _tiny_run(tmp_path_factory, competition: str, data: Path, model: Path, *flags: str) -> Path:
    """`kit train COMPETITION` of `model` on `data`, 2 folds of 1 epoch, into a fresh runs/<competition>-tiny."""
    from tests.helpers import invoke

    out = tmp_path_factory.mktemp("runs") / f"{competition}-tiny"
    code = invoke("train", competition, "--data", data, "--model", model, "--folds", "2", "--epochs", "1", *flags,
                  "--out", out)
    assert code == 0
    return out


@pytest.fixture(scope="session")
def ell_tiny_run(tmp_path_factory, ell_small_dir, tiny_bert) -> Path:
    """A complete 2-fold run of the tiny BERT on 48 real essays (about 10 s), shared by every test that needs one."""
    return _tiny_run(tmp_path_factory, "ell", ell_small_dir, tiny_bert, "--max-len", "64", "--batch-size", "4",
                     "--eval-every", "2", "--pooling", "attention", "--llrd", "0.8", "--fgm-eps", "0.5", "--ema", "0.9")


@pytest.fixture(scope="session")
def ell_lora_run(tmp_path_factory, ell_small_dir, tiny_llama) -> Path:
    """Fold 0 of a 2-fold LoRA run (r 4) of the tiny Llama on 48 real essays, shared by the LoRA bundle and the CPU
    packing tests. Tests must leave it as they found it."""
    return _tiny_run(tmp_path_factory, "ell", ell_small_dir, tiny_llama, "--lora-r", "4", "--train-folds", "0",
                     "--max-len", "32", "--lr", "1e-3", "--threads", "1")


@pytest.fixture(scope="session")
def uspppm_tiny_run(tmp_path_factory, uspppm_small_dir, tiny_bert) -> Path:
    """A complete 2-fold run of the tiny BERT on 549 real pairs (default input format, BCE and its sigmoid)."""
    return _tiny_run(tmp_path_factory, "uspppm", uspppm_small_dir, tiny_bert, "--max-len", "32", "--batch-size", "16",
                     "--eval-every", "1")


@pytest.fixture(scope="session")
def fbe_tiny_run(tmp_path_factory, fbe_small_dir, tiny_bert) -> Path:
    """A complete 2-fold run of the tiny BERT on the derived FBE fixture (3-class cross-entropy, softmax, fitted
    temperature in postprocess.json). Tests must leave it as they found it."""
    return _tiny_run(tmp_path_factory, "fbe", fbe_small_dir, tiny_bert, "--max-len", "64", "--batch-size", "8")


@pytest.fixture(scope="session")
def aes2_tiny_run(tmp_path_factory, aes2_small_dir, tiny_bert) -> Path:
    """A complete 2-fold run of the tiny BERT on the derived AES2 fixture (MSE, clip to 1-6, thresholds fitted on
    the OOF predictions in postprocess.json). Tests must leave it as they found it."""
    return _tiny_run(tmp_path_factory, "aes2", aes2_small_dir, tiny_bert, "--max-len", "64", "--batch-size", "4")


@pytest.fixture(scope="session")
def image_packages_of_this_env(tmp_path_factory) -> Path:
    """A Kaggle image list that has every kaggle-kit requirement at its installed version: bundling downloads
    nothing, so tests never need PyPI."""
    from importlib.metadata import distributions

    path = tmp_path_factory.mktemp("image") / "image.txt"
    lines = sorted({f"{d.metadata['Name']}=={d.version}" for d in distributions()
                    if d.metadata["Name"] and d.metadata["Name"] != "kaggle-kit"})
    path.write_text("# date: test\n# python: 3.11\n" + "\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def ell_tiny_bundle(tmp_path_factory, ell_tiny_run, image_packages_of_this_env) -> Path:
    """`kit bundle` of ell_tiny_run (no offline check), owned by `kit-tester`. Tests must not modify it."""
    from kaggle_kit.registry import get_competition
    from kaggle_kit.ship.bundle import build_bundle, load_image_packages

    out = tmp_path_factory.mktemp("bundles")
    bundle = build_bundle(get_competition("ell"), [ell_tiny_run], out, owner="kit-tester",
                          image=load_image_packages(image_packages_of_this_env), log=lambda _: None)
    return bundle.path


@pytest.fixture(scope="session")
def uspppm_dir() -> Path:
    return _shared_data("uspppm", "train.csv", "cpc_titles.csv")


@pytest.fixture(scope="session")
def uspppm_small_dir(tmp_path_factory, uspppm_dir) -> Path:
    """Every pair of the first 12 real anchors (549 rows), the real test.csv and sample_submission.csv, and a
    titles file cut down to the codes those use, with only the two required columns (code, title)."""
    import pandas as pd

    out = tmp_path_factory.mktemp("uspppm_small")
    train = pd.read_csv(uspppm_dir / "train.csv", dtype=str, keep_default_na=False)
    anchors = train["anchor"].drop_duplicates().iloc[:12]
    train[train["anchor"].isin(anchors)].to_csv(out / "train.csv", index=False)
    test = pd.read_csv(uspppm_dir / "test.csv", dtype=str, keep_default_na=False)
    for name in ("test.csv", "sample_submission.csv"):
        (out / name).write_bytes((uspppm_dir / name).read_bytes())
    contexts = set(train["context"]) | set(test["context"])
    titles = pd.read_csv(uspppm_dir / "cpc_titles.csv", usecols=["code", "title"], dtype=str, keep_default_na=False)
    keep = titles["code"].isin(contexts | {c[0] for c in contexts})
    titles[keep].to_csv(out / "cpc_titles.csv", index=False)
    return out
