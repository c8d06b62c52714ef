"""Loss values and gradients against slow, obviously-correct loop references (STYLE #14)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rankchain_posttrain.losses import (
    ChainListMLELoss,
    CombinedLoss,
    InfoNCELoss,
    ListNetLoss,
    chain_cosine,
    chain_listmle_loss,
    infonce_loss,
    listnet_loss,
    parse_loss_spec,
    refine_teacher,
)


# ---------------------------------------------------------------- slow references (one chain, loops)


def ref_refine(T: torch.Tensor, omega: float, defective_index: bool = False) -> list[list[float]]:
    """DESIGN.md refinement, written as loops. ``defective_index`` reproduces the reference code's bug (rank j, not j - i)."""
    k = T.shape[0]
    R = [[0.0] * k for _ in range(k)]
    for i in range(k):
        ordered = sorted((float(T[i, j]) for j in range(i, k)), reverse=True)
        for j in range(i, k):
            rank = j if defective_index else j - i
            o = ordered[min(rank, len(ordered) - 1)]
            d = o - float(T[i, j])
            sign = (d > 0) - (d < 0)
            R[i][j] = float(T[i, j]) + sign * math.log(1 + omega * abs(d))
            R[j][i] = R[i][j]
    return R


def ref_listmle(S: torch.Tensor, R: list[list[float]]) -> torch.Tensor:
    k = S.shape[0]
    rows = []
    for i in range(k):
        cols = sorted((j for j in range(k) if j != i), key=lambda j: -R[i][j])
        total = S.new_zeros(())
        for r in range(len(cols)):
            total = total + torch.logsumexp(torch.stack([S[i, j] for j in cols[r:]]), dim=0) - S[i, cols[r]]
        rows.append(total)
    return torch.stack(rows).mean()


def ref_chain_listmle(s_cos, t_cos, tau, tau2, omega, defective_index=False):
    return ref_listmle(s_cos / tau, ref_refine(t_cos / tau2, omega, defective_index))


def ref_listnet(s_cos, t_cos, tau, tau2, omega):
    S, R = s_cos / tau, ref_refine(t_cos / tau2, omega)
    k = S.shape[0]
    rows = []
    for i in range(k):
        cols = [j for j in range(k) if j != i]
        p = torch.softmax(torch.tensor([R[i][j] for j in cols], dtype=S.dtype), dim=0)
        logq = torch.log_softmax(torch.stack([S[i, j] for j in cols]), dim=0)
        rows.append(-(p * logq).sum())
    return torch.stack(rows).mean()


def ref_infonce(emb: torch.Tensor, lengths: list[int], tau: float) -> torch.Tensor:
    e = F.normalize(emb, dim=-1)
    chain_of = [c for c, n in enumerate(lengths) for _ in range(n)]
    terms = []
    for a in range(len(chain_of)):
        for b in (a - 1, a + 1):
            if 0 <= b < len(chain_of) and chain_of[b] == chain_of[a]:
                pos = e[a] @ e[b] / tau
                negs = [e[a] @ e[m] / tau for m in range(len(chain_of)) if chain_of[m] != chain_of[a]]
                terms.append(-pos + torch.logsumexp(torch.stack([pos, *negs]), dim=0))
    return torch.stack(terms).mean()


def cos(x: torch.Tensor) -> torch.Tensor:
    x = F.normalize(x, dim=-1)
    return x @ x.T


def random_chain(k: int, d: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, d, generator=g, dtype=torch.float64), torch.randn(k, d, generator=g, dtype=torch.float64)


# ---------------------------------------------------------------- tests


def test_issue5_refine_uses_rank_j_minus_i_not_j():
    """Row 1 slice [20, 10, 15] sorts to [20, 15, 10]; column 2 is rank 2 - 1 = 1 -> ordered 15, so
    T[1, 2] = 10 moves up by ln(1 + 0.5 * 5). The defective index (rank j = 2 -> 10) changes nothing."""
    T = torch.tensor(
        [[20.0, 12.0, 11.0, 5.0],
         [12.0, 20.0, 10.0, 15.0],
         [11.0, 10.0, 20.0, 9.0],
         [5.0, 15.0, 9.0, 20.0]]
    )
    valid = torch.ones(1, 4, dtype=torch.bool)
    R = refine_teacher(T.unsqueeze(0), valid, omega=0.5)[0]
    assert R[1, 2].item() == pytest.approx(10 + math.log(1 + 0.5 * 5), abs=1e-5)
    assert R[2, 1].item() == pytest.approx(R[1, 2].item())  # mirrored
    assert R[1, 3].item() == pytest.approx(15 - math.log(1 + 0.5 * 5), abs=1e-5)  # moved down toward 10
    assert R[0, 1].item() == pytest.approx(12.0)  # row 0 already in chain order: unchanged
    defective = ref_refine(T, 0.5, defective_index=True)
    assert defective[1][2] == pytest.approx(10.0)  # the bug leaves the inversion alone
    assert torch.allclose(R.double(), torch.tensor(ref_refine(T, 0.5), dtype=torch.float64), atol=1e-5)


