"""Logits processors and samplers: plain callables, with transformers 4.56's semantics.

A *processor* maps ``(generated [B, L] ids, logits [B, V] float32) -> logits``; a *warper* maps
``logits -> logits`` (temperature, top-k, top-p); a *sampler* maps ``logits -> [B]`` token ids.
:func:`make_logits_processors` builds the list in transformers' order: repetition penalty, n-gram
blocking, unknown-token blocking, min-new-tokens.  A new processor is one function here plus one
line in that builder.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import mlx.core as mx
import numpy as np

NEG_INF = float("-inf")

Processor = Callable[[mx.array, mx.array], mx.array]


def repetition_penalty(penalty: float) -> Processor:
    """CTRL-style penalty on every token already in the sequence (decoder prefix included)."""

    def proc(generated: mx.array, logits: mx.array) -> mx.array:
        picked = mx.take_along_axis(logits, generated, axis=1)
        picked = mx.where(picked < 0, picked * penalty, picked / penalty)
        return mx.put_along_axis(logits, generated, picked, axis=1)

    return proc


def banned_ngram_tokens(rows: np.ndarray, n: int) -> List[List[int]]:
    """For each row, the tokens that would repeat an n-gram already present in that row."""
    out = []
    for row in rows:
        row = row.tolist()
        if len(row) + 1 < n:
            out.append([])
            continue
        seen: Dict[tuple, List[int]] = {}
        for i in range(len(row) - n + 1):
            seen.setdefault(tuple(row[i : i + n - 1]), []).append(row[i + n - 1])
        out.append(seen.get(tuple(row[len(row) - n + 1 :]), []) if n > 1 else sorted(set(row)))
    return out


def no_repeat_ngram(n: int) -> Processor:
    """Forbid any n-gram from occurring twice (host-side: it reads the ids each step)."""

    def proc(generated: mx.array, logits: mx.array) -> mx.array:
        banned = banned_ngram_tokens(np.array(generated), n)
        if not any(banned):
            return logits
        mask = np.zeros(logits.shape, dtype=bool)
        for b, toks in enumerate(banned):
            mask[b, toks] = True
        return mx.where(mx.array(mask), NEG_INF, logits)

    return proc


def _token_column(ids: Sequence[int]) -> Callable[[int], mx.array]:
    """``V -> [1, V]`` bool, True at ``ids``; built once per vocabulary size, not once per step."""
    ids_arr = mx.array(list(ids), dtype=mx.int32)
    columns: Dict[int, mx.array] = {}

    def column(V: int) -> mx.array:
        if V not in columns:
            columns[V] = (mx.arange(V)[:, None] == ids_arr[None, :]).any(axis=-1)[None, :]
        return columns[V]

    return column


def suppress_tokens(token_ids: Sequence[int]) -> Processor:
    """Set the logits of ``token_ids`` to -inf at every step (seamless_communication's
    ``--text_unk_blocking`` is this with the unknown token)."""
    column = _token_column(token_ids)

    def proc(generated: mx.array, logits: mx.array) -> mx.array:
        return mx.where(column(logits.shape[-1]), NEG_INF, logits)

    return proc


def min_new_tokens(prefix_len: int, count: int, eos_token_ids: Sequence[int]) -> Processor:
    """Forbid EOS until ``count`` tokens follow the decoder prefix."""
    column = _token_column(eos_token_ids)

    def proc(generated: mx.array, logits: mx.array) -> mx.array:
        if generated.shape[1] - prefix_len >= count:
            return logits
        return mx.where(column(logits.shape[-1]), NEG_INF, logits)

    return proc


def make_logits_processors(options, prefix_len: int) -> List[Processor]:
    """The processors ``options`` (a :class:`~seamless_mlx.generate.GenerateOptions`) ask for."""
    procs = []
    if options.repetition_penalty != 1.0:
        procs.append(repetition_penalty(options.repetition_penalty))
    if options.no_repeat_ngram_size:
        procs.append(no_repeat_ngram(options.no_repeat_ngram_size))
    if options.unk_blocking:
        procs.append(suppress_tokens([options.unk_token_id]))
    if options.min_new_tokens:
        procs.append(min_new_tokens(prefix_len, options.min_new_tokens, options.eos_token_id))
    return procs


def make_warper(temperature=None, top_k=None, top_p=None, min_keep: int = 1) -> Callable[[mx.array], mx.array]:
    """Temperature, top-k and top-p filtering as one ``logits -> logits`` callable (filtered
    entries become -inf); ``min_keep`` tokens always survive top-k/top-p."""

    def warp(logits: mx.array) -> mx.array:
        if temperature is not None and temperature != 1.0:
            logits = logits / temperature
        V = logits.shape[-1]
        if top_k:
            k = min(max(int(top_k), min_keep), V)
            kth = mx.sort(logits, axis=-1)[..., V - k][..., None]
            logits = mx.where(logits < kth, NEG_INF, logits)
        if top_p is not None and top_p < 1.0:
            order = mx.argsort(logits, axis=-1)  # ascending, as transformers
            sorted_logits = mx.take_along_axis(logits, order, axis=-1)
            cum = mx.cumsum(mx.softmax(sorted_logits, axis=-1), axis=-1)
            remove_sorted = cum <= (1 - top_p)
            keep_tail = mx.arange(V) >= V - min_keep
            remove_sorted = mx.where(keep_tail[None, :], False, remove_sorted)
            remove = mx.put_along_axis(mx.zeros(logits.shape, dtype=mx.bool_), order, remove_sorted, axis=-1)
            logits = mx.where(remove, NEG_INF, logits)
        return logits

    return warp


def make_sampler(warper: Optional[Callable[[mx.array], mx.array]]) -> Callable[[mx.array], mx.array]:
    """``logits [B, V] -> [B]`` ids: argmax without a warper, else a draw from the warped softmax."""
    if warper is None:
        return lambda logits: mx.argmax(logits, axis=-1)
    return lambda logits: mx.random.categorical(warper(logits), axis=-1)
