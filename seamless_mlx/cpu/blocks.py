"""The sub-model blocks whose CPU forward differs from the plain one in more than their layers:
activations by :mod:`~seamless_mlx.cpu.ops`, wide products in column blocks, GLUs of separate
halves, long inputs in row blocks, the speech encoder on its many-row BLAS with its frames over
CPU streams, and the vocoder's residual blocks chained."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from functools import partial
from typing import Optional

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from .. import layers, speech_encoder, t2u, text, vocoder
from . import blas, tuning
from .conv import conv1d
from .linear import linear, linear_act, linear_glu
from .ops import activation, attention, glu
from .streams import split_rows, synchronize


def on_many_rows(fn, *args, threads: int = 1):
    """``fn(*args)`` evaluated inside :func:`~seamless_mlx.cpu.blas.many_rows` (``threads`` BLAS
    threads per product), where that library exists: MLX computes lazily, so the block must hold
    the evaluation.  Where there is none, nothing switches and the result stays lazy."""
    if not blas.many_rows_library():
        return fn(*args)
    with blas.many_rows(threads):
        out = fn(*args)
        mx.eval([a for a in (out if isinstance(out, tuple) else (out,)) if a is not None])
    return out


def many_rows_block(rows: int):
    """A context in which products of ``rows`` rows run on :func:`~seamless_mlx.cpu.blas.many_rows`'
    library, one thread per core, when ``rows`` reaches ``tuning.MANY_ROWS_MIN_ROWS`` and the
    library exists (else nothing changes).  Not where the few-row kernel takes products of
    ``rows`` rows (:func:`~seamless_mlx.cpu.blas.few_rows_active`): what would reach the library
    is then the attention's one-row products per head, which run faster on the main one.  Work queued inside it (``mx.async_eval``) must be done
    before it ends: on leaving, it waits for MLX's CPU streams."""
    few_rows_kernel = blas.few_rows_active() and rows <= tuning.FEW_ROWS_MAX_ROWS
    if rows < tuning.MANY_ROWS_MIN_ROWS or few_rows_kernel or not blas.many_rows_library():
        return nullcontext()
    return _many_rows_until_done()


@contextmanager
def _many_rows_until_done():
    with blas.many_rows(tuning.CPU_CORES):
        try:
            yield
        finally:
            synchronize()


class TextEncoder(text.TextEncoder):
    """Every product has one row per token of the batch: evaluated inside :func:`many_rows_block`.

    A padded batch runs its row-wise work (layer norms, products, feed-forwards) on the real
    tokens only, packed into ``[tokens, D]``; only the attention itself sees the padded
    ``[B, H, S, Dh]`` layout, whose padded keys the mask hides.  The real tokens' states are those
    of the padded computation; padded positions come out as zeros (the plain encoder leaves
    whatever its padded rows computed there; nothing reads them: they are masked everywhere)."""

    def __call__(self, input_ids: mx.array, embed: nn.Embedding, attention_mask: Optional[mx.array] = None):
        if input_ids.size < tuning.MANY_ROWS_MIN_ROWS:
            return super().__call__(input_ids, embed, attention_mask)
        return on_many_rows(self._forward, input_ids, embed, attention_mask, threads=tuning.CPU_CORES)

    def _forward(self, input_ids, embed, attention_mask):
        keep = None if attention_mask is None else np.flatnonzero(np.array(attention_mask).reshape(-1))
        if keep is None or not 0 < keep.size <= tuning.PACK_MAX_FILL * input_ids.size or not len(self.layers):
            return super().__call__(input_ids, embed, attention_mask)
        B, S = input_ids.shape
        x = embed(input_ids) * self.embed_scale
        x = x + self._positions.from_ids(input_ids).astype(x.dtype)
        D = x.shape[-1]
        # the padded layout from the packed rows: row `unpack[i]` of [packed; a zero row]
        slots = np.full(B * S, keep.size, dtype=np.int32)
        slots[keep] = np.arange(keep.size, dtype=np.int32)
        unpack, keep = mx.array(slots), mx.array(keep.astype(np.int32))
        bias = layers.padding_bias(attention_mask, x.dtype)
        x = x.reshape(B * S, D)[keep]
        for layer in self.layers:
            x = x + _packed_attention(layer.self_attn, layer.self_attn_layer_norm(x), bias, unpack, keep, B, S)
            x = x + layer.ffn(layer.ffn_layer_norm(x))
        x = self.layer_norm(x)
        return mx.concatenate([x, mx.zeros((1, D), x.dtype)])[unpack].reshape(B, S, D)


