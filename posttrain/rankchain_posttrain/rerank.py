"""Reranking files and their metrics: MAP, MRR@10 and nDCG@10 (x100).

The file format and the metric definitions are the ones in ``src/eval/rerank.ts`` (one JSON object
per line: ``query``, ``positive`` list, ``negative`` list, optional graded ``positive_relevance``);
``rankchain export --format mteb-rerank`` writes such files from held-out chains. Candidates are
ranked by score, highest first, ties broken against the positives (a constant scorer earns the worst
ranking). A TypeScript test checks that both sides give the same numbers on the same scores.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .errors import DataError


@dataclass(frozen=True)
class RerankRecord:
    query: str
    positive: tuple[str, ...]
    negative: tuple[str, ...]
    gains: tuple[float, ...]  # one per candidate: positives (graded, default 1), then negatives (0)

    @property
    def candidates(self) -> tuple[str, ...]:
        return self.positive + self.negative


def _strings(value: Any, file: str, line: int, name: str, min_len: int) -> tuple[str, ...]:
    if not isinstance(value, list) or any(not isinstance(v, str) or v.strip() == "" for v in value):
        raise DataError("expected a list of non-empty strings", file=file, line=line, field=name)
    if len(value) < min_len:
        raise DataError(f"needs at least {min_len} item(s)", file=file, line=line, field=name)
    return tuple(value)


def load_rerank(path: str) -> list[RerankRecord]:
    """Read a reranking file; a bad line raises :class:`DataError` (exit 2) naming file:line and field."""
    records: list[RerankRecord] = []
    try:
        fh = open(path, encoding="utf-8")
    except OSError as e:
        raise DataError(f"cannot read the reranking file: {e.strerror}", file=path) from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            if raw.strip() == "":
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                raise DataError(f"not valid JSON ({e.msg} at column {e.colno})", file=path, line=lineno) from None
            if not isinstance(obj, dict):
                raise DataError("expected a JSON object", file=path, line=lineno)
            query = obj.get("query")
            if not isinstance(query, str) or query.strip() == "":
                raise DataError("expected a non-empty string", file=path, line=lineno, field="query")
            pos = _strings(obj.get("positive"), path, lineno, "positive", 1)
            neg = _strings(obj.get("negative"), path, lineno, "negative", 0)
            rel = obj.get("positive_relevance")
            if rel is None:
                gains = [1.0] * len(pos)
            else:
                ok = isinstance(rel, list) and len(rel) == len(pos) and all(
                    isinstance(g, (int, float)) and not isinstance(g, bool) and math.isfinite(g) and g > 0 for g in rel
                )
                if not ok:
                    raise DataError(
                        f"expected {len(pos)} numbers > 0 (one per positive)", file=path, line=lineno, field="positive_relevance"
                    )
                gains = [float(g) for g in rel]
            records.append(RerankRecord(query, pos, neg, tuple(gains) + (0.0,) * len(neg)))
    if not records:
        raise DataError("no records in the reranking file", file=path)
    return records


def rank_by_score(scores: Sequence[float], gains: Sequence[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], gains[i], i))


def average_precision(ranking: Sequence[int], gains: Sequence[float]) -> float:
    hits, total = 0, 0.0
    for r, idx in enumerate(ranking):
        if gains[idx] > 0:
            hits += 1
            total += hits / (r + 1)
    relevant = sum(1 for g in gains if g > 0)
    return 0.0 if relevant == 0 else total / relevant


def reciprocal_rank_at(ranking: Sequence[int], gains: Sequence[float], k: int = 10) -> float:
    for r, idx in enumerate(ranking[:k]):
        if gains[idx] > 0:
            return 1.0 / (r + 1)
    return 0.0


def ndcg_at(ranking: Sequence[int], gains: Sequence[float], k: int = 10) -> float:
    def dcg(gs: Sequence[float]) -> float:
        return sum(g / math.log2(r + 2) for r, g in enumerate(gs[:k]))

    ideal = dcg(sorted(gains, reverse=True))
    return 0.0 if ideal == 0 else dcg([gains[i] for i in ranking]) / ideal


def rerank_metrics(records: Sequence[RerankRecord], scores: Sequence[Sequence[float]]) -> dict[str, float]:
    """MAP, MRR@10, nDCG@10 (x100); ``scores[i][j]`` scores candidate j (positives, then negatives) of record i."""
    if len(scores) != len(records):
        raise ValueError(f"{len(scores)} score lists for {len(records)} records")
    m = mrr = nd = 0.0
    for rec, s in zip(records, scores):
        if len(s) != len(rec.gains):
            raise ValueError(f"{len(s)} scores for {len(rec.gains)} candidates")
        ranking = rank_by_score(s, rec.gains)
        m += average_precision(ranking, rec.gains)
        mrr += reciprocal_rank_at(ranking, rec.gains)
        nd += ndcg_at(ranking, rec.gains)
    n = max(1, len(records))
    return {"rerank_map": m / n * 100, "rerank_mrr@10": mrr / n * 100, "rerank_ndcg@10": nd / n * 100}


def cosine_scores(embed: Callable[[list[str]], Any], records: Sequence[RerankRecord]) -> list[list[float]]:
    """Cosine of each candidate to its query, embedding every text once (embeddings L2-normalised)."""
    texts: list[str] = []
    for r in records:
        texts.append(r.query)
        texts.extend(r.candidates)
    emb = embed(texts)
    out: list[list[float]] = []
    offset = 0
    for r in records:
        q = emb[offset]
        c = emb[offset + 1 : offset + 1 + len(r.candidates)]
        offset += 1 + len(r.candidates)
        out.append((c @ q).tolist())
    return out
