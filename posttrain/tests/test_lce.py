"""Issue 10: LCE over mined groups, group data, cache negatives and the corrector network."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import CHAINS, chain_record, model_dir
from rankchain_posttrain import train as train_mod
from rankchain_posttrain.corrector import Corrector, CorrectorTrainer, corrector_mse
from rankchain_posttrain.errors import DataError
from rankchain_posttrain.groups import load_groups, looks_like_groups_file, resolve_groups_file
from rankchain_posttrain.losses import CombinedLoss, GroupEmbeddings, LCELoss, lce_loss, parse_loss_spec
from rankchain_posttrain.modeling import encode
from rankchain_posttrain.negatives import GroupTraining


def lce_reference(q: torch.Tensor, docs: torch.Tensor, valid: torch.Tensor, tau: float) -> torch.Tensor:
    """Slow loop: softmax cross-entropy of document 0 over the group's valid documents."""
    losses = []
    for b in range(q.shape[0]):
        scores = []
        for j in range(docs.shape[1]):
            if valid[b, j]:
                cos = (q[b] @ docs[b, j]) / (q[b].norm() * docs[b, j].norm())
                scores.append(cos / tau)
        s = torch.stack(scores)
        losses.append(-s[0] + torch.log(torch.exp(s).sum()))
    return torch.stack(losses).mean()


def test_issue10_lce_matches_slow_reference_with_gradients():
    torch.manual_seed(0)
    q = torch.randn(4, 16, dtype=torch.float64, requires_grad=True)
    d = torch.randn(4, 6, 16, dtype=torch.float64, requires_grad=True)
    valid = torch.ones(4, 6, dtype=torch.bool)
    valid[1, 4:] = False  # a group with fewer negatives (padding)
    valid[3, 2:] = False
    fast = lce_loss(q, d, valid, tau=0.1)
    ref = lce_reference(q, d, valid, tau=0.1)
    assert fast.item() == pytest.approx(ref.item(), rel=1e-5)
    gq, gd = torch.autograd.grad(fast, (q, d))
    rq, rd = torch.autograd.grad(ref, (q, d))
    assert torch.allclose(gq.double(), rq, atol=1e-5)
    assert torch.allclose(gd.double(), rd, atol=1e-5)
    assert gd[1, 4:].abs().max().item() == 0.0  # padding gets no gradient


def test_issue10_lce_hand_value_and_reductions():
    # one group, 2 docs, unit vectors: cos(q, pos) = 1, cos(q, neg) = 0, tau = 1 -> log(1 + e^-1)
    q = torch.tensor([[1.0, 0.0]])
    d = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert lce_loss(q, d, tau=1.0).item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    q2 = torch.randn(3, 8)
    d2 = torch.randn(3, 4, 8)
    per = lce_loss(q2, d2, reduction="none")
    assert per.shape == (3,)
    assert lce_loss(q2, d2, reduction="sum").item() == pytest.approx(per.sum().item(), rel=1e-5)
    assert (per >= 0).all()


def test_issue10_lce_is_finite_in_bf16_and_checks_arguments():
    q = torch.randn(4, 16).bfloat16()
    d = torch.randn(4, 8, 16).bfloat16()
    out = lce_loss(q, d)
    assert out.dtype == torch.float32 and torch.isfinite(out)
    with pytest.raises(ValueError, match="tau must be"):
        lce_loss(q, d, tau=0)
    with pytest.raises(ValueError, match="shape mismatch"):
        lce_loss(q, d[:, :, :8])
    bad = torch.ones(4, 8, dtype=torch.bool)
    bad[0, 0] = False
    with pytest.raises(ValueError, match="positive"):
        lce_loss(q, d, bad)


def test_issue10_combined_spec_mixes_chain_and_group_losses():
    assert parse_loss_spec("chain_listmle:1,lce:0.5") == [("chain_listmle", 1.0), ("lce", 0.5)]
    loss = CombinedLoss.from_spec("chain_listmle:1,lce:0.5", tau=0.05)
    assert loss.needs_chains and loss.needs_groups and loss.needs_teacher
    only = CombinedLoss.from_spec("lce")
    assert not only.needs_chains and not only.needs_teacher
    torch.manual_seed(1)
    emb = torch.randn(9, 8)
    lengths = torch.tensor([4, 5])
    groups = GroupEmbeddings(torch.randn(2, 8), torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool))
    parts = loss(emb, emb.clone(), lengths, groups=groups)
    assert set(parts) == {"chain_listmle", "lce"}
    assert parts["lce"].item() == pytest.approx(0.5 * LCELoss()(groups).item(), rel=1e-6)
    with pytest.raises(ValueError, match="mined groups"):
        loss(emb, emb, lengths)
    assert loss.config_dict()["lce"] == {"weight": 0.5, "tau": 0.05, "reduction": "mean"}
    assert "gao2021lce" in loss.citation["lce"]


