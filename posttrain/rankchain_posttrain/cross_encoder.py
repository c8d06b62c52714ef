"""Train a cross-encoder on ranking chains and export it to ONNX (``rankchain posttrain --cross-encoder``).

Where no cross-encoder is carried by a registry, the project trains its own: a sequence-classification
head with one label on top of the carried MiniLM encoder, fitted to graded relevance targets read from
chain distance. For a chain of k sentences (anchor = position 0) every ordered pair (i, j), i < j, is a
training pair (query = sentence i, passage = sentence j) with target ``1 - (j - i) / k``; each query
also gets one sentence of another chain with target 0. The default loss is RankNet over the pairs of
one query (``losses/ce_ranknet.py``: only the order of a query's passages counts); ``--ce-loss bce``
is binary cross-entropy with logits on the soft targets (sentence-transformers' CrossEncoder default
for one-label models), ``bce+ranknet`` their sum.

The head is fresh (a random projection of the pooled output), so before training the model's order
is a coin toss that depends on the head's seed, and at the encoder's learning rate a CPU-sized run
barely moves it. ``--ce-probe-steps`` (default 300) therefore first fits the head alone on the
frozen encoder's pooled features of the training pairs (linear probing, then fine-tuning: Kumar et
al. 2022, "Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution").

Output ``OUT/model``: a Hugging Face sequence-classification directory (config, weights, tokenizer)
plus ``onnx/model.onnx`` (inputs ``input_ids``, ``attention_mask``, ``token_type_ids``; output
``logits [batch, 1]``) and ``rankchain_cross_encoder.json``; ``OUT/training.json`` holds the record,
including how well the model orders held-out chains (Kendall tau of its scores vs chain order).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .data import Chain, load_chains
from .errors import DataError, ModelLoadError, NonFiniteLossError
from .evaluate import versions, write_json
from .losses.ce_ranknet import ce_ranknet_loss
from .progress import Progress
from .selection import effective_holdout_fraction, split_holdout

MARKER_FILE = "rankchain_cross_encoder.json"
DEFAULT_LR = 2e-5


def chain_pairs(chains: Sequence[Chain], seed: int, negatives: int = 1) -> list[tuple[str, str, float]]:
    """(query, passage, target) pairs with graded targets ``1 - (j - i) / k`` and 0 for other chains."""
    return [(q, p, y) for q, p, y, _ in grouped_chain_pairs(chains, seed, negatives)]


def grouped_chain_pairs(chains: Sequence[Chain], seed: int, negatives: int = 1) -> list[tuple[str, str, float, int]]:
    """:func:`chain_pairs` with a fourth field: the query's group (one per chain position used as a query)."""
    rng = random.Random(seed)
    pairs: list[tuple[str, str, float, int]] = []
    group = 0
    for ci, chain in enumerate(chains):
        s = chain.sentences
        k = len(s)
        for i in range(k):
            for j in range(i + 1, k):
                pairs.append((s[i], s[j], 1.0 - (j - i) / k, group))
            if len(chains) > 1:
                for _ in range(negatives if i == 0 else 0):
                    other = rng.randrange(len(chains) - 1)
                    other += other >= ci
                    pairs.append((s[i], rng.choice(chains[other].sentences), 0.0, group))
            group += 1
    return pairs


def anchor_groups(chains: Sequence[Chain]) -> set[int]:
    """The group ids :func:`grouped_chain_pairs` gives the anchors (position 0) of ``chains``."""
    out: set[int] = set()
    g = 0
    for c in chains:
        out.add(g)
        g += len(c.sentences)
    return out


def head_parameters(model) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """(encoder, head) parameters: the head is what lies outside the base model (the fresh classifier)."""
    prefix = getattr(model, "base_model_prefix", "") + "."
    enc, head = [], []
    for n, p in model.named_parameters():
        (enc if prefix != "." and n.startswith(prefix) else head).append(p)
    return enc, head