def test_issue5_refine_pulls_inverted_pairs_toward_chain_order():
    torch.manual_seed(1)
    for k in (3, 5, 8):
        t_cos = cos(torch.randn(k, 8))
        T = t_cos / 0.05
        R = refine_teacher(T.unsqueeze(0), torch.ones(1, k, dtype=torch.bool), omega=0.5)[0]
        for i in range(k):
            for j in range(i + 1, k - 1):
                # an inverted adjacent pair (farther sentence scored higher) gets closer, never swapped beyond
                if T[i, j] < T[i, j + 1]:
                    assert (R[i, j + 1] - R[i, j]) < (T[i, j + 1] - T[i, j]) + 1e-4


@pytest.mark.parametrize("k,omega,tau,tau2", [(2, 0.5, 0.05, 0.05), (4, 0.5, 0.05, 0.05), (6, 1.0, 0.1, 0.05), (7, 0.0, 0.05, 0.2)])
def test_issue5_chain_listmle_matches_loop_reference(k, omega, tau, tau2):
    s_emb, t_emb = random_chain(k, seed=k)
    s_cos = cos(s_emb).requires_grad_(True)
    t_cos = cos(t_emb)
    fast = chain_listmle_loss(s_cos.unsqueeze(0), t_cos.unsqueeze(0), torch.ones(1, k, dtype=torch.bool), tau, tau2, omega)
    s_ref = s_cos.detach().clone().requires_grad_(True)
    slow = ref_chain_listmle(s_ref, t_cos, tau, tau2, omega)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-5, abs=1e-5)
    fast.backward()
    slow.backward()
    assert torch.allclose(s_cos.grad.double(), s_ref.grad, atol=1e-5)


def test_issue5_chain_listmle_differs_from_defective_j_index():
    """On a disordered teacher the loss with the reference's j index is a different number."""
    k = 6
    s_emb, t_emb = random_chain(k, seed=3)
    s_cos, t_cos = cos(s_emb), cos(t_emb)
    fast = chain_listmle_loss(s_cos.unsqueeze(0), t_cos.unsqueeze(0), torch.ones(1, k, dtype=torch.bool)).item()
    correct = ref_chain_listmle(s_cos, t_cos, 0.05, 0.05, 0.5).item()
    defective = ref_chain_listmle(s_cos, t_cos, 0.05, 0.05, 0.5, defective_index=True).item()
    assert fast == pytest.approx(correct, rel=1e-5)
    assert abs(fast - defective) > 1e-3


def test_issue5_chain_listmle_gradients_through_embeddings_match_reference():
    lengths = [5, 3]
    torch.manual_seed(0)
    emb = torch.randn(8, 12, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(8, 12, dtype=torch.float64)
    fast = ChainListMLELoss()(emb, teacher, torch.tensor(lengths))
    fast.backward()
    emb2 = emb.detach().clone().requires_grad_(True)
    parts, off = [], 0
    for n in lengths:
        parts.append(ref_chain_listmle(cos(emb2[off : off + n]), cos(teacher[off : off + n]), 0.05, 0.05, 0.5))
        off += n
    slow = torch.stack(parts).mean()
    slow.backward()
    assert fast.item() == pytest.approx(slow.item(), rel=1e-5)
    assert torch.allclose(emb.grad, emb2.grad, atol=1e-6)


@pytest.mark.parametrize("loss_cls", [ChainListMLELoss, ListNetLoss])
def test_issue5_batched_chains_equal_per_chain_losses(loss_cls):
    lengths = [5, 2, 7, 1, 4]
    torch.manual_seed(2)
    emb = torch.randn(sum(lengths), 10)
    teacher = torch.randn(sum(lengths), 10)
    per_chain = loss_cls(reduction="none")(emb, teacher, torch.tensor(lengths))
    singles, off = [], 0
    for n in lengths:
        singles.append(loss_cls()(emb[off : off + n], teacher[off : off + n], torch.tensor([n])))
        off += n
    assert per_chain.shape == (len(lengths),)
    assert torch.allclose(per_chain, torch.stack(singles), atol=1e-5)
    assert loss_cls()(emb, teacher, torch.tensor(lengths)).item() == pytest.approx(torch.stack(singles).mean().item(), rel=1e-5)
    assert loss_cls(reduction="sum")(emb, teacher, torch.tensor(lengths)).item() == pytest.approx(torch.stack(singles).sum().item(), rel=1e-5)
    assert per_chain[3].item() == 0.0  # a chain of one sentence has nothing to rank


@pytest.mark.parametrize("k", [2, 5])
def test_issue5_listnet_matches_loop_reference(k):
    s_emb, t_emb = random_chain(k, seed=10 + k)
    s_cos = cos(s_emb).requires_grad_(True)
    t_cos = cos(t_emb)
    fast = listnet_loss(s_cos.unsqueeze(0), t_cos.unsqueeze(0), torch.ones(1, k, dtype=torch.bool))
    s_ref = s_cos.detach().clone().requires_grad_(True)
    slow = ref_listnet(s_ref, t_cos, 0.05, 0.05, 0.5)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-5, abs=1e-6)
    fast.backward()
    slow.backward()
    assert torch.allclose(s_cos.grad.double(), s_ref.grad, atol=1e-5)


