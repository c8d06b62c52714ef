"""Issue 9: reranking files (``eval --rerank``): loading errors name file:line and field; metric definitions."""

from __future__ import annotations

import json
import math

import pytest

from rankchain_posttrain.errors import DataError
from rankchain_posttrain.rerank import load_rerank, rerank_metrics


def write(tmp_path, rows):
    p = tmp_path / "task.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(p)


def test_metrics_by_hand(tmp_path):
    recs = load_rerank(write(tmp_path, [{"query": "q", "positive": ["a", "b"], "negative": ["c", "d"]}]))
    m = rerank_metrics(recs, [[0.9, 0.2, 0.5, 0.1]])  # a c b d
    assert m["rerank_map"] == pytest.approx((1 + 2 / 3) / 2 * 100)
    assert m["rerank_mrr@10"] == pytest.approx(100)
    assert m["rerank_ndcg@10"] == pytest.approx(1.5 / (1 + 1 / math.log2(3)) * 100)
    worst = rerank_metrics(recs, [[0, 0, 0, 0]])  # ties against the positives: c d a b
    assert worst["rerank_mrr@10"] == pytest.approx(100 / 3)


@pytest.mark.parametrize(
    "row, field",
    [
        ({"positive": ["a"], "negative": []}, "query"),
        ({"query": "q", "positive": [], "negative": []}, "positive"),
        ({"query": "q", "positive": ["a"], "negative": "x"}, "negative"),
        ({"query": "q", "positive": ["a"], "negative": [], "positive_relevance": [0]}, "positive_relevance"),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path, row, field):
    path = write(tmp_path, [{"query": "q", "positive": ["a"], "negative": ["b"]}, row])
    with pytest.raises(DataError) as e:
        load_rerank(path)
    assert f"task.jsonl:2" in str(e.value) and field in str(e.value)
    assert e.value.exit_code == 2