def _packed_attention(attn, h: mx.array, bias, unpack: mx.array, keep: mx.array, B: int, S: int) -> mx.array:
    """Self-attention of packed rows ``h`` ``[tokens, D]``: projections on the packed rows, the
    attention in the padded ``[B, H, S, Dh]`` layout (padded keys are zeros, and masked)."""
    H, Dh = attn.num_heads, attn.head_dim
    fused = attn.fuse_qkv()
    qkv = linear(h, fused[0], fused[1]) if fused is not None else mx.concatenate(
        [attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)], axis=-1)
    qkv = mx.concatenate([qkv, mx.zeros((1, qkv.shape[-1]), qkv.dtype)])[unpack]
    q, k, v = (t.reshape(B, S, H, Dh).transpose(0, 2, 1, 3) for t in mx.split(qkv, 3, axis=-1))
    out = attention(q, k, v, attn.scale, bias).transpose(0, 2, 1, 3).reshape(B * S, H * Dh)
    return attn.out_proj(out[keep])


class TextToUnit(t2u.TextToUnit):
    """The T2U encoder and its non-autoregressive decoder run on all tokens (characters, units) at
    once: evaluated inside :func:`many_rows_block` as the text encoder is."""

    def __call__(self, inputs_embeds, char_input_ids, char_count_per_id, attention_mask=None):
        args = (inputs_embeds, char_input_ids, char_count_per_id, attention_mask)
        if inputs_embeds.size // inputs_embeds.shape[-1] < tuning.MANY_ROWS_MIN_ROWS:
            return super().__call__(*args)
        return on_many_rows(super().__call__, *args, threads=tuning.CPU_CORES)


class FeedForward(layers.FeedForward):
    def __call__(self, x: mx.array) -> mx.array:
        return self.fc2(linear_act(x, self.fc1, activation(self.act)))


class TextDecoder(text.TextDecoder):
    """One-token steps run compiled only for a decoder of at most ``tuning.COMPILED_STEP_MAX_BYTES``
    of weights: on the CPU the compiled step measured faster than the twins op by op for a tiny
    decoder and at a quarter of v2-large, and slower at v2-large (benchmarks/README.md)."""

    @property
    def compile_steps(self) -> bool:
        return sum(v.nbytes for _, v in tree_flatten(self.parameters())) <= tuning.COMPILED_STEP_MAX_BYTES

    def decoding(self, rows: int):
        """A search over ``rows`` rows (a batch, or beams) runs inside :func:`many_rows_block`: its
        one-token steps are products of ``rows`` rows, and from a few rows on the many-row library
        is the faster one; a one-row search stays on the main BLAS."""
        return many_rows_block(rows)


