"""Before/after evaluation: STS Spearman x100 and chain-order Kendall x100 -> eval.json.

``python -m rankchain_posttrain.evaluate --model DIR [--baseline DIR] --sts FILE [--chains FILE|RUN_DIR]
[--rerank FILE] [--usd X] --out eval.json``

With ``--rerank`` (a reranking file, see rerank.py) also MAP, MRR@10 and nDCG@10 x100.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from .data import Chain, StsData, load_chains, load_sts
from .errors import DataError, PosttrainError
from .modeling import encode, load_encoder
from .progress import Progress
from .rerank import RerankRecord, cosine_scores, load_rerank, rerank_metrics


@dataclass(frozen=True)
class MetricSpec:
    name: str
    greater_is_better: bool
    description: str


STS_METRIC = MetricSpec("stsb_spearman", True, "Spearman rank correlation x100 of cosine similarity vs gold score")
CHAIN_METRIC = MetricSpec(
    "chain_kendall", True, "mean Kendall tau-b x100 between cosine-to-anchor and chain order on held-out chains"
)
RERANK_METRICS = (
    MetricSpec("rerank_map", True, "mean average precision x100 of the candidates ranked by cosine to the query (reranking file)"),
    MetricSpec("rerank_mrr@10", True, "mean reciprocal rank x100 of the first positive within the top 10 (reranking file)"),
    MetricSpec("rerank_ndcg@10", True, "nDCG@10 x100 with graded gains (positive_relevance, default 1) (reranking file)"),
)
PRIMARY_METRIC = STS_METRIC.name


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


class StsEvaluator:
    """Spearman x100 of cosine(model(s1), model(s2)) vs gold; ``primary_metric`` and ``greater_is_better`` declared."""

    primary_metric = STS_METRIC.name
    greater_is_better = True

    def __init__(self, sts: StsData, batch_size: int = 64):
        self.sts = sts
        self.batch_size = batch_size

    def __call__(self, model) -> float:
        a = encode(model, self.sts.sentences1, self.batch_size)
        b = encode(model, self.sts.sentences2, self.batch_size)
        cos = (a * b).sum(dim=-1).tolist()
        value = spearman(cos, self.sts.scores) * 100
        return value


class ChainOrderEvaluator:
    """Mean Kendall tau-b x100 between each rewrite's cosine to its anchor and its chain position.

    +100 means every chain's rewrites get less similar to the anchor exactly in chain order. Chains
    with fewer than two rewrites (no order to check) are skipped.
    """

    primary_metric = CHAIN_METRIC.name
    greater_is_better = True

    def __init__(self, chains: Sequence[Chain], batch_size: int = 64):
        self.chains = [c for c in chains if len(c.sentences) >= 3]
        if not self.chains:
            raise DataError("chain_kendall needs chains with at least 2 rewrites; none found")
        self.batch_size = batch_size

    def __call__(self, model) -> float:
        from scipy.stats import kendalltau

        flat = [s for c in self.chains for s in c.sentences]
        emb = encode(model, flat, self.batch_size)
        taus: list[float] = []
        offset = 0
        for c in self.chains:
            e = emb[offset : offset + len(c.sentences)]
            offset += len(c.sentences)
            sims = (e[1:] @ e[0]).tolist()
            distance = list(range(len(sims)))
            tau = kendalltau([-s for s in sims], distance).statistic
            if tau is not None and math.isfinite(tau):
                taus.append(float(tau))
        if not taus:
            return float("nan")
        return sum(taus) / len(taus) * 100


class RerankEvaluator:
    """MAP, MRR@10 and nDCG@10 x100 of cosine(query, candidate) rankings over a reranking file."""

    primary_metric = "rerank_map"
    greater_is_better = True

    def __init__(self, records: Sequence[RerankRecord], batch_size: int = 64):
        self.records = list(records)
        self.batch_size = batch_size

    def __call__(self, model) -> dict[str, float]:
        scores = cosine_scores(lambda texts: encode(model, texts, self.batch_size), self.records)
        return rerank_metrics(self.records, scores)


def metric_entry(spec: MetricSpec, model_value: float, baseline_value: float | None) -> dict[str, Any]:
    def clean(v: float | None) -> float | None:
        return None if v is None or not math.isfinite(v) else round(v, 4)

    m, b = clean(model_value), clean(baseline_value)
    delta = None if m is None or b is None else round(m - b, 4)
    if delta is not None and not spec.greater_is_better:
        delta = -delta
    return {
        "name": spec.name,
        "baseline": b,
        "model": m,
        "delta": delta,
        "greater_is_better": spec.greater_is_better,
        "description": spec.description,
    }


def versions() -> dict[str, str]:
    import sentence_transformers
    import transformers

    from . import __version__

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "rankchain_posttrain": __version__,
    }


def evaluate(
    model_dir: str,
    sts_file: str,
    *,
    baseline_dir: str | None = None,
    chains: str | None = None,
    rerank: str | None = None,
    usd: float | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    max_seq_length: int | None = None,
) -> dict[str, Any]:
    """Evaluate a model (and optionally a baseline) and return the eval.json document."""
    if usd is not None and (not math.isfinite(usd) or usd < 0):
        raise DataError(f"--usd must be a finite number >= 0, got {usd!r}")
    sts = load_sts(sts_file)
    evaluators: list[tuple[MetricSpec, Any]] = [(STS_METRIC, StsEvaluator(sts, batch_size))]
    chain_info = None
    if chains:
        data = load_chains(chains, allow_unvalidated=True)
        chain_eval = ChainOrderEvaluator(data.chains, batch_size)
        evaluators.append((CHAIN_METRIC, chain_eval))
        chain_info = {"file": data.file, "chains": len(chain_eval.chains)}
    rerank_info = None
    rerank_eval = None
    if rerank:
        rerank_records = load_rerank(rerank)
        rerank_eval = RerankEvaluator(rerank_records, batch_size)
        rerank_info = {
            "file": os.path.abspath(rerank),
            "records": len(rerank_records),
            "candidates": sum(len(r.candidates) for r in rerank_records),
        }

    def run_all(path: str) -> list[float]:
        model = load_encoder(path, device=device, max_seq_length=max_seq_length)
        try:
            values = [ev(model) for _, ev in evaluators]
            if rerank_eval is not None:
                r = rerank_eval(model)
                values.extend(r[spec.name] for spec in RERANK_METRICS)
            return values
        finally:
            del model

    specs = [spec for spec, _ in evaluators] + (list(RERANK_METRICS) if rerank_eval is not None else [])
    model_values = run_all(model_dir)
    baseline_values = run_all(baseline_dir) if baseline_dir else [None] * len(specs)
    metrics = [metric_entry(spec, m, b) for spec, m, b in zip(specs, model_values, baseline_values)]
    primary = metrics[0]
    usd_per_point = None
    if usd is not None and primary["delta"] is not None and primary["delta"] > 0:
        usd_per_point = usd / primary["delta"]
    return {
        "primary_metric": PRIMARY_METRIC,
        "metrics": metrics,
        "usd": usd,
        "usd_per_point": usd_per_point,
        "model": model_dir,
        "baseline": baseline_dir,
        "sts": {"file": sts.file, "pairs": len(sts.scores)},
        "chains": chain_info,
        "rerank": rerank_info,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
    }


def write_json(path: str, doc: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2, allow_nan=False)
        fh.write("\n")
    os.replace(tmp, path)


def run_cost_usd(run_dir: str) -> float | None:
    """What generating a run's data cost: run.json's totals.usd, or None when unknown."""
    path = os.path.join(run_dir, "run.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            usd = json.load(fh).get("totals", {}).get("usd")
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise DataError(f"cannot read the run manifest: {e}", file=path) from None
    return float(usd) if isinstance(usd, (int, float)) and math.isfinite(usd) else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rankchain_posttrain.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="sentence-transformers or Hugging Face encoder directory")
    p.add_argument("--baseline", help="model to compare against (e.g. the base model before post-training)")
    p.add_argument("--sts", required=True, help="TSV with header sentence1<TAB>sentence2<TAB>score")
    p.add_argument("--chains", help="held-out chains: a JSONL file of chain records or a run directory")
    p.add_argument("--rerank", help="reranking file (JSONL: query, positive[], negative[], optional positive_relevance[]) for MAP/MRR@10/nDCG@10")
    p.add_argument("--usd", type=float, help="what the training data cost, for usd_per_point")
    p.add_argument("--data", help="the training data's run directory: usd defaults to its run.json totals.usd")
    p.add_argument("--out", default="eval.json", help="where to write eval.json (default ./eval.json)")
    p.add_argument("--device", default="cpu", help="torch device for encoding (default cpu)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-seq-length", type=int)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = Progress()
    try:
        doc = evaluate(
            args.model,
            args.sts,
            baseline_dir=args.baseline,
            chains=args.chains,
            rerank=args.rerank,
            usd=args.usd if args.usd is not None else (run_cost_usd(args.data) if args.data else None),
            device=args.device,
            batch_size=args.batch_size,
            max_seq_length=args.max_seq_length,
        )
        write_json(args.out, doc)
    except PosttrainError as e:
        progress.emit("error", message=str(e), exit_code=e.exit_code, kind=type(e).__name__)
        sys.stderr.write(f"rankchain_posttrain.evaluate: {e}\n")
        return e.exit_code
    progress.emit("done", out=os.path.abspath(args.out), metrics=doc["metrics"], usd_per_point=doc["usd_per_point"])
    for m in doc["metrics"]:
        base = "" if m["baseline"] is None else f" (baseline {m['baseline']:.2f}, delta {m['delta']:+.2f})"
        model_value = "n/a" if m["model"] is None else f"{m['model']:.2f}"
        progress.log(f"{m['name']}: {model_value}{base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
