"""Evaluation: STS Spearman x100, chain-order Kendall x100, eval.json (STYLE #15)."""

from __future__ import annotations

import json

import pytest
from scipy.stats import kendalltau, spearmanr

from conftest import CHAINS, STS_ROWS, chain_record
from rankchain_posttrain.data import load_chains, load_sts
from rankchain_posttrain.evaluate import ChainOrderEvaluator, StsEvaluator, main as evaluate_main
from rankchain_posttrain.modeling import encode


def test_issue5_sts_spearman_on_tiny_file(minilm, sts_file):
    sts = load_sts(str(sts_file))
    ev = StsEvaluator(sts)
    assert ev.primary_metric == "stsb_spearman" and ev.greater_is_better is True
    value = ev(minilm)
    a, b = encode(minilm, [r[0] for r in STS_ROWS]), encode(minilm, [r[1] for r in STS_ROWS])
    expected = spearmanr((a * b).sum(-1).tolist(), [r[2] for r in STS_ROWS]).statistic * 100
    assert value == pytest.approx(expected)
    assert value > 60  # MiniLM ranks these obvious pairs well


def test_issue5_chain_kendall(minilm, run_dir):
    chains = load_chains(str(run_dir)).chains
    ev = ChainOrderEvaluator(chains)
    value = ev(minilm)
    taus = []
    for c in CHAINS:
        e = encode(minilm, c)
        sims = (e[1:] @ e[0]).tolist()
        taus.append(kendalltau([-s for s in sims], list(range(len(sims)))).statistic)
    assert value == pytest.approx(sum(taus) / len(taus) * 100)
    assert value > 50  # the hand-written chains drift in order


def test_issue5_eval_json_before_after(minilm_path, sts_file, run_dir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = evaluate_main(["--model", minilm_path, "--baseline", minilm_path, "--sts", str(sts_file),
                          "--chains", str(run_dir), "--usd", "1.5", "--out", str(out), "--max-seq-length", "32"])
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["primary_metric"] == "stsb_spearman"
    names = [m["name"] for m in doc["metrics"]]
    assert names == ["stsb_spearman", "chain_kendall"]
    for m in doc["metrics"]:
        assert m["greater_is_better"] is True
        assert m["model"] == m["baseline"] and m["delta"] == 0
    assert doc["usd"] == 1.5 and doc["usd_per_point"] is None  # no gain, no price per point
    assert doc["sts"]["pairs"] == len(STS_ROWS) and doc["chains"]["chains"] == len(CHAINS)
    last = [json.loads(l) for l in capsys.readouterr().out.splitlines() if l.startswith("{")][-1]
    assert last["event"] == "done"


def test_eval_without_baseline_has_null_deltas(minilm_path, sts_file, tmp_path):
    out = tmp_path / "e.json"
    assert evaluate_main(["--model", minilm_path, "--sts", str(sts_file), "--out", str(out), "--max-seq-length", "32"]) == 0
    doc = json.loads(out.read_text())
    assert doc["metrics"][0]["baseline"] is None and doc["metrics"][0]["delta"] is None and doc["usd_per_point"] is None


def test_eval_bad_inputs_exit_2(sts_file, minilm_path, tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence1\tsentence2\tscore\n", encoding="utf-8")
    assert evaluate_main(["--model", minilm_path, "--sts", str(bad), "--out", str(tmp_path / "e.json")]) == 2
    assert "needs at least 2 scored pairs" in capsys.readouterr().err
    assert evaluate_main(["--model", str(tmp_path / "missing-model"), "--sts", str(sts_file), "--out", str(tmp_path / "e.json")]) == 2
    assert "HF_HUB_OFFLINE=1 forbids downloading it" in capsys.readouterr().err


def test_metric_entry_delta_and_usd_per_point():
    from rankchain_posttrain.evaluate import STS_METRIC, metric_entry

    m = metric_entry(STS_METRIC, 80.5, 78.0)
    assert m["delta"] == 2.5 and m["greater_is_better"] is True
    assert metric_entry(STS_METRIC, float("nan"), 78.0)["model"] is None


def test_usd_from_run_manifest(tmp_path):
    from rankchain_posttrain.evaluate import run_cost_usd

    assert run_cost_usd(str(tmp_path)) is None
    (tmp_path / "run.json").write_text(json.dumps({"totals": {"usd": 1.25}}))
    assert run_cost_usd(str(tmp_path)) == 1.25
    (tmp_path / "run.json").write_text("{torn")
    with pytest.raises(Exception, match="cannot read the run manifest"):
        run_cost_usd(str(tmp_path))


def test_usd_per_point_when_the_model_gains(monkeypatch, sts_file, minilm_path):
    from rankchain_posttrain import evaluate as ev

    calls = iter([80.0, 78.0])  # model, then baseline
    monkeypatch.setattr(ev.StsEvaluator, "__call__", lambda self, model: next(calls))
    monkeypatch.setattr(ev, "load_encoder", lambda path, **kw: object())
    doc = ev.evaluate("m", str(sts_file), baseline_dir="b", usd=3.0)
    assert doc["metrics"][0]["delta"] == 2.0 and doc["usd_per_point"] == 1.5
