"""Issue 11: cross-encoder -> bi-encoder distillation (sentence and word level, false-negative filter)."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import CHAINS
from rankchain_posttrain.losses import (
    CombinedLoss,
    DistillLoss,
    distill_sentence_loss,
    distill_word_loss,
    false_negative_keep,
    fn_margin_schedule,
    token_similarity,
)
from rankchain_posttrain.modeling import embed


def slow_sentence(s, t, mask, pos, tau, tau_t, margin):
    """Reference: loops over lists and candidates."""
    out = []
    for b in range(s.shape[0]):
        keep = [j for j in range(s.shape[1]) if mask[b, j] and (margin is None or j == pos[b] or t[b, j] <= t[b, pos[b]] + margin)]
        if len(keep) < 2:
            out.append(s.new_zeros(()))
            continue
        zt = sum(math.exp(float(t[b, j]) / tau_t) for j in keep)
        ls = torch.logsumexp(torch.stack([s[b, j] / tau for j in keep]), 0)
        kl = s.new_zeros(())
        for j in keep:
            pt = math.exp(float(t[b, j]) / tau_t) / zt
            kl = kl + pt * (math.log(pt) - (s[b, j] / tau - ls))
        out.append(kl)
    return torch.stack(out).mean()


def slow_word(sim, attn, qm, pm, tau):
    out = []
    for b in range(sim.shape[0]):
        rows = []
        for i in range(sim.shape[1]):
            if not qm[b, i]:
                continue
            cols = [j for j in range(sim.shape[2]) if pm[b, j]]
            a = torch.stack([attn[b, i, j] for j in cols])
            a = a / a.sum()
            ls = torch.log_softmax(torch.stack([sim[b, i, j] / tau for j in cols]), 0)
            rows.append((a * (torch.log(a.clamp(min=1e-12)) - ls)).sum())
        out.append(torch.stack(rows).mean())
    return torch.stack(out).mean()


def random_lists(seed=0, B=4, L=7):
    g = torch.Generator().manual_seed(seed)
    s = (torch.rand(B, L, generator=g) * 2 - 1).requires_grad_(True)
    t = torch.randn(B, L, generator=g) * 2
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, 5:] = False
    mask[3, 2:] = False
    pos = torch.tensor([0, 2, 1, 0])
    return s, t, mask, pos


@pytest.mark.parametrize("margin", [None, 0.0, 0.7, 5.0])
def test_sentence_loss_matches_slow_reference_with_gradients_issue_11(margin):
    s, t, mask, pos = random_lists()
    fast = distill_sentence_loss(s, t, mask, pos, tau=0.1, tau_teacher=0.5, fn_margin=margin)
    (g_fast,) = torch.autograd.grad(fast, s)
    slow = slow_sentence(s, t, mask, pos, 0.1, 0.5, margin)
    (g_slow,) = torch.autograd.grad(slow, s)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-5, abs=1e-6)
    assert torch.allclose(g_fast, g_slow, atol=1e-5)


def test_false_negative_filter_drops_candidates_above_the_positive_and_tightens_issue_11():
    t = torch.tensor([[1.0, 3.0, 1.5, 0.0]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    pos = torch.tensor([0])
    assert false_negative_keep(t, mask, pos, 0.0).tolist() == [[True, False, False, True]]
    assert false_negative_keep(t, mask, pos, 1.0).tolist() == [[True, False, True, True]]
    assert false_negative_keep(t, mask, pos, 2.5).tolist() == [[True, True, True, True]]
    margins = [fn_margin_schedule(p, 2.0, 0.0) for p in (0.0, 0.25, 0.5, 1.0, 1.5)]
    assert margins == [2.0, 1.5, 1.0, 0.0, 0.0]
    # a filtered false negative no longer pulls the student's distribution
    s = torch.tensor([[0.5, 0.9, 0.1, 0.0]], requires_grad=True)
    loss = distill_sentence_loss(s, t, mask, pos, fn_margin=0.0)
    (g,) = torch.autograd.grad(loss, s)
    assert g[0, 1].item() == 0.0 and g[0, 2].item() == 0.0


def test_word_loss_matches_slow_reference_with_gradients_issue_11():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 4, 8, generator=g, requires_grad=True)
    p = torch.randn(2, 5, 8, generator=g, requires_grad=True)
    attn = torch.rand(2, 4, 5, generator=g)
    qm = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    pm = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    fast = distill_word_loss(token_similarity(q, p), attn, qm, pm, tau=0.2)
    gq_fast, gp_fast = torch.autograd.grad(fast, (q, p))
    slow = slow_word(token_similarity(q, p), attn, qm, pm, 0.2)
    gq_slow, gp_slow = torch.autograd.grad(slow, (q, p))
    assert fast.item() == pytest.approx(slow.item(), rel=1e-5)
    assert torch.allclose(gq_fast, gq_slow, atol=1e-5) and torch.allclose(gp_fast, gp_slow, atol=1e-5)
    # matching the teacher exactly gives 0
    sim = torch.log(attn.clamp(min=1e-6)) * 0.2
    assert distill_word_loss(sim, attn, torch.ones(2, 4, dtype=torch.bool), torch.ones(2, 5, dtype=torch.bool), tau=0.2).item() == pytest.approx(0.0, abs=1e-5)


def test_losses_are_finite_in_bf16_issue_11():
    s, t, mask, pos = random_lists()
    assert torch.isfinite(distill_sentence_loss(s.detach().bfloat16(), t.bfloat16(), mask, pos, fn_margin=0.5))
    sim = torch.rand(2, 3, 4).bfloat16()
    ones = torch.ones
    assert torch.isfinite(distill_word_loss(sim, torch.rand(2, 3, 4).bfloat16(), ones(2, 3, dtype=torch.bool), ones(2, 4, dtype=torch.bool)))


def test_bad_arguments_name_the_value_issue_11():
    s, t, mask, pos = random_lists()
    with pytest.raises(ValueError, match="tau must be"):
        distill_sentence_loss(s, t, mask, pos, tau=0)
    with pytest.raises(ValueError, match="fn_margin"):
        distill_sentence_loss(s, t, mask, pos, fn_margin=-1)
    with pytest.raises(ValueError, match="positive must be a real candidate"):
        distill_sentence_loss(s, t, mask, torch.tensor([0, 6, 1, 0]))
    with pytest.raises(ValueError, match="shape mismatch"):
        distill_sentence_loss(s, t[:, :3], mask, pos)
    with pytest.raises(ValueError, match="fn_end"):
        DistillLoss(fn_start=0.5, fn_end=1.0)


def test_short_distillation_run_lowers_the_kl_issue_11(minilm):
    """The student (real MiniLM) moves its score distribution toward a fixed teacher's."""
    torch.manual_seed(0)
    device = torch.device("cpu")
    # lists: anchor vs its steps and the other chains' anchors; teacher logits = graded chain distance
    queries = [c[0] for c in CHAINS]
    cands = [c[1:] + [o[0] for o in CHAINS if o is not c][:3] for c in CHAINS]
    L = len(cands[0])
    teacher = torch.tensor([[4.0 - 1.5 * j if j < 4 else -4.0 for j in range(L)] for _ in CHAINS])
    mask = torch.ones(len(CHAINS), L, dtype=torch.bool)
    pos = torch.zeros(len(CHAINS), dtype=torch.long)

    def kl(train: bool) -> torch.Tensor:
        q = embed(minilm, queries, device)
        c = embed(minilm, [x for cs in cands for x in cs], device).view(len(CHAINS), L, -1)
        s = torch.nn.functional.cosine_similarity(q.unsqueeze(1), c, dim=-1)
        return distill_sentence_loss(s, teacher, mask, pos, tau=0.05, fn_margin=None)

    with torch.no_grad():
        before = kl(False).item()
    opt = torch.optim.AdamW(minilm.parameters(), lr=5e-5)
    minilm.train()
    for _ in range(6):
        loss = kl(True)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = kl(False).item()
    assert after < before * 0.9, (before, after)


