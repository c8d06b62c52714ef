"""Checkpoint selection on held-out chains by default, the shuffled-order control (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import CHAINS, STS_ROWS, chain_record, model_dir
from rankchain_posttrain import train as train_mod
from rankchain_posttrain.data import Chain
from rankchain_posttrain.errors import DataError
from rankchain_posttrain.selection import effective_holdout_fraction, resolve_selection, shuffle_rewrites


def test_auto_selection_holds_chains_out_only_when_there_are_enough():
    assert effective_holdout_fraction("auto", None, 19) == 0.0
    assert effective_holdout_fraction("auto", None, 20) == 0.1
    assert effective_holdout_fraction("sts", None, 500) == 0.0
    assert effective_holdout_fraction("auto", 0.3, 5) == 0.3
    assert resolve_selection("auto", 5, has_sts=True) == "heldout-chains"  # never STS unless asked
    assert resolve_selection("auto", 0, has_sts=True) == "last"
    with pytest.raises(DataError, match="held-out"):
        resolve_selection("heldout-chains", 1, has_sts=False)
    with pytest.raises(DataError, match="--eval-sts"):
        resolve_selection("sts", 10, has_sts=False)


def test_shuffled_control_permutes_every_chains_rewrites_and_keeps_the_anchor():
    chains = [Chain(id=f"c{i}", sentences=tuple(c)) for i, c in enumerate(CHAINS)]
    a = shuffle_rewrites(chains, seed=3)
    b = shuffle_rewrites(chains, seed=3)
    assert a == b  # deterministic
    for orig, shuf in zip(chains, a):
        assert shuf.sentences[0] == orig.sentences[0]
        assert sorted(shuf.sentences[1:]) == sorted(orig.sentences[1:])
        assert shuf.sentences[1:] != orig.sentences[1:]  # the order really changed
    assert shuffle_rewrites(chains, seed=4) != a


def run_training(tmp_path: Path, *extra: str) -> dict:
    run = tmp_path / "run"
    run.mkdir()
    # 24 chains (the hand-written ones, repeated under new ids) so auto selection holds 10 % out
    with open(run / "validated.jsonl", "w", encoding="utf-8") as fh:
        for i in range(24):
            fh.write(json.dumps(chain_record(i, CHAINS[i % len(CHAINS)])) + "\n")
    (run / "sts.tsv").write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in STS_ROWS), encoding="utf-8")
    out = tmp_path / "out"
    args = train_mod.build_parser().parse_args([
        "--data", str(run), "--base-model", model_dir(), "--out", str(out), "--device", "cpu", "--batch-chains", "8",
        "--max-seq-length", "32", "--seed", "7", "--max-steps", "2", "--eval-every", "1", "--lr", "5e-5", "--warmup-ratio", "0",
        "--no-export", "--eval-sts", str(run / "sts.tsv"), *extra,
    ])

    class Quiet:
        def write(self, s):
            pass

        def flush(self):
            pass

    return train_mod.train(args, train_mod.Progress(stream=Quiet()))


def test_default_selects_on_heldout_chains_and_only_monitors_sts(tmp_path):
    rec = run_training(tmp_path)
    assert rec["selection"] == {"select": "heldout-chains", "requested": "auto", "metric": "heldout_chain_kendall",
                                "heldout_chains": 2, "monitored": ["stsb_spearman"]}
    assert rec["data"]["train_chains"] == 22 and (tmp_path / "out" / "heldout.jsonl").is_file()
    assert [h["step"] for h in rec["eval_history"]] == [0, 1, 2]
    assert all("heldout_chain_kendall" in h and "stsb_spearman" in h for h in rec["eval_history"])
    trained = [h["heldout_chain_kendall"] for h in rec["eval_history"] if h["step"] > 0]
    assert rec["best"]["metric"] == "heldout_chain_kendall" and rec["best"]["value"] == max(trained)
    assert rec["control"] == "none"


def test_shuffled_control_is_recorded_and_changes_the_fingerprint(tmp_path):
    rec = run_training(tmp_path, "--control", "shuffled", "--select", "last")
    assert rec["control"] == "shuffled" and rec["fingerprint"]["control"] == "shuffled"
    assert rec["selection"]["select"] == "last" and rec["best"] is None
