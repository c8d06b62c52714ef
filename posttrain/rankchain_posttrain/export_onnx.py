"""Export a sentence-embedding model to a sentence-transformers directory plus ``onnx/model.onnx``.

The ONNX graph carries the model's pooling and normalisation, so onnxruntime and transformers.js
users get the same vectors as sentence-transformers:

* inputs: ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the tokenizer produces
  them), int64, dynamic ``batch`` and ``sequence`` axes;
* outputs: ``last_hidden_state`` (what transformers.js' feature-extraction pipeline reads) and
  ``sentence_embedding`` (pooled per ``1_Pooling/config.json`` — mean, CLS or max — and
  L2-normalised when the pipeline has a ``Normalize`` module).

``rankchain_embedder.json`` next to it records pooling, normalisation, dimension, the input names
and the export settings; the TypeScript side (``src/embed/``) reads it.

Runs without a network (``HF_HUB_OFFLINE=1`` is set before anything is loaded)::

    python -m rankchain_posttrain.export_onnx --model SRC_DIR --out OUT_DIR [--opset N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MARKER_FILE = "rankchain_embedder.json"
ONNX_RELPATH = "onnx/model.onnx"
FORMAT_VERSION = 1
DEFAULT_OPSET = 17
SUPPORTED_POOLING = ("mean", "cls", "max")


class ExportError(RuntimeError):
    """The source model cannot be exported as asked; the message names the path or setting."""


def _pooling_mode(pooling_module: Any) -> str:
    """Maps a sentence_transformers Pooling module to one of SUPPORTED_POOLING."""
    cfg = pooling_module.get_config_dict()
    mode = cfg.get("pooling_mode")
    if isinstance(mode, str):
        modes = [mode]
    else:
        modes = [
            name
            for key, name in (
                ("pooling_mode_cls_token", "cls"),
                ("pooling_mode_mean_tokens", "mean"),
                ("pooling_mode_max_tokens", "max"),
                ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"),
                ("pooling_mode_weightedmean_tokens", "weightedmean"),
                ("pooling_mode_lasttoken", "lasttoken"),
            )
            if cfg.get(key)
        ]
    aliases = {"mean_tokens": "mean", "cls_token": "cls", "max_tokens": "max"}
    modes = [aliases.get(m, m) for m in modes]
    if len(modes) != 1 or modes[0] not in SUPPORTED_POOLING:
        raise ExportError(
            f"pooling {modes or 'none'} is not supported for ONNX export; supported: one of {', '.join(SUPPORTED_POOLING)}"
        )
    return modes[0]


def describe_pipeline(model: Any) -> dict[str, Any]:
    """Finds the Transformer, Pooling and Normalize modules of a SentenceTransformer."""
    from sentence_transformers.models import Normalize, Pooling

    modules = list(model._modules.values())
    transformer = modules[0] if modules else None
    if transformer is None or not hasattr(transformer, "auto_model"):
        raise ExportError("the first module of the sentence-transformers pipeline is not a Transformer")
    pooling = next((m for m in modules if isinstance(m, Pooling)), None)
    if pooling is None:
        raise ExportError("the sentence-transformers pipeline has no Pooling module")
    allowed = (Pooling, Normalize, type(transformer))
    extra = [type(m).__name__ for m in modules if not isinstance(m, allowed)]
    if extra:
        raise ExportError(f"modules {extra} cannot be put into the ONNX graph (only Transformer, Pooling, Normalize)")
    normalize = any(isinstance(m, Normalize) for m in modules)
    return {"transformer": transformer, "pooling": _pooling_mode(pooling), "normalize": normalize}


def _build_wrapper(auto_model: Any, pooling: str, normalize: bool, input_names: list[str]):
    import torch

    class SentenceEmbeddingGraph(torch.nn.Module):
        """Encoder + pooling (+ L2 normalisation), the graph that is exported."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = auto_model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            hidden = self.encoder(**kwargs, return_dict=True).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            if pooling == "mean":
                summed = (hidden * mask).sum(dim=1)
                counts = mask.sum(dim=1).clamp(min=1e-9)
                pooled = summed / counts
            elif pooling == "cls":
                pooled = hidden[:, 0]
            else:  # max
                pooled = hidden.masked_fill(mask == 0, -1e9).max(dim=1).values
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
            return hidden, pooled

    wrapper = SentenceEmbeddingGraph()
    wrapper.eval()
    return wrapper


