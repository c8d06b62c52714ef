"""Issue 11: the self-trained cross-encoder (posttrain --cross-encoder) — graded pairs, held-out chain
order better than chance, and ONNX scores equal to PyTorch's."""

from __future__ import annotations

import json

import pytest

from conftest import CHAINS, chain_record
from rankchain_posttrain import train as train_mod
from rankchain_posttrain.cross_encoder import (
    chain_order_kendall,
    chain_pairs,
    load_cross_encoder,
    onnx_scores,
    score_pairs,
)
from rankchain_posttrain.data import Chain

# More hand-written chains (anchor, then rewrites drifting away), so a held-out set exists.
MORE = [
    ["The chef is frying eggs in a pan.", "A cook fries eggs on the stove.", "Someone is making breakfast.",
     "Breakfast is the first meal of the day.", "Many people skip meals when busy."],
    ["A boy is flying a kite in the field.", "A child flies a kite outdoors.", "Kids play outside on a windy day.",
     "The weather was windy all week.", "Storms are common in the autumn."],
    ["The woman is reading a novel in bed.", "A lady reads a book before sleeping.", "Someone enjoys a story at night.",
     "Libraries lend thousands of books.", "The town built a new library."],
    ["A man is repairing a bicycle tire.", "A man fixes a flat bike tire.", "Someone is working on a bike.",
     "Cycling is popular in the city.", "The city added new bike lanes."],
    ["Two dogs are playing in the snow.", "A pair of dogs romp in the snow.", "Animals enjoy the winter weather.",
     "Winter brings cold days to the north.", "Heating costs rise in January."],
    ["A girl is painting a picture of a horse.", "A girl paints a horse on canvas.", "A young artist works on a painting.",
     "The art class meets every Tuesday.", "The school hired a new teacher."],
]
ALL = CHAINS + MORE


def test_chain_pairs_have_graded_targets_and_negatives_issue_11():
    chains = [Chain(id="a", sentences=("a0", "a1", "a2", "a3")), Chain(id="b", sentences=("b0", "b1", "b2"))]
    pairs = chain_pairs(chains, seed=0)
    t = {(q, p): y for q, p, y in pairs}
    assert t[("a0", "a1")] == pytest.approx(0.75)
    assert t[("a0", "a3")] == pytest.approx(0.25)
    assert t[("a1", "a2")] == pytest.approx(0.75)
    assert t[("b0", "b2")] == pytest.approx(1 - 2 / 3)
    negatives = [(q, p) for q, p, y in pairs if y == 0.0]
    assert len(negatives) == 2  # one per anchor, from the other chain
    assert all(q[0] != p[0] for q, p in negatives)
    # closer pairs always get higher targets
    assert t[("a0", "a1")] > t[("a0", "a2")] > t[("a0", "a3")] > 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory, minilm_path):
    tmp = tmp_path_factory.mktemp("ce")
    run = tmp / "run"
    run.mkdir()
    with open(run / "validated.jsonl", "w", encoding="utf-8") as fh:
        for i, c in enumerate(ALL):
            fh.write(json.dumps(chain_record(i, c)) + "\n")
    out = tmp / "out"
    rc = train_mod.main([
        "--cross-encoder", "--data", str(run), "--base-model", minilm_path, "--out", str(out),
        "--epochs", "8", "--batch-chains", "3", "--holdout-fraction", "0.25", "--seed", "3", "--max-seq-length", "48",
    ])
    assert rc == 0
    return out


def test_self_trained_cross_encoder_orders_heldout_chains_better_than_chance_issue_11(trained):
    record = json.loads((trained / "training.json").read_text())
    assert record["kind"] == "cross-encoder"
    assert record["data"]["heldout_chains"] == 3
    after = record["heldout_chain_kendall"]["after"]
    before = record["heldout_chain_kendall"]["before"]
    assert after["chains"] == 3
    # chance is 0 (a random order); MiniLM's pair representation already carries some signal before training
    assert after["mean_kendall"] > 0.3, record["heldout_chain_kendall"]
    assert before is not None and record["final_loss"] == record["final_loss"]  # recorded and not NaN
    # the held-out chains are written for evaluation and were not trained on
    held = [json.loads(line) for line in (trained / "heldout.jsonl").read_text().splitlines()]
    assert len(held) == 3


@pytest.fixture(scope="module")
def exported(tmp_path_factory, minilm_path):
    """A one-label head on MiniLM (untrained: parity does not need training), saved and exported."""
    import torch

    from rankchain_posttrain.cross_encoder import export_cross_encoder_onnx

    torch.manual_seed(5)
    d = tmp_path_factory.mktemp("ce-export") / "model"
    model, tok = load_cross_encoder(minilm_path)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    export_cross_encoder_onnx(d)
    return d


