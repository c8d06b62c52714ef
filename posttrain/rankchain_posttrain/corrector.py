"""A corrector network for stale embeddings (Monath et al. 2024, "A Fresh Take on Stale Embeddings").

When training against a large pool of cached candidate embeddings, the cache goes stale as the
encoder moves. Instead of re-encoding the pool, a small residual MLP learns to map a cached (stale)
embedding to what the current encoder would produce, from a few fresh re-encodings:

    C(e) = e + W2 · gelu(W1 · e + b1) + b2,      loss = mean ||C(stale_i) - fresh_i||^2

W2 and b2 start at zero, so C starts as the identity (no correction before it has seen data).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CITATION = """@inproceedings{monath2024fresh,
  title     = {A Fresh Take on Stale Embeddings: Improving Dense Retriever Training with Corrector Networks},
  author    = {Monath, Nicholas and Grathwohl, Will and Boratko, Michael and Fergus, Rob and McCallum, Andrew and Zaheer, Manzil},
  booktitle = {ICML},
  year      = {2024}
}"""


class Corrector(nn.Module):
    """Residual MLP ``[..., d] -> [..., d]``, the identity at initialisation."""

    def __init__(self, dimensions: int, hidden: int | None = None):
        super().__init__()
        if not isinstance(dimensions, int) or dimensions < 1:
            raise ValueError(f"dimensions must be a positive integer, got {dimensions!r}")
        hidden = hidden if hidden is not None else dimensions
        if not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be a positive integer, got {hidden!r}")
        self.dimensions = dimensions
        self.hidden = hidden
        self.up = nn.Linear(dimensions, hidden)
        self.down = nn.Linear(hidden, dimensions)
        self.reset()

    def reset(self) -> None:
        """Back to the identity (after a full refresh the cache is fresh again)."""
        nn.init.kaiming_uniform_(self.up.weight, a=5**0.5)
        nn.init.zeros_(self.up.bias)
        nn.init.zeros_(self.down.weight)
        nn.init.zeros_(self.down.bias)

    def forward(self, stale: torch.Tensor) -> torch.Tensor:
        return stale + self.down(F.gelu(self.up(stale)))

    def config_dict(self) -> dict[str, Any]:
        return {"dimensions": self.dimensions, "hidden": self.hidden}


def corrector_mse(corrector: nn.Module | None, stale: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """Mean squared error between (corrected) stale embeddings and fresh ones, per coordinate."""
    pred = stale if corrector is None else corrector(stale)
    return F.mse_loss(pred.float(), fresh.float())


class CorrectorTrainer:
    """Owns a :class:`Corrector` and its optimizer; ``fit(stale, fresh)`` takes a few Adam steps on MSE."""

    def __init__(self, dimensions: int, *, hidden: int | None = None, lr: float = 1e-3, steps: int = 5, device: str | torch.device = "cpu"):
        if not lr > 0:
            raise ValueError(f"corrector lr must be > 0, got {lr!r}")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"corrector steps must be an integer >= 1, got {steps!r}")
        self.net = Corrector(dimensions, hidden).to(device)
        self.lr = lr
        self.steps = steps
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.history: list[dict[str, float]] = []

    def reset(self) -> None:
        self.net.reset()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr)

    def fit(self, stale: torch.Tensor, fresh: torch.Tensor) -> dict[str, float]:
        """Trains on (stale, fresh) pairs; returns the MSE without correction, before and after the update."""
        stale = stale.detach().float()
        fresh = fresh.detach().float()
        with torch.no_grad():
            identity = float(corrector_mse(None, stale, fresh))
            before = float(corrector_mse(self.net, stale, fresh))
        with torch.enable_grad(), torch.autocast(device_type=stale.device.type, enabled=False):
            for _ in range(self.steps):
                self.optimizer.zero_grad(set_to_none=True)
                loss = corrector_mse(self.net, stale, fresh)
                loss.backward()
                self.optimizer.step()
        with torch.no_grad():
            after = float(corrector_mse(self.net, stale, fresh))
        entry = {"identity_mse": identity, "mse_before": before, "mse_after": after}
        self.history.append(entry)
        return entry

    @torch.no_grad()
    def correct(self, stale: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=stale.device.type, enabled=False):
            return self.net(stale.float())

    def config_dict(self) -> dict[str, Any]:
        return {**self.net.config_dict(), "lr": self.lr, "steps_per_fit": self.steps}