def test_issue5_infonce_matches_loop_reference():
    lengths = [4, 3, 5]
    torch.manual_seed(4)
    emb = torch.randn(sum(lengths), 9, dtype=torch.float64, requires_grad=True)
    fast = infonce_loss(emb, torch.tensor(lengths), tau=0.1)
    emb2 = emb.detach().clone().requires_grad_(True)
    slow = ref_infonce(emb2, lengths, 0.1)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-5)
    fast.backward()
    slow.backward()
    assert torch.allclose(emb.grad, emb2.grad, atol=1e-6)


def test_infonce_single_chain_has_no_negatives_and_zero_loss():
    emb = torch.randn(4, 6, requires_grad=True)
    loss = infonce_loss(emb, torch.tensor([4]))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    assert torch.isfinite(emb.grad).all()


@pytest.mark.parametrize("spec", ["chain_listmle", "listnet", "infonce", "chain_listmle:1,listnet:0.5,infonce:0.1"])
def test_issue5_losses_finite_in_bf16(spec):
    torch.manual_seed(5)
    lengths = torch.tensor([6, 3, 4])
    emb = torch.randn(13, 32, dtype=torch.bfloat16, requires_grad=True)
    teacher = torch.randn(13, 32, dtype=torch.bfloat16)
    parts = CombinedLoss.from_spec(spec)(emb, teacher, lengths)
    total = sum(parts.values())
    assert torch.isfinite(total)
    total.backward()
    assert torch.isfinite(emb.grad.float()).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 losses are checked only under CUDA")
def test_issue5_losses_finite_in_fp16_cuda():
    lengths = torch.tensor([6, 3])
    emb = torch.randn(9, 32, dtype=torch.float16, device="cuda", requires_grad=True)
    teacher = torch.randn(9, 32, dtype=torch.float16, device="cuda")
    total = sum(CombinedLoss.from_spec("chain_listmle,listnet,infonce")(emb, teacher, lengths.cuda()).values())
    assert torch.isfinite(total)


def test_combined_returns_weighted_named_parts():
    torch.manual_seed(6)
    emb, teacher, lengths = torch.randn(9, 8), torch.randn(9, 8), torch.tensor([4, 5])
    combined = CombinedLoss.from_spec("chain_listmle:2,infonce:0.5", tau=0.1, tau2=0.07, omega=0.3)
    parts = combined(emb, teacher, lengths)
    assert set(parts) == {"chain_listmle", "infonce"}
    assert parts["chain_listmle"].item() == pytest.approx(2 * ChainListMLELoss(0.1, 0.07, 0.3)(emb, teacher, lengths).item(), rel=1e-6)
    assert parts["infonce"].item() == pytest.approx(0.5 * InfoNCELoss(0.1)(emb, None, lengths).item(), rel=1e-6)
    cfg = combined.config_dict()
    assert cfg["chain_listmle"] == {"weight": 2.0, "tau": 0.1, "tau2": 0.07, "omega": 0.3, "reduction": "mean"}
    assert "xia2008listwise" in combined.citation["chain_listmle"] and "oord2018cpc" in combined.citation["infonce"]