def test_onnx_export_matches_pytorch_scores_issue_11(exported):
    model_dir = exported
    assert (model_dir / "onnx" / "model.onnx").is_file()
    marker = json.loads((model_dir / "rankchain_cross_encoder.json").read_text())
    assert marker["outputs"] == ["logits"] and marker["num_labels"] == 1
    model, tok = load_cross_encoder(str(model_dir))
    pairs = [(c[0], s) for c in MORE[:3] for s in c[1:]] + [("short", "a much longer passage " * 12)]
    torch_scores = score_pairs(model, tok, pairs, max_length=128).tolist()
    ort_scores = onnx_scores(model_dir, pairs, max_length=128)
    assert len(ort_scores) == len(torch_scores)
    assert max(abs(a - b) for a, b in zip(torch_scores, ort_scores)) < 1e-4
    # different pairs get different scores (not a constant)
    assert max(torch_scores) - min(torch_scores) > 1e-3


def test_cross_encoder_bad_base_model_is_a_clear_error_issue_11(tmp_path, run_dir):
    rc = train_mod.main(["--cross-encoder", "--data", str(run_dir), "--base-model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert rc == 2


def test_chain_order_kendall_is_one_for_a_perfect_scorer():
    class Perfect:
        pass

    # score_pairs needs a model; check the tau helper directly with a monotone score
    from rankchain_posttrain.cross_encoder import kendall_tau

    assert kendall_tau([0.9, 0.5, 0.1], [-1, -2, -3]) == pytest.approx(1.0)
    assert kendall_tau([0.1, 0.5, 0.9], [-1, -2, -3]) == pytest.approx(-1.0)
    assert chain_order_kendall is not None


def _ranknet_reference(scores, targets, groups):
    import math

    total, n = 0.0, 0
    for a in range(len(scores)):
        for b in range(len(scores)):
            if groups[a] == groups[b] and targets[a] > targets[b] + 1e-6:
                total += math.log1p(math.exp(-(scores[a] - scores[b])))
                n += 1
    return total / n


def test_ce_ranknet_matches_a_loop_reference_and_ignores_other_queries_issue_11():
    import torch

    from rankchain_posttrain.losses import ce_ranknet_loss

    torch.manual_seed(0)
    s = torch.randn(9, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.8, 0.6, 0.4, 0.0, 0.75, 0.5, 0.25, 0.25, 0.0])
    g = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1])
    loss = ce_ranknet_loss(s, t, g)
    assert float(loss) == pytest.approx(_ranknet_reference(s.tolist(), t.tolist(), g.tolist()), rel=1e-6)
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    # shifting one query's scores changes nothing (only order within a query counts)
    shifted = s.detach().clone()
    shifted[4:] += 5.0
    assert float(ce_ranknet_loss(shifted, t, g)) == pytest.approx(float(loss), rel=1e-6)
    # a perfectly ordered query costs less than a reversed one
    good = ce_ranknet_loss(torch.tensor([3.0, 2.0, 1.0]), torch.tensor([0.9, 0.5, 0.1]), torch.tensor([0, 0, 0]))
    bad = ce_ranknet_loss(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.9, 0.5, 0.1]), torch.tensor([0, 0, 0]))
    assert float(good) < float(bad)
    # ties only: zero, still differentiable
    z = ce_ranknet_loss(s[:2], torch.tensor([0.5, 0.5]), torch.tensor([0, 0]))
    assert float(z) == 0.0 and z.requires_grad
    with pytest.raises(ValueError):
        ce_ranknet_loss(s, t[:3], g)


def test_grouped_pairs_give_one_group_per_query_position_issue_11():
    from rankchain_posttrain.cross_encoder import grouped_chain_pairs

    chains = [Chain(id="a", sentences=("a0", "a1", "a2")), Chain(id="b", sentences=("b0", "b1"))]
    pairs = grouped_chain_pairs(chains, seed=0)
    by_group: dict[int, set[str]] = {}
    for q, _, _, g in pairs:
        by_group.setdefault(g, set()).add(q)
    assert all(len(qs) == 1 for qs in by_group.values())
    assert sorted(q for qs in by_group.values() for q in qs) == ["a0", "a1", "b0"]
    assert [(q, p, y) for q, p, y, _ in pairs] == chain_pairs(chains, seed=0)


def test_probe_fits_the_fresh_head_so_unseen_chains_are_ordered_issue_11(minilm_path):
    """Linear probing (the head alone, on frozen pooled features) turns the fresh head's arbitrary
    order into one that follows the chains, on chains it did not see, for every head seed."""
    import torch

    from rankchain_posttrain.cross_encoder import probe_head

    train = [Chain(id=f"t{i}", sentences=tuple(c)) for i, c in enumerate(CHAINS)]
    held = [Chain(id=f"h{i}", sentences=tuple(c)) for i, c in enumerate(MORE)]
    for seed in (1, 2):
        torch.manual_seed(seed)
        model, tok = load_cross_encoder(minilm_path)
        encoder_before = {k: v.clone() for k, v in model.base_model.state_dict().items()}
        rec = probe_head(model, tok, train, seed=seed, max_length=48, steps=200, loss="ranknet")
        assert rec["loss_last"] < rec["loss_first"]
        after = chain_order_kendall(model, tok, held, 48)["mean_kendall"]
        assert after > 0.5, (seed, after)
        # only the head moved
        for k, v in model.base_model.state_dict().items():
            assert torch.equal(v, encoder_before[k]), k
