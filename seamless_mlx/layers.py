"""Building blocks shared by the text, T2U and speech sub-models.

Parameter names mirror the Hugging Face state-dict keys (``q_proj``,
``fc1``, ...) so that converted weights load without a renaming table.
"""

from __future__ import annotations

import math
import os
import weakref
from typing import Optional

import mlx.core as mx
import mlx.nn as nn


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
        mask = (input_ids != self.padding_idx).astype(mx.int32)
        pos = (mx.cumsum(mask, axis=1) + offset) * mask + self.padding_idx
        self._ensure(self.padding_idx + 2 + input_ids.shape[1] + offset)
        return self.table[pos]

    def from_positions(self, positions: mx.array) -> mx.array:
        """Rows for explicit (already offset) position indices of any shape."""
        self._ensure(int(positions.max().item()) + 1 if positions.size else 1)
        return self.table[positions]

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


class Linear(nn.Linear):
    """``nn.Linear`` whose product goes through :func:`linear` (the CPU routes further down)."""

    def __call__(self, x: mx.array) -> mx.array:
        return linear(x, self.weight, self.get("bias"))


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections (bias everywhere)."""

    def __init__(self, dims: int, num_heads: int):
        super().__init__()
        if dims % num_heads:
            raise ValueError(f"hidden size {dims} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dims // num_heads
        self.scale = self.head_dim**-0.5
        self.q_proj = Linear(dims, dims)
        self.k_proj = Linear(dims, dims)
        self.v_proj = Linear(dims, dims)
        self.out_proj = Linear(dims, dims)

    def split_heads(self, x: mx.array) -> mx.array:
        B, L, _ = x.shape
        if L == 1:  # a decoding step: the same element order, without a transpose node
            return x.reshape(B, self.num_heads, 1, self.head_dim)
        return x.reshape(B, L, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

    def kv(self, x: mx.array):
        """Projected keys and values ``[B, H, S, Dh]`` (used to fill caches)."""
        return self.split_heads(self.k_proj(x)), self.split_heads(self.v_proj(x))

    def fuse_qkv(self) -> bool:
        """Let :meth:`qkv` read the q/k/v weights as one ``[3D, D]`` product (a decoding step's
        three mat-vecs become one, ~5 ms less per token for v2-large on the CPU).

        The three float weights are copied into one buffer and the parameters become views of it:
        names, values and memory stay as they were.  Quantized or bias-less projections are left
        alone (returns False); so is an attention whose weights changed after fusing, until it is
        fused again."""
        if self._fused_qkv() is not None:
            return True
        projs = (self.q_proj, self.k_proj, self.v_proj)
        if not all(type(p) is Linear and "bias" in p for p in projs):
            return False
        weight = mx.concatenate([p.weight for p in projs])
        bias = mx.concatenate([p.bias for p in projs])
        mx.eval(weight, bias)
        d = self.q_proj.weight.shape[0]
        for i, p in enumerate(projs):
            p.weight, p.bias = weight[i * d : (i + 1) * d], bias[i * d : (i + 1) * d]
        self.__dict__["_qkv"] = (weight, bias, tuple(p.weight for p in projs))
        return True

    def _fused_qkv(self):
        fused = self.__dict__.get("_qkv")
        projs = (self.q_proj, self.k_proj, self.v_proj)
        if fused is None or any(p.get("weight") is not w for p, w in zip(projs, fused[2])):
            return None
        return fused

    def qkv(self, x: mx.array):
        """Projected queries, keys and values ``[B, H, L, Dh]`` of ``x`` (self-attention)."""
        fused = self._fused_qkv()
        if fused is None:
            return (self.split_heads(self.q_proj(x)),) + self.kv(x)
        return tuple(self.split_heads(y) for y in mx.split(linear(x, fused[0], fused[1]), 3, axis=-1))

    def attend(self, q_in: mx.array, k: mx.array, v: mx.array, mask=None) -> mx.array:
        return self.attend_projected(self.split_heads(self.q_proj(q_in)), k, v, mask)

    def attend_projected(self, q: mx.array, k: mx.array, v: mx.array, mask=None) -> mx.array:
        """Attention of projected queries ``[B, H, L, Dh]``; the output projection applied."""
        B, _, L, _ = q.shape
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask)
        return self.out_proj((out if L == 1 else out.transpose(0, 2, 1, 3)).reshape(B, L, -1))

    def __call__(self, x: mx.array, mask=None, memory: Optional[mx.array] = None) -> mx.array:
        k, v = self.kv(x if memory is None else memory)
        return self.attend(x, k, v, mask)


class FeedForward(nn.Module):
    """``fc2(act(fc1(x)))`` as in NLLB (ReLU by default)."""

    def __init__(self, dims: int, ffn_dim: int, activation: str = "relu"):
        super().__init__()
        self.fc1 = Linear(dims, ffn_dim)
        self.fc2 = Linear(ffn_dim, dims)
        self.act = get_activation(activation)

    def __call__(self, x: mx.array) -> mx.array:
        return self.fc2(linear_act(x, self.fc1, self.act))


# --------------------------------------------------------------------------- CPU transcendentals
# MLX's CPU ``exp`` (behind sigmoid, SiLU and softmax) runs at ~50 M elements/s per stream here,
# 5-10x slower than torch's vectorised one, and it is most of the conformer's non-GEMM time (two
# SiLUs over [T, 4096] and a softmax over [16, T, T] per layer).  On the CPU we evaluate exp with
# multiply-adds: e^x = (e^(x/32))^32 for |x| <= 20, with e^(x/32) - 1 from its degree-9 Taylor
# polynomial (truncation 3e-9; 1 is added last, so that sum is the only rounding next to 1), so
# the error is the rounding of the five squarings: <= 6e-6 relative (MLX's own exp: 1e-6, torch's:
# 1e-7).  Outside that range every use below is saturated: e^-20 = 2e-9 is below float32
# resolution next to 1 (sigmoid, SiLU) and a softmax weight that small is taken as 0.  An earlier
# version rebuilt 2^k in the exponent bits (1e-7), but the integer view splits MLX's fusion and
# ``floor`` is not vectorised: 2x slower.
#
# How the arithmetic is cut into compiled functions matters as much as the arithmetic.  MLX
# compiles each fused CPU kernel with plain ``g++ -O3`` (SSE2) and a kernel only runs 4 lanes wide
# when (a) every input is contiguous and of the output's shape and (b) GCC can vectorise the loop:
# 1. GCC does not vectorise a loop that mixes a comparison or select with arithmetic (the select
#    becomes a branch: "control flow in loop"); a loop of selects alone, or of multiply-adds
#    alone, is vectorised.  So clamps and the final zeroing are compiled functions of their own.
# 2. MLX cuts a fused graph deeper than 11 operations into several kernels, and a cut just after
#    a scalar constant's broadcast hands the next kernel a stride-0 input: its scalar "strided"
#    variant runs (the Taylor chain of one compiled function did exactly that).  So the chain is
#    two compiled functions, each shallow enough to be one kernel: the polynomial with two
#    squarings, then three squarings with what the caller makes of e^x.
# 3. A broadcast input (a softmax's row maximum) also sends the kernel down the strided path: the
#    subtraction runs before, as MLX's own binary op.
# SiLU over [500, 4096] on one stream: 11.7 -> 5.5 ms; softmax numerator over [16, 500, 500]:
# 50 -> ~13 ms; exp over 2 M elements 9.6 -> 2.9 ms.
_EXP_RANGE = 20.0
_EXP_SQUARINGS = 5
_EXP_TAYLOR = tuple(1 / math.factorial(i) for i in range(10))  # c0 .. c9


def _expm1_polynomial(x: mx.array) -> mx.array:
    """e^(x/32) - 1 for ``|x| <= _EXP_RANGE``: Estrin's scheme (shallow), -inf (never NaN) far below."""
    c = _EXP_TAYLOR
    y = x * (1.0 / 2**_EXP_SQUARINGS)
    y2 = y * y
    y4 = y2 * y2
    a1, a2, a3, a4 = (c[i] + c[i + 1] * y for i in (2, 4, 6, 8))
    return (y + a1 * y2) + ((a2 + a3 * y2) + a4 * y4) * y4


