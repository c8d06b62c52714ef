"""Issue 8: teacher embeddings cached across epochs, invalidated by a fingerprint of teacher and data."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from conftest import CHAINS
from rankchain_posttrain import train as train_mod
from rankchain_posttrain.modeling import describe_encoder, embed
from rankchain_posttrain.teacher_cache import TeacherEmbeddingCache, teacher_fingerprint
from test_train import base_args, events, make_run


def fake_encoder(calls: list[list[str]]):
    def compute(texts: list[str]) -> torch.Tensor:
        calls.append(list(texts))
        return torch.tensor([[float(len(t)), float(sum(map(ord, t)) % 97)] for t in texts])

    return compute


def test_issue8_cache_computes_each_chain_once_and_returns_rows_in_batch_order():
    calls: list[list[str]] = []
    compute = fake_encoder(calls)
    cache = TeacherEmbeddingCache("fp")
    first = cache.embed([0, 1], [CHAINS[0], CHAINS[1]], compute)
    assert len(calls) == 1 and calls[0] == CHAINS[0] + CHAINS[1]  # epoch 1: one call over the whole batch
    # a batch mixing a cached and a new chain computes only the new one, and keeps the batch's order
    mixed = cache.embed([2, 0], [CHAINS[2], CHAINS[0]], compute)
    assert calls[1] == CHAINS[2]
    assert torch.equal(mixed, torch.cat([compute(CHAINS[2]), first[: len(CHAINS[0])]]))
    calls.clear()
    again = cache.embed([1, 0], [CHAINS[1], CHAINS[0]], compute)
    assert calls == []  # later epochs: nothing recomputed
    assert torch.equal(again, torch.cat([first[len(CHAINS[0]) :], first[: len(CHAINS[0])]]))
    assert cache.stats() == {"fingerprint": "fp", "chains": 3, "hits": 3, "misses": 3}


def test_issue8_saved_cache_is_reused_only_under_the_same_fingerprint(tmp_path):
    path = str(tmp_path / "teacher_cache.pt")
    cache = TeacherEmbeddingCache("fp-a")
    cache.embed([0], [CHAINS[0]], fake_encoder([]))
    assert cache.save(path) is True
    assert cache.save(path) is False  # unchanged: not written again
    same = TeacherEmbeddingCache("fp-a")
    assert same.load(path) == "loaded" and len(same) == 1
    other = TeacherEmbeddingCache("fp-b")
    assert other.load(path) == "invalidated" and len(other) == 0
    assert TeacherEmbeddingCache("fp-a").load(str(tmp_path / "none.pt")) == "missing"


def test_issue8_fingerprint_changes_with_teacher_weights_data_and_precision(minilm):
    d = describe_encoder(minilm)
    base = dict(teacher=minilm, describe=d, data_sha256="abc", train_chains=6, precision="no")
    fp = teacher_fingerprint(**base)
    assert fp == teacher_fingerprint(**base)
    changed = copy.deepcopy(minilm)
    with torch.no_grad():
        next(changed.parameters()).view(-1)[0] += 1e-3
    assert teacher_fingerprint(**{**base, "teacher": changed}) != fp
    assert teacher_fingerprint(**{**base, "data_sha256": "abd"}) != fp
    assert teacher_fingerprint(**{**base, "precision": "bf16"}) != fp
    assert teacher_fingerprint(**{**base, "describe": {**d, "max_seq_length": 16}}) != fp


def test_issue8_cached_teacher_embeddings_match_a_fresh_computation(minilm):
    model = copy.deepcopy(minilm).eval()
    cache = TeacherEmbeddingCache("fp")
    device = torch.device("cpu")
    with torch.no_grad():
        compute = lambda texts: embed(model, texts, device)  # noqa: E731
        cache.embed([0, 1, 2], CHAINS[:3], compute)  # epoch 1: chains 0-2 in one batch
        cached = cache.embed([1, 2], CHAINS[1:3], compute)  # epoch 2: other neighbours in the batch
        fresh = compute([s for c in CHAINS[1:3] for s in c])
    torch.testing.assert_close(cached, fresh, rtol=1e-4, atol=1e-5)


def _train(tmp_path, name, *extra):
    run = make_run(tmp_path / "run")
    out = tmp_path / name
    args = train_mod.build_parser().parse_args(base_args(run, out, "--epochs", "2", "--lr", "5e-5", "--warmup-ratio", "0", "--no-export", *extra))
    lines: list[str] = []

    class Capture:
        def write(self, s):
            lines.append(s)

        def flush(self):
            pass

    record = train_mod.train(args, train_mod.Progress(stream=Capture()))
    return out, record, events("".join(lines))


def test_issue8_training_with_the_cache_reuses_epoch_1_and_trains_the_same(tmp_path):
    out, record, evs = _train(tmp_path, "cached")
    n = len(CHAINS)
    assert record["teacher_cache"]["misses"] == n and record["teacher_cache"]["hits"] == n  # epoch 2 from the cache
    assert (out / "teacher_cache.pt").is_file()
    _, plain, plain_evs = _train(tmp_path, "uncached", "--teacher-cache-mb", "0")
    assert plain["teacher_cache"] is None
    losses = [e["loss"] for e in evs if e["event"] == "step"]
    plain_losses = [e["loss"] for e in plain_evs if e["event"] == "step"]
    assert len(losses) == len(plain_losses) == 4
    assert losses[:2] == plain_losses[:2]  # epoch 1 is computed exactly as without a cache
    assert losses == pytest.approx(plain_losses, rel=1e-4, abs=1e-5)


def test_issue8_cache_too_large_for_the_limit_is_off_with_a_message(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    args = train_mod.build_parser().parse_args(base_args(run, tmp_path / "o", "--max-steps", "1", "--no-export", "--teacher-cache-mb", "1"))
    # 30 sentences x 384 floats is far below 1 MB: the cache is on; force the estimate over the limit
    import rankchain_posttrain.train as t

    real = t.estimated_bytes
    t.estimated_bytes = lambda s, d: 2 * 2**20  # type: ignore[assignment]
    try:
        record = train_mod.train(args, train_mod.Progress(stream=open("/dev/null", "w")))
    finally:
        t.estimated_bytes = real
    assert record["teacher_cache"] is None
    assert "teacher cache off" in capsys.readouterr().err
    with open(tmp_path / "o" / "training.json", encoding="utf-8") as fh:
        assert json.load(fh)["teacher_cache"] is None
