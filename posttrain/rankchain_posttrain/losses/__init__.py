"""Chain losses, one file each (STYLE #12): a pure function plus a thin ``nn.Module`` around it."""

from ._chain import chain_cosine, pad_chains, refine_teacher
from .ce_ranknet import ce_ranknet_loss
from .chain_listmle import ChainListMLELoss, chain_listmle_loss
from .chain_order import ChainOrderLoss, chain_order_loss, chain_order_targets
from .distill import DistillLoss, distill_sentence_loss, distill_word_loss, false_negative_keep, fn_margin_schedule, token_similarity
from .combined import LOSSES, CombinedLoss, is_group_loss, parse_loss_spec
from .infonce import InfoNCELoss, infonce_loss
from .lce import GroupEmbeddings, LCELoss, lce_loss
from .listnet import ListNetLoss, listnet_loss

__all__ = [
    "LOSSES",
    "ChainListMLELoss",
    "ChainOrderLoss",
    "CombinedLoss",
    "DistillLoss",
    "distill_sentence_loss",
    "distill_word_loss",
    "false_negative_keep",
    "fn_margin_schedule",
    "token_similarity",
    "GroupEmbeddings",
    "InfoNCELoss",
    "LCELoss",
    "ListNetLoss",
    "ce_ranknet_loss",
    "chain_cosine",
    "chain_listmle_loss",
    "chain_order_loss",
    "chain_order_targets",
    "infonce_loss",
    "is_group_loss",
    "lce_loss",
    "listnet_loss",
    "pad_chains",
    "parse_loss_spec",
    "refine_teacher",
]