# ---- groups.jsonl as `rankchain mine` writes it

def mined_record(i: int, chain: list[str], negatives: list[tuple[str, str | None]]) -> dict:
    return {
        "id": f"c{i}:first-step", "chain_id": f"c{i}", "query": chain[0], "positive": chain[1],
        "positive_scores": {"onnx:all-MiniLM-L6-v2": 0.8},
        "negatives": [
            {"text": t, "source": ({"kind": "chain", "chain_id": c, "position": 2} if c else {"kind": "corpus", "line": 1}),
             "fused": 0.03, "scores": {"onnx:all-MiniLM-L6-v2": 0.5}, "ranks": {"onnx:all-MiniLM-L6-v2": 1}}
            for t, c in negatives
        ],
    }


def write_groups(path: Path, n_neg: int = 3) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for i, c in enumerate(CHAINS):
            others = [(CHAINS[j][k], f"c{j}") for j in range(len(CHAINS)) if j != i for k in (0, 2)]
            fh.write(json.dumps(mined_record(i, c, others[:n_neg])) + "\n")
    return path


def test_issue10_groups_file_loads_and_bad_records_name_file_line_field(tmp_path):
    p = write_groups(tmp_path / "groups.jsonl")
    assert looks_like_groups_file(str(p))
    data = load_groups(str(p))
    assert len(data.groups) == len(CHAINS) and data.stats["max_negatives"] == 3
    g = data.groups[0]
    assert g.docs()[0] == CHAINS[0][1] and g.negative_chains[0] == "c1"
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(DataError, match="rankchain mine"):
        resolve_groups_file(str(run))
    (run / "mine.json").write_text(json.dumps({"groups_file": str(p)}))
    assert resolve_groups_file(str(run)) == str(p)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "q", "positive": "p", "negatives": [{"text": ""}]}) + "\n")
    with pytest.raises(DataError) as e:
        load_groups(str(bad))
    assert "bad.jsonl:1" in str(e.value) and "negatives[0].text" in str(e.value)


# ---- the corrector

def test_issue10_corrector_is_identity_at_start_and_validates():
    c = Corrector(8)
    x = torch.randn(5, 8)
    assert torch.equal(c(x), x)
    with pytest.raises(ValueError, match="dimensions"):
        Corrector(0)
    with pytest.raises(ValueError, match="lr"):
        CorrectorTrainer(8, lr=0)


def test_issue10_corrector_lowers_stale_vs_fresh_mse_within_a_few_steps(minilm):
    """Stale = the pool encoded before a few real training steps; fresh = after. The corrector, fit on a
    sample of fresh re-encodings, must bring held-out stale embeddings closer to their fresh values."""
    pool = sorted({s for c in CHAINS for s in c} | {f"{s} Indeed." for c in CHAINS for s in c})
    stale = encode(minilm, pool)
    # move the encoder: a few LCE steps at a high learning rate
    model = minilm
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4)
    for _ in range(4):
        q = model(model.preprocess([c[0] for c in CHAINS]))["sentence_embedding"]
        d = model(model.preprocess([s for c in CHAINS for s in (c[1], c[3], c[4])]))["sentence_embedding"].view(len(CHAINS), 3, -1)
        lce_loss(q, d).backward()
        opt.step()
        opt.zero_grad()
    fresh = encode(model, pool)
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(pool), generator=gen)
    train_ids, held = perm[:40], perm[40:]
    identity = corrector_mse(None, stale[held], fresh[held]).item()
    assert identity > 1e-5  # the encoder really moved
    trainer = CorrectorTrainer(stale.shape[1], lr=1e-3, steps=5)
    history = [trainer.fit(stale[train_ids], fresh[train_ids]) for _ in range(6)]
    corrected = corrector_mse(trainer.net, stale[held], fresh[held]).item()
    assert history[-1]["mse_after"] < history[0]["identity_mse"]
    assert corrected < 0.8 * identity, (identity, corrected)


# ---- cache negatives and training end to end

def make_run(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "validated.jsonl", "w", encoding="utf-8") as fh:
        for i, c in enumerate(CHAINS):
            fh.write(json.dumps(chain_record(i, c)) + "\n")
    write_groups(root / "groups.jsonl")
    return root


