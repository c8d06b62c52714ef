"""Machine-readable progress: one JSON object per line on stdout (the TypeScript CLI renders it).

Events: ``start``, ``step``, ``eval``, ``checkpoint``, ``export``, ``done``, ``error``. Human-readable
messages go to stderr. Only the main process of a distributed run writes.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Infinity; keep it visible rather than dropping it
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class Progress:
    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stdout

    def emit(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        self.stream.write(json.dumps(_clean({"event": event, **fields}), allow_nan=False) + "\n")
        self.stream.flush()

    def log(self, message: str) -> None:
        if self.enabled:
            sys.stderr.write(message.rstrip("\n") + "\n")
            sys.stderr.flush()
