"""NLLB-style text encoder and text decoder.

Both read the model's shared, sqrt(d)-scaled token embedding; the decoder's LM head is that same
embedding used as a linear map (``Embedding.as_linear``), so the tied weight is stored once.
Parameter names mirror ``text_encoder.*`` / ``text_decoder.*`` of the Hugging Face checkpoint.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import List, Optional

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from .cache import CrossCache, KVCache
from .config import ModelConfig
from .layers import Attention, EncoderLayer, FeedForward, SinusoidalPositions, additive_mask, padding_bias


class TextEncoder(nn.Module):
    """Text encoder: ``[B, S]`` ids -> ``[B, S, D]`` states (final layer norm applied)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        d = config.hidden_size
        self.embed_scale = math.sqrt(d) if config.scale_embedding else 1.0
        self.layers = [
            EncoderLayer(d, config.encoder_attention_heads, config.encoder_ffn_dim, config.activation_function)
            for _ in range(config.encoder_layers)
        ]
        self.layer_norm = nn.LayerNorm(d)
        self._positions = SinusoidalPositions(d, config.pad_token_id)

    def __call__(self, input_ids: mx.array, embed: nn.Embedding, attention_mask: Optional[mx.array] = None):
        x = embed(input_ids) * self.embed_scale
        x = x + self._positions.from_ids(input_ids).astype(x.dtype)
        mask = padding_bias(attention_mask, x.dtype)
        for layer in self.layers:
            x = layer(x, mask)
        return self.layer_norm(x)


class DecoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, ffn_dim: int, activation: str):
        super().__init__()
        self.self_attn = Attention(d, heads)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.cross_attention = Attention(d, heads)
        self.cross_attention_layer_norm = nn.LayerNorm(d)
        self.ffn = FeedForward(d, ffn_dim, activation)
        self.ffn_layer_norm = nn.LayerNorm(d)

    def __call__(self, x, self_mask, cross_mask, cache: KVCache, cross: CrossCache):
        x = x + self.self_attn(self.self_attn_layer_norm(x), self_mask, cache=cache)
        x = x + self.cross_attention(self.cross_attention_layer_norm(x), cross_mask, cache=cross)
        return x + self.ffn(self.ffn_layer_norm(x))