def args_for(data: Path, out: Path, *extra: str):
    return train_mod.build_parser().parse_args([
        "--data", str(data), "--base-model", model_dir(), "--out", str(out), "--device", "cpu",
        "--batch-chains", "3", "--batch-groups", "3", "--max-seq-length", "32", "--seed", "7", "--no-export",
        "--lr", "5e-5", "--warmup-ratio", "0", *extra,
    ])


def test_issue10_cache_negatives_respect_exclusions_guard_and_count_reencoding(tmp_path, minilm):
    data = load_groups(str(write_groups(tmp_path / "groups.jsonl")))
    args = args_for(tmp_path / "groups.jsonl", tmp_path / "out", "--negatives", "cache", "--refresh-every", "2", "--corrector")
    gt = GroupTraining(data, args, torch.device("cpu"))
    gt.setup(minilm)
    assert gt.reencoded["cache_build"] == len(gt.pool_texts)
    for step in range(1, 5):
        idx = gt.indices(step - 1)
        batch = gt.batch(idx, minilm)
        b, g = batch.valid.shape
        assert g == 4 and b == len(idx)
        for k, i in enumerate(idx):
            grp = data.groups[i]
            docs = batch.docs[k * g : (k + 1) * g]
            assert docs[0] == grp.positive
            chain = CHAINS[int(grp.chain_id[1:])]
            for d in docs[1:]:
                assert d not in chain  # never the query, the positive or a sentence of the same chain
        emb = encode(minilm, batch.texts)
        info = gt.after_step(step, minilm, batch, emb[b:])
        assert {"corrector_identity_mse", "corrector_mse_after"} <= set(info)
    assert gt.refreshes == 2 and gt.reencoded["refresh"] == 2 * len(gt.pool_texts)
    assert gt.reencoded["corrector_sample"] == 4 * min(64, len(gt.pool_texts))
    rec = gt.record()
    assert rec["negatives"] == "cache" and rec["corrector"]["fits"] == 4


