"""Group training for ``--loss lce``: which groups each step trains on and which negatives they carry.

Two ways to pick negatives (``--negatives``):

* ``mined`` (default): the negatives ``rankchain mine`` wrote into groups.jsonl, as they are.
* ``cache``: the candidate pool (every query, positive and negative of every group) is encoded once
  and cached; each step the batch's queries (encoded fresh, no gradient) re-rank the whole cache
  and the top G - 1 allowed candidates become the negatives (never the group's query or positive,
  never a sentence of the same chain unless mine picked it, never one the positive-aware guard
  drops). The cache goes stale as the student trains. Two remedies:

  - ``--refresh-every N``: re-encode the whole pool every N steps (0 = never);
  - ``--corrector``: a residual MLP (:mod:`rankchain_posttrain.corrector`) maps stale cached
    embeddings to the current encoder's space, trained with MSE on fresh embeddings: the batch's
    own documents (encoded anyway for the loss) plus ``--corrector-sample`` pool sentences
    re-encoded every ``--corrector-every`` steps. Negatives are re-ranked in the corrected cache.

Every re-encoding is counted (``reencoded`` in training.json), so the compute of the remedies can be
compared. Checkpoints carry the cache mode's state (:meth:`GroupTraining.state_dict`, written next to
the model state as ``negatives_state.pt``): the stale cache itself, the corrector's weights, its
optimizer and fit history, the refresh count and the re-encoding counters, under a fingerprint of
the pool (its texts), the cache's shape, the corrector's shape and the checkpoint's step. ``--resume``
restores them when the fingerprint matches, so a resumed run re-ranks in the same stale, corrected
cache as the uninterrupted one; otherwise (file missing or from another pool/step) it rebuilds the
cache from the resumed model and starts a fresh corrector, and says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .corrector import CITATION as CORRECTOR_CITATION
from .corrector import CorrectorTrainer
from .errors import DataError
from .groups import Group, GroupData
from .losses.lce import GroupEmbeddings
from .modeling import encode

NEGATIVE_MODES = ("mined", "cache")
NEGATIVES_STATE_FILE = "negatives_state.pt"


def add_group_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("mined groups (--loss lce)")
    g.add_argument("--groups", help="groups.jsonl from `rankchain mine` (default: --data when it is a groups file, else RUN_DIR/groups.jsonl)")
    g.add_argument("--batch-groups", type=int, default=8, help="groups per batch and process (default 8)")
    g.add_argument("--negatives", choices=NEGATIVE_MODES, default=None,
                   help="mined: the negatives in groups.jsonl (default); cache: re-pick them each step from a cached pool")
    g.add_argument("--corrector", action="store_true", help="correct the stale cache with a residual MLP (implies --negatives cache)")
    g.add_argument("--refresh-every", type=int, default=0, help="re-encode the whole candidate pool every N steps (0 = never; implies --negatives cache when > 0)")
    g.add_argument("--corrector-sample", type=int, default=64, help="pool sentences re-encoded to train the corrector (default 64)")
    g.add_argument("--corrector-every", type=int, default=1, help="re-encode that sample every N steps (default 1)")
    g.add_argument("--corrector-lr", type=float, default=1e-3)
    g.add_argument("--corrector-hidden", type=int, default=None, help="hidden width of the corrector MLP (default: the embedding size)")
    g.add_argument("--cache-guard", type=float, default=0.95,
                   help="in cache mode, skip a candidate scored above this times the positive's score (default 0.95, as mine --guard)")


def check_group_args(args: argparse.Namespace) -> None:
    if args.batch_groups < 1:
        raise DataError(f"--batch-groups must be an integer > 0, got {args.batch_groups!r}")
    if args.refresh_every < 0:
        raise DataError(f"--refresh-every must be >= 0 (0 = never), got {args.refresh_every!r}")
    if args.corrector_sample < 0:
        raise DataError(f"--corrector-sample must be >= 0, got {args.corrector_sample!r}")
    if args.corrector_every < 1:
        raise DataError(f"--corrector-every must be an integer > 0, got {args.corrector_every!r}")
    if not (math.isfinite(args.corrector_lr) and args.corrector_lr > 0):
        raise DataError(f"--corrector-lr must be a number > 0, got {args.corrector_lr!r}")
    if args.corrector_hidden is not None and args.corrector_hidden < 1:
        raise DataError(f"--corrector-hidden must be an integer > 0, got {args.corrector_hidden!r}")
    if not (math.isfinite(args.cache_guard) and args.cache_guard > 0):
        raise DataError(f"--cache-guard must be a number > 0, got {args.cache_guard!r}")
    if args.negatives == "mined" and (args.corrector or args.refresh_every > 0):
        raise DataError("--corrector and --refresh-every re-pick negatives from a cached pool; they need --negatives cache (the default with them)")


def negatives_mode(args: argparse.Namespace) -> str:
    if args.negatives:
        return args.negatives
    return "cache" if (args.corrector or args.refresh_every > 0) else "mined"


@dataclass
class GroupBatch:
    """The texts a step encodes for its groups: ``texts = queries + docs`` with docs ``[B * G]`` (positive first)."""

    indices: list[int]
    queries: list[str]
    docs: list[str]
    valid: torch.Tensor  # [B, G]
    doc_pool_ids: list[int]  # pool id of each doc (cache mode), -1 for padding or in mined mode

    @property
    def texts(self) -> list[str]:
        return self.queries + self.docs

    def embeddings(self, emb: torch.Tensor) -> GroupEmbeddings:
        """Split the encoder output of :attr:`texts` into the loss inputs."""
        b, g = self.valid.shape
        if emb.shape[0] != b + b * g:
            raise ValueError(f"expected {b + b * g} embeddings for {b} groups of {g}, got {emb.shape[0]}")
        return GroupEmbeddings(query=emb[:b], docs=emb[b:].reshape(b, g, -1), valid=self.valid.to(emb.device))


class GroupTraining:
    """Batches of groups per step, negatives (mined or from the cache), cache refreshes and the corrector."""

    def __init__(self, data: GroupData, args: argparse.Namespace, device: torch.device):
        self.data = data
        self.groups: list[Group] = data.groups
        self.args = args
        self.device = device
        self.mode = negatives_mode(args)
        self.group_size = 1 + max(len(g.negatives) for g in self.groups)
        self.batch_size = args.batch_groups
        self.seed = args.seed
        self.reencoded = {"cache_build": 0, "refresh": 0, "corrector_sample": 0, "query_select": 0}
        self.refreshes = 0
        self.corrector: CorrectorTrainer | None = None
        self.cache: torch.Tensor | None = None
        self.selection_history: list[dict[str, float]] = []
        if self.mode == "cache":
            self._build_pool()

    # ---- which groups a step trains on
    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.groups) / self.batch_size)

    def indices(self, step: int, world: int = 1, rank: int = 0) -> list[int]:
        """Deterministic shuffled group indices of this step and process (cycles through the groups)."""
        k = step * world + rank
        epoch, i = divmod(k, self.batches_per_epoch)
        order = list(range(len(self.groups)))
        random.Random(f"groups:{self.seed}:{epoch}").shuffle(order)
        return order[i * self.batch_size : (i + 1) * self.batch_size]

    # ---- the candidate pool (cache mode)
    def _build_pool(self) -> None:
        texts: dict[str, int] = {}
        chains_of: list[set[str]] = []

        def intern(t: str, chain: str | None) -> int:
            i = texts.setdefault(t, len(texts))
            if i == len(chains_of):
                chains_of.append(set())
            if chain is not None:
                chains_of[i].add(chain)
            return i

        self.group_ids: list[tuple[int, int, list[int]]] = []
        for g in self.groups:
            q = intern(g.query, g.chain_id)
            p = intern(g.positive, g.chain_id)
            negs = [intern(t, c) for t, c in zip(g.negatives, g.negative_chains or (None,) * len(g.negatives))]
            self.group_ids.append((q, p, negs))
        self.pool_texts = list(texts)
        # Per group: pool ids that may never be its negatives (query, positive, same-chain sentences mine did not pick).
        by_chain: dict[str, list[int]] = {}
        for i, cs in enumerate(chains_of):
            for c in cs:
                by_chain.setdefault(c, []).append(i)
        self.excluded: list[torch.Tensor] = []
        for g, (q, p, negs) in zip(self.groups, self.group_ids):
            allowed = set(negs)
            ex = {q, p} | {i for i in by_chain.get(g.chain_id or "", []) if i not in allowed}
            self.excluded.append(torch.tensor(sorted(ex), dtype=torch.long))

    def _encode_pool(self, model, ids: list[int] | None = None) -> torch.Tensor:
        texts = self.pool_texts if ids is None else [self.pool_texts[i] for i in ids]
        return encode(model, texts).to(self.device)

    def setup(self, model) -> None:
        """Encode the pool once (cache mode) and create the corrector."""
        if self.mode != "cache":
            return
        self.cache = self._encode_pool(model)
        self.reencoded["cache_build"] += len(self.pool_texts)
        if self.args.corrector:
            self._new_corrector()

    def _new_corrector(self) -> None:
        """A fresh corrector, initialised from its own seed: creating it never moves the global RNG, so a
        resumed run (which creates it after the checkpoint's RNG state is restored) draws the same dropout
        masks as the uninterrupted one."""
        assert self.cache is not None
        with torch.random.fork_rng(devices=[]):  # the weights are initialised on the CPU, then moved
            torch.default_generator.manual_seed(self.seed)
            self.corrector = CorrectorTrainer(
                self.cache.shape[1], hidden=self.args.corrector_hidden, lr=self.args.corrector_lr, device=self.device
            )

    def corrected_cache(self) -> torch.Tensor:
        assert self.cache is not None
        c = self.cache if self.corrector is None else self.corrector.correct(self.cache)
        return F.normalize(c.float(), dim=-1)

    # ---- one step
    def batch(self, indices: list[int], model) -> GroupBatch:
        groups = [self.groups[i] for i in indices]
        g_size = self.group_size
        valid = torch.zeros((len(groups), g_size), dtype=torch.bool)
        docs: list[str] = []
        pool_ids: list[int] = []
        if self.mode == "mined":
            for b, g in enumerate(groups):
                d = list(g.docs())
                valid[b, : len(d)] = True
                docs += d + [g.positive] * (g_size - len(d))  # padding, masked out
                pool_ids += [-1] * g_size
            return GroupBatch(indices, [g.query for g in groups], docs, valid, pool_ids)
        # cache: re-rank the (corrected) cache with the fresh queries
        q = encode(model, [g.query for g in groups]).to(self.device)
        self.reencoded["query_select"] += len(groups)
        cache = self.corrected_cache()
        scores = q @ cache.T  # [B, N]
        need = g_size - 1
        for b, (i, g) in enumerate(zip(indices, groups)):
            _, p, _ = self.group_ids[i]
            s = scores[b].clone()
            s[self.excluded[i].to(s.device)] = float("-inf")
            s[s > self.args.cache_guard * scores[b, p]] = float("-inf")
            k = min(need, int(torch.isfinite(s).sum()))
            top = s.topk(k).indices.tolist() if k > 0 else []
            ids = [p] + top
            valid[b, : len(ids)] = True
            docs += [self.pool_texts[j] for j in ids] + [g.positive] * (g_size - len(ids))
            pool_ids += ids + [-1] * (g_size - len(ids))
        return GroupBatch(indices, [g.query for g in groups], docs, valid, pool_ids)

    def after_step(self, step: int, model, batch: GroupBatch, doc_emb: torch.Tensor) -> dict[str, float]:
        """Train the corrector on fresh embeddings; refresh the cache when due. ``doc_emb`` = the batch's fresh doc embeddings."""
        if self.mode != "cache":
            return {}
        info: dict[str, float] = {}
        if self.corrector is not None:
            ids = [i for i in batch.doc_pool_ids if i >= 0]
            fresh = F.normalize(doc_emb.detach().float(), dim=-1)[[j for j, i in enumerate(batch.doc_pool_ids) if i >= 0]]
            if step % self.args.corrector_every == 0 and self.args.corrector_sample > 0:
                rng = random.Random(f"corrector:{self.seed}:{step}")
                sample = rng.sample(range(len(self.pool_texts)), min(self.args.corrector_sample, len(self.pool_texts)))
                fresh = torch.cat([fresh.to(self.device), self._encode_pool(model, sample)])
                ids = ids + sample
                self.reencoded["corrector_sample"] += len(sample)
            assert self.cache is not None
            fit = self.corrector.fit(self.cache[ids], fresh.to(self.device))
            info.update({f"corrector_{k}": v for k, v in fit.items()})
        if self.args.refresh_every and step % self.args.refresh_every == 0:
            self.cache = self._encode_pool(model)
            self.reencoded["refresh"] += len(self.pool_texts)
            self.refreshes += 1
            if self.corrector is not None:
                self.corrector.reset()
        return info

    @torch.no_grad()
    def staleness(self, model, sample: int = 256) -> dict[str, float]:
        """MSE of the cache (raw and corrected) against fresh embeddings of a fixed sample (for the record and benches)."""
        if self.mode != "cache" or self.cache is None:
            return {}
        rng = random.Random(f"staleness:{self.seed}")
        ids = sorted(rng.sample(range(len(self.pool_texts)), min(sample, len(self.pool_texts))))
        fresh = self._encode_pool(model, ids)
        out = {"stale_mse": float(F.mse_loss(self.cache[ids], fresh))}
        if self.corrector is not None:
            out["corrected_mse"] = float(F.mse_loss(self.corrected_cache()[ids], fresh))
        return out

    # ---- checkpoints (cache mode)
    def pool_sha256(self) -> str:
        """sha256 over the pool's texts in pool order (what the cache rows mean)."""
        h = hashlib.sha256()
        for t in getattr(self, "pool_texts", []):
            h.update(t.encode("utf-8"))
            h.update(b"\0")
        return h.hexdigest()

    def state_fingerprint(self, step: int) -> str:
        """What a saved state must agree on to be restored: pool, cache shape, corrector shape, step."""
        fp = {
            "pool_sha256": self.pool_sha256(),
            "cache_shape": None if self.cache is None else list(self.cache.shape),
            "corrector": None if self.corrector is None else self.corrector.net.config_dict(),
            "step": step,
        }
        return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()

    def state_dict(self, step: int) -> dict[str, Any]:
        """The cache mode's resumable state at ``step`` (empty in mined mode)."""
        if self.mode != "cache" or self.cache is None:
            return {}
        return {
            "fingerprint": self.state_fingerprint(step),
            "step": step,
            "cache": self.cache.detach().float().cpu(),
            "refreshes": self.refreshes,
            "reencoded": dict(self.reencoded),
            "corrector": None if self.corrector is None else {
                "net": {k: v.detach().cpu() for k, v in self.corrector.net.state_dict().items()},
                "optimizer": self.corrector.optimizer.state_dict(),
                "history": list(self.corrector.history),
            },
        }

    def save_state(self, path: str, step: int) -> bool:
        """Writes :meth:`state_dict` atomically; returns whether there was anything to write."""
        state = self.state_dict(step)
        if not state:
            return False
        tmp = path + ".tmp"
        torch.save(state, tmp)
        os.replace(tmp, path)
        return True

    def resume(self, model, path: str, step: int) -> str:
        """Restores a saved state for ``step`` or rebuilds the cache from ``model``.

        Returns "restored", or why it rebuilt: "missing" (no file) or "invalidated" (another pool,
        cache shape, corrector shape or step). Mined mode: "mined" (nothing to restore).
        """
        if self.mode != "cache":
            return "mined"
        saved = torch.load(path, map_location="cpu", weights_only=True) if os.path.isfile(path) else None
        why = "missing" if saved is None else "invalidated"
        if saved is not None:
            cache = saved["cache"]
            self.cache = cache.to(self.device)  # the shape enters the fingerprint below
            if self.args.corrector:
                self._new_corrector()
            if saved.get("fingerprint") == self.state_fingerprint(step) and (saved["corrector"] is None) == (self.corrector is None):
                self.refreshes = int(saved["refreshes"])
                self.reencoded = {**self.reencoded, **{k: int(v) for k, v in saved["reencoded"].items()}}
                if self.corrector is not None:
                    self.corrector.net.load_state_dict(saved["corrector"]["net"])
                    self.corrector.optimizer.load_state_dict(saved["corrector"]["optimizer"])
                    self.corrector.history = list(saved["corrector"]["history"])
                return "restored"
            self.cache = None
            self.corrector = None
        self.setup(model)
        return why

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "file": self.data.file,
            "sha256": self.data.sha256,
            **{k: v for k, v in self.data.stats.items() if k != "file"},
            "group_size": self.group_size,
            "batch_groups": self.batch_size,
            "negatives": self.mode,
        }
        if self.mode == "cache":
            rec.update({
                "pool": len(self.pool_texts),
                "refresh_every": self.args.refresh_every,
                "refreshes": self.refreshes,
                "reencoded": dict(self.reencoded),
                "reencoded_total": sum(self.reencoded.values()),
                "cache_guard": self.args.cache_guard,
                "corrector": None if self.corrector is None else {
                    **self.corrector.config_dict(),
                    "every": self.args.corrector_every,
                    "sample": self.args.corrector_sample,
                    "fits": len(self.corrector.history),
                    "last": self.corrector.history[-1] if self.corrector.history else None,
                    "citation": CORRECTOR_CITATION,
                },
            })
        return rec
