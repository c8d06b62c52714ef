"""Issue 9: `rankchain export` output loads with the real `datasets` package and trains with the real
SentenceTransformerTrainer (st-triplets with MultipleNegativesRankingLoss, hf chains with ChainListMLELoss)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import CHAINS, model_dir

REPO = Path(__file__).resolve().parents[2]


def export(run_dir: Path, fmt: str, out: Path, *extra: str) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH (the export side is TypeScript)")
    r = subprocess.run(
        [node, str(REPO / "bin" / "rankchain.js"), "export", str(run_dir), "--format", fmt, "--out", str(out), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture()
def st_model():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir(), device="cpu")
    model.max_seq_length = 32
    return model


def train_one_step(model, dataset, loss, tmp_path: Path) -> float:
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "trainer"), max_steps=1, per_device_train_batch_size=3, learning_rate=1e-4,
        report_to=[], save_strategy="no", logging_steps=1, use_cpu=True, seed=0, dataloader_drop_last=False,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    result = trainer.train()
    return float(result.training_loss)


def weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


def test_hf_export_loads_with_datasets_and_trains_chain_listmle_in_the_st_trainer(run_dir, tmp_path, st_model):
    from datasets import load_dataset

    from rankchain_posttrain.losses import ChainListMLELoss
    from rankchain_posttrain.st_loss import ChainLossForTrainer

    summary = export(run_dir, "hf", tmp_path / "hf", "--test-fraction", "0", "--license", "cc-by-4.0")
    assert summary["chains"]["kept"] == len(CHAINS) and summary["chains"]["rejected"] == 1
    ds = load_dataset(str(tmp_path / "hf"))
    train = ds["train"]
    assert train.column_names == ["anchor", "step_1", "step_2", "step_3", "step_4"]
    assert [list(r.values()) for r in train] == CHAINS
    records = load_dataset(str(tmp_path / "hf"), "records")["train"]
    assert json.loads(records[0]["record_json"])["id"] == "c0"
    card = (tmp_path / "hf" / "README.md").read_text()
    assert 'license: "cc-by-4.0"' in card and "policy" not in card.split("---")[1]

    loss = ChainLossForTrainer(st_model, ChainListMLELoss(tau=0.05, tau2=0.05, omega=0.5))
    before = weights(st_model)
    value = train_one_step(st_model, train, loss, tmp_path)
    assert value == value and abs(value) < 1e6  # finite
    assert not torch.equal(before, weights(st_model)), "one trainer step must change the weights"
    # the teacher is frozen: a copy taken at construction, untouched by the step
    assert loss.teacher is not None
    assert torch.equal(before, weights(loss.teacher))


def test_st_triplets_train_one_step_with_multiple_negatives_ranking_loss(run_dir, tmp_path, st_model):
    from datasets import load_dataset
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    export(run_dir, "st-triplets", tmp_path / "trip", "--test-fraction", "0", "--triplets", "first-last")
    train = load_dataset(str(tmp_path / "trip"))["train"]
    assert train.column_names == ["anchor", "positive", "negative"]
    assert train[0] == {"anchor": CHAINS[0][0], "positive": CHAINS[0][1], "negative": CHAINS[0][-1]}
    before = weights(st_model)
    value = train_one_step(st_model, train, MultipleNegativesRankingLoss(st_model), tmp_path)
    assert value > 0
    assert not torch.equal(before, weights(st_model))


def test_st_scores_and_mteb_rerank_load(run_dir, tmp_path, st_model):
    from datasets import load_dataset
    from sentence_transformers.losses import CoSENTLoss

    export(run_dir, "st-scores", tmp_path / "scores", "--test-fraction", "0")
    train = load_dataset(str(tmp_path / "scores"))["train"]
    first = [r for r in train if r["sentence1"] == CHAINS[0][0]]
    assert [r["score"] for r in first] == pytest.approx([0.8, 0.6, 0.4, 0.2])
    assert train_one_step(st_model, train, CoSENTLoss(st_model), tmp_path) > 0

    export(run_dir, "mteb-rerank", tmp_path / "rerank", "--test-fraction", "1")
    test = load_dataset(str(tmp_path / "rerank"))["test"]
    assert test.column_names == ["id", "query", "positive", "negative", "positive_relevance"]
    row = [r for r in test if r["query"] == CHAINS[0][0]][0]
    assert row["positive"] == CHAINS[0][1:3] and row["negative"] == CHAINS[0][3:]
    assert row["positive_relevance"] == [2, 1]