def _copy_model_dir(model: Any, src: Path, out: Path) -> None:
    """Writes the sentence-transformers directory (weights, configs, tokenizer files)."""
    model.save(str(out), safe_serialization=True)
    # Tokenizer files that some saves omit (vocab.txt for WordPiece, special tokens map).
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model", "merges.txt", "vocab.json"):
        if not (out / name).exists() and (src / name).exists():
            shutil.copy2(src / name, out / name)


def _rebuild_pipeline(model: Any, pooling: str | None, normalize: bool | None) -> Any:
    """Transformer + the requested Pooling (+ Normalize) as a new SentenceTransformer."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling

    current = describe_pipeline(model)
    mode = pooling or current["pooling"]
    if mode not in SUPPORTED_POOLING:
        raise ExportError(f"pooling {mode!r} is not supported; use one of {', '.join(SUPPORTED_POOLING)}")
    norm = current["normalize"] if normalize is None else normalize
    transformer = current["transformer"]
    modules = [transformer, Pooling(int(transformer.auto_model.config.hidden_size), pooling_mode=mode)]
    if norm:
        modules.append(Normalize())
    rebuilt = SentenceTransformer(modules=modules, device="cpu")
    rebuilt.eval()
    return rebuilt


def _embedding_dimension(model: Any) -> int | None:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return getter()


def _make_readable(root: Path) -> None:
    """mkdtemp and some writers create owner-only files; an exported model is meant to be shared."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [root, *root.rglob("*")]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


