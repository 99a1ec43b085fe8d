"""Building blocks shared by several sub-models (text, speech encoder, T2U, vocoder).

Plain MLX: ``nn.Linear``, ``nn.LayerNorm``, ``nn.Conv1d``, ``mx.fast.scaled_dot_product_attention``.
The Linux-CPU versions of these blocks live in :mod:`seamless_mlx.cpu` and are swapped in after
loading.  Parameter names mirror the Hugging Face state-dict keys (``q_proj``, ``fc1``, ...) so
that converted weights load without a renaming table.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import mlx.core as mx
import mlx.nn as nn

from .cache import CrossCache


def sinusoidal_table(num_positions: int, dim: int, padding_idx: Optional[int] = None) -> mx.array:
    """fairseq/M2M100 sinusoidal table ``[num_positions, dim]``: sin half then cos half.

    The row at ``padding_idx`` is zero, as in fairseq.
    """
    half = dim // 2
    scale = math.log(10000) / (half - 1)
    freqs = mx.exp(mx.arange(half, dtype=mx.float32) * -scale)
    angles = mx.arange(num_positions, dtype=mx.float32)[:, None] * freqs[None, :]
    table = mx.concatenate([mx.sin(angles), mx.cos(angles)], axis=1)
    if dim % 2 == 1:
        table = mx.concatenate([table, mx.zeros((num_positions, 1))], axis=1)
    if padding_idx is not None:
        keep = (mx.arange(num_positions) != padding_idx)[:, None]
        table = mx.where(keep, table, 0.0)
    return table


class SinusoidalPositions:
    """Positions that start after ``padding_idx`` and skip padding tokens (fairseq rule).

    Not an ``nn.Module``: the table is a constant, not a weight. It grows on demand.
    """

    def __init__(self, dim: int, padding_idx: int, initial: int = 1026):
        self.dim = dim
        self.padding_idx = padding_idx
        self.table = sinusoidal_table(initial, dim, padding_idx)

    def _ensure(self, n: int):
        if n > self.table.shape[0]:
            self.table = sinusoidal_table(n + 256, self.dim, self.padding_idx)

    def from_ids(self, input_ids: mx.array, offset: int = 0) -> mx.array:
        """Positions for token ids ``[B, T]``; pads keep position ``padding_idx``."""
        return self.table_for(input_ids.shape[1], offset)[self.ids(input_ids, offset)]

    def table_for(self, length: int, offset: int) -> mx.array:
        """The table, long enough for ``length`` tokens after ``offset``."""
        self._ensure(self.padding_idx + 2 + length + offset)
        return self.table

    def ids(self, input_ids: mx.array, offset) -> mx.array:
        """Row of the table for each token of ``[B, T]``; ``offset`` an int or an int32 array."""
        mask = (input_ids != self.padding_idx).astype(mx.int32)
        return (mx.cumsum(mask, axis=1) + offset) * mask + self.padding_idx

    def sequential(self, length: int, offset: int = 0) -> mx.array:
        """``[length, dim]`` rows for an unpadded sequence starting at ``offset``."""
        start = self.padding_idx + 1 + offset
        self._ensure(start + length + 1)
        return self.table[start : start + length]


def lengths_to_mask(lengths: mx.array, length: int) -> mx.array:
    """``[B]`` lengths -> ``[B, length]`` int32 mask (1 for positions < length)."""
    return (mx.arange(length)[None, :] < lengths[:, None]).astype(mx.int32)


def repeat_by_durations(x: mx.array, durations: mx.array) -> mx.array:
    """Repeat ``x [B, L, D]`` along time by integer ``durations [B, L]`` (>= 0), zero-padding each
    item to the longest (transformers' ``_hard_upsample``; the T2U and vocoder length regulators).
    Reads back one number: the output length depends on the durations."""
    ends = mx.cumsum(durations.astype(mx.int32), axis=1)
    total = int(ends[:, -1].max().item()) if ends.size else 0
    t = mx.arange(total, dtype=mx.int32)
    # frame t belongs to the first position whose end is past t
    index = (ends[:, None, :] <= t[None, :, None]).astype(mx.int32).sum(axis=-1)
    valid = index < x.shape[1]
    out = mx.take_along_axis(x, mx.minimum(index, x.shape[1] - 1)[..., None], axis=1)
    return mx.where(valid[..., None], out, mx.zeros((), dtype=x.dtype))


def additive_mask(keep: mx.array, dtype=mx.float32) -> mx.array:
    """Boolean/0-1 ``keep`` mask -> additive bias (0 where kept, a large negative elsewhere)."""
    neg = mx.array(mx.finfo(dtype).min, dtype=dtype)
    return mx.where(keep.astype(mx.bool_), mx.array(0.0, dtype=dtype), neg)


def padding_bias(attention_mask: Optional[mx.array], dtype=mx.float32) -> Optional[mx.array]:
    """``[B, S]`` 1/0 key mask -> ``[B, 1, 1, S]`` additive bias, or ``None``."""
    if attention_mask is None:
        return None
    return additive_mask(attention_mask, dtype)[:, None, None, :]


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections (bias everywhere)."""

    def __init__(self, dims: int, num_heads: int):
        super().__init__()
        if dims % num_heads:
            raise ValueError(f"hidden size {dims} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dims // num_heads
        self.scale = self.head_dim**-0.5
        self.q_proj = nn.Linear(dims, dims)
        self.k_proj = nn.Linear(dims, dims)
        self.v_proj = nn.Linear(dims, dims)
        self.out_proj = nn.Linear(dims, dims)

    def split_heads(self, x: mx.array) -> mx.array:
        """``[B, L, D]`` -> ``[B, H, L, Dh]``."""
        B, L, _ = x.shape
        return x.reshape(B, L, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

    def kv(self, x: mx.array):
        """Projected keys and values ``[B, H, S, Dh]`` (used to fill caches)."""
        return self.split_heads(self.k_proj(x)), self.split_heads(self.v_proj(x))

    def __call__(self, x: mx.array, mask=None, memory: Optional[mx.array] = None, cache=None) -> mx.array:
        """Self-attention over ``x [B, L, D]``, or attention to ``memory [B, S, D]``.

        ``cache``: a :class:`~seamless_mlx.cache.KVCache` (the new keys/values are appended and
        all of them attended to) or a :class:`~seamless_mlx.cache.CrossCache` (the keys/values of
        the memory, computed once).  ``mask``: additive, broadcastable to ``[B, H, L, S]``."""
        B, L, _ = x.shape
        q = self.split_heads(self.q_proj(x))
        if isinstance(cache, CrossCache):
            k, v = cache.keys, cache.values
        else:
            k, v = self.kv(x if memory is None else memory)
            if cache is not None:
                k, v = cache.update_and_fetch(k, v)
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask)
        return self.out_proj(out.transpose(0, 2, 1, 3).reshape(B, L, -1))


class FeedForward(nn.Module):
    """``fc2(act(fc1(x)))`` as in NLLB (ReLU by default)."""

    def __init__(self, dims: int, ffn_dim: int, activation: str = "relu"):
        super().__init__()
        self.fc1 = nn.Linear(dims, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dims)
        self.act = get_activation(activation)

    def __call__(self, x: mx.array) -> mx.array:
        return self.fc2(self.act(self.fc1(x)))


def _laplace(x: mx.array) -> mx.array:
    # transformers' LaplaceActivation: the normal CDF around mu = 0.707107, sigma = 0.282095
    return 0.5 * (1.0 + mx.erf((x - 0.707107) / (0.282095 * math.sqrt(2.0))))


def quick_gelu(x: mx.array) -> mx.array:
    return x * mx.sigmoid(1.702 * x)


# Every parameter-free activation a transformers config may name (``ACT2FN``'s keys); the
# learnable ones (``prelu``, ``xielu``) carry weights SeamlessM4T-v2 never has.
ACTIVATIONS = {
    "relu": nn.relu,
    "relu2": lambda x: mx.square(nn.relu(x)),
    "relu6": nn.relu6,
    "leaky_relu": nn.leaky_relu,  # slope 0.01, as torch's default
    "gelu": nn.gelu,
    "gelu_python": nn.gelu,
    "gelu_10": lambda x: mx.clip(nn.gelu(x), -10.0, 10.0),
    "gelu_new": nn.gelu_approx,  # the tanh approximation, under its several names
    "gelu_pytorch_tanh": nn.gelu_approx,
    "gelu_accurate": nn.gelu_approx,
    "gelu_fast": nn.gelu_approx,
    "quick_gelu": quick_gelu,
    "laplace": _laplace,
    "mish": nn.mish,
    "swish": nn.silu,
    "silu": nn.silu,
    "sigmoid": mx.sigmoid,
    "tanh": mx.tanh,
    "linear": lambda x: x,
}


def get_activation(name: str):
    """The activation function a config names, or a ``ValueError`` listing the known names."""
    fn = ACTIVATIONS.get(name)
    if fn is None:
        raise ValueError(f"unsupported activation {name!r} in the model config; supported: {', '.join(sorted(ACTIVATIONS))}")
    return fn


class EncoderLayer(nn.Module):
    """Pre-LN self-attention + FFN layer (text encoder and T2U encoder)."""

    def __init__(self, dims: int, heads: int, ffn_dim: int, activation: str = "relu", eps: float = 1e-5):
        super().__init__()
        self.self_attn = Attention(dims, heads)
        self.self_attn_layer_norm = nn.LayerNorm(dims, eps=eps)
        self.ffn = FeedForward(dims, ffn_dim, activation)
        self.ffn_layer_norm = nn.LayerNorm(dims, eps=eps)

    def __call__(self, x: mx.array, mask=None) -> mx.array:
        x = x + self.self_attn(self.self_attn_layer_norm(x), mask)
        return x + self.ffn(self.ffn_layer_norm(x))


# ---------------------------------------------------------------------------- convolutions
def same_padding(kernel_size: int, dilation: int = 1):
    """torch's ``padding="same"``: ``(left, right)`` zeros; an even receptive field's extra zero goes right."""
    total = dilation * (kernel_size - 1)
    return total // 2, total - total // 2


def stacked_taps(x: mx.array, kernel: int, stride: int, left: int, right: int, dilation: int) -> mx.array:
    """``[B, T, C]`` -> ``[B, T_out, K * C]``: the K input frames each output frame sees, tap-major
    (a convolution as one product with its ``[Cout, K * Cin]`` weight)."""
    if left or right:
        x = mx.pad(x, [(0, 0), (left, right), (0, 0)])
    t_out = (x.shape[1] - dilation * (kernel - 1) - 1) // stride + 1
    span = (t_out - 1) * stride + 1
    if kernel == 1:
        return x[:, :span:stride]
    return mx.concatenate([x[:, k * dilation : k * dilation + span : stride] for k in range(kernel)], axis=-1)


class VariancePredictor(nn.Module):
    """Two ``same``-padded convs with ReLU + LayerNorm, then a scalar projection per frame.

    transformers' ``SeamlessM4Tv2VariancePredictor``: the vocoder's duration predictor and the T2U
    decoder's; parameter names ``conv1``, ``ln1``, ``conv2``, ``ln2``, ``proj``.
    """

    def __init__(self, embed_dim: int, hidden_dim: int, kernel_size: int):
        super().__init__()
        left, right = same_padding(kernel_size)
        self.extra_right = right - left  # an even kernel's extra zero on the right
        self.conv1 = nn.Conv1d(embed_dim, hidden_dim, kernel_size, padding=left)
        self.ln1 = nn.LayerNorm(hidden_dim, eps=1e-5)
        self.conv2 = nn.Conv1d(hidden_dim, hidden_dim, kernel_size, padding=left)
        self.ln2 = nn.LayerNorm(hidden_dim, eps=1e-5)
        self.proj = nn.Linear(hidden_dim, 1)

    def _pad(self, x: mx.array) -> mx.array:
        return mx.pad(x, [(0, 0), (0, self.extra_right), (0, 0)]) if self.extra_right else x

    def __call__(self, x: mx.array, padding_mask: Optional[mx.array] = None) -> mx.array:
        """``x [B, T, C]``, optional ``padding_mask [B, T]`` (1/True = keep) -> ``[B, T]``."""
        keep = None if padding_mask is None else padding_mask.astype(mx.bool_)[..., None]
        if keep is not None:
            x = mx.where(keep, x, 0.0)
        x = self.ln1(nn.relu(self.conv1(self._pad(x))))
        if keep is not None:
            x = mx.where(keep, x, 0.0)
        x = self.ln2(nn.relu(self.conv2(self._pad(x))))
        return self.proj(x)[..., 0]


def _fold_weight_norm(g: mx.array, v: mx.array) -> mx.array:
    """``g * v / ||v||``, the norm taken over the axes where ``g`` has size 1 (torch's ``dim``)."""
    axes = tuple(i for i in range(v.ndim) if g.shape[i] == 1)
    v32 = v.astype(mx.float32)
    norm = mx.sqrt(mx.sum(v32 * v32, axis=axes, keepdims=True))
    return (g.astype(mx.float32) * v32 / norm).astype(v.dtype)


def sanitize_convs(weights: Dict[str, mx.array]) -> Dict[str, mx.array]:
    """HF conv tensors -> MLX layout, for the vocoder and the T2U model (prefix stripped).

    * weight-norm pairs (``X.weight_g``/``X.weight_v`` or
      ``X.parametrizations.weight.original0``/``original1``) are folded into ``X.weight``;
    * ``Conv1d`` weights ``[Cout, Cin, K]`` -> ``[Cout, K, Cin]``;
    * ``ConvTranspose1d`` weights (``hifi_gan.upsampler.*``) ``[Cin, Cout, K]`` -> ``[Cout, K, Cin]``.
    """
    weights = dict(weights)
    pairs = {
        ".weight_g": ".weight_v",
        ".parametrizations.weight.original0": ".parametrizations.weight.original1",
    }
    for g_suffix, v_suffix in pairs.items():
        for name in [n for n in weights if n.endswith(g_suffix)]:
            base = name[: -len(g_suffix)]
            g = weights.pop(name)
            v = weights.pop(base + v_suffix)
            weights[base + ".weight"] = _fold_weight_norm(g, v)

    out = {}
    for name, w in weights.items():
        if name.endswith(".weight") and w.ndim == 3:
            w = w.transpose(1, 2, 0) if ".upsampler." in name else w.transpose(0, 2, 1)
        out[name] = w
    return out
