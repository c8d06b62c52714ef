"""ChainOrder: ListMLE on targets from chain positions only -- no teacher (the "pure chain order" arm, issue 14)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._chain import chain_cosine, check_positive, check_reduction, offdiag_mask, reduce_chains
from .chain_listmle import CITATION, listmle_rows


def chain_order_targets(valid: torch.Tensor) -> torch.Tensor:
    """Targets ``[B, K, K]`` that rank row i's columns by chain distance only.

    ``target[i, j] = -|i - j| - 0.5 * [j > i]``: nearer positions first; of the two positions at the
    same distance, the one toward the anchor (j < i) ranks first. Padding is 0 (masked by the loss).
    """
    k = valid.shape[-1]
    pos = torch.arange(k, device=valid.device, dtype=torch.float32)
    gap = pos.unsqueeze(0) - pos.unsqueeze(1)  # [K, K]: j - i
    target = -gap.abs() - 0.5 * (gap > 0).float()
    return target.expand(valid.shape[0], k, k) * (valid.unsqueeze(2) & valid.unsqueeze(1)).float()


def chain_order_loss(student_sim: torch.Tensor, valid: torch.Tensor, tau: float = 0.05, reduction: str = "mean") -> torch.Tensor:
    """Listwise loss whose target order is the chain's own order, with no teacher at all.

    Formula, for one chain of k sentences (anchor = 0, rewrite p = p):

        S = student_cos / tau
        loss_i = ListMLE(S[i, -i], order of target[i, -i]),   target[i, j] = -|i - j| - 0.5 [j > i]
        loss   = mean over chains of (mean over rows i of loss_i)

    This is the limit the chain correction of :func:`chain_listmle_loss` moves toward as omega grows,
    without the teacher's similarities that the correction starts from: the student learns only that
    sentences nearer in the chain are more similar. Ties at equal distance rank the step toward the
    anchor first (a fixed, documented choice; the chain says nothing about it).

    Args:
        student_sim: ``[B, K, K]`` student cosine similarities (not yet divided by tau).
        valid: ``[B, K]`` bool, True where position p < length of chain b.
        tau: student temperature (> 0). Default 0.05.
        reduction: "mean" over chains, "sum", or "none" (one value per chain).

    Returns:
        A float32 scalar (or ``[B]`` with reduction "none").

    Requirements:
        Chains in chain order (anchor first); at least two sentences for a non-zero loss.

    Relations:
        :func:`rankchain_posttrain.losses.chain_listmle.chain_listmle_loss` ranks by the teacher's
        similarities corrected toward chain order by omega; this loss ranks by chain order only.

    References:
        Xia et al. 2008 (ListMLE); He et al. 2025 (ranking chains). See ``CITATION``.

    Example:
        >>> s, valid = chain_cosine(student_emb, lengths)
        >>> chain_order_loss(s, valid)
    """
    tau = check_positive("tau", tau)
    check_reduction(reduction)
    if student_sim.ndim != 3 or student_sim.shape[:2] != valid.shape or student_sim.shape[1] != student_sim.shape[2]:
        raise ValueError(f"shape mismatch: student_sim {tuple(student_sim.shape)}, valid {tuple(valid.shape)} (expected [B, K, K], [B, K])")
    per_row = listmle_rows(student_sim.float() / tau, chain_order_targets(valid), offdiag_mask(valid))
    return reduce_chains(per_row, valid, reduction)


class ChainOrderLoss(nn.Module):
    """``forward(student_emb [N, d], teacher_emb (ignored, may be None), lengths [B]) -> scalar``; needs no teacher."""

    name = "chain_order"
    citation = CITATION
    needs_teacher = False

    def __init__(self, tau: float = 0.05, reduction: str = "mean"):
        super().__init__()
        self.tau = check_positive("tau", tau)
        self.reduction = check_reduction(reduction)

    def forward(self, student_emb: torch.Tensor, teacher_emb: torch.Tensor | None, lengths: torch.Tensor) -> torch.Tensor:
        s, valid = chain_cosine(student_emb, lengths)
        return chain_order_loss(s, valid, self.tau, self.reduction)

    def config_dict(self) -> dict[str, Any]:
        return {"tau": self.tau, "reduction": self.reduction, "targets": "chain positions only"}