class TextDecoder(nn.Module):
    """Autoregressive text decoder with a KV cache.

    ``make_cache(memory)`` computes the cross-attention keys/values once; each call then feeds the
    new tokens ``[B, L]`` and returns their final (layer-normed) states ``[B, L, D]``.
    :class:`DecoderSteps` runs it (with the LM head) as the searches' step function.
    """

    # one-token steps as one compiled graph over fixed-shape caches; the CPU twin decides by size
    compile_steps = True

    def __init__(self, config: ModelConfig):
        super().__init__()
        d = config.hidden_size
        self.embed_scale = math.sqrt(d) if config.scale_embedding else 1.0
        self.layers = [
            DecoderLayer(d, config.decoder_attention_heads, config.decoder_ffn_dim, config.activation_function)
            for _ in range(config.decoder_layers)
        ]
        self.layer_norm = nn.LayerNorm(d)
        self._positions = SinusoidalPositions(d, config.pad_token_id)

    def decoding(self, rows: int):
        """A context held around a whole search whose steps run ``rows`` decoder rows (a batch
        times its beams).  Nothing here; the CPU twin picks its GEMM library by the row count."""
        return nullcontext()

    def make_cache(self, memory: mx.array):
        """Per-layer ``(KVCache, CrossCache)`` for encoder output ``memory`` ``[B, S, D]``."""
        return [(KVCache(), CrossCache(*layer.cross_attention.kv(memory))) for layer in self.layers]

    def __call__(
        self,
        input_ids: mx.array,
        embed: nn.Embedding,
        cache: List,
        memory_mask: Optional[mx.array] = None,
    ) -> mx.array:
        offset = cache[0][0].offset
        L = input_ids.shape[1]
        x = embed(input_ids) * self.embed_scale
        x = x + self._positions.from_ids(input_ids, offset).astype(x.dtype)
        if L > 1:
            # causal over the new block; everything already cached is visible
            q = mx.arange(offset, offset + L)[:, None]
            kpos = mx.arange(offset + L)[None, :]
            self_mask = additive_mask(kpos <= q, x.dtype)
        else:
            self_mask = None
        return self._layers(x, self_mask, cross_bias(memory_mask, x.dtype), cache)

    def _layers(self, x, self_mask, cross_mask, cache):
        for layer, (kv, cross) in zip(self.layers, cache):
            x = layer(x, self_mask, cross_mask, kv, cross)
        return self.layer_norm(x)

    def fixed_step(self, input_ids, embed, start, table, cross_mask, cross, buffers):
        """The decoder on ``input_ids`` ``[B, L]`` against fixed-shape caches: a pure function of
        arrays, so that ``mx.compile`` can trace it once per shape.

        ``start``: int32 position of the first new token; ``table``: the position table, at least
        ``start + L + 2`` rows past the padding index; ``cross``: per layer ``(keys, values)`` of
        the memory; ``buffers``: per layer self-attention ``(keys, values)``
        ``[B, H, capacity, Dh]``, positions before ``start`` filled.  Returns the states
        ``[B, L, D]`` and the buffers with the new keys/values written at ``start``."""
        L = input_ids.shape[1]
        x = embed(input_ids) * self.embed_scale
        x = x + table[self._positions.ids(input_ids, start)].astype(x.dtype)
        # each query sees the positions up to its own; the unwritten rest of the buffers is hidden
        keep = mx.arange(buffers[0][0].shape[2])[None, :] <= (start + mx.arange(L))[:, None]
        cache = [(KVCache.fixed(k, v, start), CrossCache(ck, cv)) for (k, v), (ck, cv) in zip(buffers, cross)]
        h = self._layers(x, additive_mask(keep, x.dtype), cross_mask, cache)
        return h, [kv.state for kv, _ in cache]


def cross_bias(memory_mask: Optional[mx.array], dtype) -> Optional[mx.array]:
    """The memory mask as an additive bias (a 4-D mask is taken as one already)."""
    return memory_mask if memory_mask is None or memory_mask.ndim == 4 else padding_bias(memory_mask, dtype)


class DecoderSteps:
    """The step function the searches run: decoder, final norm and LM head on the new tokens
    against a fresh KV cache for ``memory`` ``[B, S, D]``.

    ``step(tokens [B, L], rows=None) -> (logits [B, V] of the last position, hidden [B, L, D])``;
    ``rows`` ``[B]`` first gathers the cache's batch rows (beam search's reordering).

    With ``compiled`` (default: the decoder's ``compile_steps``), a one-token step after the first
    call runs :meth:`TextDecoder.fixed_step` and the LM head as one ``mx.compile``-d graph: the
    cache buffers keep their shape from step to step (they grow by whole ``KVCache.step`` blocks,
    each new capacity compiled once), the write position is an input, and the cross-attention
    keys/values are inputs computed once.  Other calls (the prefix, a whole sequence) run eagerly.
    Compiled, the memory is padded (and masked) to a multiple of ``memory_block`` positions, so
    that sources of similar lengths share one compiled graph instead of tracing one each.
    """

    memory_block = 64

    def __init__(self, decoder: TextDecoder, embed: nn.Embedding, memory: mx.array,
                 memory_mask: Optional[mx.array] = None, compiled: Optional[bool] = None):
        self.decoder, self.embed = decoder, embed
        self.compiled = decoder.compile_steps if compiled is None else compiled
        if self.compiled:
            memory, memory_mask = pad_memory(memory, memory_mask, self.memory_block)
        self.memory_mask = memory_mask
        self.cache = decoder.make_cache(memory)
        self._compiled = {}
        self._bias = cross_bias(memory_mask, memory.dtype)  # the compiled steps' memory mask, made once

    def __call__(self, tokens: mx.array, rows: Optional[mx.array] = None):
        kv0 = self.cache[0][0]
        if not (self.compiled and tokens.shape[1] == 1 and kv0.keys is not None):
            if rows is not None:
                for kv, _ in self.cache:  # cross-attention rows are the same within an item
                    kv.reorder(rows)
            h = self.decoder(tokens, self.embed, self.cache, self.memory_mask)
            return self.embed.as_linear(h[:, -1, :]), h
        B, L = tokens.shape
        offset = kv0.offset
        for kv, _ in self.cache:
            kv.reserve(kv.keys.shape[0], kv.keys.shape[1], L, kv.keys.shape[3], kv.keys.dtype)
        bias = self._bias
        args = [tokens, mx.array(offset, dtype=mx.int32), self.decoder._positions.table_for(L, offset)]
        args += [a for a in (bias, rows) if a is not None]
        for kv, cross in self.cache:
            args += [cross.keys, cross.values]
        for kv, _ in self.cache:
            args += [kv.keys, kv.values]
        kind = (bias is not None, rows is not None)
        fn = self._compiled.get(kind)
        if fn is None:  # looked up once per search: the weights do not change during one
            fn = self._compiled[kind] = compiled_step(self.decoder, self.embed, *kind)
        logits, h, *buffers = fn(*args)
        for i, (kv, _) in enumerate(self.cache):
            kv.keys, kv.values = buffers[2 * i], buffers[2 * i + 1]
            kv.offset = offset + L
        return logits, h


