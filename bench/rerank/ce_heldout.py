"""Held-out chain ordering of cross-encoders (and of the bi-encoder) on chains training did not see.

    PYTHONPATH=posttrain .venv/bin/python bench/rerank/ce_heldout.py --chains DIR_OR_FILE [--allow-unvalidated] \
        [--model NAME=CE_DIR ...] [--base MINILM_DIR --base-seeds 1,2,3] [--embedder MINILM_DIR]

For every chain with >= 2 steps: Kendall tau-b between a judge's anchor->step scores and chain order
(1 = each step scored below the one before it; 0 = chance), averaged over chains, with the standard
error over chains. ``--base`` scores the base encoder with a fresh one-label head (what
``posttrain --cross-encoder`` starts from), once per seed in ``--base-seeds``; ``--embedder`` scores the
bi-encoder's cosine. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Sequence

import torch

from rankchain_posttrain.cross_encoder import kendall_tau, load_cross_encoder, score_pairs
from rankchain_posttrain.data import Chain, load_chains


def summary(taus: Sequence[float]) -> dict[str, float | int | None]:
    n = len(taus)
    if n == 0:
        return {"chains": 0, "mean_kendall": None, "se": None}
    m = sum(taus) / n
    sd = math.sqrt(sum((t - m) ** 2 for t in taus) / (n - 1)) if n > 1 else 0.0
    return {"chains": n, "mean_kendall": round(m, 4), "se": round(sd / math.sqrt(n), 4)}


def ce_taus(model, tok, chains: Sequence[Chain], max_length: int) -> list[float]:
    taus: list[float] = []
    for c in chains:
        scores = score_pairs(model, tok, [(c.sentences[0], s) for s in c.sentences[1:]], max_length).tolist()
        t = kendall_tau(scores, [-p for p in range(1, len(c.sentences))])
        if t is not None:
            taus.append(t)
    return taus


def embedder_taus(path: str, chains: Sequence[Chain], max_length: int) -> list[float]:
    from rankchain_posttrain.modeling import embed, load_encoder

    enc = load_encoder(path, device="cpu", max_seq_length=max_length)
    taus: list[float] = []
    for c in chains:
        with torch.no_grad():
            e = embed(enc, list(c.sentences), torch.device("cpu"))
        e = torch.nn.functional.normalize(e.float(), dim=-1)
        sims = (e[1:] @ e[0]).tolist()
        t = kendall_tau(sims, [-p for p in range(1, len(c.sentences))])
        if t is not None:
            taus.append(t)
    return taus


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chains", required=True)
    p.add_argument("--allow-unvalidated", action="store_true")
    p.add_argument("--model", action="append", default=[], help="NAME=DIR of a trained cross-encoder (repeatable)")
    p.add_argument("--base", help="base encoder: scored with a fresh one-label head per --base-seeds")
    p.add_argument("--base-seeds", default="1,2,3")
    p.add_argument("--embedder", help="bi-encoder dir: cosine anchor->step")
    p.add_argument("--max-seq-length", type=int, default=128)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    chains = [c for c in load_chains(a.chains, allow_unvalidated=a.allow_unvalidated).chains if len(c.sentences) >= 3]
    out: dict[str, object] = {"chains_file": os.path.abspath(a.chains), "chains": len(chains),
                              "steps_mean": round(sum(len(c.sentences) - 1 for c in chains) / max(1, len(chains)), 2)}
    res: dict[str, object] = {}
    if a.embedder:
        res["embedder"] = summary(embedder_taus(a.embedder, chains, a.max_seq_length))
    if a.base:
        for s in [int(x) for x in a.base_seeds.split(",") if x]:
            torch.manual_seed(s)
            m, t = load_cross_encoder(a.base)
            res[f"base-head-seed{s}"] = summary(ce_taus(m, t, chains, a.max_seq_length))
    for spec in a.model:
        name, _, d = spec.partition("=")
        m, t = load_cross_encoder(d)
        res[name] = summary(ce_taus(m, t, chains, a.max_seq_length))
    out["judges"] = res
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