class ConformerFeedForward(speech_encoder.ConformerFeedForward):
    """Frames over CPU streams (:func:`~seamless_mlx.cpu.streams.split_rows`), and long inputs in
    row blocks, so that the ``[rows, intermediate]`` activations stay small enough for the
    allocators to reuse (see :class:`~seamless_mlx.cpu.attention.ConformerSelfAttention`)."""

    def __call__(self, x: mx.array) -> mx.array:
        return split_rows(self._rows, x)

    def _rows(self, x: mx.array) -> mx.array:
        act = activation(self.act)
        rows = x.size // x.shape[-1]
        width = self.intermediate_dense.weight.shape[0]
        if rows * width * x.dtype.size <= tuning.FFN_BLOCK_BYTES:
            return self.output_dense(linear_act(x, self.intermediate_dense, act))
        block = max(1, tuning.FFN_BLOCK_BYTES // (width * x.dtype.size * x.shape[0]))
        T = x.shape[1]
        return mx.concatenate(
            [self.output_dense(linear_act(x[:, a : a + block], self.intermediate_dense, act)) for a in range(0, T, block)],
            axis=1,
        )


class ConformerConvolution(speech_encoder.ConformerConvolution):
    """The frame-wise parts before and after the depthwise convolution with their frames over CPU
    streams (:func:`~seamless_mlx.cpu.streams.split_rows`)."""

    def __call__(self, x: mx.array, valid: Optional[mx.array] = None) -> mx.array:
        x = split_rows(self._before, x, valid)
        x = self.depthwise_conv(speech_encoder.causal_pad(x, self.depthwise_conv.weight.shape[1]))
        return split_rows(self._after, x)

    def _before(self, x: mx.array, valid: Optional[mx.array]) -> mx.array:
        x = self.layer_norm(x)
        if valid is not None:
            x = mx.where(valid, x, mx.array(0.0, dtype=x.dtype))
        return linear_glu(x, self.pointwise_conv1)

    def _after(self, x: mx.array) -> mx.array:
        return self.pointwise_conv2(activation(self.act)(self.depthwise_layer_norm(x)))


class ConformerEncoder(speech_encoder.ConformerEncoder):
    """The whole encoder as one graph: the CPU runs it in order, holding one layer's tensors at a time."""

    def __call__(self, x: mx.array, attention_mask: Optional[mx.array] = None) -> mx.array:
        x, keep, valid = self.masks(x, attention_mask)
        for layer in self.layers:
            x = layer(x, keep, valid)
        return self.layer_norm(x)


class SpeechEncoder(speech_encoder.SpeechEncoder):
    """The encoder's products have hundreds of rows: evaluated inside :func:`~seamless_mlx.cpu.blas.many_rows`
    (where the CPU has a faster GEMM library for those than for one-row products)."""

    def __call__(self, input_features: mx.array, attention_mask: Optional[mx.array] = None):
        return on_many_rows(super().__call__, input_features, attention_mask)


class AdapterLayer(speech_encoder.AdapterLayer):
    def __call__(self, x: mx.array, lengths: Optional[mx.array] = None) -> mx.array:
        residual = glu(self.residual_conv(self.residual_layer_norm(x)), axis=-1)
        h = glu(self.self_attn_conv(self.self_attn_layer_norm(x)), axis=-1)
        keep = None
        if lengths is not None:
            keep = (mx.arange(h.shape[1])[None, :] < lengths[:, None])[:, None, None, :]
        h = self.self_attn(h, keep) + residual
        return h + self.ffn(self.ffn_layer_norm(h))


class T2UDecoderLayer(t2u.T2UDecoderLayer):
    def __call__(self, x, bias, keep):
        x = self.self_attn_layer_norm(x + self.self_attn(x, bias))
        h = self.conv1(mx.where(keep, x, 0.0))
        h = mx.where(keep, h, 0.0)
        h = self.conv2(activation(self.act)(h))
        return self.conv_layer_norm(x + h)


class HifiGan(vocoder.HifiGan):
    """Each stage's residual blocks run one after the other (``mx.depends``): left to interleave
    the independent blocks, MLX keeps all their intermediates alive at once, and the CPU vocoder
    runs slower.  The mean's division is fused into the next leaky ReLU (one pass, not two).

    Its products (thousands of frames) are evaluated inside :func:`~seamless_mlx.cpu.blas.many_rows`
    with one BLAS thread per core: where that library exists, its GEMMs are the faster ones on this
    CPU, and the per-tap products are too short-lived to split over CPU streams."""

    def __call__(self, x: mx.array) -> mx.array:
        return on_many_rows(self._one_pass, x, threads=tuning.CPU_CORES)

    def _one_pass(self, x: mx.array) -> mx.array:
        x = self.conv_pre(x)
        n = self.num_kernels
        slope = self.slope
        for i, up in enumerate(self.upsampler):
            x = up(nn.leaky_relu(x, slope) if i == 0 else _mean_leaky(x, n, slope))
            blocks = self.resblocks[i * n : (i + 1) * n]
            acc = blocks[0](x)
            for block in blocks[1:]:
                acc = acc + block(mx.depends(x, acc))
            x = acc
        x = self.conv_post(_mean_leaky(x, n, 0.01))  # torch's default slope, as the plain model
        return mx.tanh(x)[..., 0]


@partial(mx.compile, shapeless=True)  # element-wise only: one trace for every window length
def _mean_leaky(total: mx.array, n, slope) -> mx.array:
    """``leaky_relu(total / n, slope)`` in one pass."""
    return nn.leaky_relu(total / n, slope)


class ResidualBlock(vocoder.ResidualBlock):
    """Padded once, then every convolution without padding, long inputs in time blocks.

    The input gets zero margins as wide as the block's whole receptive field; each convolution then
    runs "valid" (its per-tap products need no padded copy of its input) and eats its own padding
    off the margins.  What the plain block's zero padding would see there is restored by zeroing
    the rows outside the true frames after each leaky ReLU, in place.  The residual (plus the
    second conv's bias) starts the second conv's accumulator, so no separate add pass is made
    either.  A narrow input larger than ``tuning.RESBLOCK_BLOCK_BYTES`` is cut into time blocks,
    each with its receptive field's frames on both sides, so that a block's per-tap products (at
    C channels, C / 6 FLOP per byte moved: bound by memory) and element-wise passes work in cache.
    """

    def __call__(self, x: mx.array) -> mx.array:
        batch, T, C = x.shape
        kernel = self.convs2[0].weight.shape[1]
        pads = [(c.dilation * (kernel - 1) // 2, (kernel - 1) // 2) for c in self.convs1]
        margin = sum(p1 + p2 for p1, p2 in pads)
        x = mx.pad(x, [(0, 0), (margin, margin), (0, 0)])
        rows = max(1, tuning.RESBLOCK_BLOCK_BYTES // (batch * C * x.dtype.size))
        if T <= rows or C > tuning.RESBLOCK_BLOCK_MAX_CHANNELS:
            return self._valid(x, pads, 0, T, T)
        parts = []
        for a in range(0, T, rows):
            n = min(rows, T - a)
            parts.append(self._valid(x[:, a : a + n + 2 * margin], pads, a, n, T))
        return mx.concatenate(parts, axis=1)

    def _valid(self, x: mx.array, pads, first: int, n: int, T: int) -> mx.array:
        """Output frames ``first .. first + n`` of the block, from ``x``: input frames ``first - margin
        .. first + n + margin`` (zeros outside ``0 .. T``)."""
        margin = sum(p1 + p2 for p1, p2 in pads)
        for (conv1, conv2), (p1, p2) in zip(zip(self.convs1, self.convs2), pads):
            # x: n frames and `margin` more on each side, of which those outside 0 .. T are garbage
            a = _leaky_zeros_outside(x, margin - first, T - first + margin, self.slope)
            h = conv1d(a, conv1.weight, conv1.bias, dilation=conv1.dilation)
            margin -= p1
            start = p1 + p2
            residual = x[:, start : start + n + 2 * (margin - p2)] + conv2.bias
            x = conv1d(_leaky_zeros_outside(h, margin - first, T - first + margin, self.slope), conv2.weight, residual)
            margin -= p2
        return x


def _leaky_zeros_outside(x: mx.array, lo: int, hi: int, slope: float) -> mx.array:
    """``leaky_relu(x)`` with the frames before ``lo`` and from ``hi`` on set to zero (in place)."""
    y = nn.leaky_relu(x, slope)
    if lo > 0:
        y[:, :lo] = 0.0
    if hi < y.shape[1]:
        y[:, max(hi, 0) :] = 0.0
    return y