def test_issue10_train_lce_on_a_groups_file_and_mixed_with_chains(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    # a groups file alone
    rec = train_mod.train(args_for(run / "groups.jsonl", tmp_path / "o1", "--loss", "lce", "--max-steps", "2"),
                          train_mod.Progress(stream=open("/dev/null", "w")))
    assert rec["steps"] == 2 and rec["data"] is None and rec["groups"]["groups"] == len(CHAINS)
    assert set(rec["final_loss_parts"]) == {"lce"} and rec["teacher"] is None
    # a run directory: chains and groups together, weighted
    rec = train_mod.train(args_for(run, tmp_path / "o2", "--loss", "chain_listmle:1,lce:0.5", "--max-steps", "2"),
                          train_mod.Progress(stream=open("/dev/null", "w")))
    assert set(rec["final_loss_parts"]) == {"chain_listmle", "lce"}
    assert rec["data"]["chains"] == len(CHAINS) and rec["groups"]["negatives"] == "mined"
    assert rec["loss"]["config"]["lce"]["weight"] == 0.5
    # the corrector end to end
    rec = train_mod.train(args_for(run, tmp_path / "o3", "--loss", "lce", "--corrector", "--epochs", "2", "--max-steps", "3", "--corrector-sample", "8"),
                          train_mod.Progress(stream=open("/dev/null", "w")))
    g = rec["groups"]
    assert g["negatives"] == "cache" and g["corrector"]["fits"] == 3
    assert g["reencoded"]["corrector_sample"] == 24 and g["reencoded"]["refresh"] == 0
    assert "stale_mse" in g and "corrected_mse" in g


def test_issue10_bad_group_arguments_exit_2(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    common = ["--base-model", model_dir(), "--device", "cpu", "--no-export"]
    assert train_mod.main(["--data", str(run / "groups.jsonl"), "--out", str(tmp_path / "a"), "--loss", "chain_listmle,lce", *common]) == 2
    assert "groups file" in capsys.readouterr().err
    assert train_mod.main(["--data", str(run), "--out", str(tmp_path / "b"), "--loss", "lce", "--negatives", "mined", "--corrector", *common]) == 2
    assert "--negatives cache" in capsys.readouterr().err
    assert train_mod.main(["--data", str(run), "--out", str(tmp_path / "c"), "--loss", "lce", "--refresh-every", "-1", *common]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "validated.jsonl").write_text(json.dumps(chain_record(0, CHAINS[0])) + "\n")
    assert train_mod.main(["--data", str(empty), "--out", str(tmp_path / "d"), "--loss", "lce", *common]) == 2
    assert "rankchain mine" in capsys.readouterr().err


def test_issue10_resume_restores_the_stale_cache_and_the_corrector(tmp_path, monkeypatch, capsys):
    """A run stopped after its step-2 checkpoint and resumed ends with the same model, cache, corrector
    weights and optimizer, fit history and re-encoding counts as the same run uninterrupted; without
    the saved state the resumed run rebuilds the cache from the resumed model and starts a new corrector."""
    import shutil

    from safetensors.torch import load_file

    from rankchain_posttrain.negatives import NEGATIVES_STATE_FILE

    run = make_run(tmp_path / "run")
    common = ("--loss", "lce", "--corrector", "--corrector-sample", "8", "--epochs", "3", "--max-steps", "4",
              "--checkpoint-every", "2")
    quiet = train_mod.Progress(stream=open("/dev/null", "w"))
    whole = train_mod.train(args_for(run, tmp_path / "whole", *common), quiet)
    whole_state = torch.load(tmp_path / "whole" / "checkpoints" / "last" / NEGATIVES_STATE_FILE, weights_only=True)
    assert whole_state["step"] == 4 and len(whole_state["corrector"]["history"]) == 4

    class Crash(RuntimeError):
        pass

    real_after_step = GroupTraining.after_step

    def crash_at_3(self, step, *a, **k):
        if step == 3:
            raise Crash("stopped after the step-2 checkpoint")
        return real_after_step(self, step, *a, **k)

    monkeypatch.setattr(GroupTraining, "after_step", crash_at_3)
    with pytest.raises(Crash):
        train_mod.train(args_for(run, tmp_path / "cut", *common), quiet)
    monkeypatch.setattr(GroupTraining, "after_step", real_after_step)
    saved = torch.load(tmp_path / "cut" / "checkpoints" / "last" / NEGATIVES_STATE_FILE, weights_only=True)
    assert saved["step"] == 2 and len(saved["corrector"]["history"]) == 2
    assert any(float(v.abs().max()) > 0 for k, v in saved["corrector"]["net"].items() if k.startswith("down."))  # not the identity
    shutil.copytree(tmp_path / "cut", tmp_path / "cut_nostate")
    (tmp_path / "cut_nostate" / "checkpoints" / "last" / NEGATIVES_STATE_FILE).unlink()

    capsys.readouterr()
    resumed = train_mod.train(args_for(run, tmp_path / "cut", *common, "--resume"), quiet)
    assert "restored" in capsys.readouterr().err
    state = torch.load(tmp_path / "cut" / "checkpoints" / "last" / NEGATIVES_STATE_FILE, weights_only=True)
    assert torch.allclose(state["cache"], whole_state["cache"], atol=1e-6)  # the step-0 cache, not one rebuilt at step 2
    for k, v in whole_state["corrector"]["net"].items():
        assert torch.allclose(state["corrector"]["net"][k], v, atol=1e-5), k
    flat = lambda h: [e[k] for e in h for k in sorted(e)]  # noqa: E731
    assert flat(state["corrector"]["history"]) == pytest.approx(flat(whole_state["corrector"]["history"]), rel=1e-4, abs=1e-9)
    assert state["corrector"]["optimizer"]["state"][0]["step"] == whole_state["corrector"]["optimizer"]["state"][0]["step"] == 4 * 5
    # the step after resuming starts from the restored corrector, not the identity
    assert state["corrector"]["history"][2]["mse_before"] != state["corrector"]["history"][2]["identity_mse"]
    a = load_file(tmp_path / "whole" / "checkpoints" / "final" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "checkpoints" / "final" / "model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
    g, w = resumed["groups"], whole["groups"]
    assert g["reencoded"] == w["reencoded"] and g["corrector"]["fits"] == 4
    assert g["reencoded"]["cache_build"] == len(GroupTraining(load_groups(str(run / "groups.jsonl")), args_for(run, tmp_path / "x", *common), torch.device("cpu")).pool_texts)

    # no saved state: the cache is rebuilt from the resumed (step-2) model, the corrector starts again
    rebuilt = train_mod.train(args_for(run, tmp_path / "cut_nostate", *common, "--resume"), quiet)
    assert "missing" in capsys.readouterr().err
    r = rebuilt["groups"]
    assert r["reencoded"]["cache_build"] == g["reencoded"]["cache_build"] and r["corrector"]["fits"] == 2
    state2 = torch.load(tmp_path / "cut_nostate" / "checkpoints" / "last" / NEGATIVES_STATE_FILE, weights_only=True)
    assert not torch.allclose(state2["cache"], whole_state["cache"], atol=1e-6)
