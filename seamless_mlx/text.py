"""NLLB-style text encoder and text decoder.

Both read the model's shared, sqrt(d)-scaled token embedding; the decoder's LM head is that same
embedding used as a linear map (``Embedding.as_linear``), so the tied weight is stored once.
Parameter names mirror ``text_encoder.*`` / ``text_decoder.*`` of the Hugging Face checkpoint.
"""

from __future__ import annotations

import math
from typing import List, Optional

import mlx.core as mx
import mlx.nn as nn

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
    """

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
        cross_mask = memory_mask if memory_mask is None or memory_mask.ndim == 4 else padding_bias(memory_mask, x.dtype)
        for layer, (kv, cross) in zip(self.layers, cache):
            x = layer(x, self_mask, cross_mask, kv, cross)
        return self.layer_norm(x)
