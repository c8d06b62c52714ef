"""Checkpoint selection and the order control: what `train` chooses its model on, and how.

Selection never uses a set that `eval` reports: by default it uses chains held out of the
training data, scored by ranking agreement (mean Kendall tau-b x100 between each rewrite's
cosine to its anchor and its chain position, :class:`ChainOrderEvaluator`). Choosing a checkpoint
on STS-B dev and then reporting STS-B dev would count the selection as a gain.

The shuffled-order control trains on the same sentences with each chain's rewrites in a random
order (anchor kept first): what it gains is self-distillation on more sentences, not chain order.
"""

from __future__ import annotations

import random
from typing import Sequence

from .data import Chain
from .errors import DataError

SELECTIONS = ("auto", "heldout-chains", "sts", "last")
CONTROLS = ("none", "shuffled")
#: `--select auto` holds chains out only when there are at least this many.
AUTO_HOLDOUT_MIN_CHAINS = 20
AUTO_HOLDOUT_FRACTION = 0.1
HELDOUT_METRIC = "heldout_chain_kendall"


def effective_holdout_fraction(select: str, holdout_fraction: float | None, n_chains: int) -> float:
    """--holdout-fraction as given, else 0.1 for held-out-chain selection on >= 20 chains, else 0."""
    if holdout_fraction is not None:
        return holdout_fraction
    if select in ("auto", "heldout-chains") and n_chains >= AUTO_HOLDOUT_MIN_CHAINS:
        return AUTO_HOLDOUT_FRACTION
    return 0.0


def resolve_selection(select: str, n_heldout: int, has_sts: bool) -> str:
    """The selection actually used: auto -> heldout-chains when chains are held out, else last."""
    if select == "auto":
        return "heldout-chains" if n_heldout >= 2 else "last"
    if select == "heldout-chains" and n_heldout < 2:
        raise DataError("--select heldout-chains needs at least 2 held-out chains; raise --holdout-fraction or add data")
    if select == "sts" and not has_sts:
        raise DataError("--select sts needs --eval-sts FILE")
    return select


def shuffle_rewrites(chains: Sequence[Chain], seed: int) -> list[Chain]:
    """The shuffled-order control: each chain's rewrites permuted (deterministic per seed and chain id), anchor first.

    A permutation that happens to equal the original order is re-drawn (for chains with >= 2
    rewrites), so no chain keeps its order by chance.
    """
    out: list[Chain] = []
    for c in chains:
        anchor, rewrites = c.sentences[0], list(c.sentences[1:])
        rng = random.Random(f"{seed}:shuffle:{c.id}")
        perm = rewrites[:]
        if len(set(rewrites)) >= 2:
            while perm == rewrites:
                rng.shuffle(perm)
        out.append(Chain(id=c.id, sentences=(anchor, *perm), status=c.status))
    return out