@mx.compile
def _exp_head(x: mx.array) -> mx.array:
    """(e^(x/32))^4: the first of the two kernels of e^x."""
    p = 1.0 + _expm1_polynomial(x)
    p = p * p
    return p * p


def _exp_tail(p: mx.array) -> mx.array:
    """The last three squarings: ``_exp_head(x)`` -> e^x."""
    p = p * p
    p = p * p
    return p * p


_exp_tail_compiled = mx.compile(_exp_tail)


@mx.compile
def _inverse_one_plus_exp(head: mx.array) -> mx.array:
    """1 / (1 + e^z) from ``head = _exp_head(z)``."""
    return 1.0 / (1.0 + _exp_tail(head))


@mx.compile
def _times_inverse_one_plus_exp(x: mx.array, head: mx.array) -> mx.array:
    """x / (1 + e^z) from ``head = _exp_head(z)``."""
    return x / (1.0 + _exp_tail(head))


@mx.compile
def _clamped_negative(x: mx.array) -> mx.array:
    """-x, clamped to the polynomial's range."""
    return mx.minimum(mx.maximum(-x, -_EXP_RANGE), _EXP_RANGE)


@mx.compile
def _zero_below_range(x: mx.array, y: mx.array) -> mx.array:
    """``y``, with 0 where ``x < -_EXP_RANGE``."""
    return mx.where(x < -_EXP_RANGE, 0.0, y)


