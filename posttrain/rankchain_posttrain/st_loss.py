"""The chain losses inside sentence-transformers' ``SentenceTransformerTrainer``.

``rankchain export RUN_DIR --format hf --out DIR`` writes one row per chain with the text columns
``anchor, step_1 … step_K``. The trainer tokenizes each column and passes the loss one feature dict
per column; :class:`ChainLossForTrainer` embeds them, puts each row's K + 1 sentences back to back
as one chain, and calls a rankchain loss (:class:`ChainListMLELoss` by default, or ``ListNetLoss``,
``InfoNCELoss``, ``CombinedLoss``) exactly as ``rankchain posttrain`` does::

    from datasets import load_dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from rankchain_posttrain.st_loss import ChainLossForTrainer

    model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
    train = load_dataset("DIR")["train"]            # anchor, step_1 … step_K
    trainer = SentenceTransformerTrainer(model=model, train_dataset=train, loss=ChainLossForTrainer(model))
    trainer.train()

The teacher (for the teacher-corrected list losses) is a frozen copy of the model taken when the
loss is built, or a ``teacher`` SentenceTransformer that uses the same tokenizer (the trainer
tokenizes once, with the student's tokenizer); ``rankchain posttrain --teacher`` allows a teacher
with its own tokenizer.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

import torch
from torch import nn

from .losses import ChainListMLELoss, CombinedLoss, InfoNCELoss


class ChainLossForTrainer(nn.Module):
    """Adapter: ``SentenceTransformerTrainer`` feature dicts (one per chain position) -> a rankchain chain loss.

    Formula: ``loss = L(student_emb, teacher_emb, lengths)`` with every row of the batch one chain of
    ``len(sentence_features)`` sentences (anchor first) and ``L`` the wrapped loss.

    Args:
        model: the SentenceTransformer being trained.
        loss: a rankchain loss taking ``(student_emb [N, d], teacher_emb [N, d] | None, lengths [B])``;
            default :class:`ChainListMLELoss` with the reference settings (tau = tau2 = 0.05, omega = 0.5).
        teacher: a SentenceTransformer with the student's tokenizer; default a frozen copy of ``model``.

    Inputs:
        ``sentence_features``: K + 1 tokenized feature dicts (columns ``anchor, step_1 … step_K``);
        ``labels``: ignored (chain order is the label).

    Returns:
        A float32 scalar (the sum of the parts for a :class:`CombinedLoss`).

    Requirements:
        1. Dataset columns in chain order, anchor first, every row the same number of steps
           (``export --format hf`` guarantees it).
        2. At least two columns.

    Relations:
        - Same losses as ``rankchain posttrain`` (rankchain_posttrain.losses).

    References:
        See the wrapped loss's ``citation``.

    Example:
        >>> loss = ChainLossForTrainer(model)  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, loss: nn.Module | None = None, teacher: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.loss = loss if loss is not None else ChainListMLELoss()
        if isinstance(self.loss, CombinedLoss):
            needs_teacher = self.loss.needs_teacher
        else:
            needs_teacher = not isinstance(self.loss, InfoNCELoss)
        # held in a list so the teacher is neither trained nor saved with the model's modules
        self._teacher: list[nn.Module] = []
        if needs_teacher:
            t = teacher if teacher is not None else copy.deepcopy(model)
            t.eval()
            t.requires_grad_(False)
            self._teacher.append(t)

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher[0] if self._teacher else None

    def _embed(self, model: nn.Module, features: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        # model(...) adds keys to the dict it gets; give each call its own shallow copy
        return torch.stack([model(dict(f))["sentence_embedding"] for f in features], dim=1)

    def forward(self, sentence_features: Iterable[dict[str, torch.Tensor]], labels: torch.Tensor | None = None) -> torch.Tensor:
        features = list(sentence_features)
        if len(features) < 2:
            raise ValueError(
                f"a chain needs the anchor and at least one step, got {len(features)} text column(s); "
                "use a dataset from `rankchain export --format hf` (columns anchor, step_1 … step_K)"
            )
        student = self._embed(self.model, features)  # [B, K+1, d]
        b, k, d = student.shape
        lengths = torch.full((b,), k, dtype=torch.long, device=student.device)
        teacher_emb = None
        if self._teacher:
            t = self._teacher[0]
            first = next(t.parameters(), None)
            if first is not None and first.device != student.device:
                t.to(student.device)
            with torch.no_grad():
                teacher_emb = self._embed(t, features).reshape(b * k, -1)
        out = self.loss(student.reshape(b * k, d), teacher_emb, lengths)
        if isinstance(out, dict):
            bad = [name for name, v in out.items() if not torch.isfinite(v).all()]
            if bad:
                raise FloatingPointError(f"non-finite loss part(s): {', '.join(bad)}")
            out = torch.stack(list(out.values())).sum()
        elif not torch.isfinite(out).all():
            raise FloatingPointError("non-finite chain loss")
        return out

    def get_config_dict(self) -> dict[str, Any]:
        config = self.loss.config_dict() if hasattr(self.loss, "config_dict") else {}
        return {"loss": type(self.loss).__name__, **config}

    @property
    def citation(self) -> Any:
        return getattr(self.loss, "citation", "")
