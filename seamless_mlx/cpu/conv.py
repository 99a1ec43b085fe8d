"""1-D convolutions as GEMMs for the CPU.

MLX's CPU kernels for dilated ``conv1d`` and for ``conv_transpose1d`` are very slow for HiFi-GAN
sized layers (``benchmarks/conv_speed.py``), and the vocoder is made of little else.  Both are
rewritten here as a few large GEMMs, which go to the BLAS:

* ``conv1d``: one ``[T_out, Cin] @ [Cin, Cout]`` product per kernel tap on a shifted (strided)
  view of the padded input, accumulated with ``addmm``; short and wide convolutions (the T2U
  decoder's) as one GEMM over the stacked taps instead.
* ``conv_transpose1d``: polyphase form.  Output phase ``r`` of sample ``q * stride + r`` only
  sees input frames ``q - j`` through tap ``j * stride + r``; so ``ceil(K / stride)`` products
  ``[T, Cin] @ [Cin, stride * Cout]`` on shifted inputs give all phases at once, and a reshape
  interleaves them.  No scatter, no overlap-add.
* the causal depthwise convolution of the conformer: K shifted multiply-adds, long inputs cut
  into one time span per core (each reads its ``K - 1`` frames of history).

Layouts are MLX's: activations ``[B, T, C]``, weights ``[Cout, K, Cin]`` for both kinds of
convolution.  Semantics (padding, output length) are torch's.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import mlx.core as mx
import mlx.nn as nn

from .. import quantize
from ..layers import stacked_taps
from . import tuning
from .linear import linear, quantized_product
from .streams import over_streams

Padding = Union[int, Tuple[int, int]]


def conv1d(
    x: mx.array,
    weight: mx.array,
    bias: Optional[mx.array] = None,
    stride: int = 1,
    padding: Padding = 0,
    dilation: int = 1,
) -> mx.array:
    """Torch-semantics ungrouped 1-D convolution, channels last.

    Args:
        x: ``[B, T, Cin]``.
        weight: ``[Cout, K, Cin]``.
        bias: ``[Cout]`` or ``None``.
        padding: zeros added on both sides, or ``(left, right)``.

    Returns:
        ``[B, T_out, Cout]`` with ``T_out = (T + left + right - dilation * (K - 1) - 1) // stride + 1``.
    """
    left, right = (padding, padding) if isinstance(padding, int) else padding
    _, kernel, _ = weight.shape
    if left or right:
        x = mx.pad(x, [(0, 0), (left, right), (0, 0)])
    t_out = (x.shape[1] - dilation * (kernel - 1) - 1) // stride + 1
    span = (t_out - 1) * stride + 1
    cin = x.shape[-1]
    if kernel > 1 and t_out <= tuning.STACKED_TAPS_MAX_RATIO * cin:
        # short and wide: one GEMM over the stacked taps beats K skinny ones; long and narrow
        # (the vocoder) is the other way
        cols = stacked_taps(x, kernel, stride, 0, 0, dilation)  # [B, T_out, K * Cin], like the weight
        return linear(cols, weight.reshape(weight.shape[0], kernel * cin), bias)
    y = None
    for k in range(kernel):
        start = k * dilation
        tap = x[:, start : start + span : stride] if stride > 1 else x[:, start : start + span]
        w_k = weight[:, k, :].T
        if y is None:
            y = tap @ w_k if bias is None else mx.addmm(bias, tap, w_k)
        else:
            y = mx.addmm(y, tap, w_k)
    return y


def conv_transpose1d(
    x: mx.array,
    weight: mx.array,
    bias: Optional[mx.array] = None,
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
) -> mx.array:
    """Torch-semantics 1-D transposed convolution, channels last.

    Args:
        x: ``[B, T, Cin]``.
        weight: ``[Cout, K, Cin]`` (MLX layout; torch's ``[Cin, Cout, K]`` is ``transpose(1, 2, 0)``).
        bias: ``[Cout]`` or ``None``.

    Returns:
        ``[B, T_out, Cout]`` with ``T_out = (T - 1) * stride - 2 * padding + K + output_padding``.
    """
    c_out, kernel, c_in = weight.shape
    batch, length, _ = x.shape
    phases = -(-kernel // stride)  # taps per output phase
    # [Cout, K, Cin] -> [phases, Cin, stride * Cout]; tap j * stride + r feeds phase r from frame q - j
    w = mx.pad(weight, [(0, 0), (0, phases * stride - kernel), (0, 0)])
    w = w.reshape(c_out, phases, stride, c_in).transpose(1, 3, 2, 0).reshape(phases, c_in, stride * c_out)
    frames = length + phases - 1
    xp = mx.pad(x, [(0, 0), (phases - 1, phases - 1), (0, 0)]) if phases > 1 else x
    y = None
    for j in range(phases):
        start = phases - 1 - j  # frame q of this view holds input frame q - j
        tap = xp[:, start : start + frames]
        y = tap @ w[j] if y is None else mx.addmm(y, tap, w[j])
    y = y.reshape(batch, frames * stride, c_out)

    t_out = (length - 1) * stride - 2 * padding + kernel + output_padding
    end = padding + t_out
    if end > y.shape[1]:
        # output_padding past the last tap: torch leaves those samples at the bias
        y = mx.pad(y, [(0, 0), (0, end - y.shape[1]), (0, 0)])
    y = y[:, padding:end]
    return y if bias is None else y + bias


def depthwise_conv1d(x: mx.array, weight: mx.array) -> mx.array:
    """Depthwise convolution without padding: ``x [B, T + K - 1, C]``, ``weight [C, K, 1]`` ->
    ``[B, T, C]``, as K shifted multiply-adds, long inputs in one time span per CPU stream."""
    K = weight.shape[1]
    T = x.shape[1] - (K - 1)
    # [K, C], contiguous: each tap multiplies by a contiguous row (a strided column of the
    # [C, K] weight sends MLX's CPU binary ops down their scalar path)
    w = mx.contiguous(weight[:, :, 0].T.astype(x.dtype))

    def span(sl: slice) -> mx.array:
        start, n = sl.start, sl.stop - sl.start
        y = x[:, start : start + n] * w[0]
        for i in range(1, K):
            y = y + x[:, start + i : start + i + n] * w[i]
        return y

    groups = tuning.CPU_CORES if x.size >= tuning.DEPTHWISE_SPLIT_MIN else 1
    return over_streams(span, T, groups if T >= 2 * groups else 1, axis=1)


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` as GEMMs (:func:`conv1d`), or as shifted multiply-adds when depthwise."""

    def __call__(self, x: mx.array) -> mx.array:
        if self.groups == 1:
            return conv1d(x, self.weight, self.get("bias"), self.stride, self.padding, self.dilation)
        if self.groups == x.shape[-1] == self.weight.shape[0] and self.stride == 1 and self.dilation == 1:
            if self.padding:
                x = mx.pad(x, [(0, 0), (self.padding, self.padding), (0, 0)])
            y = depthwise_conv1d(x, self.weight)
            return y + self.bias if "bias" in self else y
        return super().__call__(x)

    def to_quantized(self, group_size: int = 64, bits: int = 4, mode: str = "affine"):
        """:class:`QuantizedConv1d` (see :func:`seamless_mlx.quantize.quantize_modules`)."""
        return QuantizedConv1d.from_conv(self, group_size, bits, mode)


class ConvTranspose1d(nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` in polyphase form (:func:`conv_transpose1d`)."""

    def __call__(self, x: mx.array) -> mx.array:
        if self.dilation != 1:
            return super().__call__(x)
        return conv_transpose1d(x, self.weight, self.get("bias"), self.stride, self.padding, self.output_padding)


class QuantizedConv1d(quantize.QuantizedConv1d):
    """:class:`seamless_mlx.quantize.QuantizedConv1d` with its product through :func:`quantized_product`."""

    def __call__(self, x: mx.array) -> mx.array:
        cols = stacked_taps(x, self.kernel_size, self.stride, self.padding, self.padding, self.dilation)
        y = quantized_product(cols, self)
        return y if "bias" not in self else y + self.bias
