"""Teacher embeddings cached across epochs.

The teacher is frozen (eval mode, no gradients), so a chain's teacher embeddings are the same in
every epoch: they are computed the first time the chain is in a batch and reused afterwards. The
cache is keyed by the chain's index in the training set and is valid for one *fingerprint*: the
teacher's weights (a hash of its parameters), its pooling and sequence length, the autocast
precision, and the training data. A cache saved under another fingerprint is ignored (invalidated),
never reused.

Where the first computation happens, the batch is the same as without a cache, so epoch 1 is
unchanged; later epochs use embeddings computed in epoch 1's batches (other padding neighbours; the
values agree with a fresh computation to float rounding).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Callable, Sequence

import torch

CACHE_FILE = "teacher_cache.pt"


def parameters_sha256(model: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer (name, shape, dtype, bytes): the teacher's identity."""
    h = hashlib.sha256()
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def teacher_fingerprint(*, teacher: torch.nn.Module, describe: dict[str, Any], data_sha256: str, train_chains: int, precision: str) -> str:
    """What the cached values depend on; any change gives another fingerprint."""
    fp = {
        "teacher_parameters": parameters_sha256(teacher),
        "teacher": {k: describe.get(k) for k in ("modules", "max_seq_length", "pooling", "normalize")},
        "data_sha256": data_sha256,
        "train_chains": train_chains,
        "precision": precision,
    }
    return hashlib.sha256(json.dumps(fp, sort_keys=True, default=str).encode()).hexdigest()


class TeacherEmbeddingCache:
    """Teacher embeddings per training chain (CPU float32), filled on first use.

    ``embed(indices, chains, compute, device)`` returns the teacher embeddings of the chains ``indices``
    (rows in chain order, sentences in order), computing only the chains not cached yet with
    ``compute(sentences) -> [n, d]`` (one call, so a first-epoch batch is encoded exactly as
    without the cache).
    """

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self._store: dict[int, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0
        self._saved_size = 0

    def __len__(self) -> int:
        return len(self._store)

    def embed(self, indices: Sequence[int], chains: Sequence[Sequence[str]], compute: Callable[[list[str]], torch.Tensor],
              device: torch.device | str = "cpu") -> torch.Tensor:
        if len(indices) != len(chains):
            raise ValueError(f"{len(indices)} chain indices for {len(chains)} chains")
        missing = [n for n, i in enumerate(indices) if i not in self._store]
        self.hits += len(indices) - len(missing)
        self.misses += len(missing)
        if len(missing) == len(indices):
            # nothing cached: one call over the whole batch (as without a cache)
            fresh = compute([s for c in chains for s in c])
            self._put([indices[n] for n in missing], [chains[n] for n in missing], fresh)
            return fresh
        if missing:
            fresh = compute([s for n in missing for s in chains[n]])
            self._put([indices[n] for n in missing], [chains[n] for n in missing], fresh)
        return torch.cat([self._store[i] for i in indices]).to(device)

    def _put(self, indices: Sequence[int], chains: Sequence[Sequence[str]], emb: torch.Tensor) -> None:
        rows = emb.detach().float().cpu()
        off = 0
        for i, c in zip(indices, chains):
            self._store[i] = rows[off : off + len(c)].clone()
            off += len(c)
        if off != rows.shape[0]:
            raise ValueError(f"teacher returned {rows.shape[0]} embeddings for {off} sentences")

    def save(self, path: str) -> bool:
        """Writes the cache (atomically) when it grew since the last save; returns whether it wrote."""
        if len(self._store) == self._saved_size:
            return False
        tmp = path + ".tmp"
        torch.save({"fingerprint": self.fingerprint, "embeddings": self._store}, tmp)
        os.replace(tmp, path)
        self._saved_size = len(self._store)
        return True

    def load(self, path: str) -> str:
        """Loads a saved cache: "loaded", "missing", or "invalidated" (another fingerprint: ignored)."""
        if not os.path.isfile(path):
            return "missing"
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("fingerprint") != self.fingerprint:
            return "invalidated"
        self._store = {int(k): v for k, v in saved["embeddings"].items()}
        self._saved_size = len(self._store)
        return "loaded"

    def stats(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "chains": len(self._store), "hits": self.hits, "misses": self.misses}


def estimated_bytes(sentences: int, dim: int) -> int:
    """Memory of a full cache: float32 rows."""
    return sentences * dim * 4
