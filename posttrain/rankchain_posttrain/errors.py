"""Typed errors of the Python side; the CLIs map them to rankchain's exit codes (DESIGN.md).

Exit codes: 2 bad usage, config or input (the message says what and where); 1 anything else.
"""

from __future__ import annotations


class PosttrainError(Exception):
    """Base class of every error raised on purpose by rankchain_posttrain."""

    exit_code = 1


class DataError(PosttrainError):
    """Bad input data or arguments: exit code 2. Message names file:line and field when known."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, field: str | None = None):
        where = ""
        if file is not None:
            where = file
            if line is not None:
                where += f":{line}"
            if field is not None:
                where += f' (field "{field}")'
            where += ": "
        super().__init__(where + message)
        self.file = file
        self.line = line
        self.field = field


class NonFiniteLossError(PosttrainError):
    """A loss part became NaN or infinite; training stops instead of hiding it."""

    exit_code = 1


class ModelLoadError(PosttrainError):
    """A model directory could not be loaded (missing, offline, wrong format)."""

    exit_code = 2


class ExportFailedError(PosttrainError):
    """Training finished and the sentence-transformers model is saved, but the ONNX export failed."""

    exit_code = 1
