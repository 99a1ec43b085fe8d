"""Beam search (and beam sampling) for the text decoder, with transformers 4.56's semantics.

The search keeps, per source item, ``num_beams`` *running* hypotheses and ``num_beams`` slots of
*finished* hypotheses, all in fixed-shape arrays so that one step is a handful of array ops:

1. the decoder scores the running beams' last tokens; fp32 log-softmax; the logits processors (and,
   when sampling, temperature / top-k / top-p with ``min_keep = #eos + 1``) act on the log-probs;
2. each beam's running score is added and the ``K = max(2, 1 + #eos) * num_beams`` best
   continuations over ``num_beams * vocab`` are taken (sampling: ``K`` draws without replacement
   from the softmax of those accumulated scores, in draw order);
3. continuations that end in EOS or reach the maximum length are "done"; the best ``num_beams``
   that are not done become the next running beams (the KV cache rows are gathered accordingly);
4. done continuations that were among the first ``num_beams`` of the ``K`` compete, with score
   ``sum_logprob / generated_len ** length_penalty``, for the finished slots;
5. the search stops when no running beam can beat the worst finished one (``early_stopping``
   heuristic), when every item is full (``early_stopping=True``) or at the maximum length.

Masking uses the same ``-1e9`` offsets as transformers so that float ties resolve alike.  Output
rows are padded with ``pad_token_id`` -- or, as in transformers, with the EOS id when the pad id is
0 or unset.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import mlx.core as mx

from .logits import build_processors, warp

_BIG = -1.0e9


def _get(opts: Dict[str, Any], gen, name: str):
    v = opts.get(name)
    return getattr(gen, name, None) if v is None else v


def _eos_list(eos) -> List[int]:
    if eos is None:
        return []
    if isinstance(eos, (list, tuple)):
        return [int(e) for e in eos]
    return [int(eos)]


def _sorted_top(x: mx.array, k: int) -> mx.array:
    """Indices of the ``k`` largest entries along the last axis, best first."""
    return mx.argsort(-x, axis=-1)[..., :k]


def _gather(x: mx.array, idx: mx.array) -> mx.array:
    """``x[b, idx[b, j], ...]`` for ``x`` ``[B, N, ...]`` and ``idx`` ``[B, M]``."""
    while idx.ndim < x.ndim:
        idx = idx[..., None]
    return mx.take_along_axis(x, idx, axis=1)


def beam_search(
    model,
    memory: mx.array,
    memory_mask: Optional[mx.array],
    decoder_prefix: mx.array,
    opts: Dict[str, Any],
    max_new: int,
    collect_hidden: bool,
):
    """Beam search over ``model.text_decoder``; returns a ``GenerateOutput``.

    Args:
        memory: encoder output ``[B, S, D]``; ``memory_mask``: its ``[B, S]`` 1/0 mask or None.
        decoder_prefix: ``[B, P]`` int32 ids the decoder starts from (start token, language code).
        opts: generation keywords (unset ones come from ``model.generation_config``).
        max_new: the most tokens to generate after the prefix.
        collect_hidden: also return the decoder's final states for ``sequences[:, :-1]``.

    Returns:
        ``GenerateOutput`` with ``sequences`` ``[B * num_return_sequences, L]`` (best first within
        each item), ``sequences_scores`` ``[B * num_return_sequences]`` (length-penalised sums of
        processed log-probs) and, with ``collect_hidden``, ``decoder_hidden_states``
        ``[B * num_return_sequences, L - 1, D]``.
    """
    from .model import GenerateOutput

    gen = model.generation_config
    num_beams = int(_get(opts, gen, "num_beams"))
    num_return = int(_get(opts, gen, "num_return_sequences") or 1)
    do_sample = bool(_get(opts, gen, "do_sample"))
    length_penalty = _get(opts, gen, "length_penalty")
    length_penalty = 1.0 if length_penalty is None else length_penalty
    early_stopping = _get(opts, gen, "early_stopping")
    early_stopping = "never" if early_stopping == "never" else bool(early_stopping)
    eos_ids = _eos_list(_get(opts, gen, "eos_token_id"))
    pad = _get(opts, gen, "pad_token_id")

    if num_return > num_beams:
        raise ValueError(
            f"num_return_sequences ({num_return}) must be at most num_beams ({num_beams}) in beam search."
        )
    max_new = int(max_new)
    if max_new < 1:
        raise ValueError(f"beam search needs max_new_tokens >= 1, got {max_new}.")

    # transformers: ``pad or eos[0] if eos is not None else -1`` -- a pad id of 0 falls through to EOS
    if eos_ids:
        fill = int(pad) if pad else eos_ids[0]
    else:
        fill = -1

    B, P = decoder_prefix.shape
    nb = num_beams
    K = max(2, 1 + len(eos_ids)) * nb
    T = P + max_new  # max_length
    decoder = model.text_decoder

    # ---- expand once: row b * nb + j is beam j of item b
    mem = mx.repeat(memory, nb, axis=0)
    mem_mask = None if memory_mask is None else mx.repeat(memory_mask, nb, axis=0)
    cache = decoder.make_cache(mem)

    processors = build_processors(opts, gen, prefix_len=P)
    if do_sample:
        temperature = _get(opts, gen, "temperature")
        top_k = _get(opts, gen, "top_k")
        top_p = _get(opts, gen, "top_p")
        min_keep = len(eos_ids) + 1 if eos_ids else 2

    pos = mx.arange(T)
    prefix_full = mx.concatenate(
        [decoder_prefix.astype(mx.int32), mx.full((B, T - P), fill, dtype=mx.int32)], axis=1
    )
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

    tokens = decoder_prefix.astype(mx.int32)
    tokens = mx.repeat(tokens, nb, axis=0)  # [B*nb, P]
    cur_len = P
    while True:
        h = decoder(tokens, model.shared, cache, mem_mask)
        logits = model.lm_logits(h[:, -1, :]).astype(mx.float32)  # [B*nb, V]
        V = logits.shape[-1]
        logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        if processors:
            generated = running_seq[:, :, :cur_len].reshape(B * nb, cur_len)
            for proc in processors:
                logp = proc(generated, logp)
        if do_sample:
            logp = warp(logp, temperature, top_k, top_p, min_keep=min_keep)
        acc = (logp.reshape(B, nb, V) + running_scores[:, :, None]).reshape(B, nb * V)

        # ---- K continuations over all beams of an item
        if do_sample:
            # K draws without replacement from softmax(acc), in draw order (Gumbel top-k)
            keys = acc + mx.random.gumbel(acc.shape)
            cand = _sorted_top(keys, K)
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
        for kv, _ in cache:
            kv.reorder(src)

    # ---- outputs: best num_return finished hypotheses per item
    seqs = fin_seq[:, :num_return].reshape(B * num_return, T)
    scores = fin_scores[:, :num_return].reshape(B * num_return)
    out_len = P + int(fin_len[:, :num_return].max().item())
    seqs = seqs[:, :out_len]

    states = None
    if collect_hidden:
        rep_mem = mx.repeat(memory, num_return, axis=0)
        rep_mask = None if memory_mask is None else mx.repeat(memory_mask, num_return, axis=0)
        states = decoder(seqs[:, :-1], model.shared, decoder.make_cache(rep_mem), rep_mask)
    return GenerateOutput(
        sequences=seqs, sequences_scores=scores, decoder_hidden_states=states, encoder_hidden_states=memory
    )