def test_distill_module_with_a_cross_encoder_teacher_sentence_and_word_level_issue_11(minilm, minilm_path):
    """End to end: CombinedLoss("distill") with a MiniLM cross-encoder teacher (same tokenizer: word level active)."""
    loss_fn = CombinedLoss.from_spec("distill", tau=0.05, cross_encoder_teacher=minilm_path)
    assert not loss_fn.needs_teacher
    chains = CHAINS[:3]
    sentences = [s for c in chains for s in c]
    lengths = torch.tensor([len(c) for c in chains])
    emb = embed(minilm, sentences, torch.device("cpu"))
    parts = loss_fn(emb, None, lengths, context={"sentences": sentences, "student": minilm, "progress": 0.5})
    value = parts["distill"]
    assert torch.isfinite(value) and value.item() > 0
    module = loss_fn.parts["distill"]
    assert module.last_stats["word_pairs"] == 3
    assert module.last_stats["fn_margin"] == pytest.approx(1.0)
    value.backward()
    grads = [p.grad for p in minilm.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    assert loss_fn.config_dict()["distill"]["teacher"] == minilm_path
    # without a teacher directory the error says which flag to pass
    with pytest.raises(ValueError, match="--cross-encoder-teacher"):
        CombinedLoss.from_spec("distill")(emb.detach(), None, lengths, context={"sentences": sentences})
