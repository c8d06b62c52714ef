"""Post-train a sentence-embedding model on ranking chains.

Single process:  python -m rankchain_posttrain.train --data RUN_DIR --base-model M --out DIR
Several GPUs:    accelerate launch --num_processes 2 -m rankchain_posttrain.train --data ... (or torchrun
                 --nproc_per_node 2 -m rankchain_posttrain.train ...); on CPU the processes talk over gloo.

Progress is printed as JSON lines on stdout (see progress.py); messages go to stderr.
Exit codes: 0 done; 2 bad arguments or data (the message names file:line and field); 1 anything else
(including a non-finite loss, which stops training instead of being averaged away).
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from .data import Chain, load_chains, load_sts
from .errors import DataError, ExportFailedError, NonFiniteLossError, PosttrainError
from .evaluate import ChainOrderEvaluator, StsEvaluator, versions, write_json
from .groups import load_groups, looks_like_groups_file, resolve_groups_file
from .losses import CombinedLoss, is_group_loss, parse_loss_spec
from .negatives import NEGATIVES_STATE_FILE, GroupTraining, add_group_arguments, check_group_args
from .modeling import POOLINGS, describe_encoder, embed, load_encoder
from .progress import Progress
from .teacher_cache import CACHE_FILE, TeacherEmbeddingCache, estimated_bytes, teacher_fingerprint
from .selection import CONTROLS, HELDOUT_METRIC, SELECTIONS, effective_holdout_fraction, resolve_selection, shuffle_rewrites, split_holdout

STATE_FILE = "trainer_state.json"
RECORD_FILE = "training.json"
# Fields that must match for --resume to continue a run (anything else may change, e.g. --max-steps).
FINGERPRINT_FIELDS = (
    "base_model", "teacher", "loss", "tau", "tau2", "omega", "lr", "batch_chains", "seed", "epochs",
    "pooling", "teacher_pooling", "max_seq_length", "holdout_fraction", "warmup_ratio", "weight_decay",
    "select", "control",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rankchain_posttrain.train", description="Post-train an embedder on ranking chains.")
    p.add_argument("--data", required=True,
                   help="run directory (reads validated.jsonl, and groups.jsonl for --loss lce), a chain JSONL file, or a groups file from `rankchain mine`")
    p.add_argument("--base-model", required=True, help="student: sentence-transformers or Hugging Face encoder dir (or hub id)")
    p.add_argument("--out", required=True, help="output directory (model/, checkpoints/, training.json)")
    p.add_argument("--loss", default="chain_listmle", help='e.g. "chain_listmle" or "chain_listmle:1,infonce:0.1" (default chain_listmle)')
    p.add_argument("--teacher", help="teacher model dir (own tokenizer allowed); default: a frozen copy of the student")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                   help="auto = bf16 (or fp16) autocast on CUDA, fp32 on CPU")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 3e-6; 2e-5 with --cross-encoder)")
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--batch-chains", type=int, default=16, help="chains per batch and process (default 16)")
    p.add_argument("--tau", type=float, default=0.05, help="student temperature")
    p.add_argument("--tau2", type=float, default=0.05, help="teacher temperature")
    p.add_argument("--omega", type=float, default=0.5, help="chain-order correction strength")
    p.add_argument("--pooling", default="auto", choices=POOLINGS, help="student pooling (auto = as saved with the model)")
    p.add_argument("--teacher-pooling", default="auto", choices=POOLINGS)
    p.add_argument("--max-seq-length", type=int, help="truncate inputs to this many tokens (default: the model's)")
    p.add_argument("--encode-chunk", type=int, default=0,
                   help="encode a batch's sentences in length-sorted chunks of this many (0 = one padded batch; "
                        "chunks save padding and memory on GPUs, single process only)")
    p.add_argument("--eval-sts", help="STS TSV (sentence1, sentence2, score) evaluated every --eval-every steps; "
                   "monitored only, unless --select sts")
    p.add_argument("--select", default="auto", choices=SELECTIONS,
                   help="what the kept checkpoint is chosen on: auto (held-out chains when chains are held out, else the last "
                        "step), heldout-chains (ranking agreement on held-out chains), sts (--eval-sts: only when that set is "
                        "never reported), last")
    p.add_argument("--control", default="none", choices=CONTROLS,
                   help="shuffled: train on the same chains with their rewrites in random order (anchor first), "
                        "the control for what chain order adds")
    p.add_argument("--eval-every", type=int, default=0, help="evaluate every N steps (0 = at the end of each epoch)")
    p.add_argument("--checkpoint-every", type=int, default=200, help="save a resumable checkpoint every N steps")
    p.add_argument("--holdout-fraction", type=float, default=None,
                   help="keep this fraction of chains out of training (written to OUT/heldout.jsonl for eval --chains)")
    p.add_argument("--allow-unvalidated", action="store_true", help="accept chains without a validation field")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--teacher-cache-mb", type=int, default=4096,
                   help="cache the frozen teacher's embeddings across epochs (in RAM, saved to OUT/teacher_cache.pt) "
                        "when they fit in this many MB; 0 = off")
    p.add_argument("--no-export", action="store_true", help="skip the ONNX export at the end")
    add_group_arguments(p)
    p.add_argument("--cross-encoder", action="store_true",
                   help="train a cross-encoder (one-label head on --base-model) on chain pairs with graded targets instead of an embedder")
    p.add_argument("--ce-loss", default="ranknet", choices=("bce", "ranknet", "bce+ranknet"),
                   help="--cross-encoder loss: bce on graded targets, ranknet (pairwise, per query), or their sum (default ranknet)")
    p.add_argument("--ce-head-lr", type=float, help="--cross-encoder: learning rate of the fresh classification head (default: --lr)")
    p.add_argument("--ce-pairs", default="all", choices=("all", "anchor"),
                   help="--cross-encoder training pairs: every (i < j) of a chain (all) or only anchor -> step (anchor; cheaper)")
    p.add_argument("--ce-probe-steps", type=int, default=300,
                   help="--cross-encoder: first fit the fresh head alone on frozen pooled features for this many full-batch steps "
                        "(linear probing, then fine-tuning; default 300); 0 = off")
    p.add_argument("--cross-encoder-teacher", help="cross-encoder directory for --loss distill (e.g. OUT/model of posttrain --cross-encoder)")
    return p


def check_args(args: argparse.Namespace) -> None:
    if args.lr is None:  # the default depends on what is trained
        args.lr = 2e-5 if getattr(args, "cross_encoder", False) else 3e-6
    def positive(name: str, v: float | int | None, integer: bool = False) -> None:
        if v is None:
            return
        if not math.isfinite(v) or v <= 0:
            raise DataError(f"--{name} must be {'an integer' if integer else 'a number'} > 0, got {v!r}")

    for name in ("epochs", "batch_chains", "max_steps", "checkpoint_every", "max_seq_length"):
        positive(name.replace("_", "-"), getattr(args, name), True)
    for name in ("lr", "tau", "tau2", "max_grad_norm", "ce_head_lr"):
        positive(name.replace("_", "-"), getattr(args, name))
    if not math.isfinite(args.omega) or args.omega < 0:
        raise DataError(f"--omega must be a number >= 0, got {args.omega!r}")
    if getattr(args, "ce_probe_steps", 0) < 0:
        raise DataError(f"--ce-probe-steps must be >= 0, got {args.ce_probe_steps!r}")
    if args.teacher_cache_mb < 0:
        raise DataError(f"--teacher-cache-mb must be >= 0, got {args.teacher_cache_mb!r}")
    if args.encode_chunk < 0:
        raise DataError(f"--encode-chunk must be >= 0, got {args.encode_chunk!r}")
    if args.eval_every < 0:
        raise DataError(f"--eval-every must be >= 0, got {args.eval_every!r}")
    if not 0 <= args.warmup_ratio < 1:
        raise DataError(f"--warmup-ratio must be in [0, 1), got {args.warmup_ratio!r}")
    if args.holdout_fraction is not None and not 0 <= args.holdout_fraction < 1:
        raise DataError(f"--holdout-fraction must be in [0, 1), got {args.holdout_fraction!r}")
    if args.weight_decay < 0:
        raise DataError(f"--weight-decay must be >= 0, got {args.weight_decay!r}")
    try:
        parse_loss_spec(args.loss)
    except ValueError as e:
        raise DataError(str(e)) from None
    check_group_args(args)


def resolve_device_and_precision(device: str, precision: str) -> tuple[bool, str]:
    """-> (use_cpu, accelerate mixed_precision)."""
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise DataError("--device cuda was requested but torch sees no CUDA device (torch.cuda.is_available() is False)")
    use_cpu = device == "cpu" or (device == "auto" and not cuda)
    if precision == "auto":
        if use_cpu:
            return True, "no"
        return False, "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and use_cpu:
        raise DataError("--precision fp16 needs CUDA; on CPU use bf16 or fp32")
    return use_cpu, {"fp32": "no", "fp16": "fp16", "bf16": "bf16"}[precision]


def epoch_batches(n_chains: int, batch_chains: int, seed: int, epoch: int) -> list[list[int]]:
    """Deterministic shuffled batches of chain indices for one epoch (same on every process and on resume)."""
    order = list(range(n_chains))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return [order[i : i + batch_chains] for i in range(0, n_chains, batch_chains)]


@dataclass
class Schedule:
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int


def make_schedule(n_chains: int, args: argparse.Namespace, world: int, unit: str = "chains") -> Schedule:
    """Steps from the number of training units: chains (--batch-chains), or mined groups (--batch-groups) when only group losses train."""
    batch = args.batch_chains if unit == "chains" else args.batch_groups
    batches = math.ceil(n_chains / batch)
    steps_per_epoch = batches // world
    if steps_per_epoch == 0:
        raise DataError(
            f"{n_chains} training {unit} make {batches} batch(es) of --batch-{unit} {batch}, "
            f"fewer than the {world} processes; lower --batch-{unit} or add data"
        )
    total = steps_per_epoch * args.epochs
    if args.max_steps is not None:
        total = min(total, args.max_steps)
    return Schedule(steps_per_epoch, total, int(total * args.warmup_ratio))


def lr_lambda(schedule: Schedule):
    def f(step: int) -> float:
        if step < schedule.warmup_steps:
            return (step + 1) / (schedule.warmup_steps + 1)
        remaining = schedule.total_steps - schedule.warmup_steps
        return max(0.0, (schedule.total_steps - step) / max(1, remaining))

    return f


def fingerprint(args: argparse.Namespace, data_sha256: str) -> dict[str, Any]:
    fp = {name: getattr(args, name) for name in FINGERPRINT_FIELDS}
    fp["data_sha256"] = data_sha256
    return fp


def write_chains_jsonl(path: str, chains: Sequence[Chain]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for c in chains:
            fh.write(json.dumps({"id": c.id, "anchor": c.sentences[0], "steps": list(c.sentences[1:])}) + "\n")


def write_final_model(src_dir: str, model_dir: str, export: bool, progress: Progress) -> tuple[str | None, str | None]:
    """Put the final sentence-transformers directory at ``model_dir``, with onnx/model.onnx when exported.

    Returns (onnx path or None, export error or None). The exporter (rankchain_posttrain.export_onnx)
    writes the whole directory atomically; without it, or with --no-export, the directory is copied.
    """
    shutil.rmtree(model_dir, ignore_errors=True)
    if not export:
        shutil.copytree(src_dir, model_dir)
        return None, None
    try:
        from . import export_onnx as exporter
    except ImportError as e:
        shutil.copytree(src_dir, model_dir)
        progress.log(f"ONNX export skipped: rankchain_posttrain.export_onnx is not importable ({e}); "
                     f"the sentence-transformers model in {model_dir} is complete without it")
        progress.emit("export", status="skipped", reason=str(e))
        return None, None
    try:
        exporter.export_model(src_dir, model_dir)
    except Exception as e:  # noqa: BLE001 -- reported, recorded, and turned into exit code 1
        shutil.rmtree(model_dir, ignore_errors=True)
        shutil.copytree(src_dir, model_dir)
        msg = f"{type(e).__name__}: {e}"
        progress.log(f"ONNX export failed ({msg}); the sentence-transformers model is saved in {model_dir}. "
                     f"Retry with: python -m rankchain_posttrain.export_onnx --model {model_dir} --out {model_dir}-onnx")
        progress.emit("export", status="failed", error=msg)
        return None, msg
    path = os.path.join(model_dir, "onnx", "model.onnx")
    progress.emit("export", status="done", onnx=os.path.abspath(path))
    return path, None


def train(args: argparse.Namespace, progress: Progress | None = None) -> dict[str, Any]:
    """Run training; returns the training record (also written to OUT/training.json)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import set_seed

    check_args(args)
    started = time.time()
    use_cpu, mixed = resolve_device_and_precision(args.device, args.precision)
    accelerator = Accelerator(
        cpu=use_cpu,
        mixed_precision=mixed,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    main = accelerator.is_main_process
    progress = progress or Progress()
    progress.enabled = progress.enabled and main
    world, rank = accelerator.num_processes, accelerator.process_index

    spec = [name for name, _ in parse_loss_spec(args.loss)]
    wants_chains = any(not is_group_loss(n) for n in spec)
    data_is_groups = looks_like_groups_file(args.data)
    if wants_chains and data_is_groups:
        raise DataError(f"--data is a groups file, but --loss {args.loss!r} also trains on chains; pass the run directory", file=args.data)
    group_data = None
    if any(is_group_loss(n) for n in spec):
        group_data = load_groups(args.groups or (args.data if data_is_groups else resolve_groups_file(args.data)))
    data = load_chains(args.data, allow_unvalidated=args.allow_unvalidated) if wants_chains else None
    args.holdout_fraction = effective_holdout_fraction(args.select, args.holdout_fraction, len(data.chains) if data else 0)
    train_chains, held_chains = split_holdout(data.chains, args.holdout_fraction, args.seed) if data else ([], [])
    if args.control == "shuffled":
        train_chains = shuffle_rewrites(train_chains, args.seed)
    n_units = len(train_chains) if wants_chains else len(group_data.groups)  # type: ignore[union-attr]
    unit_batch = args.batch_chains if wants_chains else args.batch_groups
    schedule = make_schedule(n_units, args, world, "chains" if wants_chains else "groups")
    sts = load_sts(args.eval_sts) if args.eval_sts else None
    selection = resolve_selection(args.select, len(held_chains), sts is not None)

    out = os.path.abspath(args.out)
    ckpt_dir = os.path.join(out, "checkpoints", "last")
    state_path = os.path.join(ckpt_dir, STATE_FILE)
    fp = fingerprint(args, data.sha256 if data else group_data.sha256)  # type: ignore[union-attr]
    if group_data is not None:
        fp.update({"groups_sha256": group_data.sha256, "batch_groups": args.batch_groups, "negatives": args.negatives,
                   "corrector": args.corrector, "refresh_every": args.refresh_every})
    resume_state: dict[str, Any] | None = None
    if args.resume and os.path.isfile(state_path):
        with open(state_path, encoding="utf-8") as fh:
            resume_state = json.load(fh)
        diff = {k: (resume_state["fingerprint"].get(k), v) for k, v in fp.items() if resume_state["fingerprint"].get(k) != v}
        if diff:
            detail = "; ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
            raise DataError(f"--resume refused: the run in {out} was started with different settings ({detail})", file=state_path)
    elif args.resume:
        progress.log(f"--resume: no checkpoint in {ckpt_dir}; starting from step 0")
    elif os.path.exists(os.path.join(out, RECORD_FILE)) or os.path.isdir(os.path.join(out, "checkpoints")):
        raise DataError(f"{out} already holds a training run; pass --resume to continue it or choose another --out", file=out)

    set_seed(args.seed)
    device = accelerator.device
    student = load_encoder(args.base_model, device=device, pooling=args.pooling, max_seq_length=args.max_seq_length)
    loss_fn = CombinedLoss.from_spec(args.loss, tau=args.tau, tau2=args.tau2, omega=args.omega,
                                      cross_encoder_teacher=getattr(args, "cross_encoder_teacher", None))
    teacher = None
    if loss_fn.needs_teacher:
        if args.teacher:
            teacher = load_encoder(args.teacher, device=device, pooling=args.teacher_pooling, max_seq_length=args.max_seq_length)
        else:
            teacher = copy.deepcopy(student)
        teacher.eval()
        teacher.requires_grad_(False)
    teacher_cache = None
    if teacher is not None and args.teacher_cache_mb > 0:
        need = estimated_bytes(sum(len(c.sentences) for c in train_chains), (getattr(teacher, "get_embedding_dimension", None) or teacher.get_sentence_embedding_dimension)() or 0)
        if need > args.teacher_cache_mb * 2**20:
            progress.log(f"teacher cache off: {need / 2**20:.0f} MB of teacher embeddings exceed --teacher-cache-mb {args.teacher_cache_mb}")
        else:
            teacher_cache = TeacherEmbeddingCache(teacher_fingerprint(
                teacher=teacher, describe=describe_encoder(teacher), data_sha256=f"{data.sha256}:{getattr(args, 'control', 'none')}:{args.holdout_fraction}",
                train_chains=len(train_chains), precision=mixed))
    if args.gradient_checkpointing:
        student.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    student.train()

    no_decay = ("bias", "LayerNorm.weight", "layer_norm", "norm.weight")
    groups = [
        {"params": [p for n, p in student.named_parameters() if not any(k in n for k in no_decay)], "weight_decay": args.weight_decay},
        {"params": [p for n, p in student.named_parameters() if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=args.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(schedule))
    wrapped, optimizer = accelerator.prepare(student, optimizer)
    base = accelerator.unwrap_model(wrapped)
    group_training = GroupTraining(group_data, args, device) if group_data is not None else None

    os.makedirs(out, exist_ok=True)
    if main and held_chains:
        write_chains_jsonl(os.path.join(out, "heldout.jsonl"), held_chains)

    step = 0
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    cache_path = os.path.join(out, CACHE_FILE if world == 1 else f"teacher_cache.rank{rank}.pt")
    if teacher_cache is not None and args.resume:
        progress.log(f"teacher cache {cache_path}: {teacher_cache.load(cache_path)}")
    if resume_state is not None:
        accelerator.load_state(ckpt_dir)
        scheduler.load_state_dict(resume_state["scheduler"])
        step = int(resume_state["step"])
        history = resume_state.get("history", [])
        best = resume_state.get("best")
        progress.log(f"resumed from {ckpt_dir} at step {step}")
    negatives_path = os.path.join(ckpt_dir, NEGATIVES_STATE_FILE if world == 1 else f"negatives_state.rank{rank}.pt")
    if group_training is not None:
        if resume_state is not None:  # the checkpoint's cache and corrector, or a cache rebuilt from the resumed model
            how = group_training.resume(base, negatives_path, step)
            if how != "mined":
                progress.log(f"negatives state {negatives_path}: {how}" + ("" if how == "restored" else "; cache rebuilt from the resumed model, new corrector"))
        else:
            group_training.setup(base)  # cache mode: encode the candidate pool once

    # The selection metric (held-out chains' ranking agreement, or STS with --select sts); STS is
    # otherwise only monitored, so a set that eval reports never chooses the model.
    sts_evaluator = StsEvaluator(sts) if sts else None
    select_name, select_fn = {
        "heldout-chains": (HELDOUT_METRIC, ChainOrderEvaluator(held_chains) if len(held_chains) >= 2 else None),
        "sts": ("stsb_spearman", sts_evaluator),
        "last": (None, None),
    }[selection]
    eval_every = args.eval_every or schedule.steps_per_epoch
    best_dir = os.path.join(out, "checkpoints", "best")

    def run_eval(at_step: int) -> None:
        nonlocal best
        if select_fn is None and sts_evaluator is None:
            return
        accelerator.wait_for_everyone()
        if main:
            entry: dict[str, Any] = {"step": at_step}
            if sts_evaluator is not None:
                entry["stsb_spearman"] = sts_evaluator(base)
            if select_fn is not None and select_name is not None:
                score = entry[select_name] if select_name in entry else select_fn(base)
                entry[select_name] = score
                # Step 0 is the base model's score, reported for reference; the best is chosen among trained steps.
                improved = at_step > 0 and (best is None or score > best["value"])
                if improved:
                    best = {"step": at_step, "metric": select_name, "value": score, select_name: score}
                    shutil.rmtree(best_dir, ignore_errors=True)
                    base.save_pretrained(best_dir)
            else:
                improved = False
            history.append(entry)
            progress.emit("eval", step=at_step, total=schedule.total_steps, metric=select_name, value=entry.get(select_name) if select_name else None,
                          best=best, improved=improved, **{k: v for k, v in entry.items() if k != "step"})
        accelerator.wait_for_everyone()

    def save_checkpoint(at_step: int) -> None:
        accelerator.wait_for_everyone()
        accelerator.save_state(ckpt_dir)
        if teacher_cache is not None:
            teacher_cache.save(cache_path)
        if group_training is not None:
            group_training.save_state(negatives_path, at_step)
        if main:
            with open(state_path + ".tmp", "w", encoding="utf-8") as fh:
                json.dump({"step": at_step, "fingerprint": fp, "scheduler": scheduler.state_dict(),
                           "history": history, "best": best}, fh)
            os.replace(state_path + ".tmp", state_path)
            progress.emit("checkpoint", step=at_step, dir=ckpt_dir)
        accelerator.wait_for_everyone()

    if main:
        progress.emit(
            "start",
            total=schedule.total_steps,
            step=step,
            steps_per_epoch=schedule.steps_per_epoch,
            chains=len(train_chains),
            groups=len(group_data.groups) if group_data else 0,
            heldout=len(held_chains),
            world_size=world,
            backend=getattr(accelerator.state, "backend", None),
            device=str(device),
            precision=mixed,
            loss=loss_fn.config_dict(),
            select=selection,
            control=args.control,
        )
    if (select_fn is not None or sts_evaluator is not None) and step == 0 and not any(h["step"] == 0 for h in history):
        run_eval(0)  # the base model's score, for reference

    loop_started = time.time()
    first_step = step
    last_parts: dict[str, float] = {}
    try:
        while step < schedule.total_steps:
            epoch, index = divmod(step, schedule.steps_per_epoch)
            batch = epoch_batches(n_units, unit_batch, args.seed, epoch)[index * world + rank]
            chains = [train_chains[i] for i in batch] if wants_chains else []
            sentences = [s for c in chains for s in c.sentences]
            n_chain = len(sentences)
            lengths = torch.tensor([len(c.sentences) for c in chains], device=device) if chains else None
            group_batch = None
            if group_training is not None:
                group_batch = group_training.batch(group_training.indices(step, world, rank) if wants_chains else batch, base)
                sentences += group_batch.texts  # one forward for chains and groups (DDP allows one per backward)
            with accelerator.autocast():
                # DDP allows one forward per backward: chunked encoding only in a single process.
                all_emb = embed(base, sentences, device, forward=wrapped, chunk_size=(args.encode_chunk or None) if world == 1 else None)
                student_emb = all_emb[:n_chain]
                teacher_emb = None
                if teacher is not None:
                    with torch.no_grad():
                        def encode_teacher(texts: list[str], teacher: Any = teacher) -> torch.Tensor:
                            return embed(teacher, texts, device, chunk_size=args.encode_chunk or None)
                        teacher_emb = (encode_teacher(sentences[:n_chain]) if teacher_cache is None or not wants_chains else
                                       teacher_cache.embed(batch, [c.sentences for c in chains], encode_teacher, device))
                parts = loss_fn(student_emb, teacher_emb, lengths,
                                groups=group_batch.embeddings(all_emb[n_chain:]) if group_batch else None,
                                context={"sentences": sentences[:n_chain], "student": base if world == 1 else None,
                                         "progress": step / max(1, schedule.total_steps)})
            loss = torch.stack(list(parts.values())).sum()
            # One collective per step: every process learns every part's value (and finiteness).
            values = torch.stack([v.detach().float() for v in parts.values()]).unsqueeze(0)
            gathered = accelerator.gather(values)  # [world, parts]
            if not bool(torch.isfinite(gathered).all()):
                bad = {name: gathered[:, i].tolist() for i, name in enumerate(parts) if not bool(torch.isfinite(gathered[:, i]).all())}
                raise NonFiniteLossError(
                    f"non-finite loss at step {step + 1}: " + ", ".join(f"{k}={v}" for k, v in bad.items())
                    + " (per process); lower --lr, raise --tau/--tau2, or use --precision fp32"
                )
            accelerator.backward(loss)
            if args.max_grad_norm:
                accelerator.clip_grad_norm_(wrapped.parameters(), args.max_grad_norm)
            lr_used = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            negatives_info = {}
            if group_training is not None and group_batch is not None:
                negatives_info = group_training.after_step(step, base, group_batch, all_emb[n_chain + len(group_batch.queries):])
            means = gathered.mean(dim=0).tolist()
            last_parts = dict(zip(parts.keys(), means))
            elapsed = time.time() - loop_started
            progress.emit(
                "step",
                step=step,
                total=schedule.total_steps,
                epoch=epoch,
                loss=sum(means),
                parts=last_parts,
                lr=lr_used,
                elapsed=round(time.time() - started, 3),
                steps_per_sec=round((step - first_step) / elapsed, 4) if elapsed > 0 else None,
                **({"negatives": negatives_info} if negatives_info else {}),
            )
            if step % eval_every == 0 or step == schedule.total_steps:
                run_eval(step)
            if step % args.checkpoint_every == 0 and step < schedule.total_steps:
                save_checkpoint(step)
    except KeyboardInterrupt:
        if world == 1:
            save_checkpoint(step)
            progress.log(f"interrupted at step {step}; checkpoint saved, continue with --resume")
        raise

    save_checkpoint(step)
    accelerator.wait_for_everyone()
    record: dict[str, Any] = {}
    if main:
        model_dir = os.path.join(out, "model")
        final_from = "last"
        src_dir = os.path.join(out, "checkpoints", "final")
        last_value = history[-1].get(select_name) if history and select_name else None
        if best is not None and best["step"] != step and os.path.isdir(best_dir) and (last_value is None or best["value"] > last_value):
            src_dir = best_dir
            final_from = f"best (step {best['step']})"
        else:
            shutil.rmtree(src_dir, ignore_errors=True)
            base.save_pretrained(src_dir)
        onnx_path, export_error = write_final_model(src_dir, model_dir, not args.no_export, progress)
        record = {
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "args": vars(args),
            "fingerprint": fp,
            "loss": {"spec": args.loss, "config": loss_fn.config_dict(), "citation": loss_fn.citation},
            "data": None if data is None else {
                **data.stats, "sha256": data.sha256, "train_chains": len(train_chains), "heldout_chains": len(held_chains),
                "heldout_file": os.path.join(out, "heldout.jsonl") if held_chains else None},
            "groups": None if group_training is None else {**group_training.record(), **group_training.staleness(base)},
            "student": {"model": args.base_model, **describe_encoder(base)},
            "teacher": None if teacher is None else {"model": args.teacher or "frozen copy of the student", **describe_encoder(teacher)},
            "teacher_cache": None if teacher_cache is None else teacher_cache.stats(),
            "seed": args.seed,
            "device": str(device),
            "precision": mixed,
            "world_size": world,
            "steps": step,
            "schedule": vars(schedule),
            "final_loss_parts": last_parts,
            "selection": {"select": selection, "requested": args.select, "metric": select_name,
                          "heldout_chains": len(held_chains), "monitored": ["stsb_spearman"] if sts_evaluator and selection != "sts" else []},
            "control": args.control,
            "eval_history": history,
            "best": best,
            "final_model": {"dir": model_dir, "from": final_from, "onnx": onnx_path, "export_error": export_error},
            "seconds": round(time.time() - started, 2),
            "versions": versions(),
        }
        write_json(os.path.join(out, RECORD_FILE), record)
        progress.emit("done", step=step, total=schedule.total_steps, out=out, model=model_dir, onnx=onnx_path,
                      best=best, seconds=record["seconds"])
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if record.get("final_model", {}).get("export_error"):
        raise ExportFailedError(f"training finished but the ONNX export failed: {record['final_model']['export_error']}")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = Progress()
    try:
        if args.cross_encoder:
            from .cross_encoder import train_cross_encoder

            check_args(args)
            train_cross_encoder(args, progress)
        else:
            train(args, progress)
    except PosttrainError as e:
        progress.emit("error", message=str(e), exit_code=e.exit_code, kind=type(e).__name__)
        sys.stderr.write(f"rankchain_posttrain.train: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