def _exp_bounded(x: mx.array) -> mx.array:
    """e^x for ``|x| <= _EXP_RANGE`` (larger inputs are clamped to the range)."""
    return _exp_tail_compiled(_exp_head(_clamped_negative(-x)))


def _sigmoid_cpu(x: mx.array) -> mx.array:
    # below -20 (the clamp) within 2.1e-9 of 0: no select needed
    return _inverse_one_plus_exp(_exp_head(_clamped_negative(x)))


def _silu_cpu(x: mx.array) -> mx.array:
    return _zero_below_range(x, _times_inverse_one_plus_exp(x, _exp_head(_clamped_negative(x))))


def _softmax_numerator(scores: mx.array, row_max: mx.array) -> mx.array:
    x = scores - row_max  # <= 0; far below the range the polynomial gives inf (never NaN): zeroed
    return _zero_below_range(x, _exp_tail_compiled(_exp_head(x)))


def _glu_cpu(a: mx.array, b: mx.array) -> mx.array:
    """``a * sigmoid(b)``."""
    return _times_inverse_one_plus_exp(a, _exp_head(_clamped_negative(b)))


ELEMENTWISE_SPLIT_MIN = 1 << 20  # elements: larger element-wise passes are split over CPU streams


# ``SEAMLESS_MLX_ROUTES=generic`` makes the CPU take the routes every other device (Metal, CUDA)
# takes: plain MLX ops and fused kernels, no stream splits, no polynomial exp.  The tests use it
# to check those routes on CPU-only machines; for speed on the CPU leave it unset.
GENERIC_ROUTES = os.environ.get("SEAMLESS_MLX_ROUTES", "").strip().lower() == "generic"


def cpu_routes() -> bool:
    """Whether the CPU-tuned routes apply: the default device is the CPU and they are not turned off
    (``SEAMLESS_MLX_ROUTES=generic``, :data:`GENERIC_ROUTES`)."""
    return not GENERIC_ROUTES and mx.default_device() == mx.cpu


def _fast_cpu(x: mx.array) -> bool:
    return x.dtype == mx.float32 and cpu_routes()


def _by_rows(fn, x: mx.array, *more: mx.array) -> mx.array:
    """``fn(x, *more)`` (element-wise, same shapes), split by rows over one CPU stream per core when
    large: MLX runs an element-wise kernel on one thread (SiLU over [500, 4096]: 2x).  The leading
    axes are merged first, so each part is one contiguous block of rows: a slice of [B, T, C] along
    T is not, and would send the compiled kernels down their scalar strided path (B = 2: 1.6x)."""
    groups = cpu_stream_count()
    rows = x.size // x.shape[-1] if x.ndim and x.shape[-1] else 0
    if x.size < ELEMENTWISE_SPLIT_MIN or rows < 2 * groups:
        return fn(x, *more)
    flat = [a.reshape(rows, a.shape[-1]) for a in (x, *more)]
    out = over_streams(lambda sl: fn(*(a[sl] for a in flat)), rows, groups, axis=0)
    return out.reshape(x.shape)


def sigmoid(x: mx.array) -> mx.array:
    return _by_rows(_sigmoid_cpu, x) if _fast_cpu(x) else mx.sigmoid(x)


def silu(x: mx.array) -> mx.array:
    return _by_rows(_silu_cpu, x) if _fast_cpu(x) else nn.silu(x)


def glu(x: mx.array, axis: int = -1) -> mx.array:
    return glu_halves(*mx.split(x, 2, axis=axis))


