"""Shared, vectorised building blocks of the chain losses (not a loss itself).

Chains of different lengths are packed into padded per-chain matrices ``[B, K, K]`` with
``K = max(lengths)``; ``lengths[b]`` says how many rows/columns of chain ``b`` are real. Sentence
``p`` of chain ``b`` (``p = 0`` is the anchor, ``p = k`` the k-th rewrite) sits at flat index
``offsets[b] + p`` of the embeddings the model produced for the whole batch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Masked entries get this score instead of -inf, so that logsumexp and its gradient stay finite
# (an all-masked suffix would otherwise give -inf - -inf = NaN in the backward pass).
MASKED_SCORE = -1e9


def check_positive(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_non_negative(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_reduction(reduction: str) -> str:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f'reduction must be "mean", "sum" or "none", got {reduction!r}')
    return reduction


def as_lengths(lengths: torch.Tensor | list[int], device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(lengths, dtype=torch.long, device=device)
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"lengths must be a non-empty 1-D list of chain lengths, got shape {tuple(t.shape)}")
    if bool((t < 1).any()):
        raise ValueError(f"every chain length must be >= 1, got {t.tolist()}")
    return t


def pad_chains(embeddings: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat ``[N, d]`` embeddings (chains back to back) -> padded ``[B, K, d]`` and valid mask ``[B, K]``."""
    lengths = as_lengths(lengths, embeddings.device)
    total = int(lengths.sum())
    if embeddings.shape[0] != total:
        raise ValueError(f"embeddings has {embeddings.shape[0]} rows but the chain lengths sum to {total}")
    b, k = lengths.numel(), int(lengths.max())
    pos = torch.arange(k, device=embeddings.device)
    valid = pos.unsqueeze(0) < lengths.unsqueeze(1)  # [B, K]
    padded = embeddings.new_zeros((b, k, embeddings.shape[-1]))
    padded[valid] = embeddings  # row-major order of `valid` == chains back to back
    return padded, valid


def chain_cosine(embeddings: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-chain cosine matrices ``[B, K, K]`` (zeros in padding) and the valid mask ``[B, K]``, in float32.

    Autocast is switched off here: a bf16 matmul would round cosines to ~0.004, coarser than the gaps
    between neighbouring chain steps, and scramble the very ranking the losses learn.
    """
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        padded, valid = pad_chains(F.normalize(embeddings.float(), dim=-1), lengths)
        return padded @ padded.transpose(1, 2), valid


def pair_mask(valid: torch.Tensor) -> torch.Tensor:
    """``[B, K]`` valid rows -> ``[B, K, K]`` mask of real (row, column) pairs."""
    return valid.unsqueeze(2) & valid.unsqueeze(1)


def refine_teacher(teacher_scores: torch.Tensor, valid: torch.Tensor, omega: float) -> torch.Tensor:
    """Correct the teacher's scores toward chain order (DESIGN.md), vectorised over chains and rows.

    For row i and column j >= i, ``ordered[i, j]`` is the (j - i)-th largest value of the row slice
    ``T[i, i:]`` -- the value ``T[i, j]`` would have if row i were perfectly ordered by chain
    distance. With ``d = ordered[i, j] - T[i, j]`` the target is
    ``T[i, j] + sign(d) * ln(1 + omega * |d|)`` (unchanged where the teacher already agrees), and the
    upper triangle is mirrored to the lower one. Padding is returned as 0.
    """
    t = teacher_scores.detach().float()
    k = t.shape[-1]
    pos = torch.arange(k, device=t.device)
    upper = pos.unsqueeze(0) >= pos.unsqueeze(1)  # [K, K]: column j >= row i
    real = pair_mask(valid)
    slice_mask = real & upper
    # Sort each row slice T[i, i:] descending; masked entries sink to the end.
    sorted_vals = t.masked_fill(~slice_mask, float("-inf")).sort(dim=-1, descending=True).values
    rank = (pos.unsqueeze(0) - pos.unsqueeze(1)).clamp(min=0)  # j - i  (NOT j: the reference defect)
    ordered = sorted_vals.gather(-1, rank.expand_as(t))
    diff = torch.where(slice_mask, ordered - t, torch.zeros_like(t))
    refined_upper = torch.where(slice_mask, t + torch.sign(diff) * torch.log1p(omega * diff.abs()), torch.zeros_like(t))
    strict_upper = torch.triu(refined_upper, diagonal=1)
    refined = strict_upper + strict_upper.transpose(1, 2) + torch.diag_embed(torch.diagonal(refined_upper, dim1=1, dim2=2))
    return refined


def offdiag_mask(valid: torch.Tensor) -> torch.Tensor:
    """Real (row, column) pairs without the diagonal: the lists the listwise losses rank."""
    k = valid.shape[-1]
    eye = torch.eye(k, dtype=torch.bool, device=valid.device)
    return pair_mask(valid) & ~eye


def reduce_chains(per_row: torch.Tensor, valid: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per-row losses ``[B, K]`` -> per-chain mean over rows ``[B]`` -> reduction over chains."""
    rows = valid.sum(dim=1).clamp(min=1)
    per_chain = (per_row * valid).sum(dim=1) / rows
    if reduction == "none":
        return per_chain
    if reduction == "sum":
        return per_chain.sum()
    return per_chain.mean()


class TeacherListLoss(nn.Module):
    """Module plumbing shared by the listwise losses over a teacher matrix corrected by chain order.

    Subclasses set ``name`` and ``citation`` and implement :meth:`loss` with their pure function;
    ``forward(student_emb [N, d], teacher_emb [N, d], lengths [B])`` takes the chains back to back
    in flat embeddings (anchor first) and computes the teacher side without gradients.
    """

    name = "teacher_list_loss"
    citation = ""

    def __init__(self, tau: float = 0.05, tau2: float = 0.05, omega: float = 0.5, reduction: str = "mean"):
        super().__init__()
        self.tau = check_positive("tau", tau)
        self.tau2 = check_positive("tau2", tau2)
        self.omega = check_non_negative("omega", omega)
        self.reduction = check_reduction(reduction)

    def loss(self, student_cos: torch.Tensor, teacher_cos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, student_emb: torch.Tensor, teacher_emb: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        s, valid = chain_cosine(student_emb, lengths)
        with torch.no_grad():
            t, _ = chain_cosine(teacher_emb, lengths)
        return self.loss(s, t, valid)

    def config_dict(self) -> dict[str, Any]:
        return {"tau": self.tau, "tau2": self.tau2, "omega": self.omega, "reduction": self.reduction}


def check_list_loss_args(
    student_sim: torch.Tensor,
    teacher_sim: torch.Tensor,
    valid: torch.Tensor,
    tau: float,
    tau2: float,
    omega: float,
    reduction: str,
) -> tuple[float, float, float]:
    """Validates the arguments shared by the teacher-corrected list losses; returns (tau, tau2, omega)."""
    tau = check_positive("tau", tau)
    tau2 = check_positive("tau2", tau2)
    omega = check_non_negative("omega", omega)
    check_reduction(reduction)
    if student_sim.shape != teacher_sim.shape or student_sim.shape[:2] != valid.shape:
        raise ValueError(
            f"shape mismatch: student_sim {tuple(student_sim.shape)}, teacher_sim {tuple(teacher_sim.shape)}, "
            f"valid {tuple(valid.shape)} (expected [B, K, K], [B, K, K], [B, K])"
        )
    return tau, tau2, omega
