"""InfoNCE with chain neighbours as positives and other chains as in-batch negatives."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._chain import MASKED_SCORE, as_lengths, check_positive

CITATION = """@article{oord2018cpc,
  title   = {Representation Learning with Contrastive Predictive Coding},
  author  = {van den Oord, Aaron and Li, Yazhe and Vinyals, Oriol},
  journal = {arXiv preprint arXiv:1807.03748},
  year    = {2018}
}
@inproceedings{gao2021simcse,
  title     = {SimCSE: Simple Contrastive Learning of Sentence Embeddings},
  author    = {Gao, Tianyu and Yao, Xingcheng and Chen, Danqi},
  booktitle = {EMNLP},
  year      = {2021}
}"""


def chain_ids(lengths: torch.Tensor) -> torch.Tensor:
    """``[B]`` chain lengths -> ``[N]`` chain index of every flat sentence."""
    return torch.repeat_interleave(torch.arange(lengths.numel(), device=lengths.device), lengths)


def infonce_loss(embeddings: torch.Tensor, lengths: torch.Tensor, tau: float = 0.05) -> torch.Tensor:
    """InfoNCE over chain neighbours, vectorised over the whole batch.

    Formula: with ``s(a, b) = cos(e_a, e_b) / tau``, for every ordered pair of neighbours (a, b) in a
    chain (positions p and p +- 1) and ``Neg(a)`` = all sentences of *other* chains in the batch:

        l(a, b) = - s(a, b) + log( exp s(a, b) + sum_{m in Neg(a)} exp s(a, m) )
        loss    = mean over all neighbour pairs in the batch

    Other members of a's own chain are neither positives nor negatives: they are related by design.

    Args:
        embeddings: student embeddings of all chains back to back (anchor first in each chain).
        lengths: number of sentences in each chain.
        tau: temperature (> 0). Default 0.05 (SimCSE).

    Inputs:
        embeddings ``[N, d]`` (float, any dtype; computed in float32), lengths ``[B]`` with ``sum = N``.

    Returns:
        A float32 scalar; 0 (with a zero gradient) when the batch holds no neighbour pair.

    Requirements:
        1. Several chains per batch; with one chain there are no negatives and every pair costs 0.
        2. Chains of at least two sentences.

    Relations:
        - Complements :func:`rankchain_posttrain.losses.chain_listmle.chain_listmle_loss`, which
          orders members within a chain but never pushes different chains apart.

    References:
        van den Oord et al. 2018 (InfoNCE); Gao et al. 2021 (SimCSE, in-batch negatives). See ``CITATION``.

    Example:
        >>> infonce_loss(student_emb, torch.tensor([5, 7, 4]))
    """
    tau = check_positive("tau", tau)
    lengths = as_lengths(lengths, embeddings.device)
    if embeddings.shape[0] != int(lengths.sum()):
        raise ValueError(f"embeddings has {embeddings.shape[0]} rows but the chain lengths sum to {int(lengths.sum())}")
    with torch.autocast(device_type=embeddings.device.type, enabled=False):  # float32 cosines, as in chain_cosine
        e = F.normalize(embeddings.float(), dim=-1)
        scores = e @ e.T / tau  # [N, N]
    ids = chain_ids(lengths)
    negatives = ids.unsqueeze(0) != ids.unsqueeze(1)
    neg_lse = scores.masked_fill(~negatives, MASKED_SCORE).logsumexp(dim=-1)  # [N]
    # Neighbour pairs (a, a+1) within a chain, in both directions.
    same_next = ids[1:] == ids[:-1]
    a = torch.nonzero(same_next).squeeze(-1)
    src = torch.cat([a, a + 1])
    dst = torch.cat([a + 1, a])
    if src.numel() == 0:
        return scores.sum() * 0.0
    pos = scores[src, dst]
    return (torch.logaddexp(pos, neg_lse[src]) - pos).mean()


class InfoNCELoss(nn.Module):
    """Thin module around :func:`infonce_loss`; ``forward(student_emb, teacher_emb, lengths)`` ignores the teacher."""

    name = "infonce"
    citation = CITATION

    def __init__(self, tau: float = 0.05):
        super().__init__()
        self.tau = check_positive("tau", tau)

    def forward(self, student_emb: torch.Tensor, teacher_emb: torch.Tensor | None, lengths: torch.Tensor) -> torch.Tensor:
        return infonce_loss(student_emb, lengths, self.tau)

    def config_dict(self) -> dict[str, Any]:
        return {"tau": self.tau}
