"""Element-wise kernels for float32 on the CPU: ``exp`` by multiply-adds, and what is built on it
(sigmoid, SiLU, GLU, softmax), the layer norm and the attention that uses them.

MLX's CPU ``exp`` (behind sigmoid, SiLU and softmax) is scalar and is most of the conformer's
non-GEMM time.  Here e^x = (e^(x/32))^32 for |x| <= 20, with e^(x/32) - 1 from its degree-9
Taylor polynomial (truncation 3e-9; 1 is added last, so that sum is the only rounding next to 1),
so the error is the rounding of the five squarings: <= 6e-6 relative (MLX's own exp: 1e-6).
Outside that range every use below is saturated: e^-20 = 2e-9 is below float32 resolution next
to 1 (sigmoid, SiLU) and a softmax weight that small is taken as 0.

How the arithmetic is cut into compiled functions matters as much as the arithmetic.  MLX compiles
each fused CPU kernel with plain ``g++ -O3`` (SSE2) and a kernel only runs 4 lanes wide when
(a) every input is contiguous and of the output's shape and (b) GCC can vectorise the loop:

1. GCC does not vectorise a loop that mixes a comparison or select with arithmetic (the select
   becomes a branch); a loop of selects alone, or of multiply-adds alone, is vectorised.  So
   clamps and the final zeroing are compiled functions of their own.
2. MLX cuts a fused graph deeper than 11 operations into several kernels, and a cut just after a
   scalar constant's broadcast hands the next kernel a stride-0 input: its scalar "strided"
   variant runs.  So the chain is two compiled functions, each shallow enough to be one kernel:
   the polynomial with two squarings, then three squarings with what the caller makes of e^x.
3. A broadcast input (a softmax's row maximum) also sends the kernel down the strided path: the
   subtraction runs before, as MLX's own binary op.
"""

from __future__ import annotations

import math
from typing import Optional

import mlx.core as mx
import mlx.nn as nn

from ..layers import quick_gelu
from .streams import by_rows

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


def exp_bounded(x: mx.array) -> mx.array:
    """e^x for ``|x| <= 20`` (larger inputs are clamped to that range)."""
    return _exp_tail_compiled(_exp_head(_clamped_negative(-x)))


def _sigmoid_whole(x: mx.array) -> mx.array:
    # below -20 (the clamp) within 2.1e-9 of 0: no select needed
    return _inverse_one_plus_exp(_exp_head(_clamped_negative(x)))


def _silu_whole(x: mx.array) -> mx.array:
    return _zero_below_range(x, _times_inverse_one_plus_exp(x, _exp_head(_clamped_negative(x))))


def _glu_whole(a: mx.array, b: mx.array) -> mx.array:
    """``a * sigmoid(b)``."""
    return _times_inverse_one_plus_exp(a, _exp_head(_clamped_negative(b)))


def softmax_numerator(scores: mx.array, row_max: mx.array) -> mx.array:
    """``exp(scores - row_max)``; scores far below the row maximum give 0."""
    x = scores - row_max  # <= 0; far below the range the polynomial gives inf (never NaN): zeroed
    return _zero_below_range(x, _exp_tail_compiled(_exp_head(x)))


def sigmoid(x: mx.array) -> mx.array:
    return by_rows(_sigmoid_whole, x) if x.dtype == mx.float32 else mx.sigmoid(x)


def silu(x: mx.array) -> mx.array:
    return by_rows(_silu_whole, x) if x.dtype == mx.float32 else nn.silu(x)


def glu_halves(a: mx.array, b: mx.array) -> mx.array:
    """``a * sigmoid(b)``: a GLU whose halves are already apart (contiguous ones take the
    vectorised kernels; the halves of one split array are column views)."""
    return by_rows(_glu_whole, a, b) if a.dtype == mx.float32 else a * mx.sigmoid(b)


def glu(x: mx.array, axis: int = -1) -> mx.array:
    return glu_halves(*mx.split(x, 2, axis=axis))


def _quick_gelu(x: mx.array) -> mx.array:
    return x * sigmoid(1.702 * x)


# the plain activations that have a faster CPU twin (the others are used as they are)
_ACTIVATIONS = {nn.silu: silu, mx.sigmoid: sigmoid, quick_gelu: _quick_gelu}


def activation(fn):
    """The CPU twin of a plain activation function (``fn`` itself when it has none)."""
    return _ACTIVATIONS.get(fn, fn)


def _column(n: int, value: float) -> mx.array:
    """``[n, 1]`` float32 of ``value``: ``x @ col`` is a row sum (``value`` 1) or mean (``1 / n``) of
    ``x [..., n]`` as a BLAS mat-vec, several times faster than MLX's CPU row reductions.  Made per
    call (one small fill): a cache keyed by length would grow with every new input length."""
    return mx.full((n, 1), value)


def attention(q: mx.array, k: mx.array, v: mx.array, scale: float, bias: Optional[mx.array] = None) -> mx.array:
    """``softmax(q k^T * scale + bias) v`` with an additive ``bias``.  For float32 MLX's CPU kernel is
    itself matmul + softmax + matmul and the softmax's exp is what costs; here the same three steps
    run with the polynomial exp, the bias added by the score GEMM itself (``addmm``: no separate
    pass over the ``[T, T]`` scores) and the row sums as a mat-vec."""
    if q.dtype != mx.float32:
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=bias)
    kt = k.swapaxes(-1, -2)
    scores = (q * scale) @ kt if bias is None else mx.addmm(bias, q, kt, alpha=scale)
    weights = softmax_numerator(scores, scores.max(axis=-1, keepdims=True))
    return (weights @ v) / (weights @ _column(weights.shape[-1], 1.0))


@mx.compile
def _layer_norm_row(x: mx.array, weight: mx.array, bias: mx.array, eps: mx.array) -> mx.array:
    mean = mx.mean(x, axis=-1, keepdims=True)
    centred = x - mean
    var = mx.mean(mx.square(centred), axis=-1, keepdims=True)
    return centred * mx.rsqrt(var + eps) * weight + bias


def _layer_norm_rows(x: mx.array, weight: Optional[mx.array], bias: Optional[mx.array], eps: float) -> mx.array:
    col = _column(x.shape[-1], 1.0 / x.shape[-1])
    centred = x - x @ col
    y = centred * mx.rsqrt((centred * centred) @ col + eps)
    if weight is not None:
        y = y * weight
    return y if bias is None else y + bias


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` with two float32 routes; MLX's CPU ``fast.layer_norm`` is its reference
    composition, ~17 separate ops with their broadcasts.

    * One row (a decoding step), where the per-op cost is all there is: one compiled graph.
    * Several rows: compiled kernels with broadcast inputs run MLX's scalar strided variant, and
      MLX's CPU row reductions are slow; so the two row means are BLAS mat-vecs against a ``1/n``
      column and the rest is MLX's own broadcasting ops (vectorised).  Also closer to a float64
      reference, as the mean is subtracted before the squares are summed."""

    def __call__(self, x: mx.array) -> mx.array:
        if x.dtype == mx.float32:
            if x.size == x.shape[-1] and "weight" in self and "bias" in self:
                return _layer_norm_row(x, self.weight, self.bias, mx.array(self.eps, dtype=x.dtype))
            if x.size > x.shape[-1]:
                return _layer_norm_rows(x, self.get("weight"), self.get("bias"), self.eps)
        return super().__call__(x)
