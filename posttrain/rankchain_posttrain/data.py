"""Reading rankchain run data: chain records (validated.jsonl / chains.jsonl) and STS files."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import DataError

KEPT_STATUSES = ("accepted", "repaired")


@dataclass(frozen=True)
class Chain:
    """One chain ready for training: ``sentences[0]`` is the anchor, then the rewrites in order."""

    id: str
    sentences: tuple[str, ...]
    status: str | None = None


@dataclass
class ChainData:
    chains: list[Chain]
    file: str
    sha256: str
    stats: dict[str, Any] = field(default_factory=dict)


def resolve_chain_file(data: str, allow_unvalidated: bool = False) -> str:
    """A run directory -> its validated.jsonl (or chains.jsonl when unvalidated data is allowed); a file -> itself."""
    if os.path.isdir(data):
        validated = os.path.join(data, "validated.jsonl")
        if os.path.isfile(validated):
            return validated
        chains = os.path.join(data, "chains.jsonl")
        if allow_unvalidated and os.path.isfile(chains):
            return chains
        hint = (
            "run `rankchain validate` on it first, or pass --allow-unvalidated to train on chains.jsonl"
            if os.path.isfile(chains)
            else "it holds neither validated.jsonl nor chains.jsonl"
        )
        raise DataError(f"no validated.jsonl in run directory {data}: {hint}", file=data)
    if os.path.isfile(data):
        return data
    raise DataError("no such run directory or file", file=data)


def _string(value: Any, file: str, line: int, name: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"expected a string, got {type(value).__name__}", file=file, line=line, field=name)
    if value.strip() == "":
        raise DataError("is empty", file=file, line=line, field=name)
    return value


def parse_chain_record(record: Any, file: str, line: int, allow_unvalidated: bool) -> Chain | str:
    """One JSON record -> a Chain, or the reason it is skipped ("rejected", "unvalidated", "too_short")."""
    if not isinstance(record, dict):
        raise DataError(f"expected a JSON object, got {type(record).__name__}", file=file, line=line)
    if "id" not in record:
        raise DataError("missing", file=file, line=line, field="id")
    chain_id = record["id"]
    if not isinstance(chain_id, (str, int)) or str(chain_id).strip() == "":
        raise DataError(f"expected a non-empty string, got {chain_id!r}", file=file, line=line, field="id")
    if "anchor" not in record:
        raise DataError("missing", file=file, line=line, field="anchor")
    anchor = _string(record["anchor"], file, line, "anchor")
    if "steps" not in record:
        raise DataError("missing", file=file, line=line, field="steps")
    steps = record["steps"]
    if not isinstance(steps, list):
        raise DataError(f"expected a list of strings, got {type(steps).__name__}", file=file, line=line, field="steps")
    steps = [_string(s, file, line, f"steps[{i}]") for i, s in enumerate(steps)]

    validation = record.get("validation")
    status: str | None = None
    if validation is None:
        if not allow_unvalidated:
            return "unvalidated"
    else:
        if not isinstance(validation, dict):
            raise DataError(f"expected an object, got {type(validation).__name__}", file=file, line=line, field="validation")
        status = validation.get("status")
        if status not in ("accepted", "repaired", "rejected"):
            raise DataError(
                f'expected "accepted", "repaired" or "rejected", got {status!r}', file=file, line=line, field="validation.status"
            )
        if status == "rejected":
            return "rejected"
        kept = validation.get("steps_kept")
        if kept is not None:
            if not isinstance(kept, int) or isinstance(kept, bool) or kept < 0 or kept > len(steps):
                raise DataError(
                    f"expected an integer from 0 to {len(steps)} (the number of steps), got {kept!r}",
                    file=file,
                    line=line,
                    field="validation.steps_kept",
                )
            steps = steps[:kept]
    if len(steps) == 0:
        return "too_short"
    return Chain(id=str(chain_id), sentences=(anchor, *steps), status=status)


def load_chains(data: str, *, allow_unvalidated: bool = False, min_chains: int = 1) -> ChainData:
    """Read the chains to train on. Raises :class:`DataError` (exit 2) naming file:line and field."""
    path = resolve_chain_file(data, allow_unvalidated)
    chains: list[Chain] = []
    skipped: dict[str, int] = {"rejected": 0, "unvalidated": 0, "too_short": 0}
    seen: set[str] = set()
    digest = hashlib.sha256()
    lines = 0
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            digest.update(raw)
            text = raw.decode("utf-8", errors="strict").strip() if raw else ""
            if text == "":
                continue
            lines += 1
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(f"not valid JSON ({e.msg} at column {e.colno})", file=path, line=lineno) from None
            parsed = parse_chain_record(record, path, lineno, allow_unvalidated)
            if isinstance(parsed, str):
                skipped[parsed] += 1
                continue
            if parsed.id in seen:
                raise DataError(f"duplicate chain id {parsed.id!r}", file=path, line=lineno, field="id")
            seen.add(parsed.id)
            chains.append(parsed)
    if len(chains) < min_chains:
        why = ", ".join(f"{n} {k}" for k, n in skipped.items() if n) or "no records"
        hint = " (records without a validation field need --allow-unvalidated)" if skipped["unvalidated"] else ""
        raise DataError(
            f"no usable chains: need at least {min_chains} accepted or repaired chain(s) with >= 1 step, "
            f"found {len(chains)} of {lines} record(s) ({why}){hint}",
            file=path,
        )
    lengths = [len(c.sentences) for c in chains]
    stats = {
        "file": path,
        "records": lines,
        "chains": len(chains),
        "skipped": skipped,
        "sentences": sum(lengths),
        "min_length": min(lengths),
        "max_length": max(lengths),
        "mean_length": sum(lengths) / len(lengths),
        "statuses": {s: sum(1 for c in chains if c.status == s) for s in ("accepted", "repaired", None) if any(c.status == s for c in chains)},
    }
    stats["statuses"] = {str(k): v for k, v in stats["statuses"].items()}
    return ChainData(chains=chains, file=path, sha256=digest.hexdigest(), stats=stats)


@dataclass
class StsData:
    sentences1: list[str]
    sentences2: list[str]
    scores: list[float]
    file: str


def load_sts(path: str) -> StsData:
    """Tab-separated ``sentence1\\tsentence2\\tscore`` with a header row (STS-B dev format)."""
    if not os.path.isfile(path):
        raise DataError("no such STS file", file=path)
    s1: list[str] = []
    s2: list[str] = []
    scores: list[float] = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise DataError("is empty (expected a header sentence1<TAB>sentence2<TAB>score)", file=path)
        names = [h.strip().lower() for h in header]
        try:
            i1, i2, isc = names.index("sentence1"), names.index("sentence2"), names.index("score")
        except ValueError:
            raise DataError(f"header must name sentence1, sentence2 and score columns, got {header!r}", file=path, line=1) from None
        for lineno, row in enumerate(reader, start=2):
            if not row or all(c.strip() == "" for c in row):
                continue
            if len(row) <= max(i1, i2, isc):
                raise DataError(f"expected {len(names)} tab-separated columns, got {len(row)}", file=path, line=lineno)
            try:
                score = float(row[isc])
            except ValueError:
                raise DataError(f"expected a number, got {row[isc]!r}", file=path, line=lineno, field="score") from None
            if not math.isfinite(score):
                raise DataError(f"expected a finite number, got {row[isc]!r}", file=path, line=lineno, field="score")
            s1.append(row[i1])
            s2.append(row[i2])
            scores.append(score)
    if len(scores) < 2:
        raise DataError(f"needs at least 2 scored pairs for a rank correlation, got {len(scores)}", file=path)
    return StsData(s1, s2, scores, path)
