"""The cross-encoder before training: the base encoder with a fresh one-label head (seeded), saved and
exported to ONNX like ``posttrain --cross-encoder`` does, so bench/rerank can put it next to the trained one.

    PYTHONPATH=posttrain .venv/bin/python bench/rerank/base_ce.py --base-model MINILM_DIR --out DIR [--seed 1]
"""

from __future__ import annotations

import argparse
import sys

import torch

from rankchain_posttrain.cross_encoder import export_cross_encoder_onnx, load_cross_encoder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base-model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    model, tok = load_cross_encoder(a.base_model)
    model.save_pretrained(a.out)
    tok.save_pretrained(a.out)
    print(export_cross_encoder_onnx(a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
