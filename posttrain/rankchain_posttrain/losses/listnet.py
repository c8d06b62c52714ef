"""ListNet on chain-corrected teacher targets."""

from __future__ import annotations

import torch

from ._chain import (
    TeacherListLoss,
    check_list_loss_args,
    MASKED_SCORE,
    chain_cosine,
    offdiag_mask,
    reduce_chains,
    refine_teacher,
)

CITATION = """@inproceedings{cao2007listnet,
  title     = {Learning to Rank: From Pairwise Approach to Listwise Approach},
  author    = {Cao, Zhe and Qin, Tao and Liu, Tie-Yan and Tsai, Ming-Feng and Li, Hang},
  booktitle = {ICML},
  year      = {2007}
}"""


def listnet_loss(
    student_sim: torch.Tensor,
    teacher_sim: torch.Tensor,
    valid: torch.Tensor,
    tau: float = 0.05,
    tau2: float = 0.05,
    omega: float = 0.5,
    reduction: str = "mean",
) -> torch.Tensor:
    """Top-one ListNet: cross-entropy between target and student softmax distributions per row.

    Formula, for one chain (R = the chain-corrected teacher matrix of ``chain_listmle_loss``):

        S = student_cos / tau,  R = refine(teacher_cos / tau2, omega)
        loss_i = - sum_{j != i} softmax(R[i, -i])_j * log_softmax(S[i, -i])_j
        loss   = mean over chains of (mean over rows i of loss_i)

    Args:
        student_sim: student cosine similarities (not yet divided by tau).
        teacher_sim: teacher cosine similarities (not yet divided by tau2); detached here.
        valid: which positions of each padded chain are real sentences.
        tau: student temperature (> 0). Default 0.05.
        tau2: teacher temperature (> 0). Default 0.05.
        omega: chain-order correction strength (>= 0). Default 0.5.
        reduction: "mean" over chains, "sum", or "none" (one value per chain).

    Inputs:
        student_sim ``[B, K, K]``, teacher_sim ``[B, K, K]``, valid ``[B, K]`` bool (padded chains).

    Returns:
        A float32 scalar, or ``[B]`` with reduction "none".

    Requirements:
        1. Chains in chain order (anchor first).
        2. At least two sentences per chain for a non-zero loss.

    Relations:
        - Same targets as :func:`rankchain_posttrain.losses.chain_listmle.chain_listmle_loss`, but it
          matches the whole target distribution (soft) instead of the likelihood of one permutation,
          so it also transfers how far apart the teacher puts the members, not only their order.

    References:
        Cao et al. 2007 (ListNet). See ``CITATION``.

    Example:
        >>> s, valid = chain_cosine(student_emb, lengths); t, _ = chain_cosine(teacher_emb, lengths)
        >>> listnet_loss(s, t, valid)
    """
    tau, tau2, omega = check_list_loss_args(student_sim, teacher_sim, valid, tau, tau2, omega, reduction)
    lists = offdiag_mask(valid)
    target = refine_teacher(teacher_sim.detach().float() / tau2, valid, omega)
    p_target = torch.softmax(target.masked_fill(~lists, MASKED_SCORE), dim=-1) * lists
    log_p_student = torch.log_softmax((student_sim.float() / tau).masked_fill(~lists, MASKED_SCORE), dim=-1)
    per_row = -(p_target * log_p_student).sum(dim=-1)
    # Rows with no list members (length-1 chains, padding) contribute 0.
    per_row = per_row * lists.any(dim=-1)
    return reduce_chains(per_row, valid, reduction)


class ListNetLoss(TeacherListLoss):
    """Thin module around :func:`listnet_loss`: ``forward(student_emb [N, d], teacher_emb [N, d], lengths [B])``."""

    name = "listnet"
    citation = CITATION

    def loss(self, student_cos: torch.Tensor, teacher_cos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return listnet_loss(student_cos, teacher_cos, valid, self.tau, self.tau2, self.omega, self.reduction)