def glu_halves(a: mx.array, b: mx.array) -> mx.array:
    """``a * sigmoid(b)``: a GLU whose halves are already apart (contiguous ones take the
    vectorised kernels on the CPU; the halves of one split array are column views)."""
    return _by_rows(_glu_cpu, a, b) if _fast_cpu(a) else a * mx.sigmoid(b)


# MKL's GEMM with many rows slows down as the product widens: [500, 1024] x [1024, N] ran at ~108
# GFLOP/s for N <= 1024 but 88 at N = 2048 and 80 at N = 4096 here.  So on the CPU a wide product
# with many rows is made in column blocks, each put through its activation as it comes (a block of
# [500, 512] stays in cache for it): a conformer feed-forward at 10 s of audio 96-131 -> 83-100 ms.
COLUMN_BLOCK = 512
WIDE_PRODUCT_COLUMNS = 1024  # wider than this (and more than TRANSPOSED_PRODUCT_MAX_ROWS rows): blocks


def _column_blocks(x: mx.array, weight: mx.array, columns: int) -> int:
    """Block width for the first ``columns`` outputs of ``x @ weight.T`` (0: one product)."""
    rows = x.size // x.shape[-1] if x.shape[-1] else 0
    if (
        not _fast_cpu(x)
        or weight.dtype != mx.float32
        or columns <= WIDE_PRODUCT_COLUMNS
        or rows <= TRANSPOSED_PRODUCT_MAX_ROWS
        or not COLUMN_BLOCK
    ):
        return 0
    return COLUMN_BLOCK


def linear_act(x: mx.array, layer: nn.Module, act) -> mx.array:
    """``act(layer(x))``; a wide float :class:`Linear` with many rows goes in column blocks on the CPU."""
    weight = layer.get("weight")
    block = _column_blocks(x, weight, weight.shape[0]) if type(layer) is Linear else 0
    if not block:
        return act(layer(x))
    bias = layer.get("bias")
    return mx.concatenate(
        [
            act(linear(x, weight[a : a + block], None if bias is None else bias[a : a + block]))
            for a in range(0, weight.shape[0], block)
        ],
        axis=-1,
    )


def linear_glu(x: mx.array, layer: nn.Module) -> mx.array:
    """``glu(layer(x))`` for a bias-free linear ``layer`` with ``2 * n`` outputs.  For a float weight
    on the CPU the two halves are separate products: contiguous halves for the GLU kernels, and MKL
    runs [500, 1024] x [1024, 1024] faster than the [1024, 2048] one (a conformer layer's pointwise
    conv + GLU at 10 s of audio: 23-28 -> 19 ms); with many rows, in column blocks (see above)."""
    weight = layer.get("weight")
    if type(layer) is Linear and "bias" not in layer and _fast_cpu(x) and weight.dtype == mx.float32:
        n = weight.shape[0] // 2
        block = _column_blocks(x, weight, 2 * n) or n
        parts = [
            glu_halves(linear(x, weight[a : min(a + block, n)]), linear(x, weight[n + a : n + min(a + block, n)]))
            for a in range(0, n, block)
        ]
        return parts[0] if len(parts) == 1 else mx.concatenate(parts, axis=-1)
    return glu(layer(x), axis=-1)


def attention(q: mx.array, k: mx.array, v: mx.array, scale: float, bias: Optional[mx.array] = None) -> mx.array:
    """``softmax(q k^T * scale + bias) v`` with an additive ``bias``: ``mx.fast.scaled_dot_product_attention``,
    except for float32 on the CPU, where MLX's kernel is itself matmul + softmax + matmul and the
    softmax's exp is what costs; there the same three steps run with the polynomial exp, the bias
    added by the score GEMM itself (``addmm``: no separate pass over the ``[T, T]`` scores; at
    T = 500, 16 heads: 65 -> 46 ms)."""
    if not _fast_cpu(q):
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=bias)
    kt = k.swapaxes(-1, -2)
    scores = (q * scale) @ kt if bias is None else mx.addmm(bias, q, kt, alpha=scale)
    weights = _softmax_numerator(scores, scores.max(axis=-1, keepdims=True))
    # the row sums as a mat-vec: [16, 500, 500] 3.6 -> 1.3 ms
    return (weights @ v) / (weights @ _column(weights.shape[-1], 1.0))