def load_cross_encoder(path: str, device: str | torch.device = "cpu"):
    """A one-label sequence-classification model and its tokenizer. A plain encoder gets a fresh head."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not os.path.isdir(path):
        raise ModelLoadError(f"cross-encoder base {path!r} is not a local directory")
    try:
        from .modeling import _quiet_loading

        with _quiet_loading():
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, local_files_only=True, attn_implementation="eager")
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as e:  # noqa: BLE001 -- reported with the path
        raise ModelLoadError(f"could not load {path!r} as a cross-encoder: {type(e).__name__}: {e}") from e
    return model.to(device), tokenizer


def _over_pairs(model, tokenizer, pairs: Sequence[tuple[str, str]], max_length: int, batch_size: int,
                run: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> list[torch.Tensor]:
    """``run`` on each tokenised batch of (query, passage) pairs, in eval mode without gradients; the mode is restored."""
    was = model.training
    model.eval()
    out: list[torch.Tensor] = []
    try:
        with torch.no_grad():
            for b in range(0, len(pairs), batch_size):
                batch = pairs[b : b + batch_size]
                enc = tokenizer([p[0] for p in batch], [p[1] for p in batch], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
                out.append(run({k: v.to(model.device) for k, v in enc.items()}))
    finally:
        model.train(was)
    return out


def score_pairs(model, tokenizer, pairs: Sequence[tuple[str, str]], max_length: int = 256, batch_size: int = 64) -> torch.Tensor:
    """Logits ``[N]`` for (query, passage) pairs, no gradients."""
    out = _over_pairs(model, tokenizer, pairs, max_length, batch_size, lambda enc: model(**enc).logits[:, 0].float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def kendall_tau(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Kendall tau-b; None when undefined."""
    from scipy.stats import kendalltau

    if len(xs) < 2:
        return None
    t = kendalltau(xs, ys).statistic
    return None if t is None or math.isnan(t) else float(t)


def chain_order_kendall(model, tokenizer, chains: Sequence[Chain], max_length: int = 256) -> dict[str, Any]:
    """Mean Kendall tau of the cross-encoder's anchor->step scores vs chain order (1 = perfect, 0 = chance)."""
    taus: list[float] = []
    for c in chains:
        if len(c.sentences) < 3:
            continue
        scores = score_pairs(model, tokenizer, [(c.sentences[0], s) for s in c.sentences[1:]], max_length).tolist()
        t = kendall_tau(scores, [-p for p in range(1, len(c.sentences))])
        if t is not None:
            taus.append(t)
    return {"chains": len(taus), "mean_kendall": (sum(taus) / len(taus)) if taus else None}


