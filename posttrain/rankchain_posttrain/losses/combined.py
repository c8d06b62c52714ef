"""Weighted combination of chain losses that returns its named parts."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .chain_listmle import ChainListMLELoss
from .chain_order import ChainOrderLoss
from .distill import DistillLoss
from .infonce import InfoNCELoss
from .lce import GroupEmbeddings, LCELoss
from .listnet import ListNetLoss

LOSSES: dict[str, type[nn.Module]] = {
    "chain_listmle": ChainListMLELoss,
    "chain_order": ChainOrderLoss,
    "listnet": ListNetLoss,
    "infonce": InfoNCELoss,
    "lce": LCELoss,
    "distill": DistillLoss,
}


def is_group_loss(name: str) -> bool:
    """Does this loss train on mined groups (groups.jsonl) rather than on chains?"""
    return getattr(LOSSES[name], "inputs", "chains") == "groups"


def parse_loss_spec(spec: str) -> list[tuple[str, float]]:
    """``"chain_listmle:1,infonce:0.1"`` -> ``[("chain_listmle", 1.0), ("infonce", 0.1)]``; weight defaults to 1."""
    if not isinstance(spec, str) or spec.strip() == "":
        raise ValueError(f"--loss must name at least one loss ({', '.join(LOSSES)}), got {spec!r}")
    parts: list[tuple[str, float]] = []
    for item in spec.split(","):
        item = item.strip()
        name, _, weight_text = item.partition(":")
        name = name.strip()
        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r} in --loss {spec!r}; known: {', '.join(LOSSES)}")
        if any(n == name for n, _ in parts):
            raise ValueError(f"loss {name!r} is listed twice in --loss {spec!r}")
        try:
            weight = float(weight_text) if weight_text.strip() else 1.0
        except ValueError:
            raise ValueError(f"weight of {name!r} in --loss {spec!r} must be a number, got {weight_text!r}") from None
        if not math.isfinite(weight) or weight <= 0:
            raise ValueError(f"weight of {name!r} in --loss {spec!r} must be a finite number > 0, got {weight_text!r}")
        parts.append((name, weight))
    return parts


class CombinedLoss(nn.Module):
    """Sum of weighted losses; ``forward`` returns the weighted parts by name (total = their sum).

    Formula: ``loss = sum_n w_n * L_n(student_emb, teacher_emb, lengths)``.

    Args:
        losses: ``{name: (module, weight)}``; names are the keys of the returned dict.

    Inputs:
        student_emb ``[N, d]``, teacher_emb ``[N, d]`` (or None when no part needs a teacher), lengths ``[B]``;
        ``groups`` (:class:`GroupEmbeddings`) for group losses such as ``lce``.

    Returns:
        ``{name: w_n * L_n}``; every value a float32 scalar. The trainer sums them and logs each one,
        and stops when any of them is not finite.

    Requirements:
        1. At least one part; weights finite and > 0.

    Relations:
        - Parts: :class:`ChainListMLELoss`, :class:`ListNetLoss`, :class:`InfoNCELoss` (chains);
          :class:`LCELoss` (mined groups).

    References:
        See each part's ``citation``.

    Example:
        >>> CombinedLoss.from_spec("chain_listmle:1,infonce:0.1", tau=0.05, tau2=0.05, omega=0.5)
    """

    def __init__(self, losses: dict[str, tuple[nn.Module, float]]):
        super().__init__()
        if not losses:
            raise ValueError("CombinedLoss needs at least one loss, got none")
        for name, (_, weight) in losses.items():
            if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
                raise ValueError(f"weight of {name!r} must be a finite number > 0, got {weight!r}")
        self.parts = nn.ModuleDict({name: module for name, (module, _) in losses.items()})
        self.weights = {name: float(weight) for name, (_, weight) in losses.items()}

    @classmethod
    def from_spec(cls, spec: str, *, tau: float = 0.05, tau2: float = 0.05, omega: float = 0.5,
                  cross_encoder_teacher: str | None = None) -> "CombinedLoss":
        built: dict[str, tuple[nn.Module, float]] = {}
        for name, weight in parse_loss_spec(spec):
            if name == "distill":
                built[name] = (DistillLoss(teacher_dir=cross_encoder_teacher, tau=tau), weight)
            elif name in ("infonce", "lce", "chain_order"):
                built[name] = (LOSSES[name](tau=tau), weight)
            else:
                built[name] = (LOSSES[name](tau=tau, tau2=tau2, omega=omega), weight)
        return cls(built)

    @property
    def needs_teacher(self) -> bool:
        return any(not isinstance(m, (InfoNCELoss, LCELoss, DistillLoss, ChainOrderLoss)) for m in self.parts.values())

    @property
    def needs_chains(self) -> bool:
        return any(not is_group_loss(name) for name in self.parts)

    @property
    def needs_groups(self) -> bool:
        return any(is_group_loss(name) for name in self.parts)

    def forward(
        self,
        student_emb: torch.Tensor | None,
        teacher_emb: torch.Tensor | None,
        lengths: torch.Tensor | None,
        groups: GroupEmbeddings | None = None,
        context: dict[str, Any] | None = None,
    ) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for name, module in self.parts.items():
            if is_group_loss(name):
                if groups is None:
                    raise ValueError(f"loss {name!r} trains on mined groups, but the batch holds none")
                out[name] = self.weights[name] * module(groups)
            elif getattr(module, "uses_context", False):
                out[name] = self.weights[name] * module(student_emb, teacher_emb, lengths, context)
            else:
                out[name] = self.weights[name] * module(student_emb, teacher_emb, lengths)
        return out

    def config_dict(self) -> dict[str, Any]:
        return {name: {"weight": self.weights[name], **module.config_dict()} for name, module in self.parts.items()}

    @property
    def citation(self) -> dict[str, str]:
        return {name: module.citation for name, module in self.parts.items()}