def pad_memory(memory: mx.array, memory_mask: Optional[mx.array], block: int):
    """``memory`` ``[B, S, D]`` zero-padded to a multiple of ``block`` positions, and its mask
    (1/0 ``[B, S]`` or additive ``[B, 1, 1, S]``; made when None) hiding the padding."""
    B, S, _ = memory.shape
    pad = -S % block
    if not pad:
        return memory, memory_mask
    memory = mx.pad(memory, [(0, 0), (0, pad), (0, 0)])
    if memory_mask is None:
        memory_mask = mx.ones((B, S), dtype=mx.int32)
    if memory_mask.ndim == 4:
        hidden = mx.array(mx.finfo(memory_mask.dtype).min, dtype=memory_mask.dtype)
        return memory, mx.pad(memory_mask, [(0, 0), (0, 0), (0, 0), (0, pad)], constant_values=hidden)
    return memory, mx.pad(memory_mask, [(0, 0), (0, pad)])


def compiled_step(decoder: TextDecoder, embed: nn.Embedding, with_mask: bool, with_rows: bool):
    """``mx.compile``-d ``(tokens, start, table, [cross bias], [rows], cross k/v..., self k/v...)
    -> (logits, states, self k/v...)``, kept on the decoder per kind of inputs.

    The weights are constants of the compiled graph: it is made again when any of them is no
    longer the same array (weights loaded, quantized or fused since)."""
    weights = tuple(a for _, a in tree_flatten((decoder.parameters(), embed.parameters())))
    store = decoder.__dict__.setdefault("_compiled_steps", {})
    key = (with_mask, with_rows)
    hit = store.get(key)
    if hit is not None and len(hit[0]) == len(weights) and all(a is b for a, b in zip(hit[0], weights)):
        return hit[1]
    n = len(decoder.layers)

    def step(tokens, start, table, *rest):
        rest = list(rest)
        cross_mask = rest.pop(0) if with_mask else None
        rows = rest.pop(0) if with_rows else None
        pairs = [(rest[2 * i], rest[2 * i + 1]) for i in range(2 * n)]
        cross, buffers = pairs[:n], pairs[n:]
        if rows is not None:
            buffers = [(k[rows], v[rows]) for k, v in buffers]
        h, buffers = decoder.fixed_step(tokens, embed, start, table, cross_mask, cross, buffers)
        return (embed.as_linear(h[:, -1, :]), h, *(a for kv in buffers for a in kv))

    fn = mx.compile(step)
    store[key] = (weights, fn)
    return fn