@mx.compile
def _layer_norm_cpu(x: mx.array, weight: mx.array, bias: mx.array, eps: mx.array) -> mx.array:
    mean = mx.mean(x, axis=-1, keepdims=True)
    centred = x - mean
    var = mx.mean(mx.square(centred), axis=-1, keepdims=True)
    return centred * mx.rsqrt(var + eps) * weight + bias


def _column(n: int, value: float) -> mx.array:
    """``[n, 1]`` float32 of ``value``: ``x @ col`` is a row sum (``value`` 1) or mean (``1 / n``) of
    ``x [..., n]`` as a BLAS mat-vec, several times faster than MLX's CPU row reductions.  Made per
    call (one small fill): a cache keyed by length would grow with every new input length."""
    return mx.full((n, 1), value)


def _layer_norm_rows_cpu(x: mx.array, weight: Optional[mx.array], bias: Optional[mx.array], eps: float) -> mx.array:
    col = _column(x.shape[-1], 1.0 / x.shape[-1])
    centred = x - x @ col
    y = centred * mx.rsqrt((centred * centred) @ col + eps)
    if weight is not None:
        y = y * weight
    return y if bias is None else y + bias


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` (same parameters), with two float32 CPU routes; MLX's CPU
    ``fast.layer_norm`` is its reference composition, ~17 separate ops with their broadcasts.

    * One row (a decoding step has 73 of them, where the per-op cost is all there is): one compiled
      graph, 53 -> 43 us each here.
    * Several rows: compiled kernels with broadcast inputs run MLX's scalar strided variant (500
      rows: 4.5 ms), and MLX's CPU row reductions are slow (a mean over [500, 1024]: 0.55 ms, 4x a
      copy); so the two row means are BLAS mat-vecs against a ``1/n`` column and the rest is MLX's
      own broadcasting ops (vectorised): [500, 1024] 2.0 -> 1.2 ms, [3000, 1024] 15 -> 10 ms, and
      closer to a float64 reference (3e-6 vs 1.5e-5 on inputs of mean 5, std 3), as the mean is
      subtracted before the squares are summed."""

    def __call__(self, x: mx.array) -> mx.array:
        if _fast_cpu(x):
            if x.size == x.shape[-1] and "weight" in self and "bias" in self:
                return _layer_norm_cpu(x, self.weight, self.bias, mx.array(self.eps, dtype=x.dtype))
            if x.size > x.shape[-1]:
                return _layer_norm_rows_cpu(x, self.get("weight"), self.get("bias"), self.eps)
        return super().__call__(x)


def _laplace(x: mx.array) -> mx.array:
    # transformers' LaplaceActivation: the normal CDF around mu = 0.707107, sigma = 0.282095
    return 0.5 * (1.0 + mx.erf((x - 0.707107) / (0.282095 * math.sqrt(2.0))))


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
    "quick_gelu": lambda x: x * sigmoid(1.702 * x),
    "laplace": _laplace,
    "mish": nn.mish,
    "swish": silu,
    "silu": silu,
    "sigmoid": sigmoid,
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
        self.self_attn_layer_norm = LayerNorm(dims, eps=eps)
        self.ffn = FeedForward(dims, ffn_dim, activation)
        self.ffn_layer_norm = LayerNorm(dims, eps=eps)

    def __call__(self, x: mx.array, mask=None) -> mx.array:
        x = x + self.self_attn(self.self_attn_layer_norm(x), mask)
        return x + self.ffn(self.ffn_layer_norm(x))


# --------------------------------------------------------------------------- CPU head parallelism
# MLX's CPU backend runs element-wise kernels (exp in softmax, the relative-position gather, mask
# selects) on one thread per stream.  For long sequences those T^2-sized passes dominate
# attention (measured at T=3000, H=16: exp alone 1.5 s of a 1.8 s attention call), so on the CPU
# the heads are split across one stream per core: 1.6x faster there.  Elsewhere (Metal) one
# stream is best and nothing changes.
_CPU_STREAMS: list = []
HEAD_PARALLEL_MIN_ELEMENTS = 1 << 20  # B*H*T*S below this: not worth the split


MAX_CPU_STREAMS = 8
# read once: os.cpu_count() costs ~14 us a call, and a decoding step asks ~150 times
CPU_CORES = os.cpu_count() or 1


def cpu_stream_count() -> int:
    """How many CPU streams a split uses: one per core, at most ``MAX_CPU_STREAMS``."""
    return min(CPU_CORES, MAX_CPU_STREAMS)


def cpu_streams(n: int):
    while len(_CPU_STREAMS) < n:
        _CPU_STREAMS.append(mx.new_stream(mx.cpu))
    return _CPU_STREAMS[:n]


def split_bounds(n: int, groups: int):
    """``(start, stop)`` of ``groups`` contiguous, near-equal parts of ``range(n)``."""
    bounds = [n * g // groups for g in range(groups + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def on_streams(fn, parts, axis: int) -> mx.array:
    """``fn(*part)`` for each part, each on its own CPU stream, concatenated on ``axis``."""
    outs = []
    for part, stream in zip(parts, cpu_streams(len(parts))):
        with mx.stream(stream):
            outs.append(fn(*part))
    return mx.concatenate(outs, axis=axis)


def over_streams(fn, n: int, groups: int, axis: int) -> mx.array:
    """``fn(slice)`` for ``groups`` contiguous slices of ``range(n)``, each on its own CPU stream,
    concatenated on ``axis`` (``fn`` of the whole range when ``groups`` is 1)."""
    if groups <= 1:
        return fn(slice(0, n))
    return on_streams(fn, [(slice(a, b),) for a, b in split_bounds(n, groups)], axis)


def head_groups(batch: int, heads: int, q_len: int, k_len: int) -> int:
    """How many head groups to run in parallel (1 = no split)."""
    if batch * heads * q_len * k_len < HEAD_PARALLEL_MIN_ELEMENTS or not cpu_routes():
        return 1
    n = min(CPU_CORES, heads)
    while heads % n:
        n -= 1
    return n


def parallel_over_heads(fn, heads: int, groups: int, *arrays):
    """Run ``fn(*slices)`` on ``groups`` contiguous head slices (axis 1 of every array whose axis 1
    has ``heads`` entries) on separate CPU streams; concatenate the results on axis 1."""
    if groups == 1:
        return fn(*arrays)

    def part(sl):
        return fn(*(a[:, sl] if a is not None and a.ndim == 4 and a.shape[1] == heads else a for a in arrays))

    return over_streams(part, heads, groups, axis=1)


SPLIT_MATVEC_MIN_BYTES = 4 << 20


def matvec_groups(x: mx.array, weight: mx.array) -> int:
    """Streams to spread a one-row product over (1 = no split).

    MKL runs a matrix-vector product on one core (~25 GB/s here); split by output rows over one
    CPU stream per core the same product reads weights at ~43 GB/s, and decoding one token is
    nothing but such products.  Only for float weights on the CPU.
    """
    if (
        not cpu_routes()
        or x.size != x.shape[-1]
        or weight.nbytes < SPLIT_MATVEC_MIN_BYTES
        or not mx.issubdtype(weight.dtype, mx.floating)
    ):
        return 1
    return cpu_stream_count()


# MKL's GEMM is slow for a few rows times a wide weight (``x @ W.T``, x [20, 1024], W [8192, 1024]:
# 12 ms here, 26 GFLOP/s) and about twice as fast when asked for the transposed product
# ``(W @ x.T).T`` (6.7 ms); the two run level at ~500 rows.  So on the CPU products with 2 to
# TRANSPOSED_PRODUCT_MAX_ROWS rows (short texts, the first decoder step, beams, the T2U, the speech
# adaptor) take that route.
TRANSPOSED_PRODUCT_MAX_ROWS = 256


def _few_rows(x: mx.array) -> bool:
    rows = x.size // x.shape[-1] if x.shape[-1] else 0
    return 1 < rows <= TRANSPOSED_PRODUCT_MAX_ROWS and cpu_routes()


def product(x: mx.array, weight: mx.array) -> mx.array:
    """``x @ weight.T`` for ``x`` ``[..., K]`` and a float ``weight`` ``[N, K]``."""
    if _few_rows(x):
        return (weight @ x.reshape(-1, x.shape[-1]).T).T.reshape(*x.shape[:-1], weight.shape[0])
    return x @ weight.T


# The per-stream parts of split products (views of rows of the weight and its companions), kept
# per set of arrays.  Made afresh, with 3-D operands, each part of each product put slices, a
# transpose, a bias broadcast and batch reshapes into the graph: ~1,400 of the 4,300 nodes of a
# v2-large decoding step, each a task for MLX's CPU scheduler (~5 us for a view).  Kept, they are
# evaluated with their first product and are plain arrays from then on.  Keyed by ``id`` and the
# function that cuts them; an entry goes when one of its arrays is freed.
_SPLIT_VIEWS: dict = {}


def _kept_parts(arrays: tuple, groups: int, cut):
    """``[cut(*arrays, start, stop) for each of groups row ranges]`` of ``arrays[0]``'s rows, made
    once per (arrays, groups, cut); ``None`` entries of ``arrays`` are allowed."""
    key = (cut, groups) + tuple(id(a) for a in arrays)
    hit = _SPLIT_VIEWS.get(key)
    if hit is not None and all(a is None or r() is a for r, a in zip(hit[0], arrays)):
        return hit[1]
    parts = [cut(*arrays, a, b) for a, b in split_bounds(arrays[0].shape[0], groups)]

    def forget(_, key=key):
        _SPLIT_VIEWS.pop(key, None)

    refs = [None if a is None else weakref.ref(a, forget) for a in arrays]
    _SPLIT_VIEWS[key] = (refs, parts)
    return parts


def _linear_part(weight: mx.array, bias: Optional[mx.array], start: int, stop: int):
    return weight[start:stop].T, None if bias is None else bias[None, start:stop]


def _quantized_part(w: mx.array, scales: mx.array, biases: Optional[mx.array], start: int, stop: int):
    return w[start:stop], scales[start:stop], None if biases is None else biases[start:stop]


def linear(x: mx.array, weight: mx.array, bias: Optional[mx.array] = None) -> mx.array:
    """``x @ weight.T + bias``: one-row products split over CPU streams (see above), a few rows
    through :func:`product`."""
    groups = matvec_groups(x, weight)
    if groups == 1:  # the common case stays free of slicing ops
        if bias is None or _few_rows(x):
            y = product(x, weight)
            return y if bias is None else y + bias
        return mx.addmm(bias, x, weight.T)

    row = x.reshape(1, x.shape[-1])  # 2-D operands: no batch reshapes and broadcasts per part

    def part(w_t, b):
        return row @ w_t if b is None else mx.addmm(b, row, w_t)

    parts = _kept_parts((weight, bias), groups, _linear_part)
    return on_streams(part, parts, axis=-1).reshape(*x.shape[:-1], weight.shape[0])


# --------------------------------------------------------------------------- quantized products
# MLX's CPU ``quantized_matmul`` is a reference loop: measured here (2 cores, 4096x1024 weight,
# 8-bit) 7 ms for one row and 3.2 s for 512 rows, where the float GEMM takes 60 ms.  So on the CPU
# a product with several rows dequantizes the weight (a transient float copy) and calls the BLAS
# GEMM, and either kind is split by output rows over one stream per core: 512 rows 3156 -> 67 ms,
# one row 7.1 -> 4.1 ms.  Metal keeps the fused kernel.
DEQUANTIZE_MIN_ROWS = 8


def quantized_product(x: mx.array, layer: nn.Module) -> mx.array:
    """``x @ W.T`` for a layer holding a quantized ``weight`` (with ``scales``, maybe ``biases``,
    ``group_size``, ``bits``, ``mode``): the weight of a quantized linear, embedding or conv."""
    w, scales, biases = layer["weight"], layer["scales"], layer.get("biases")
    kw = dict(group_size=layer.group_size, bits=layer.bits, mode=layer.mode)
    if not cpu_routes():
        return mx.quantized_matmul(x, w, scales, biases, transpose=True, **kw)
    dense = x.size // x.shape[-1] >= DEQUANTIZE_MIN_ROWS

    def part(w, scales, b):
        if dense:
            return product(x, mx.dequantize(w, scales, b, **kw).astype(x.dtype))
        return mx.quantized_matmul(x, w, scales, b, transpose=True, **kw)

    groups = min(cpu_stream_count(), w.shape[0] // 64)
    if groups <= 1:
        return part(w, scales, biases)
    return on_streams(part, _kept_parts((w, scales, biases), groups, _quantized_part), axis=-1)


class QuantizedLinear(nn.QuantizedLinear):
    """``nn.QuantizedLinear`` whose product goes through :func:`quantized_product`."""

    def __call__(self, x: mx.array) -> mx.array:
        y = quantized_product(x, self)
        return y + self["bias"] if "bias" in self else y


class QuantizedEmbedding(nn.QuantizedEmbedding):
    """``nn.QuantizedEmbedding`` whose tied-head product goes through :func:`quantized_product`."""

    def as_linear(self, x: mx.array) -> mx.array:
        return quantized_product(x, self)
