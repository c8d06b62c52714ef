"""ONNX export (issue 5 item 4): the graph's sentence_embedding equals sentence-transformers' vectors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rankchain_posttrain.export_onnx import MARKER_FILE, ExportError, export_model, is_exported, main

SENTENCES = [
    "A man is playing a guitar.",
    "Hi",
    "The quick brown fox jumps over the lazy dog near the riverbank while the sun sets behind the hills.",
    "Ein Satz auf Deutsch mit Umlauten: äöü ß.",
    "Numbers 12,345 and symbols #@! mixed in.",
    "word " * 400,  # longer than max_seq_length: truncation must match
]


def _onnx_embed(out: Path, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort
    from transformers import AutoTokenizer

    marker = json.loads((out / MARKER_FILE).read_text())
    tok = AutoTokenizer.from_pretrained(str(out))
    sess = ort.InferenceSession(str(out / marker["onnx"]), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    enc = tok(sentences, padding=True, truncation=True, max_length=marker["max_seq_length"], return_tensors="np")
    sent, hidden = sess.run(["sentence_embedding", "last_hidden_state"], {n: enc[n].astype(np.int64) for n in names})
    return sent, hidden


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def mean_export(minilm_path, tmp_path_factory) -> Path:
    return export_model(minilm_path, tmp_path_factory.mktemp("export") / "minilm-mean")


def test_export_layout_and_marker(mean_export):
    out = mean_export
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
              "modules.json", "1_Pooling/config.json", "model.safetensors", "config_sentence_transformers.json",
              "onnx/model.onnx", MARKER_FILE):
        assert (out / f).is_file(), f"missing {f}"
    marker = json.loads((out / MARKER_FILE).read_text())
    assert marker["pooling"] == "mean" and marker["normalize"] is True and marker["dimensions"] == 384
    assert is_exported(out)

    import onnx

    g = onnx.load(str(out / "onnx/model.onnx"), load_external_data=False).graph
    assert [i.name for i in g.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in g.output] == ["last_hidden_state", "sentence_embedding"]
    for i in g.input:  # dynamic batch and sequence axes
        dims = i.type.tensor_type.shape.dim
        assert dims[0].dim_param and dims[1].dim_param, i.name


def test_mean_normalized_parity_with_sentence_transformers(mean_export, minilm_path):
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(minilm_path, device="cpu").encode(SENTENCES, convert_to_numpy=True)
    sent, hidden = _onnx_embed(mean_export, SENTENCES)
    cos = _cosines(sent, ref)
    assert cos.min() >= 0.999, cos
    np.testing.assert_allclose(np.linalg.norm(sent, axis=1), 1.0, atol=1e-4)
    assert hidden.shape[0] == len(SENTENCES) and hidden.shape[2] == 384
    # batch of one (different sequence length) gives the same vector as inside the padded batch
    single, _ = _onnx_embed(mean_export, SENTENCES[1:2])
    assert float(_cosines(single, sent[1:2])[0]) >= 0.9999


@pytest.fixture(scope="module")
def cls_source(minilm_path, tmp_path_factory) -> Path:
    """MiniLM re-wired as a CLS-pooled, unnormalised sentence-transformers model."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer

    word = Transformer(minilm_path, max_seq_length=128)
    pool = Pooling(word.auto_model.config.hidden_size, pooling_mode="cls")
    src = tmp_path_factory.mktemp("cls") / "minilm-cls-src"
    SentenceTransformer(modules=[word, pool], device="cpu").save(str(src))
    return src


def test_cls_pooling_variant(cls_source, tmp_path):
    from sentence_transformers import SentenceTransformer

    out = export_model(cls_source, tmp_path / "minilm-cls")
    marker = json.loads((out / MARKER_FILE).read_text())
    assert marker["pooling"] == "cls" and marker["normalize"] is False and marker["max_seq_length"] == 128
    ref = SentenceTransformer(str(cls_source), device="cpu").encode(SENTENCES, convert_to_numpy=True)
    sent, hidden = _onnx_embed(out, SENTENCES)
    assert _cosines(sent, ref).min() >= 0.999
    np.testing.assert_allclose(sent, hidden[:, 0], atol=1e-5)  # CLS = first token state
    # unnormalised: the norms are the model's own, not 1
    assert np.abs(np.linalg.norm(sent, axis=1) - 1).max() > 0.1


def test_plain_hf_encoder_gets_mean_pooling(minilm_path, tmp_path):
    src = tmp_path / "plain"
    src.mkdir()
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy2(Path(minilm_path) / f, src / f)
    out = export_model(src, tmp_path / "plain-out", max_seq_length=64)
    marker = json.loads((out / MARKER_FILE).read_text())
    assert marker["pooling"] == "mean" and marker["normalize"] is False
    sent, hidden = _onnx_embed(out, SENTENCES[:3])
    # mean pooling by hand from last_hidden_state of the same graph
    from transformers import AutoTokenizer

    enc = AutoTokenizer.from_pretrained(str(out))(SENTENCES[:3], padding=True, truncation=True, max_length=64, return_tensors="np")
    m = enc["attention_mask"][..., None].astype(np.float32)
    np.testing.assert_allclose(sent, (hidden * m).sum(1) / m.sum(1), atol=1e-5)


def test_missing_source_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ExportError, match="does not exist"):
        export_model(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    assert main(["--model", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert not is_exported(tmp_path / "empty")


def test_pooling_and_normalize_overrides_rebuild_the_pipeline(minilm_path, tmp_path):
    """A plain encoder known to be CLS-pooled and normalised: both the saved pipeline and the graph follow."""
    from sentence_transformers import SentenceTransformer

    src = tmp_path / "plain"
    src.mkdir()
    for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy2(Path(minilm_path) / f, src / f)
    out = tmp_path / "out"
    assert main(["--model", str(src), "--out", str(out), "--pooling", "cls", "--normalize", "--max-seq-length", "64"]) == 0
    marker = json.loads((out / MARKER_FILE).read_text())
    assert marker["pooling"] == "cls" and marker["normalize"] is True
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    ref = SentenceTransformer(str(out), device="cpu").encode(SENTENCES[:4], convert_to_numpy=True)
    sent, hidden = _onnx_embed(out, SENTENCES[:4])
    assert _cosines(sent, ref).min() >= 0.999
    first = hidden[:, 0] / np.linalg.norm(hidden[:, 0], axis=1, keepdims=True)
    np.testing.assert_allclose(sent, first, atol=1e-5)
