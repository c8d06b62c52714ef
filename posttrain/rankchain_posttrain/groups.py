"""Reading mined groups (groups.jsonl from ``rankchain mine``): a query, its positive and hard negatives."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import DataError

GROUPS_FILE = "groups.jsonl"
MINE_FILE = "mine.json"


@dataclass(frozen=True)
class Group:
    """One training group: ``docs()[0]`` is the positive, then the mined negatives in fused order."""

    id: str
    chain_id: str | None
    query: str
    positive: str
    negatives: tuple[str, ...]
    #: chain id each negative came from (None for corpus lines), parallel to ``negatives``
    negative_chains: tuple[str | None, ...] = ()

    def docs(self) -> tuple[str, ...]:
        return (self.positive, *self.negatives)


@dataclass
class GroupData:
    groups: list[Group]
    file: str
    sha256: str
    stats: dict[str, Any] = field(default_factory=dict)


def looks_like_groups_file(path: str) -> bool:
    """True when the first record of a JSONL file has ``query``, ``positive`` and ``negatives`` (a groups file, not chains)."""
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as fh:
        for raw in fh:
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError:
                return False
            return isinstance(record, dict) and all(k in record for k in ("query", "positive", "negatives"))
    return False


def resolve_groups_file(data: str) -> str:
    """A run directory -> its groups.jsonl (or the file mine.json names); a file -> itself."""
    if os.path.isdir(data):
        direct = os.path.join(data, GROUPS_FILE)
        if os.path.isfile(direct):
            return direct
        mine = os.path.join(data, MINE_FILE)
        if os.path.isfile(mine):
            try:
                named = json.load(open(mine, encoding="utf-8")).get("groups_file")
            except (OSError, ValueError, AttributeError):
                named = None
            if isinstance(named, str) and os.path.isfile(named):
                return named
        raise DataError(
            f"no groups.jsonl in run directory {data}: mine hard negatives first "
            f"(rankchain mine {data} --embedders all-MiniLM-L6-v2,all-mpnet-base-v2), or pass --groups FILE",
            file=data,
        )
    if os.path.isfile(data):
        return data
    raise DataError("no such run directory or groups file", file=data)


def _text(value: Any, file: str, line: int, name: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"expected a string, got {type(value).__name__}", file=file, line=line, field=name)
    if value.strip() == "":
        raise DataError("is empty", file=file, line=line, field=name)
    return value


def parse_group_record(record: Any, file: str, line: int) -> Group:
    if not isinstance(record, dict):
        raise DataError(f"expected a JSON object, got {type(record).__name__}", file=file, line=line)
    for key in ("query", "positive", "negatives"):
        if key not in record:
            raise DataError("missing", file=file, line=line, field=key)
    query = _text(record["query"], file, line, "query")
    positive = _text(record["positive"], file, line, "positive")
    negs = record["negatives"]
    if not isinstance(negs, list) or not negs:
        raise DataError("expected a non-empty list", file=file, line=line, field="negatives")
    texts: list[str] = []
    chains: list[str | None] = []
    for i, n in enumerate(negs):
        if isinstance(n, str):
            texts.append(_text(n, file, line, f"negatives[{i}]"))
            chains.append(None)
            continue
        if not isinstance(n, dict):
            raise DataError(f"expected a string or an object with text, got {type(n).__name__}", file=file, line=line, field=f"negatives[{i}]")
        texts.append(_text(n.get("text"), file, line, f"negatives[{i}].text"))
        src = n.get("source")
        cid = src.get("chain_id") if isinstance(src, dict) else None
        chains.append(str(cid) if cid is not None else None)
    gid = record.get("id", f"line{line}")
    chain_id = record.get("chain_id")
    return Group(
        id=str(gid),
        chain_id=str(chain_id) if chain_id is not None else None,
        query=query,
        positive=positive,
        negatives=tuple(texts),
        negative_chains=tuple(chains),
    )


def load_groups(path: str) -> GroupData:
    """Read groups.jsonl. Raises :class:`DataError` (exit 2) naming file:line and field."""
    groups: list[Group] = []
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            digest.update(raw)
            text = raw.decode("utf-8", errors="strict").strip()
            if not text:
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(f"not valid JSON ({e.msg} at column {e.colno})", file=path, line=lineno) from None
            groups.append(parse_group_record(record, path, lineno))
    if not groups:
        raise DataError("holds no groups", file=path)
    sizes = [len(g.negatives) for g in groups]
    stats = {
        "file": path,
        "groups": len(groups),
        "min_negatives": min(sizes),
        "max_negatives": max(sizes),
        "texts": len({t for g in groups for t in (g.query, *g.docs())}),
    }
    return GroupData(groups=groups, file=path, sha256=digest.hexdigest(), stats=stats)
