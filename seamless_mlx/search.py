"""Search loops over one step function: greedy/sampling and beam search (transformers 4.56 semantics).

Both loops drive the same ``step(tokens [B, L], rows=None) -> (logits [B, V], hidden [B, L, D])``:
it runs the decoder on the new tokens against its KV cache, after gathering the cache's batch rows
``rows`` when given (beam search reorders its beams that way).  They know nothing of the model;
:mod:`seamless_mlx.generate` builds the step function, the processors and the sampler.

A finished row keeps receiving the pad token, so batched outputs line up with transformers'
``sequences``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence, Tuple

import mlx.core as mx

StepFn = Callable[..., Tuple[mx.array, mx.array]]

_BIG = -1.0e9  # transformers' masking offset in beam search: the same value resolves float ties alike


@dataclass
class DecodeStep:
    """One step of :func:`greedy_search`."""

    tokens: mx.array  # [B] token chosen at this step
    finished: mx.array  # [B] bool, row finished after this token
    hidden: mx.array  # [B, L, D] decoder states of the tokens *fed* at this step


def greedy_search(
    step: StepFn,
    prefix: mx.array,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    logits_processors: Sequence[Callable] = (),
    sampler: Optional[Callable[[mx.array], mx.array]] = None,
) -> Iterator[DecodeStep]:
    """Yield decode steps until every row has produced EOS or ``max_new_tokens`` are made.

    ``sampler(logits [B, V]) -> [B]`` picks the token (argmax when None).  Steps are pipelined with
    ``mx.async_eval``: the graph for step t+1 is queued before the host looks at step t's
    "all finished" flag.
    """
    B = prefix.shape[0]
    eos = mx.array(list(eos_token_ids))
    generated = prefix

    def choose(logits, generated, finished):
        logits = logits.astype(mx.float32)
        for proc in logits_processors:
            logits = proc(generated, logits)
        tok = sampler(logits) if sampler is not None else mx.argmax(logits, axis=-1)
        tok = mx.where(finished, pad_token_id, tok)
        return tok, finished | (tok[:, None] == eos[None, :]).any(axis=-1)

    logits, hidden = step(prefix)
    finished = mx.zeros((B,), dtype=mx.bool_)
    tok, finished = choose(logits, generated, finished)
    mx.async_eval(tok, finished)
    for n in range(max_new_tokens):
        generated = mx.concatenate([generated, tok[:, None]], axis=1)
        has_next = n + 1 < max_new_tokens
        if has_next:
            nlogits, nhidden = step(tok[:, None])
            ntok, nfinished = choose(nlogits, generated, finished)
            mx.async_eval(ntok, nfinished)
        yield DecodeStep(tok, finished, hidden)
        if not has_next or bool(finished.all().item()):
            return
        tok, finished, hidden = ntok, nfinished, nhidden


def _sorted_top(x: mx.array, k: int) -> mx.array:
    """Indices of the ``k`` largest entries along the last axis, best first."""
    return mx.argsort(-x, axis=-1)[..., :k]


def _gather(x: mx.array, idx: mx.array) -> mx.array:
    """``x[b, idx[b, j], ...]`` for ``x`` ``[B, N, ...]`` and ``idx`` ``[B, M]``."""
    while idx.ndim < x.ndim:
        idx = idx[..., None]
    return mx.take_along_axis(x, idx, axis=1)


def beam_search(
    step: StepFn,
    prefix: mx.array,
    max_new_tokens: int,
    num_beams: int,
    eos_token_ids: Sequence[int],
    pad_token_id: Optional[int],
    length_penalty: float = 1.0,
    early_stopping=False,
    num_return_sequences: int = 1,
    logits_processors: Sequence[Callable] = (),
    warper: Optional[Callable[[mx.array], mx.array]] = None,
) -> Tuple[mx.array, mx.array]:
    """Beam search, or beam sampling when ``warper`` is given; ``step`` runs on ``B * num_beams`` rows.

    The search keeps, per source item, ``num_beams`` *running* hypotheses and ``num_beams`` slots
    of *finished* ones, all in fixed-shape arrays so that one step is a handful of array ops:

    1. the step scores the running beams' last tokens; fp32 log-softmax; the processors (and, when
       sampling, the warper) act on the log-probs;
    2. each beam's running score is added and the ``K = max(2, 1 + #eos) * num_beams`` best
       continuations over ``num_beams * vocab`` are taken (sampling: ``K`` draws without
       replacement from the softmax of those accumulated scores, in draw order);
    3. continuations that end in EOS or reach the maximum length are "done"; the best
       ``num_beams`` that are not done become the next running beams (the cache rows follow);
    4. done continuations that were among the first ``num_beams`` of the ``K`` compete, with score
       ``sum_logprob / generated_len ** length_penalty``, for the finished slots;
    5. the search stops when no running beam can beat the worst finished one (``early_stopping``
       heuristic), when every item is full (``early_stopping=True``) or at the maximum length.

    Args:
        prefix: ``[B, P]`` int32 ids the decoder starts from (one row per source item).

    Returns:
        ``(sequences [B * num_return_sequences, L], scores [B * num_return_sequences])``, best first
        within each item; rows are padded with ``pad_token_id`` -- or, as in transformers, with the
        EOS id when the pad id is 0 or unset.
    """
    eos_ids = [int(e) for e in eos_token_ids]
    early_stopping = "never" if early_stopping == "never" else bool(early_stopping)
    # transformers: ``pad or eos[0] if eos is not None else -1`` -- a pad id of 0 falls through to EOS
    fill = (int(pad_token_id) if pad_token_id else eos_ids[0]) if eos_ids else -1

    B, P = prefix.shape
    nb = num_beams
    K = max(2, 1 + len(eos_ids)) * nb
    T = P + max_new_tokens  # max_length

    pos = mx.arange(T)
    prefix_full = mx.concatenate([prefix.astype(mx.int32), mx.full((B, T - P), fill, dtype=mx.int32)], axis=1)
    running_seq = mx.broadcast_to(prefix_full[:, None, :], (B, nb, T))  # [B, nb, T]
    # only beam 0 is live at first: the other beams start at -1e9 so that step 0 does not pick
    # the same continuation nb times
    first = mx.where(mx.arange(nb) == 0, 0.0, _BIG).astype(mx.float32)
    running_scores = mx.broadcast_to(first[None, :], (B, nb))  # [B, nb]
    fin_seq = running_seq
    fin_scores = mx.full((B, nb), _BIG, dtype=mx.float32)
    fin_len = mx.zeros((B, nb), dtype=mx.int32)  # generated tokens of a finished slot (0 = empty)
    is_fin = mx.zeros((B, nb), dtype=mx.bool_)
    unsatisfied = mx.ones((B, 1), dtype=mx.bool_)
    top_mask = mx.arange(K) < nb  # only the first num_beams continuations may finish
    eos_arr = mx.array(eos_ids, dtype=mx.int32) if eos_ids else None
    row_offset = (mx.arange(B) * nb)[:, None]

    tokens = mx.repeat(prefix.astype(mx.int32), nb, axis=0)  # [B*nb, P]
    src = None
    cur_len = P
    while True:
        logits, _ = step(tokens, src)
        logits = logits.astype(mx.float32)  # [B*nb, V]
        V = logits.shape[-1]
        logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        if logits_processors:
            generated = running_seq[:, :, :cur_len].reshape(B * nb, cur_len)
            for proc in logits_processors:
                logp = proc(generated, logp)
        if warper is not None:
            logp = warper(logp)
        acc = (logp.reshape(B, nb, V) + running_scores[:, :, None]).reshape(B, nb * V)

        # ---- K continuations over all beams of an item
        if warper is not None:
            # K draws without replacement from softmax(acc), in draw order (Gumbel top-k)
            cand = _sorted_top(acc + mx.random.gumbel(acc.shape), K)
        else:
            cand = _sorted_top(acc, K)
        cand_scores = mx.take_along_axis(acc, cand, axis=1)  # [B, K]
        cand_beam = cand // V
        cand_tok = (cand % V).astype(mx.int32)
        cand_seq = _gather(running_seq, cand_beam)  # [B, K, T]
        cand_seq = mx.where(pos == cur_len, cand_tok[:, :, None], cand_seq)
        cand_src = cand_beam + row_offset  # flat cache row each continuation extends

        hits = mx.zeros((B, K), dtype=mx.bool_) if cur_len + 1 < T else mx.ones((B, K), dtype=mx.bool_)
        if eos_arr is not None:
            hits = hits | (cand_tok[:, :, None] == eos_arr).any(axis=-1)

        # ---- next running beams: best continuations that are not done
        run_scores = cand_scores + hits.astype(mx.float32) * _BIG
        nxt = _sorted_top(run_scores, nb)
        running_seq = _gather(cand_seq, nxt)
        running_scores = _gather(run_scores, nxt)
        src = _gather(cand_src, nxt).reshape(B * nb)

        # ---- finished hypotheses
        just_done = hits & top_mask[None, :]
        gen_len = cur_len + 1 - P
        new_scores = cand_scores / (gen_len**length_penalty)
        full = is_fin.all(axis=-1, keepdims=True) & (early_stopping is True)
        new_scores = new_scores + full.astype(mx.float32) * _BIG
        new_scores = new_scores + (~unsatisfied).astype(mx.float32) * _BIG
        new_scores = new_scores + (~just_done).astype(mx.float32) * _BIG
        m_scores = mx.concatenate([fin_scores, new_scores], axis=1)
        m_seq = mx.concatenate([fin_seq, cand_seq], axis=1)
        m_len = mx.concatenate([fin_len, mx.full((B, K), gen_len, dtype=mx.int32)], axis=1)
        m_fin = mx.concatenate([is_fin, just_done], axis=1)
        keep = _sorted_top(m_scores, nb)
        fin_scores = _gather(m_scores, keep)
        fin_seq = _gather(m_seq, keep)
        fin_len = _gather(m_len, keep)
        is_fin = _gather(m_fin, keep)

        # ---- stopping
        cur_len += 1
        if early_stopping == "never" and length_penalty > 0.0:
            best_len = T - P
        else:
            best_len = cur_len - P
        best_running = running_scores[:, :1] / (best_len**length_penalty)
        worst_fin = mx.where(is_fin, fin_scores.min(axis=1, keepdims=True), _BIG)
        unsatisfied = unsatisfied & (best_running > worst_fin).any(axis=-1, keepdims=True)
        go_on = unsatisfied.any() & ~(is_fin.all() & (early_stopping is True)) & ~hits.all()

        tokens = running_seq[:, :, cur_len - 1].reshape(B * nb, 1)
        mx.eval(go_on, tokens, src, running_scores, fin_scores, fin_seq, fin_len, is_fin, unsatisfied)
        if not go_on.item():
            break

    # ---- outputs: best num_return_sequences finished hypotheses per item
    n = num_return_sequences
    seqs = fin_seq[:, :n].reshape(B * n, T)
    scores = fin_scores[:, :n].reshape(B * n)
    out_len = P + int(fin_len[:, :n].max().item())
    return seqs[:, :out_len], scores
