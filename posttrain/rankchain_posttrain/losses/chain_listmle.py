"""ChainListMLE: listwise ranking distillation on ranking chains (DESIGN.md, "Post-training")."""

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

CITATION = """@inproceedings{he2025refining,
  title     = {Refining Sentence Embedding Model through Ranking Sentences Generation with Large Language Models},
  author    = {He, Liyang and Liu, Chenglong and Li, Rui and Huang, Zhenya and Ruan, Shulan and Zhou, Jun and Chen, Enhong},
  booktitle = {Findings of the Association for Computational Linguistics: ACL 2025},
  pages     = {10627--10643},
  year      = {2025}
}
@inproceedings{xia2008listwise,
  title     = {Listwise Approach to Learning to Rank: Theory and Algorithm},
  author    = {Xia, Fen and Liu, Tie-Yan and Wang, Jue and Zhang, Wensheng and Li, Hang},
  booktitle = {ICML},
  year      = {2008}
}"""


def listmle_rows(scores: torch.Tensor, target: torch.Tensor, lists: torch.Tensor) -> torch.Tensor:
    """ListMLE negative log-likelihood of the order of ``target`` under ``scores``, per row.

    ``scores``, ``target``: ``[..., L]``; ``lists``: bool ``[..., L]`` marking list members.
    Returns ``[...]``: ``sum_r ( logsumexp_{r' >= r} s[pi_r'] - s[pi_r] )`` over list members, where
    ``pi`` sorts ``target`` descending (ties broken by position).
    """
    order = target.masked_fill(~lists, float("-inf")).argsort(dim=-1, descending=True, stable=True)
    s = scores.float().masked_fill(~lists, MASKED_SCORE).gather(-1, order)
    member = lists.gather(-1, order)  # members first, padding last
    suffix_lse = s.flip(-1).logcumsumexp(dim=-1).flip(-1)
    return ((suffix_lse - s) * member).sum(dim=-1)


def chain_listmle_loss(
    student_sim: torch.Tensor,
    teacher_sim: torch.Tensor,
    valid: torch.Tensor,
    tau: float = 0.05,
    tau2: float = 0.05,
    omega: float = 0.5,
    reduction: str = "mean",
) -> torch.Tensor:
    """Chain-corrected listwise distillation loss on per-chain cosine matrices.

    Formula, for one chain of k sentences (anchor = 0, rewrite p = p):

        T = teacher_cos / tau2,  S = student_cos / tau
        for j >= i:  o[i, j] = sort_desc(T[i, i:])[j - i]          (value if row i were in chain order)
                     d = o[i, j] - T[i, j]
                     R[i, j] = T[i, j] + sign(d) * ln(1 + omega * |d|),   R[j, i] = R[i, j]
        loss_i = ListMLE(S[i, -i], order of R[i, -i])  = sum_r ( logsumexp_{r' >= r} S[i, pi_r'] - S[i, pi_r] )
        loss   = mean over chains of (mean over rows i of loss_i)

    where ``-i`` drops the diagonal (self-similarity carries no ranking) and ``pi`` sorts R[i] descending.
    The teacher side is never differentiated.

    Args:
        student_sim: student cosine similarities (not yet divided by tau).
        teacher_sim: teacher cosine similarities (not yet divided by tau2); detached here.
        valid: which positions of each padded chain are real sentences.
        tau: student temperature (> 0). Default 0.05, the reference setting.
        tau2: teacher temperature (> 0). Default 0.05.
        omega: strength of the chain-order correction (>= 0; 0 = pure teacher order). Default 0.5.
        reduction: "mean" over chains, "sum" over chains, or "none" (one value per chain).

    Inputs:
        +--------------+-------------+----------------------------------------------+
        | argument     | shape       | meaning                                      |
        +==============+=============+==============================================+
        | student_sim  | [B, K, K]   | cosine matrix per chain, padded to K         |
        | teacher_sim  | [B, K, K]   | same layout; any model, own tokenizer        |
        | valid        | [B, K] bool | True where position p < length of chain b    |
        +--------------+-------------+----------------------------------------------+

    Returns:
        A scalar (reduction "mean"/"sum") or a ``[B]`` tensor ("none"), computed in float32 whatever
        the input dtype (bf16/fp16 inputs are upcast, so autocast training stays finite).

    Requirements:
        1. Chains in chain order: position 0 is the anchor, later positions drift further.
        2. At least two sentences per chain for a non-zero loss (a list of one item is always ordered).
        3. Student and teacher similarities for the same sentences in the same layout.

    Relations:
        - :func:`rankchain_posttrain.losses.listnet.listnet_loss` uses the same corrected targets with
          a softmax cross-entropy instead of the Plackett-Luce likelihood.
        - :func:`rankchain_posttrain.losses.infonce.infonce_loss` ignores the order beyond the
          neighbours and adds in-batch negatives; combine them with
          :class:`rankchain_posttrain.losses.combined.CombinedLoss`.
        - Unlike the reference code this compares column j with rank ``j - i`` (not ``j``), takes many
          chains per batch, and has no Python loop over i, j.

    References:
        He et al. 2025 (ranking sentence generation + ranking-aware post-training);
        Xia et al. 2008 (ListMLE). See ``CITATION``.

    Example:
        >>> s, valid = chain_cosine(student_emb, lengths)
        >>> t, _ = chain_cosine(teacher_emb, lengths)
        >>> chain_listmle_loss(s, t, valid)
    """
    tau, tau2, omega = check_list_loss_args(student_sim, teacher_sim, valid, tau, tau2, omega, reduction)
    target = refine_teacher(teacher_sim.detach().float() / tau2, valid, omega)
    lists = offdiag_mask(valid)
    per_row = listmle_rows(student_sim.float() / tau, target, lists)  # [B, K]
    return reduce_chains(per_row, valid, reduction)


class ChainListMLELoss(TeacherListLoss):
    """Thin module around :func:`chain_listmle_loss` taking flat embeddings and chain lengths.

    ``forward(student_emb [N, d], teacher_emb [N, d], lengths [B]) -> scalar``; the chains are
    back to back in the flat embeddings (anchor first). See :func:`chain_listmle_loss` for the formula.
    """

    name = "chain_listmle"
    citation = CITATION

    def loss(self, student_cos: torch.Tensor, teacher_cos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return chain_listmle_loss(student_cos, teacher_cos, valid, self.tau, self.tau2, self.omega, self.reduction)