@pytest.mark.parametrize(
    "make,fragment",
    [
        (lambda: ChainListMLELoss(tau=0), "tau must be a finite number > 0, got 0"),
        (lambda: ChainListMLELoss(tau2=-1.0), "tau2 must be a finite number > 0, got -1.0"),
        (lambda: ListNetLoss(omega=float("nan")), "omega must be a finite number >= 0, got nan"),
        (lambda: InfoNCELoss(tau="0.1"), "tau must be a finite number > 0, got '0.1'"),
        (lambda: ChainListMLELoss(reduction="avg"), "got 'avg'"),
        (lambda: parse_loss_spec("chain_listmle,listmle"), "unknown loss 'listmle'"),
        (lambda: parse_loss_spec("listnet:-1"), "got '-1'"),
        (lambda: parse_loss_spec("listnet:abc"), "got 'abc'"),
        (lambda: parse_loss_spec("listnet,listnet:2"), "listed twice"),
    ],
)
def test_constructor_errors_name_the_value(make, fragment):
    with pytest.raises(ValueError) as info:
        make()
    assert fragment in str(info.value)


def test_chain_cosine_pads_and_masks():
    emb = torch.randn(7, 4)
    sims, valid = chain_cosine(emb, torch.tensor([3, 4]))
    assert sims.shape == (2, 4, 4)
    assert valid.tolist() == [[True, True, True, False], [True, True, True, True]]
    assert torch.allclose(sims[0, :3, :3], cos(emb[:3]), atol=1e-6)
    assert torch.allclose(sims[1], cos(emb[3:]), atol=1e-6)
    with pytest.raises(ValueError, match="sum to 8"):
        chain_cosine(emb, torch.tensor([4, 4]))


@pytest.mark.parametrize("spec", ["chain_listmle", "listnet", "infonce"])
def test_issue5_losses_compute_in_float32_under_bf16_autocast(spec):
    """Autocast must not round the cosines to bf16: the loss under autocast equals the float32 loss."""
    torch.manual_seed(8)
    lengths = torch.tensor([6, 5])
    emb, teacher = torch.randn(11, 32), torch.randn(11, 32)
    loss = CombinedLoss.from_spec(spec)
    plain = sum(loss(emb, teacher, lengths).values())
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        autocast = sum(loss(emb, teacher, lengths).values())
    assert autocast.dtype == torch.float32
    assert autocast.item() == pytest.approx(plain.item(), rel=1e-5)


# ---------------------------------------------------------------- chain_order: targets from positions only (issue 14)


def test_chain_order_loss_matches_loop_reference_per_chain_and_padded():
    from rankchain_posttrain.losses import chain_order_loss

    torch.manual_seed(3)
    lengths = torch.tensor([5, 3, 2])
    emb = torch.randn(int(lengths.sum()), 8, dtype=torch.float64).float()
    s, valid = chain_cosine(emb, lengths)
    per_chain = chain_order_loss(s, valid, tau=0.1, reduction="none")
    start = 0
    for b, k in enumerate(lengths.tolist()):
        e = F.normalize(emb[start : start + k], dim=-1)
        start += k
        R = [[-abs(i - j) - 0.5 * (j > i) for j in range(k)] for i in range(k)]
        ref = ref_listmle((e @ e.T) / 0.1, R)
        assert per_chain[b].item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-5)
    assert chain_order_loss(s, valid, tau=0.1).item() == pytest.approx(per_chain.mean().item(), rel=1e-6)


def test_chain_order_loss_prefers_a_student_that_orders_the_chain_and_ignores_the_teacher():
    from rankchain_posttrain.losses import ChainOrderLoss, chain_order_targets

    # points on a line: distance in embedding space grows with chain distance -> ordered
    k = 6
    angles = torch.linspace(0, 1.2, k)
    ordered = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)
    scrambled = ordered[torch.tensor([0, 4, 2, 5, 1, 3])]
    lengths = torch.tensor([k])
    loss = ChainOrderLoss(tau=0.05)
    good = loss(ordered, None, lengths)
    bad = loss(scrambled, torch.randn(k, 4), lengths)
    assert good.item() < bad.item()
    # teacher embeddings, whatever they are, do not change the value
    assert loss(ordered, torch.randn(k, 3), lengths).item() == pytest.approx(good.item())
    # row 2 ranks: 1 (toward the anchor) and 3 at distance 1, then 0 and 4, then 5
    t = chain_order_targets(torch.ones(1, k, dtype=torch.bool))[0, 2]
    order = [j for j in t.argsort(descending=True).tolist() if j != 2]
    assert order == [1, 3, 0, 4, 5]
    x = ordered.clone().requires_grad_(True)
    loss(x, None, lengths).backward()
    assert torch.isfinite(x.grad).all()


def test_chain_order_needs_no_teacher_in_a_combined_spec():
    assert CombinedLoss.from_spec("chain_order").needs_teacher is False
    assert CombinedLoss.from_spec("chain_order:1,chain_listmle:0.5").needs_teacher is True
    with pytest.raises(ValueError, match="tau"):
        from rankchain_posttrain.losses import ChainOrderLoss

        ChainOrderLoss(tau=0)