def export_cross_encoder_onnx(model_dir: str | os.PathLike[str], *, opset: int = 17) -> Path:
    """Writes ``onnx/model.onnx`` (logits output) and the marker into a saved cross-encoder directory."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    d = Path(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(str(d), local_files_only=True, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in tokenizer.model_input_names and getattr(model.config, "type_vocab_size", 0):
        names.append("token_type_ids")

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kw = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kw["token_type_ids"] = token_type_ids
            return self.inner(**kw, return_dict=True).logits

    sample = tokenizer(["a short query", "another query here"], ["a passage", "a longer passage for the export"], padding=True, return_tensors="pt")
    tmp = Path(tempfile.mkdtemp(prefix=".onnx.", dir=d))
    try:
        target = tmp / "model.onnx"
        with torch.no_grad():
            torch.onnx.export(
                Logits().eval(),
                tuple(sample[n] for n in names),
                str(target),
                input_names=names,
                output_names=["logits"],
                dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "logits": {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        import onnx

        onnx.checker.check_model(str(target))
        (d / "onnx").mkdir(exist_ok=True)
        os.replace(target, d / "onnx" / "model.onnx")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    marker = {
        "format_version": 1,
        "kind": "cross-encoder",
        "onnx": "onnx/model.onnx",
        "inputs": names,
        "outputs": ["logits"],
        "num_labels": int(model.config.num_labels),
        "activation": "sigmoid",
        "max_seq_length": int(getattr(model.config, "max_position_embeddings", 512) or 512),
        "opset": opset,
        "torch_version": torch.__version__,
    }
    (d / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return d / "onnx" / "model.onnx"


def onnx_scores(model_dir: str | os.PathLike[str], pairs: Sequence[tuple[str, str]], max_length: int = 256) -> list[float]:
    """Scores of the exported ONNX graph through onnxruntime (the parity check's other side)."""
    import numpy as np
    import onnxruntime as ort
    from transformers import AutoTokenizer

    d = Path(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
    session = ort.InferenceSession(str(d / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    wanted = [i.name for i in session.get_inputs()]
    enc = tokenizer([p[0] for p in pairs], [p[1] for p in pairs], padding=True, truncation=True, max_length=max_length, return_tensors="np")
    feeds = {n: np.asarray(enc[n], dtype=np.int64) for n in wanted}
    return session.run(["logits"], feeds)[0][:, 0].astype(float).tolist()


def pooled_features(model, tokenizer, pairs: Sequence[tuple[str, str]], max_length: int, batch_size: int = 64) -> torch.Tensor:
    """What the classification head sees (the base model's pooled output), ``[N, H]``, no gradients, eval mode."""
    def pooled(enc: dict[str, torch.Tensor]) -> torch.Tensor:
        out = getattr(model.base_model(**enc), "pooler_output", None)
        if out is None:
            raise DataError("--ce-probe-steps needs a model whose base returns a pooled output (BERT-style); use --ce-probe-steps 0")
        return out.float()

    return torch.cat(_over_pairs(model, tokenizer, pairs, max_length, batch_size, pooled))


def probe_head(model, tokenizer, chains: Sequence[Chain], *, seed: int, max_length: int, steps: int, loss: str, lr: float = 1e-2,
               max_chains: int = 2000) -> dict[str, Any]:
    """Linear probing before fine-tuning (LP-FT, Kumar et al. 2022): fit the fresh head alone on the frozen
    encoder's pooled features of every training pair, so fine-tuning starts from a head that already
    orders chains instead of a random projection (whose gradients distort the pretrained features)."""
    head = getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Linear):
        raise DataError("--ce-probe-steps needs a sequence-classification model with a linear `classifier` head; use --ce-probe-steps 0")
    if len(chains) > max_chains:  # the features of every pair are held at once; a sample of chains is enough for a head
        chains = random.Random(f"{seed}:probe").sample(list(chains), max_chains)
    pairs = grouped_chain_pairs(chains, seed=seed)
    feats = pooled_features(model, tokenizer, [(p[0], p[1]) for p in pairs], max_length)
    targets = torch.tensor([p[2] for p in pairs], device=feats.device)
    groups = torch.tensor([p[3] for p in pairs], device=feats.device)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    bce = torch.nn.BCEWithLogitsLoss()
    first = last = float("nan")
    for i in range(steps):
        logits = head(feats)[:, 0]
        value = logits.sum() * 0.0
        if loss in ("bce", "bce+ranknet"):
            value = value + bce(logits, targets)
        if loss in ("ranknet", "bce+ranknet"):
            value = value + ce_ranknet_loss(logits, targets, groups)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        last = float(value.detach())
        if i == 0:
            first = last
    opt.zero_grad(set_to_none=True)
    return {"chains": len(chains), "pairs": len(pairs), "steps": steps, "lr": lr, "loss_first": first, "loss_last": last}


def train_cross_encoder(args: argparse.Namespace, progress: Progress | None = None) -> dict[str, Any]:
    """Train from ``args.base_model`` on the chains of ``args.data``; returns the training record."""
    progress = progress or Progress()
    started = time.time()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda was requested but torch sees no CUDA device")
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    out = os.path.abspath(args.out)
    if os.path.exists(os.path.join(out, "training.json")):
        raise DataError(f"{out} already holds a training run; choose another --out", file=out)
    data = load_chains(args.data, allow_unvalidated=args.allow_unvalidated)
    chains = list(data.chains)
    # Same default as the bi-encoder (selection.py): hold 10% out once there are enough chains.
    args.holdout_fraction = effective_holdout_fraction("heldout-chains", args.holdout_fraction, len(chains))
    chains, held = split_holdout(chains, args.holdout_fraction, args.seed)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    max_len = args.max_seq_length or 256
    model, tokenizer = load_cross_encoder(args.base_model, device)
    model.train()
    enc_params, head_params = head_parameters(model)
    head_lr = getattr(args, "ce_head_lr", None) or args.lr
    optimizer = torch.optim.AdamW(
        [{"params": enc_params, "lr": args.lr}, {"params": head_params, "lr": head_lr}], lr=args.lr, weight_decay=args.weight_decay
    )
    ce_loss = getattr(args, "ce_loss", "ranknet")
    batches_per_epoch = math.ceil(len(chains) / args.batch_chains)
    total = batches_per_epoch * args.epochs
    if args.max_steps is not None:
        total = min(total, args.max_steps)
    warmup = int(total * args.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / (warmup + 1) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
    )
    before = chain_order_kendall(model, tokenizer, held, max_len) if held else None
    probe_steps = getattr(args, "ce_probe_steps", 0) or 0
    probe = after_probe = None
    if probe_steps > 0:
        probe = probe_head(model, tokenizer, chains, seed=args.seed, max_length=max_len, steps=probe_steps, loss=ce_loss)
        after_probe = chain_order_kendall(model, tokenizer, held, max_len) if held else None
        progress.emit("probe", **probe, heldout_chain_kendall=after_probe["mean_kendall"] if after_probe else None)
    pair_mode = getattr(args, "ce_pairs", "all")
    progress.emit("start", total=total, step=0, chains=len(chains), heldout=len(held), device=str(device), kind="cross-encoder")
    bce = torch.nn.BCEWithLogitsLoss()
    curve: list[dict[str, Any]] = []
    step = 0
    last = float("nan")
    while step < total:
        epoch, index = divmod(step, batches_per_epoch)
        order = list(range(len(chains)))
        random.Random(f"{args.seed}:{epoch}").shuffle(order)
        batch = [chains[i] for i in order[index * args.batch_chains : (index + 1) * args.batch_chains]]
        pairs = grouped_chain_pairs(batch if len(batch) > 1 else batch + [chains[(order[0] + 1) % len(chains)]], seed=args.seed + step)
        if pair_mode == "anchor":
            pairs = [p for p in pairs if p[3] in anchor_groups(batch)]
        enc = tokenizer([p[0] for p in pairs], [p[1] for p in pairs], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        enc = {k: v.to(device) for k, v in enc.items()}
        logits = model(**enc).logits[:, 0]
        targets = torch.tensor([p[2] for p in pairs], device=device)
        parts: dict[str, float] = {}
        loss = logits.float().sum() * 0.0
        if ce_loss in ("bce", "bce+ranknet"):
            part = bce(logits.float(), targets)
            parts["bce"] = float(part.detach())
            loss = loss + part
        if ce_loss in ("ranknet", "bce+ranknet"):
            part = ce_ranknet_loss(logits, targets, torch.tensor([p[3] for p in pairs], device=device))
            parts["ranknet"] = float(part.detach())
            loss = loss + part
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"non-finite cross-encoder loss at step {step + 1}; lower --lr")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        lr_used = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        last = float(loss.detach())
        progress.emit("step", step=step, total=total, epoch=epoch, loss=last, parts=parts, lr=lr_used,
                      elapsed=round(time.time() - started, 3))
        every = args.eval_every or batches_per_epoch
        if held and step % every == 0 and step < total:
            k = chain_order_kendall(model, tokenizer, held, max_len)
            curve.append({"step": step, "mean_kendall": k["mean_kendall"], "loss": last})
            progress.emit("eval", step=step, heldout_chain_kendall=k["mean_kendall"])
    after = chain_order_kendall(model, tokenizer, held, max_len) if held else None
    model_dir = os.path.join(out, "model")
    shutil.rmtree(model_dir, ignore_errors=True)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    onnx_path = None
    if not args.no_export:
        onnx_path = str(export_cross_encoder_onnx(model_dir))
        progress.emit("export", status="done", onnx=onnx_path)
    if held:
        with open(os.path.join(out, "heldout.jsonl"), "w", encoding="utf-8") as fh:
            for c in held:
                fh.write(json.dumps({"id": c.id, "anchor": c.sentences[0], "steps": list(c.sentences[1:])}) + "\n")
    record = {
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "kind": "cross-encoder",
        "args": vars(args),
        "loss": {"spec": {"bce": "bce_graded", "ranknet": "ranknet", "bce+ranknet": "bce_graded+ranknet"}[ce_loss],
                 "config": {"targets": "1 - (j - i) / k for pairs (i < j) of a chain of k; 0 for another chain's sentence",
                            "ranknet": "softplus(s_b - s_a) over pairs of one query with t_a > t_b", "head_lr": head_lr}},
        "data": {**data.stats, "sha256": data.sha256, "train_chains": len(chains), "heldout_chains": len(held)},
        "base_model": args.base_model,
        "steps": step,
        "final_loss": last,
        "heldout_chain_kendall": {"before": before, "after_probe": after_probe, "after": after, "curve": curve},
        "probe": probe,
        "pairs": pair_mode,
        "final_model": {"dir": model_dir, "onnx": onnx_path},
        "seconds": round(time.time() - started, 2),
        "versions": versions(),
    }
    write_json(os.path.join(out, "training.json"), record)
    progress.emit("done", step=step, total=total, out=out, model=model_dir, onnx=onnx_path, best=None, seconds=record["seconds"],
                  heldout_chain_kendall=record["heldout_chain_kendall"])
    return record