def export_model(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    dynamo: bool = False,
    overwrite: bool = True,
    max_seq_length: int | None = None,
    pooling: str | None = None,
    normalize: bool | None = None,
) -> Path:
    """Exports ``src`` (a sentence-transformers or plain Hugging Face encoder directory) to ``out``.

    ``out`` becomes a sentence-transformers directory plus ``onnx/model.onnx`` (pooling and
    normalisation inside the graph) and ``rankchain_embedder.json``. A plain Hugging Face encoder
    gets sentence-transformers' default (mean pooling, no normalisation). The export is written to
    a temporary sibling directory and moved into place at the end, so ``out`` is either complete
    or untouched. Returns ``out`` as a Path.

    ``pooling`` ("mean", "cls", "max") and ``normalize`` override what the source says (e.g. a
    plain encoder known to be CLS-pooled and normalised); the saved sentence-transformers pipeline
    is rebuilt to match, so sentence-transformers and the ONNX graph still give the same vectors.
    """
    import torch
    from sentence_transformers import SentenceTransformer

    src_path = Path(src).expanduser().resolve()
    out_path = Path(out).expanduser().resolve()
    if not src_path.is_dir():
        raise ExportError(f"model directory {src_path} does not exist")
    if not (src_path / "config.json").exists():
        raise ExportError(f"model directory {src_path} has no config.json (not a Hugging Face model directory)")
    if out_path == src_path:
        raise ExportError("--out must differ from --model")
    if out_path.exists() and not overwrite:
        raise ExportError(f"output directory {out_path} exists")

    model = SentenceTransformer(str(src_path), device="cpu", local_files_only=True, model_kwargs={"attn_implementation": "eager"})
    model.eval()
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    if pooling is not None or normalize is not None:
        model = _rebuild_pipeline(model, pooling, normalize)
    parts = describe_pipeline(model)
    transformer = parts["transformer"]
    auto_model = transformer.auto_model
    tokenizer = transformer.tokenizer
    input_names = ["input_ids", "attention_mask"]
    # token_type_ids only when the tokenizer produces them and the model has segment embeddings.
    if "token_type_ids" in tokenizer.model_input_names and getattr(auto_model.config, "type_vocab_size", 0):
        input_names.append("token_type_ids")

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.", dir=out_path.parent))
    try:
        _copy_model_dir(model, src_path, tmp)
        (tmp / "onnx").mkdir(exist_ok=True)
        wrapper = _build_wrapper(auto_model, parts["pooling"], parts["normalize"], input_names)
        sample = tokenizer(["a short example sentence", "a second, somewhat longer example sentence for export"], padding=True, return_tensors="pt")
        args = tuple(sample[n] for n in input_names)
        dynamic_axes = {n: {0: "batch", 1: "sequence"} for n in input_names}
        dynamic_axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
        dynamic_axes["sentence_embedding"] = {0: "batch"}
        onnx_file = tmp / ONNX_RELPATH
        with torch.no_grad():
            if dynamo:
                # the torch.export-based exporter emits opset 18+; down-converting fails on Reduce* axes
                opset = max(opset, 18)
                batch = torch.export.Dim("batch", min=1)
                seq = torch.export.Dim("sequence", min=1)
                torch.onnx.export(
                    wrapper,
                    args,
                    str(onnx_file),
                    input_names=input_names,
                    output_names=["last_hidden_state", "sentence_embedding"],
                    dynamic_shapes={n: {0: batch, 1: seq} for n in input_names},
                    opset_version=opset,
                    dynamo=True,
                    external_data=False,
                )
            else:
                torch.onnx.export(
                    wrapper,
                    args,
                    str(onnx_file),
                    input_names=input_names,
                    output_names=["last_hidden_state", "sentence_embedding"],
                    dynamic_axes=dynamic_axes,
                    opset_version=opset,
                    do_constant_folding=True,
                    dynamo=False,
                )
        import onnx

        onnx.checker.check_model(str(onnx_file))
        written = onnx.load(str(onnx_file), load_external_data=False)
        opset = next((o.version for o in written.opset_import if o.domain in ("", "ai.onnx")), opset)
        del written
        hidden_size = int(auto_model.config.hidden_size)
        marker = {
            "format_version": FORMAT_VERSION,
            "onnx": ONNX_RELPATH,
            "pooling": parts["pooling"],
            "normalize": parts["normalize"],
            "dimensions": _embedding_dimension(model) or hidden_size,
            "max_seq_length": int(model.max_seq_length) if model.max_seq_length else None,
            "inputs": input_names,
            "outputs": ["last_hidden_state", "sentence_embedding"],
            "dtype": "fp32",
            "opset": opset,
            "exporter": "torch.onnx.dynamo" if dynamo else "torch.onnx.torchscript",
            "torch_version": torch.__version__,
            "source": src_path.name,
        }
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        _make_readable(tmp)
        if out_path.exists():
            shutil.rmtree(out_path)
        tmp.rename(out_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_path


def is_exported(out: str | os.PathLike[str]) -> bool:
    """True when ``out`` holds a complete export (marker, ONNX file, tokenizer, pooling config)."""
    p = Path(out)
    try:
        marker = json.loads((p / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        marker.get("format_version") == FORMAT_VERSION
        and (p / marker.get("onnx", ONNX_RELPATH)).is_file()
        and (p / "tokenizer.json").is_file()
        and (p / "config.json").is_file()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rankchain_posttrain.export_onnx",
        description="Export a sentence-transformers / Hugging Face encoder directory to ONNX with pooling and normalisation in the graph.",
    )
    parser.add_argument("--model", required=True, help="source model directory (sentence-transformers or Hugging Face encoder)")
    parser.add_argument("--out", required=True, help="output directory (sentence-transformers layout + onnx/model.onnx)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--dynamo", action="store_true", help="use the torch.export-based exporter instead of the TorchScript one")
    parser.add_argument("--max-seq-length", type=int, default=None, help="override the model's max_seq_length")
    parser.add_argument("--pooling", choices=SUPPORTED_POOLING, default=None, help="override the source's pooling")
    parser.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                        help="force (--normalize) or drop (--no-normalize) L2 normalisation; default: as the source says")
    args = parser.parse_args(argv)
    try:
        out = export_model(args.model, args.out, opset=args.opset, dynamo=args.dynamo, max_seq_length=args.max_seq_length,
                           pooling=args.pooling, normalize=args.normalize)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    marker = json.loads((out / MARKER_FILE).read_text(encoding="utf-8"))
    print(f"exported {out} (pooling={marker['pooling']}, normalize={marker['normalize']}, dimensions={marker['dimensions']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
