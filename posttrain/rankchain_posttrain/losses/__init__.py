"""Chain losses, one file each (STYLE #12): a pure function plus a thin ``nn.Module`` around it."""

from ._chain import chain_cosine, pad_chains, refine_teacher
from .chain_listmle import ChainListMLELoss, chain_listmle_loss
from .combined import LOSSES, CombinedLoss, parse_loss_spec
from .infonce import InfoNCELoss, infonce_loss
from .listnet import ListNetLoss, listnet_loss

__all__ = [
    "LOSSES",
    "ChainListMLELoss",
    "CombinedLoss",
    "InfoNCELoss",
    "ListNetLoss",
    "chain_cosine",
    "chain_listmle_loss",
    "infonce_loss",
    "listnet_loss",
    "pad_chains",
    "parse_loss_spec",
    "refine_teacher",
]
