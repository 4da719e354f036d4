import torch

from kaggle_kit.models.model import build_model, load_backbone_config
from kaggle_kit.train.adversarial import AWP, FGM
from kaggle_kit.train.ema import EMA


def _model_with_grads(model_dir):
    torch.manual_seed(0)
    model = build_model(load_backbone_config(model_dir, 0.0), 2, "mean", weights_from=model_dir)
    ids = torch.randint(5, 200, (4, 9))
    model(input_ids=ids, attention_mask=torch.ones_like(ids)).pow(2).mean().backward()
    return model


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_fgm_perturbs_embeddings_then_restores_exactly(tiny_bert):
    model = _model_with_grads(tiny_bert)
    before = _snapshot(model)
    fgm = FGM(model, model.backbone.get_input_embeddings(), eps=1.0)
    fgm.attack()
    emb = model.backbone.get_input_embeddings().weight
    assert not torch.equal(emb, before["backbone.embeddings.word_embeddings.weight"])
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert moved == ["backbone.embeddings.word_embeddings.weight"]
    fgm.restore()
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_awp_perturbs_within_bound_then_restores_exactly(tiny_deberta):
    model = _model_with_grads(tiny_deberta)
    before = _snapshot(model)
    awp = AWP(model, adv_lr=1.0, adv_eps=0.01)
    awp.attack()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert changed and all("weight" in n for n in changed)
    for n, p in model.named_parameters():
        assert torch.all((p - before[n]).abs() <= 0.01 * before[n].abs() + 1e-7), n
    awp.restore()
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_ema_applied_swaps_and_restores(tiny_bert):
    model = _model_with_grads(tiny_bert)
    ema = EMA(model, decay=0.5)
    live = _snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update()
    after_update = _snapshot(model)
    with ema.applied():
        for n, p in model.named_parameters():
            assert torch.allclose(p, live[n] + 0.5), n
    assert all(torch.equal(p, after_update[n]) for n, p in model.named_parameters())
