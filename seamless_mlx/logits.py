"""Logits processors and samplers, in transformers' order and with its semantics.

Processors take ``(generated [B, L] ids, logits [B, V] float32)`` and return new logits.  Order
(as transformers 4.56 builds them): repetition penalty, n-gram blocking, min-new-tokens, then for
sampling: temperature, top-k, top-p.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List

import mlx.core as mx
import numpy as np

NEG_INF = float("-inf")


def repetition_penalty(penalty: float) -> Callable:
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


def no_repeat_ngram(n: int) -> Callable:
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


def min_new_tokens(prefix_len: int, count: int, eos_token_id) -> Callable:
    """Forbid EOS (one id or a list) until ``count`` tokens follow the decoder prefix."""
    eos = mx.array(eos_token_id if isinstance(eos_token_id, (list, tuple)) else [eos_token_id])
    columns = {}  # vocabulary size -> [1, V] bool, built once (not once per step)

    def proc(generated: mx.array, logits: mx.array) -> mx.array:
        if generated.shape[1] - prefix_len >= count:
            return logits
        V = logits.shape[-1]
        if V not in columns:
            columns[V] = (mx.arange(V)[:, None] == eos[None, :]).any(axis=-1)[None, :]
        return mx.where(columns[V], NEG_INF, logits)

    return proc


def build_processors(opts: Dict[str, Any], gen, prefix_len: int) -> List[Callable]:
    def get(name):
        v = opts.get(name)
        return getattr(gen, name) if v is None else v

    procs = []
    rp = get("repetition_penalty")
    if rp is not None and float(rp) != 1.0:
        if float(rp) <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {rp}")
        procs.append(repetition_penalty(float(rp)))
    ngram = get("no_repeat_ngram_size")
    if ngram:
        procs.append(no_repeat_ngram(int(ngram)))
    mnt = get("min_new_tokens")
    if mnt:
        procs.append(min_new_tokens(prefix_len, int(mnt), get("eos_token_id")))
    return procs


def warp(logits: mx.array, temperature=None, top_k=None, top_p=None, min_keep: int = 1) -> mx.array:
    """Temperature, top-k and top-p filtering (filtered entries become -inf)."""
    if temperature is not None and float(temperature) != 1.0:
        if float(temperature) <= 0:
            raise ValueError(f"temperature must be > 0 for sampling, got {temperature}")
        logits = logits / float(temperature)
    V = logits.shape[-1]
    if top_k is not None and int(top_k) != 0:
        k = min(max(int(top_k), min_keep), V)
        kth = mx.sort(logits, axis=-1)[..., V - k][..., None]
        logits = mx.where(logits < kth, NEG_INF, logits)
    if top_p is not None and float(top_p) < 1.0:
        order = mx.argsort(logits, axis=-1)  # ascending, as transformers
        sorted_logits = mx.take_along_axis(logits, order, axis=-1)
        cum = mx.cumsum(mx.softmax(sorted_logits, axis=-1), axis=-1)
        remove_sorted = cum <= (1 - float(top_p))
        keep_tail = mx.arange(V) >= V - min_keep
        remove_sorted = mx.where(keep_tail[None, :], False, remove_sorted)
        remove = mx.put_along_axis(mx.zeros(logits.shape, dtype=mx.bool_), order, remove_sorted, axis=-1)
        logits = mx.where(remove, NEG_INF, logits)
    return logits


def make_sampler(opts: Dict[str, Any], gen, min_keep: int = 1) -> Callable[[mx.array], mx.array]:
    def get(name):
        v = opts.get(name)
        return getattr(gen, name) if v is None else v

    temperature, top_k, top_p = get("temperature"), get("top_k"), get("top_p")

    def sample(logits: mx.array) -> mx.array:
        return mx.random.categorical(warp(logits, temperature, top_k, top_p, min_keep), axis=-1)

    return sample
