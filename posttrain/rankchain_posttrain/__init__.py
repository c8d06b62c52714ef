"""rankchain post-training: listwise ranking losses for sentence-embedding models."""

__version__ = "0.1.0"
