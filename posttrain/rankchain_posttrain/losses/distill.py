"""Cross-encoder -> bi-encoder distillation at sentence and word level, with a false-negative filter."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._chain import MASKED_SCORE, as_lengths, check_non_negative, check_positive, check_reduction

CITATION = """@article{hofstatter2020crossarchitecture,
  title     = {Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge Distillation},
  author    = {Hofst{\\"a}tter, Sebastian and Althammer, Sophia and Schr{\\"o}der, Michael and Sertkan, Mete and Hanbury, Allan},
  journal   = {arXiv preprint arXiv:2010.02666},
  year      = {2020}
}
@inproceedings{qu2021rocketqa,
  title     = {RocketQA: An Optimized Training Approach to Dense Passage Retrieval for Open-Domain Question Answering},
  author    = {Qu, Yingqi and Ding, Yuchen and Liu, Jing and Liu, Kai and Ren, Ruiyang and Zhao, Wayne Xin and Dong, Daxiang and Wu, Hua and Wang, Haifeng},
  booktitle = {NAACL},
  year      = {2021}
}"""


def false_negative_keep(teacher_scores: torch.Tensor, mask: torch.Tensor, positive: torch.Tensor, margin: float) -> torch.Tensor:
    """Candidates kept by the false-negative filter: the positive, and every other candidate the teacher
    does not score above the positive by more than ``margin`` (``[B, L]`` bool)."""
    t = teacher_scores.detach().float()
    pos_score = t.gather(1, positive.unsqueeze(1))  # [B, 1]
    cols = torch.arange(t.shape[1], device=t.device).unsqueeze(0)
    is_pos = cols == positive.unsqueeze(1)
    return mask & (is_pos | (t <= pos_score + margin))


def fn_margin_schedule(progress: float, start: float = 2.0, end: float = 0.0) -> float:
    """The false-negative margin at training progress in [0, 1]: linear from ``start`` to ``end``.

    Tightened over training: early on only candidates the teacher scores far above the positive are
    dropped (the student is still poor, and the teacher's own errors cost little); at the end anything
    the teacher ranks above the positive is treated as an unlabelled positive and dropped.
    """
    p = min(max(float(progress), 0.0), 1.0)
    return start + (end - start) * p


def distill_sentence_loss(
    student_scores: torch.Tensor,
    teacher_scores: torch.Tensor,
    mask: torch.Tensor,
    positive: torch.Tensor,
    tau: float = 0.05,
    tau_teacher: float = 1.0,
    fn_margin: float | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Sentence-level distillation: KL divergence between teacher and student score distributions.

    Formula, per candidate list b (query q_b, candidates c_1..c_L, positive c_p):

        keep_j = mask_j and (j = p or t_j <= t_p + margin)          (false-negative filter; all when margin is None)
        P_t = softmax_{j in keep}(t_j / tau_teacher),  P_s = softmax_{j in keep}(s_j / tau)
        loss_b = KL(P_t || P_s) = sum_j P_t(j) * (log P_t(j) - log P_s(j))
        loss   = mean over lists

    Args:
        student_scores: bi-encoder cosine of query and each candidate (not yet divided by tau).
        teacher_scores: cross-encoder logits of (query, candidate); detached here.
        mask: which candidates exist (lists are padded to L).
        positive: index of the labelled positive in each list.
        tau: student temperature (> 0). Default 0.05.
        tau_teacher: teacher temperature (> 0). Default 1 (cross-encoder logits are already spread).
        fn_margin: false-negative filter margin in teacher-logit units (>= 0), or None for no filter.
        reduction: "mean", "sum" or "none" (one value per list).

    Inputs:
        student_scores ``[B, L]``, teacher_scores ``[B, L]``, mask ``[B, L]`` bool, positive ``[B]`` long.

    Returns:
        A float32 scalar, or ``[B]`` with reduction "none"; lists with fewer than two kept candidates give 0.

    Requirements:
        1. ``mask[b, positive[b]]`` is True for every list.
        2. Teacher and student score the same (query, candidate) pairs in the same layout.

    Relations:
        - :func:`distill_word_loss` is the word-level part; :class:`DistillLoss` combines both.
        - Unlike :func:`rankchain_posttrain.losses.listnet.listnet_loss` the targets come from a
          cross-encoder over query-candidate pairs, not from a bi-encoder's similarity matrix.

    References:
        Hofstätter et al. 2020 (cross-architecture distillation, score distributions); Qu et al. 2021
        (RocketQA: a cross-encoder removes false negatives). The multi-level (sentence + word) design
        follows the project's seed paper on cross-encoder -> bi-encoder distillation (DESIGN.md). See ``CITATION``.

    Example:
        >>> distill_sentence_loss(s, t, mask, torch.zeros(B, dtype=torch.long), fn_margin=fn_margin_schedule(0.5))
    """
    tau = check_positive("tau", tau)
    tau_teacher = check_positive("tau_teacher", tau_teacher)
    check_reduction(reduction)
    if fn_margin is not None:
        check_non_negative("fn_margin", fn_margin)
    if student_scores.shape != teacher_scores.shape or student_scores.shape != mask.shape or positive.shape != student_scores.shape[:1]:
        raise ValueError(
            f"shape mismatch: student_scores {tuple(student_scores.shape)}, teacher_scores {tuple(teacher_scores.shape)}, "
            f"mask {tuple(mask.shape)}, positive {tuple(positive.shape)} (expected [B, L], [B, L], [B, L], [B])"
        )
    if not bool(mask.gather(1, positive.unsqueeze(1)).all()):
        raise ValueError("every list's positive must be a real candidate (mask[b, positive[b]] is False somewhere)")
    keep = mask if fn_margin is None else false_negative_keep(teacher_scores, mask, positive, fn_margin)
    t = (teacher_scores.detach().float() / tau_teacher).masked_fill(~keep, MASKED_SCORE)
    s = (student_scores.float() / tau).masked_fill(~keep, MASKED_SCORE)
    log_pt = torch.log_softmax(t, dim=-1)
    log_ps = torch.log_softmax(s, dim=-1)
    per_list = (log_pt.exp() * (log_pt - log_ps) * keep).sum(dim=-1)
    per_list = per_list * (keep.sum(dim=-1) >= 2)
    if reduction == "none":
        return per_list
    return per_list.sum() if reduction == "sum" else per_list.mean()


def token_similarity(query_tokens: torch.Tensor, passage_tokens: torch.Tensor) -> torch.Tensor:
    """Cosine of every query token with every passage token: ``[B, Lq, d] x [B, Lp, d] -> [B, Lq, Lp]`` (float32)."""
    with torch.autocast(device_type=query_tokens.device.type, enabled=False):
        return F.normalize(query_tokens.float(), dim=-1) @ F.normalize(passage_tokens.float(), dim=-1).transpose(1, 2)


def distill_word_loss(
    student_sim: torch.Tensor,
    teacher_attention: torch.Tensor,
    query_mask: torch.Tensor,
    passage_mask: torch.Tensor,
    tau: float = 0.05,
    reduction: str = "mean",
) -> torch.Tensor:
    """Word-level distillation: the student's query-token x passage-token similarity, as a distribution over
    passage tokens per query token, matches the teacher's query->passage attention.

    Formula, per pair b and real query token i:

        A_t(i, .) = attention(i, .) restricted to real passage tokens, renormalised to sum 1
        A_s(i, .) = softmax_{j real}(sim(i, j) / tau)
        loss_b = mean over real query tokens i of KL(A_t(i, .) || A_s(i, .))
        loss   = mean over pairs

    Args:
        student_sim: cosine of student token embeddings (query token i, passage token j), e.g. from
            :func:`token_similarity`.
        teacher_attention: the cross-encoder's attention from query tokens to passage tokens (e.g. the last
            layer averaged over heads), non-negative; detached here.
        query_mask: real query tokens (special tokens excluded).
        passage_mask: real passage tokens (special tokens excluded).
        tau: student temperature (> 0). Default 0.05.
        reduction: "mean", "sum" or "none" (one value per pair).

    Inputs:
        student_sim ``[B, Lq, Lp]``, teacher_attention ``[B, Lq, Lp]``, query_mask ``[B, Lq]``, passage_mask ``[B, Lp]``.

    Returns:
        A float32 scalar, or ``[B]`` with reduction "none".

    Requirements:
        1. Student and teacher tokenise query and passage into the same tokens (same vocabulary), so
           token i of the student is token i of the teacher; :class:`DistillLoss` checks the ids.
        2. At least one real token on each side.

    Relations:
        - The sentence-level part is :func:`distill_sentence_loss`.

    References:
        The project's seed paper on multi-level (sentence + word) cross-encoder distillation (DESIGN.md);
        Hofstätter et al. 2020 for the cross-architecture setting. See ``CITATION``.

    Example:
        >>> distill_word_loss(token_similarity(q_tok, p_tok), attn, q_mask, p_mask)
    """
    tau = check_positive("tau", tau)
    check_reduction(reduction)
    if student_sim.shape != teacher_attention.shape or student_sim.shape[:2] != query_mask.shape or (
        student_sim.shape[0], student_sim.shape[2]) != tuple(passage_mask.shape):
        raise ValueError(
            f"shape mismatch: student_sim {tuple(student_sim.shape)}, teacher_attention {tuple(teacher_attention.shape)}, "
            f"query_mask {tuple(query_mask.shape)}, passage_mask {tuple(passage_mask.shape)}"
        )
    pm = passage_mask.unsqueeze(1)  # [B, 1, Lp]
    a = teacher_attention.detach().float().clamp(min=0) * pm
    a = a / a.sum(dim=-1, keepdim=True).clamp(min=1e-12)
    log_ps = torch.log_softmax((student_sim.float() / tau).masked_fill(~pm, MASKED_SCORE), dim=-1)
    kl_rows = (a * (torch.log(a.clamp(min=1e-12)) - log_ps) * pm).sum(dim=-1)  # [B, Lq]
    qm = query_mask.float()
    per_pair = (kl_rows * qm).sum(dim=-1) / qm.sum(dim=-1).clamp(min=1)
    if reduction == "none":
        return per_pair
    return per_pair.sum() if reduction == "sum" else per_pair.mean()


class DistillLoss(nn.Module):
    """Thin module: distillation from a cross-encoder teacher (``--cross-encoder-teacher DIR``) on chains.

    For each chain in the batch the query is its anchor; the candidates are its steps (the positive is
    step 1, the closest rewrite) and the anchors of up to ``negatives`` other chains. The teacher scores
    every (anchor, candidate) pair; the student scores are cosines of the batch's embeddings. The word
    level uses (anchor, step 1): the student's token embeddings (a second forward through the student)
    and the teacher's last-layer attention averaged over heads; pairs whose tokens differ between the
    two tokenizers are skipped. ``forward(student_emb, teacher_emb, lengths, context)`` where context
    holds ``sentences``, ``student`` (the SentenceTransformer) and ``progress`` (0..1).
    """

    name = "distill"
    citation = CITATION
    uses_context = True

    def __init__(self, teacher_dir: str | None = None, tau: float = 0.05, tau_teacher: float = 1.0, word_weight: float = 0.1,
                 fn_start: float = 2.0, fn_end: float = 0.0, negatives: int = 4, max_seq_length: int = 128):
        super().__init__()
        self.teacher_dir = teacher_dir
        self.tau = check_positive("tau", tau)
        self.tau_teacher = check_positive("tau_teacher", tau_teacher)
        self.word_weight = check_non_negative("word_weight", word_weight)
        self.fn_start = check_non_negative("fn_start", fn_start)
        self.fn_end = check_non_negative("fn_end", fn_end)
        if self.fn_end > self.fn_start:
            raise ValueError(f"fn_end ({fn_end}) must not exceed fn_start ({fn_start}): the filter tightens over training")
        if not isinstance(negatives, int) or negatives < 0:
            raise ValueError(f"negatives must be an integer >= 0, got {negatives!r}")
        self.negatives = negatives
        self.max_seq_length = max_seq_length
        self._teacher: tuple[Any, Any] | None = None
        self.last_stats: dict[str, float] = {}

    def teacher(self):
        if self._teacher is None:
            if not self.teacher_dir:
                raise ValueError("loss 'distill' needs a cross-encoder teacher: pass --cross-encoder-teacher DIR "
                                 "(train one with posttrain --cross-encoder)")
            from ..cross_encoder import load_cross_encoder

            model, tok = load_cross_encoder(self.teacher_dir)
            model.eval().requires_grad_(False)
            self._teacher = (model, tok)
        return self._teacher

    def forward(self, student_emb: torch.Tensor, teacher_emb: torch.Tensor | None, lengths: torch.Tensor,
                context: dict[str, Any] | None = None) -> torch.Tensor:
        if context is None or "sentences" not in context:
            raise ValueError("loss 'distill' needs the batch's sentences (context)")
        sentences: list[str] = list(context["sentences"])
        lengths = as_lengths(lengths, student_emb.device)
        offsets = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)[:-1]]).tolist()
        lens = lengths.tolist()
        B = len(lens)
        lists: list[list[int]] = []
        for b in range(B):
            steps = list(range(offsets[b] + 1, offsets[b] + lens[b]))
            others = [offsets[(b + k) % B] for k in range(1, min(self.negatives, B - 1) + 1)]
            lists.append(steps + others)
        usable = [b for b in range(B) if lens[b] >= 2]
        if not usable:
            return student_emb.sum() * 0.0
        L = max(len(lists[b]) for b in usable)
        idx = torch.zeros((len(usable), L), dtype=torch.long, device=student_emb.device)
        mask = torch.zeros((len(usable), L), dtype=torch.bool, device=student_emb.device)
        for r, b in enumerate(usable):
            idx[r, : len(lists[b])] = torch.tensor(lists[b], device=student_emb.device)
            mask[r, : len(lists[b])] = True
        anchors = torch.tensor([offsets[b] for b in usable], device=student_emb.device)
        with torch.autocast(device_type=student_emb.device.type, enabled=False):
            e = F.normalize(student_emb.float(), dim=-1)
            s = (e[anchors].unsqueeze(1) * e[idx]).sum(-1)  # [R, L]
        model, tok = self.teacher()
        pairs = [(sentences[offsets[b]], sentences[j]) for r, b in enumerate(usable) for j in lists[b]]
        from ..cross_encoder import score_pairs

        flat = score_pairs(model, tok, pairs, max_length=self.max_seq_length).to(student_emb.device)
        t = torch.zeros((len(usable), L), device=student_emb.device)
        at = 0
        for r, b in enumerate(usable):
            n = len(lists[b])
            t[r, :n] = flat[at : at + n]
            at += n
        positive = torch.zeros(len(usable), dtype=torch.long, device=student_emb.device)
        progress = float(context.get("progress", 0.0))
        margin = fn_margin_schedule(progress, self.fn_start, self.fn_end)
        sentence = distill_sentence_loss(s, t, mask, positive, self.tau, self.tau_teacher, margin)
        keep = false_negative_keep(t, mask, positive, margin)
        self.last_stats = {"fn_margin": margin, "fn_dropped": float((mask & ~keep).sum())}
        if self.word_weight == 0 or context.get("student") is None:
            return sentence
        word = self._word_level(context["student"], [(sentences[offsets[b]], sentences[offsets[b] + 1]) for b in usable], student_emb.device)
        return sentence if word is None else sentence + self.word_weight * word

    def _word_level(self, student, pairs: list[tuple[str, str]], device: torch.device) -> torch.Tensor | None:
        model, tok = self.teacher()
        enc = tok([p[0] for p in pairs], [p[1] for p in pairs], padding=True, truncation=True, max_length=self.max_seq_length,
                  return_tensors="pt", return_token_type_ids=True)
        with torch.no_grad():
            out = model(**{k: v.to(model.device) for k, v in enc.items()}, output_attentions=True)
        attn = out.attentions[-1].mean(dim=1).float().to(device)  # [P, T, T]
        special = set(tok.all_special_ids)
        q_tok = student.preprocess([p[0] for p in pairs])
        p_tok = student.preprocess([p[1] for p in pairs])
        qf = student({k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in q_tok.items()})["token_embeddings"]
        pf = student({k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in p_tok.items()})["token_embeddings"]
        rows: list[tuple[int, list[int], list[int], list[int], list[int]]] = []
        for i in range(len(pairs)):
            ids = enc["input_ids"][i].tolist()
            types = enc["token_type_ids"][i].tolist()
            am = enc["attention_mask"][i].tolist()
            q_pos = [k for k, (x, ty, m) in enumerate(zip(ids, types, am)) if m and ty == 0 and x not in special]
            p_pos = [k for k, (x, ty, m) in enumerate(zip(ids, types, am)) if m and ty == 1 and x not in special]
            sq_pos = [k for k, (x, m) in enumerate(zip(q_tok["input_ids"][i].tolist(), q_tok["attention_mask"][i].tolist())) if m and x not in special]
            sp_pos = [k for k, (x, m) in enumerate(zip(p_tok["input_ids"][i].tolist(), p_tok["attention_mask"][i].tolist())) if m and x not in special]
            sq = [int(q_tok["input_ids"][i][k]) for k in sq_pos]
            sp = [int(p_tok["input_ids"][i][k]) for k in sp_pos]
            if not q_pos or not p_pos or sq != [ids[k] for k in q_pos] or sp != [ids[k] for k in p_pos]:
                continue  # different tokenizers (or truncation): no token alignment
            rows.append((i, q_pos, p_pos, sq_pos, sp_pos))
        self.last_stats["word_pairs"] = float(len(rows))
        if not rows:
            return None
        Lq = max(len(r[3]) for r in rows)
        Lp = max(len(r[4]) for r in rows)
        d = qf.shape[-1]
        qt = qf.new_zeros((len(rows), Lq, d))
        pt = pf.new_zeros((len(rows), Lp, d))
        ta = torch.zeros((len(rows), Lq, Lp), device=device)
        qm = torch.zeros((len(rows), Lq), dtype=torch.bool, device=device)
        pm = torch.zeros((len(rows), Lp), dtype=torch.bool, device=device)
        for r, (i, q_pos, p_pos, sq_pos, sp_pos) in enumerate(rows):
            nq, np_ = len(sq_pos), len(sp_pos)
            qt[r, :nq] = qf[i, sq_pos]
            pt[r, :np_] = pf[i, sp_pos]
            ta[r, :nq, :np_] = attn[i][q_pos][:, p_pos]
            qm[r, :nq] = True
            pm[r, :np_] = True
        return distill_word_loss(token_similarity(qt, pt), ta, qm, pm, self.tau)

    def config_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher_dir, "tau": self.tau, "tau_teacher": self.tau_teacher, "word_weight": self.word_weight,
                "fn_start": self.fn_start, "fn_end": self.fn_end, "negatives": self.negatives}
