import pytest
import torch

from kaggle_kit.errors import KitError
from kaggle_kit.models.model import (
    build_model,
    check_model_dir,
    default_model_path,
    find_encoder_layers,
    llrd_param_groups,
    load_backbone_config,
)


@pytest.fixture(params=["tiny_bert", "tiny_deberta"])
def model_dir(request):
    return request.getfixturevalue(request.param)


def test_builds_and_runs_forward(model_dir):
    model = build_model(load_backbone_config(model_dir, 0.0), 6, "attention", weights_from=model_dir)
    ids = torch.randint(5, 100, (2, 11))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert out.shape == (2, 6)


def test_dropout_override(model_dir):
    config = load_backbone_config(model_dir, 0.0)
    assert config.hidden_dropout_prob == 0.0 and config.attention_probs_dropout_prob == 0.0
    assert load_backbone_config(model_dir, None).hidden_dropout_prob == 0.1


def test_llrd_groups(model_dir):
    model = build_model(load_backbone_config(model_dir, 0.0), 3, "mean", weights_from=model_dir)
    lr, head_lr, decay = 1e-4, 1e-3, 0.5
    groups = llrd_param_groups(model, lr, head_lr, decay, weight_decay=0.01)
    embeddings, layers = find_encoder_layers(model.backbone)
    assert embeddings is not None and len(layers) == 2

    # every trainable parameter in exactly one group
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)

    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    for p in embeddings.parameters():
        assert lr_of[id(p)] == pytest.approx(lr * decay**2)
    for p in layers[0].parameters():
        assert lr_of[id(p)] == pytest.approx(lr * decay)
    for p in layers[1].parameters():
        assert lr_of[id(p)] == pytest.approx(lr)
    for p in model.fc.parameters():
        assert lr_of[id(p)] == head_lr
    for name, p in model.named_parameters():
        if p.ndim <= 1:
            assert wd_of[id(p)] == 0.0, name
        else:
            assert wd_of[id(p)] == 0.01, name
    names = {g["name"] for g in groups}
    assert {"embeddings", "layer0", "layer1", "head", "head/no_decay"} <= names


def test_default_model_is_the_embedded_minilm():
    path = default_model_path()
    assert (path / "model.safetensors").is_file()
    assert load_backbone_config(path, None).num_hidden_layers == 6


def test_model_folder_without_weights(tmp_path, tiny_bert):
    (tmp_path / "config.json").write_bytes((tiny_bert / "config.json").read_bytes())
    with pytest.raises(KitError, match="no weights"):
        check_model_dir(tmp_path)
    with pytest.raises(KitError, match="not a folder"):
        check_model_dir(tmp_path / "missing")


def test_a_half_precision_checkpoint_trains_fp32_master_weights(tmp_path, tiny_bert):
    """transformers >= 5 would load an fp16 checkpoint as fp16 parameters, whose small updates vanish: the GPU run
    that found it trained a quick run to exactly the train-mean baseline."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from kaggle_kit.models.model import build_model, load_backbone_config

    half = tmp_path / "half"
    AutoModel.from_pretrained(str(tiny_bert)).half().save_pretrained(str(half))
    AutoTokenizer.from_pretrained(str(tiny_bert)).save_pretrained(str(half))
    model = build_model(load_backbone_config(half, 0.0), 6, "mean", weights_from=half)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    before = model.backbone.embeddings.word_embeddings.weight.detach().clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    ids = torch.tensor([[101, 2023, 2003, 102]])
    model(ids, torch.ones_like(ids)).sum().backward()
    optimizer.step()
    assert not torch.equal(before, model.backbone.embeddings.word_embeddings.weight)
