"""Conformer speech encoder of SeamlessM4T-v2 (HF ``speech_encoder.*``).

Pipeline: feature projection -> conformer layers (half-step FFN, chunked
self-attention with Shaw relative positions, causal depthwise convolution,
half-step FFN) -> ``intermediate_ffn`` -> strided adaptor layers ->
``inner_layer_norm``.

Parameter names equal the HF state-dict keys with ``speech_encoder.`` stripped;
:func:`sanitize` converts HF tensors to the layouts used here.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import mlx.core as mx
import mlx.nn as nn

from .config import ModelConfig
from .features import FRAME_LENGTH, HOP_LENGTH, SAMPLE_RATE
from .layers import get_activation, lengths_to_mask

# transformers builds these LayerNorms without passing config.layer_norm_eps
_DEFAULT_EPS = 1e-5

# Above this size of one layer's [B, H, T, T] scores, each conformer layer is evaluated before the
# next is built, so that a GPU never holds the score tensors of many queued layers at once.
EVAL_EACH_LAYER_BYTES = 256 << 20


def masked_score(dtype) -> mx.array:
    """The additive score of a masked (query, key) pair."""
    # Half of the dtype minimum: masked scores still collapse to one constant
    # (so an all-masked row averages uniformly, as transformers' finfo.min does
    # in fp32), but adding a score to it cannot overflow to -inf in fp16.
    return mx.array(mx.finfo(dtype).min / 2, dtype=dtype)


def sub_sampled_lengths(lengths: mx.array, config: ModelConfig) -> mx.array:
    """Frame counts after the adaptor, as transformers computes them.

    ``lengths`` ``[B]`` (valid input frames) -> ``[B]`` int32. transformers applies
    the formula once with padding ``adaptor_kernel_size // 2``, whatever
    ``num_adapter_layers`` is and although the convolutions themselves pad by
    ``adaptor_stride // 2``; we follow it so masks match exactly.
    """
    k, s = config.adaptor_kernel_size, config.adaptor_stride
    pad = k // 2
    lengths = lengths.astype(mx.int32)
    # integer floor division == floor of the true division transformers does
    return (lengths + 2 * pad - k) // s + 1


def min_input_frames(config: ModelConfig) -> int:
    """Fewest (stacked) feature frames the adaptor's strided convolutions still turn into a frame:
    each of its layers takes ``T`` to ``(T + 2 * (stride // 2) - kernel) // stride + 1``.  1 for
    v2-large (kernel 8, stride 8); more where the padding does not cover the kernel."""
    if not config.add_adapter:
        return 1
    k, s = config.adaptor_kernel_size, config.adaptor_stride
    frames = 1
    while True:
        t = frames
        for _ in range(config.num_adapter_layers):
            t = (t + 2 * (s // 2) - k) // s + 1
        if t >= 1:
            return frames
        frames += 1


def chunk_keep(length: int, chunk_size: Optional[int], left_chunk_num: int) -> Optional[mx.array]:
    """``[T, T]`` bool: query ``i`` may see key ``j`` (own chunk plus ``left_chunk_num`` before it).

    ``None`` when nothing is hidden: chunking off, or one chunk spans the whole input (v2-large's
    20000-frame chunks, 400 s of audio); a negative ``left_chunk_num`` means unlimited history.
    """
    if chunk_size is None or chunk_size >= length:
        return None
    chunk = mx.arange(length) // chunk_size
    if left_chunk_num >= 0:
        start = mx.maximum(chunk - left_chunk_num, 0) * chunk_size
    else:
        start = mx.zeros_like(chunk)
    end = mx.minimum((chunk + 1) * chunk_size, length)
    j = mx.arange(length)[None, :]
    return (j >= start[:, None]) & (j < end[:, None])


def causal_pad(x: mx.array, kernel_size: int) -> mx.array:
    """``[B, T, C]`` with ``kernel_size - 1`` zero frames in front: output ``t`` of the conv sees ``t-K+1 .. t``."""
    return mx.pad(x, [(0, 0), (kernel_size - 1, 0), (0, 0)])


def relative_distance_index(length: int, left: int, right: int) -> mx.array:
    """``[T, T]`` int32 row of ``distance_embedding`` for each (query i, key j): clip(j - i) + left."""
    pos = mx.arange(length)
    return mx.clip(pos[None, :] - pos[:, None], -left, right) + left


class FeatureProjection(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.feature_projection_input_dim, eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.feature_projection_input_dim, config.hidden_size)

    def __call__(self, x: mx.array) -> mx.array:
        return self.projection(self.layer_norm(x))


class ConformerFeedForward(nn.Module):
    def __init__(self, config: ModelConfig, activation: Optional[str] = None):
        super().__init__()
        self.intermediate_dense = nn.Linear(config.hidden_size, config.speech_encoder_intermediate_size)
        self.output_dense = nn.Linear(config.speech_encoder_intermediate_size, config.hidden_size)
        self.act = get_activation(activation or config.speech_encoder_hidden_act)

    def __call__(self, x: mx.array) -> mx.array:
        return self.output_dense(self.act(self.intermediate_dense(x)))


class ConformerSelfAttention(nn.Module):
    """Self-attention with optional Shaw ("relative_key") position scores.

    The relative term is computed as ``q @ distance_embedding.T`` (``[B, H, T, R]``)
    and gathered to ``[B, H, T, T]``, never as transformers' ``[T, T, head_dim]``
    table; it travels into ``scaled_dot_product_attention`` inside the additive mask.
    """

    def __init__(self, config: ModelConfig, use_position_embeddings: bool = True):
        super().__init__()
        dims = config.hidden_size
        self.num_heads = config.speech_encoder_attention_heads
        self.head_dim = dims // self.num_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.linear_q = nn.Linear(dims, dims)
        self.linear_k = nn.Linear(dims, dims)
        self.linear_v = nn.Linear(dims, dims)
        self.linear_out = nn.Linear(dims, dims)
        self.relative = use_position_embeddings and config.position_embeddings_type == "relative_key"
        if self.relative:
            self.left = config.left_max_position_embeddings
            self.right = config.right_max_position_embeddings
            self.distance_embedding = nn.Embedding(self.left + self.right + 1, self.head_dim)

    def relative_scores(self, q: mx.array) -> mx.array:
        """Shaw scores ``(q . E[clip(j - i)]) / sqrt(head_dim)`` ``[B, H, T, T]`` of queries ``[B, H, T, Dh]``."""
        T = q.shape[2]
        # scaled while still [B, H, T, R], before the gather makes it [B, H, T, T]
        rel = (q * self.scale) @ self.distance_embedding.weight.astype(q.dtype).T
        return mx.take_along_axis(rel, relative_distance_index(T, self.left, self.right)[None, None], axis=-1)

    def __call__(self, x: mx.array, keep: Optional[mx.array] = None) -> mx.array:
        """``x`` ``[B, T, D]``; ``keep`` bool broadcastable to ``[B, 1, T, T]`` or ``None``."""
        B, T, _ = x.shape
        q, k, v = (p(x).reshape(B, T, self.num_heads, -1).transpose(0, 2, 1, 3)
                   for p in (self.linear_q, self.linear_k, self.linear_v))
        bias = self.relative_scores(q) if self.relative else None
        if keep is not None:
            # Masked entries are a constant, not constant + relative score: that
            # is what finfo.min + score rounds to in transformers.
            bias = mx.where(keep, mx.array(0.0, dtype=q.dtype) if bias is None else bias, masked_score(q.dtype))
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=bias)
        return self.linear_out(out.transpose(0, 2, 1, 3).reshape(B, T, -1))


class ConformerConvolution(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        dims = config.hidden_size
        if (config.conv_depthwise_kernel_size - 1) % 2 == 1:
            raise ValueError("conv_depthwise_kernel_size must be odd")
        self.layer_norm = nn.LayerNorm(dims, eps=_DEFAULT_EPS)
        # kernel-1 convolutions are stored as Linear ([out, in]) so they can be quantized
        self.pointwise_conv1 = nn.Linear(dims, 2 * dims, bias=False)
        # causal: the input gets kernel_size - 1 frames of left zero padding (see __call__)
        self.depthwise_conv = nn.Conv1d(dims, dims, config.conv_depthwise_kernel_size, groups=dims, bias=False)
        self.depthwise_layer_norm = nn.LayerNorm(dims, eps=_DEFAULT_EPS)
        self.act = get_activation(config.speech_encoder_hidden_act)
        self.pointwise_conv2 = nn.Linear(dims, dims, bias=False)

    def __call__(self, x: mx.array, valid: Optional[mx.array] = None) -> mx.array:
        """``x`` ``[B, T, D]``; ``valid`` ``[B, T, 1]`` bool or ``None``."""
        x = self.layer_norm(x)
        if valid is not None:
            # padded frames must not leak into later valid frames via the conv
            x = mx.where(valid, x, mx.array(0.0, dtype=x.dtype))
        x = nn.glu(self.pointwise_conv1(x), axis=-1)
        x = self.depthwise_conv(causal_pad(x, self.depthwise_conv.weight.shape[1]))
        x = self.act(self.depthwise_layer_norm(x))
        return self.pointwise_conv2(x)


class ConformerLayer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        dims = config.hidden_size
        self.ffn1_layer_norm = nn.LayerNorm(dims, eps=_DEFAULT_EPS)
        self.ffn1 = ConformerFeedForward(config)
        self.self_attn_layer_norm = nn.LayerNorm(dims, eps=_DEFAULT_EPS)
        self.self_attn = ConformerSelfAttention(config)
        self.conv_module = ConformerConvolution(config)
        self.ffn2_layer_norm = nn.LayerNorm(dims, eps=_DEFAULT_EPS)
        self.ffn2 = ConformerFeedForward(config)
        self.final_layer_norm = nn.LayerNorm(dims, eps=_DEFAULT_EPS)

    def __call__(self, x: mx.array, keep: Optional[mx.array], valid: Optional[mx.array]) -> mx.array:
        x = x + 0.5 * self.ffn1(self.ffn1_layer_norm(x))
        x = x + self.self_attn(self.self_attn_layer_norm(x), keep)
        x = x + self.conv_module(x, valid)
        x = x + 0.5 * self.ffn2(self.ffn2_layer_norm(x))
        return self.final_layer_norm(x)


class ConformerEncoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.chunk_size = config.speech_encoder_chunk_size
        self.left_chunk_num = config.speech_encoder_left_chunk_num
        self.layers = [ConformerLayer(config) for _ in range(config.speech_encoder_layers)]
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def masks(self, x: mx.array, attention_mask: Optional[mx.array]):
        """``(x with padded frames zeroed, keep [.., T, T] bool or None, valid [B, T, 1] bool or None)``."""
        keep = chunk_keep(x.shape[1], self.chunk_size, self.left_chunk_num)
        if keep is not None:
            keep = keep[None, None]
        valid = None
        if attention_mask is not None and not attention_mask.all().item():
            # (one read-back per call: with no padding, the T x T masks are never built)
            frames = attention_mask.astype(mx.bool_)
            valid = frames[:, :, None]
            x = mx.where(valid, x, mx.array(0.0, dtype=x.dtype))
            key_keep = frames[:, None, None, :]
            keep = key_keep if keep is None else (keep & key_keep)
        return x, keep, valid

    def __call__(self, x: mx.array, attention_mask: Optional[mx.array] = None) -> mx.array:
        """``x`` ``[B, T, D]``, ``attention_mask`` ``[B, T]`` (nonzero = valid) -> ``[B, T, D]``."""
        x, keep, valid = self.masks(x, attention_mask)
        heads = self.layers[0].self_attn.num_heads if self.layers else 0
        bounded = x.shape[0] * heads * x.shape[1] ** 2 * 4 > EVAL_EACH_LAYER_BYTES
        for layer in self.layers:
            x = layer(x, keep, valid)
            if bounded:
                mx.eval(x)
        return self.layer_norm(x)


class AdapterLayer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        dims = config.hidden_size
        k, s = config.adaptor_kernel_size, config.adaptor_stride
        self.residual_layer_norm = nn.LayerNorm(dims, eps=_DEFAULT_EPS)
        # transformers pads by stride // 2 here (not kernel // 2 as in its length formula)
        self.residual_conv = nn.Conv1d(dims, 2 * dims, k, stride=s, padding=s // 2)
        self.self_attn_layer_norm = nn.LayerNorm(dims, eps=_DEFAULT_EPS)
        self.self_attn_conv = nn.Conv1d(dims, 2 * dims, k, stride=s, padding=s // 2)
        self.self_attn = ConformerSelfAttention(config, use_position_embeddings=False)
        self.ffn_layer_norm = nn.LayerNorm(dims, eps=_DEFAULT_EPS)
        self.ffn = ConformerFeedForward(config, activation="relu")

    def __call__(self, x: mx.array, lengths: Optional[mx.array] = None) -> mx.array:
        """``x`` ``[B, T, D]`` -> ``[B, T', D]``; ``lengths`` ``[B]`` are the sub-sampled key lengths."""
        residual = nn.glu(self.residual_conv(self.residual_layer_norm(x)), axis=-1)
        h = nn.glu(self.self_attn_conv(self.self_attn_layer_norm(x)), axis=-1)
        keep = None
        if lengths is not None:
            keep = (mx.arange(h.shape[1])[None, :] < lengths[:, None])[:, None, None, :]
        h = self.self_attn(h, keep) + residual
        return h + self.ffn(self.ffn_layer_norm(h))


class Adapter(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.layers = [AdapterLayer(config) for _ in range(config.num_adapter_layers)]

    def __call__(self, x: mx.array, lengths: Optional[mx.array] = None) -> mx.array:
        # Every layer gets the same lengths (computed once from the input
        # frames), as in transformers, even when there are several layers.
        for layer in self.layers:
            x = layer(x, lengths)
        return x


class SpeechEncoder(nn.Module):
    """SeamlessM4T-v2 speech encoder (``SeamlessM4Tv2SpeechEncoder``)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.feature_projection = FeatureProjection(config)
        self.encoder = ConformerEncoder(config)
        self.intermediate_ffn = ConformerFeedForward(config, activation="relu")
        if config.add_adapter:
            self.adapter = Adapter(config)
        self.inner_layer_norm = nn.LayerNorm(config.hidden_size, eps=_DEFAULT_EPS)

    def __call__(
        self, input_features: mx.array, attention_mask: Optional[mx.array] = None
    ) -> Tuple[mx.array, Optional[mx.array]]:
        """Encode filter-bank features.

        Args:
            input_features: ``[B, T, feature_projection_input_dim]`` (160 for the
                stacked fbanks of ``SeamlessM4TFeatureExtractor``).
            attention_mask: ``[B, T]`` with 1 for valid frames, 0 for padding, or ``None``.

        Returns:
            ``(hidden [B, T', hidden_size], mask [B, T'] int32 or None)`` where
            ``mask`` is the encoder-attention mask transformers hands the text
            decoder for speech input.
        """
        shortest = min_input_frames(self.config)
        if input_features.shape[1] < shortest:  # torch's convolution refuses it; MLX's gives 0 frames
            samples = FRAME_LENGTH + (2 * shortest - 2) * HOP_LENGTH  # the last pair of fbank frames may be half padding
            raise ValueError(
                f"the recording is too short for this model: {input_features.shape[1]} feature frame(s); its speech "
                f"encoder needs at least {shortest} ({samples} samples, {1000 * samples / SAMPLE_RATE:.0f} ms at "
                "16 kHz)."
            )
        x = self.feature_projection(input_features)
        x = self.encoder(x, attention_mask)
        x = x + 0.5 * self.intermediate_ffn(x)
        lengths = None
        if attention_mask is not None:
            lengths = sub_sampled_lengths(attention_mask.astype(mx.bool_).sum(axis=1), self.config)
        if self.config.add_adapter:
            x = self.adapter(x, lengths)
        x = self.inner_layer_norm(x)
        out_mask = None if lengths is None else lengths_to_mask(lengths, x.shape[1])
        return x, out_mask


def sanitize(weights: Dict[str, mx.array]) -> Dict[str, mx.array]:
    """HF ``speech_encoder.*`` tensors (prefix stripped, HF layout) -> this module's layout.

    * ``pointwise_conv{1,2}.weight`` ``[O, I, 1]`` -> ``[O, I]`` (stored as Linear);
    * ``depthwise_conv.weight`` ``[C, 1, K]`` -> ``[C, K, 1]``;
    * adaptor ``residual_conv`` / ``self_attn_conv`` weights ``[O, I, K]`` -> ``[O, K, I]``.
    """
    out = {}
    for name, w in weights.items():
        if name.endswith(("pointwise_conv1.weight", "pointwise_conv2.weight")) and w.ndim == 3:
            w = w[:, :, 0]
        elif name.endswith(("depthwise_conv.weight", "residual_conv.weight", "self_attn_conv.weight")):
            w = w.transpose(0, 2, 1)
        out[name] = w
    return out
