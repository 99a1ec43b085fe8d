"""Text decoding: greedy search on the KV cache (beam search and sampling build on the same pieces).

The decoder starts like transformers: ``[decoder_start_token_id, <tgt_lang code>]``; a finished row
keeps receiving ``pad_token_id`` so that batched outputs line up with transformers' ``sequences``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional

import mlx.core as mx


@dataclass
class DecodeStep:
    """One decoding step as yielded by :func:`greedy_steps`."""

    tokens: mx.array  # [B] token chosen at this step
    finished: mx.array  # [B] bool, row finished after this token
    hidden: mx.array  # [B, D] decoder state of the token *fed* at this step


def greedy_steps(
    step_fn: Callable[[mx.array], tuple],
    prefix: mx.array,
    max_new_tokens: int,
    eos_token_id,
    pad_token_id: int,
    logits_processors: Optional[List[Callable]] = None,
    sampler: Optional[Callable[[mx.array], mx.array]] = None,
) -> Iterator[DecodeStep]:
    """Yield decode steps until every row has produced EOS or ``max_new_tokens`` are made.

    ``step_fn(tokens [B, L]) -> (logits [B, V] of the last position, hidden [B, L, D])`` runs the
    decoder on new tokens against its cache.  Steps are pipelined with ``mx.async_eval``: the graph
    for step t+1 is queued before the host looks at step t's "all finished" flag.
    """
    processors = logits_processors or []
    B = prefix.shape[0]
    eos_ids = mx.array(eos_token_id if isinstance(eos_token_id, (list, tuple)) else [eos_token_id])
    generated = prefix

    def choose(logits, generated, finished):
        logits = logits.astype(mx.float32)
        for proc in processors:
            logits = proc(generated, logits)
        tok = sampler(logits) if sampler is not None else mx.argmax(logits, axis=-1)
        tok = mx.where(finished, pad_token_id, tok)
        return tok, finished | (tok[:, None] == eos_ids[None, :]).any(axis=-1)

    logits, hidden = step_fn(prefix)
    finished = mx.zeros((B,), dtype=mx.bool_)
    tok, finished = choose(logits, generated, finished)
    hid = hidden
    mx.async_eval(tok, finished)
    for n in range(max_new_tokens):
        generated = mx.concatenate([generated, tok[:, None]], axis=1)
        has_next = n + 1 < max_new_tokens
        if has_next:
            nlogits, nhidden = step_fn(tok[:, None])
            ntok, nfinished = choose(nlogits, generated, finished)
            mx.async_eval(ntok, nfinished)
        yield DecodeStep(tok, finished, hid)
        if not has_next or bool(finished.all().item()):
            return
        tok, finished, hid = ntok, nfinished, nhidden
