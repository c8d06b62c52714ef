"""Localized Contrastive Estimation (LCE) over mined groups: 1 positive + G - 1 hard negatives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._chain import MASKED_SCORE, check_positive, check_reduction

CITATION = """@inproceedings{gao2021lce,
  title     = {Rethink Training of {BERT} Rerankers in Multi-Stage Retrieval Pipeline},
  author    = {Gao, Luyu and Dai, Zhuyun and Callan, Jamie},
  booktitle = {ECIR},
  year      = {2021}
}"""


def lce_loss(
    query_emb: torch.Tensor,
    doc_emb: torch.Tensor,
    valid: torch.Tensor | None = None,
    tau: float = 0.05,
    reduction: str = "mean",
) -> torch.Tensor:
    """Softmax cross-entropy of the positive against its group's hard negatives.

    Formula, for group b with query q_b and documents d_b0 (the positive), d_b1 .. d_b(G-1) (negatives):

        s_bj   = cos(q_b, d_bj) / tau                      (j over the group's real documents)
        loss_b = -s_b0 + log sum_j exp(s_bj)
        loss   = mean over groups of loss_b

    Only the group's own documents compete (that is what makes it *localized*: no in-batch
    negatives from other groups), and the negatives are hard ones from a retriever's top-k.

    Args:
        query_emb: student embeddings of the queries.
        doc_emb: student embeddings of each group's documents, positive first.
        valid: which documents of each group are real (groups with fewer negatives are padded);
            default all. The positive must be valid.
        tau: temperature (> 0). Default 0.05, as the chain losses.
        reduction: "mean" or "sum" over groups, or "none" (one value per group).

    Inputs:
        +-----------+--------------+-------------------------------------------+
        | argument  | shape        | meaning                                   |
        +===========+==============+===========================================+
        | query_emb | [B, d]       | one query per group                       |
        | doc_emb   | [B, G, d]    | positive at index 0, then G - 1 negatives |
        | valid     | [B, G] bool  | False for padding documents               |
        +-----------+--------------+-------------------------------------------+

    Returns:
        A float32 scalar ("mean"/"sum") or ``[B]`` ("none"); computed in float32 whatever the input
        dtype (cosines under bf16 autocast are too coarse to rank hard negatives).

    Requirements:
        1. Documents in a fixed layout: the positive first.
        2. At least one negative per group for a non-zero loss (a group of one is always right).
        3. Negatives that are not relevant: mine them with the positive-aware guard
           (``rankchain mine --guard``); a false negative is pushed away like a true one.

    Relations:
        - :func:`rankchain_posttrain.losses.infonce.infonce_loss` uses in-batch negatives from other
          chains; LCE uses mined hard negatives of the same group only. Combine them, or LCE with
          :func:`rankchain_posttrain.losses.chain_listmle.chain_listmle_loss`, in
          :class:`rankchain_posttrain.losses.combined.CombinedLoss` (``chain_listmle:1,lce:0.5``).
        - With ``rankchain_posttrain.negatives`` the negatives are re-picked during training from a
          cached candidate pool (optionally corrected by :class:`rankchain_posttrain.corrector.Corrector`).

    References:
        Gao, Dai & Callan 2021 (LCE, group size 8). See ``CITATION``.

    Example:
        >>> q = model_embed(queries)                       # [B, d]
        >>> d = model_embed(docs).view(B, G, -1)           # positive first in each group
        >>> lce_loss(q, d)
    """
    tau = check_positive("tau", tau)
    check_reduction(reduction)
    if query_emb.ndim != 2 or doc_emb.ndim != 3 or doc_emb.shape[0] != query_emb.shape[0] or doc_emb.shape[2] != query_emb.shape[1]:
        raise ValueError(
            f"shape mismatch: query_emb {tuple(query_emb.shape)}, doc_emb {tuple(doc_emb.shape)} (expected [B, d] and [B, G, d])"
        )
    if valid is None:
        valid = torch.ones(doc_emb.shape[:2], dtype=torch.bool, device=doc_emb.device)
    elif valid.shape != doc_emb.shape[:2]:
        raise ValueError(f"valid has shape {tuple(valid.shape)}, expected {tuple(doc_emb.shape[:2])}")
    if not bool(valid[:, 0].all()):
        raise ValueError("the positive (document 0 of every group) must be valid")
    with torch.autocast(device_type=query_emb.device.type, enabled=False):
        q = F.normalize(query_emb.float(), dim=-1)
        d = F.normalize(doc_emb.float(), dim=-1)
        scores = torch.einsum("bd,bgd->bg", q, d) / tau
    scores = scores.masked_fill(~valid, MASKED_SCORE)
    per_group = scores.logsumexp(dim=-1) - scores[:, 0]
    if reduction == "none":
        return per_group
    if reduction == "sum":
        return per_group.sum()
    return per_group.mean()


@dataclass
class GroupEmbeddings:
    """What group losses get from the trainer: queries ``[B, d]``, documents ``[B, G, d]`` (positive first), valid ``[B, G]``."""

    query: torch.Tensor
    docs: torch.Tensor
    valid: torch.Tensor


class LCELoss(nn.Module):
    """Thin module around :func:`lce_loss`; ``forward(groups: GroupEmbeddings)``.

    ``inputs = "groups"`` tells :class:`~rankchain_posttrain.losses.combined.CombinedLoss` to pass the
    group embeddings instead of the chains.
    """

    name = "lce"
    citation = CITATION
    inputs = "groups"

    def __init__(self, tau: float = 0.05, reduction: str = "mean"):
        super().__init__()
        self.tau = check_positive("tau", tau)
        self.reduction = check_reduction(reduction)

    def forward(self, groups: GroupEmbeddings) -> torch.Tensor:
        return lce_loss(groups.query, groups.docs, groups.valid, self.tau, self.reduction)

    def config_dict(self) -> dict[str, Any]:
        return {"tau": self.tau, "reduction": self.reduction}
