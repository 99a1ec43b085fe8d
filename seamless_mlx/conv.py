"""1-D convolutions that stay fast on MLX's CPU backend.

MLX 0.32's CPU kernels for dilated ``conv1d`` and for ``conv_transpose1d`` are very slow
(measured on 2 x86_64 cores: ~100x slower than torch for HiFi-GAN sized layers, see
``benchmarks/conv_speed.py``), and the vocoder is made of little else.  Both are rewritten here
as a few large GEMMs, which go to the BLAS that :mod:`seamless_mlx._blas` loaded:

* ``conv1d``: one ``[T_out, Cin] @ [Cin, Cout]`` product per kernel tap on a shifted (strided)
  view of the padded input, accumulated with ``addmm``.  Measured faster than both the native
  kernel and a single im2col product (stacking the taps costs a ``K``-fold copy of the input).
* ``conv_transpose1d``: polyphase form.  Output phase ``r`` of sample ``q * stride + r`` only
  sees input frames ``q - j`` through tap ``j * stride + r``; so ``ceil(K / stride)`` products
  ``[T, Cin] @ [Cin, stride * Cout]`` on shifted inputs give all phases at once, and a reshape
  interleaves them.  No scatter, no overlap-add.

On other devices (Metal) the native kernels are fast and are used.  ``SEAMLESS_MLX_CONV=native``
or ``=matmul`` forces one implementation everywhere.

Layouts are MLX's: activations ``[B, T, C]``, weights ``[Cout, K, Cin]`` for both kinds of
convolution.  Semantics (padding, output length) are torch's.
"""

from __future__ import annotations

import math
import os
from typing import Optional, Tuple, Union

import mlx.core as mx
import mlx.nn as nn

from .layers import cpu_routes, linear, quantized_product

Padding = Union[int, Tuple[int, int]]


def use_matmul() -> bool:
    """Whether the GEMM decompositions are used for the current default device."""
    forced = os.environ.get("SEAMLESS_MLX_CONV", "").strip().lower()
    if forced == "native":
        return False
    if forced == "matmul":
        return True
    return cpu_routes()


def _pads(padding: Padding) -> Tuple[int, int]:
    if isinstance(padding, int):
        return padding, padding
    left, right = padding
    return int(left), int(right)


def conv1d(
    x: mx.array,
    weight: mx.array,
    bias: Optional[mx.array] = None,
    stride: int = 1,
    padding: Padding = 0,
    dilation: int = 1,
    groups: int = 1,
) -> mx.array:
    """Torch-semantics 1-D convolution, channels last.

    Args:
        x: ``[B, T, Cin]``.
        weight: ``[Cout, K, Cin // groups]``.
        bias: ``[Cout]`` or ``None``.
        padding: zeros added on both sides, or ``(left, right)``.

    Returns:
        ``[B, T_out, Cout]`` with ``T_out = (T + left + right - dilation * (K - 1) - 1) // stride + 1``.
    """
    left, right = _pads(padding)
    if groups != 1 or not use_matmul():
        if left != right:
            x = mx.pad(x, [(0, 0), (left, right), (0, 0)])
            left = 0
        y = mx.conv1d(x, weight, stride=stride, padding=left, dilation=dilation, groups=groups)
        return y if bias is None else y + bias

    _, kernel, _ = weight.shape
    if left or right:
        x = mx.pad(x, [(0, 0), (left, right), (0, 0)])
    t_out = (x.shape[1] - dilation * (kernel - 1) - 1) // stride + 1
    span = (t_out - 1) * stride + 1
    cin = x.shape[-1]
    if kernel > 1 and t_out <= 4 * cin:
        # Short and wide (the T2U decoder's kernel-7 1024-channel convs): one GEMM over the stacked
        # taps beats K skinny ones (measured 4x); long and narrow (the vocoder) is the other way.
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
    if not use_matmul():
        y = mx.conv_transpose1d(x, weight, stride=stride, padding=padding, output_padding=output_padding)
        return y if bias is None else y + bias

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


class Conv1d(nn.Module):
    """``nn.Conv1d`` look-alike (same parameter names) that calls :func:`conv1d`.

    ``padding`` may be an int, ``(left, right)`` or ``"same"`` (torch's rule: the extra zero of an
    even receptive field goes on the right).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: Union[Padding, str] = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        if padding == "same":
            total = dilation * (kernel_size - 1)
            padding = (total // 2, total - total // 2)
        self.stride = stride
        # two ints, not a tuple: mlx.nn.Module keeps tuples in its parameter tree
        self.pad_left, self.pad_right = _pads(padding)
        self.dilation = dilation
        self.groups = groups
        scale = math.sqrt(1.0 / (in_channels // groups * kernel_size))
        self.weight = mx.random.uniform(-scale, scale, (out_channels, kernel_size, in_channels // groups))
        if bias:
            self.bias = mx.zeros((out_channels,))

    def __call__(self, x: mx.array) -> mx.array:
        """``[B, T, Cin]`` -> ``[B, T_out, Cout]``."""
        return conv1d(
            x,
            self.weight,
            self.get("bias"),
            self.stride,
            (self.pad_left, self.pad_right),
            self.dilation,
            self.groups,
        )

    def to_quantized(self, group_size: int = 64, bits: int = 4, mode: str = "affine", **_):
        """The same convolution with a quantized ``[Cout, K * Cin]`` weight (``nn.quantize``'s hook,
        also used by :func:`seamless_mlx.quantize.quantize_modules`)."""
        return QuantizedConv1d.from_conv(self, group_size, bits, mode)


def stacked_taps(x: mx.array, kernel: int, stride: int, left: int, right: int, dilation: int) -> mx.array:
    """``[B, T, C]`` -> ``[B, T_out, K * C]``: the K input frames each output frame sees, tap-major."""
    if left or right:
        x = mx.pad(x, [(0, 0), (left, right), (0, 0)])
    t_out = (x.shape[1] - dilation * (kernel - 1) - 1) // stride + 1
    span = (t_out - 1) * stride + 1
    if kernel == 1:
        return x[:, :span:stride]
    return mx.concatenate([x[:, k * dilation : k * dilation + span : stride] for k in range(kernel)], axis=-1)


class QuantizedConv1d(nn.Module):
    """A :class:`Conv1d` (``groups == 1``) whose weight is stored quantized as the ``[Cout, K * Cin]``
    matrix of its stacked taps; the forward pass is one quantized product (:func:`quantized_product`).

    Wide, short convolutions (the T2U decoder's kernel-7 1024-channel convs, the speech adaptor's
    stride-8 convs) hold most of the non-linear bytes of the model, so quantizing them is what
    brings a 4-bit folder under its size target.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=(0, 0), dilation=1,
                 bias=True, group_size=64, bits=4, mode="affine"):
        super().__init__()
        self.stride, self.dilation, self.kernel_size = stride, dilation, kernel_size
        self.pad_left, self.pad_right = _pads(padding)
        self.group_size, self.bits, self.mode = group_size, bits, mode
        w = mx.zeros((out_channels, kernel_size * in_channels))
        self.weight, self.scales, *biases = mx.quantize(w, group_size, bits, mode=mode)
        if biases:
            self.biases = biases[0]
        if bias:
            self.bias = mx.zeros((out_channels,))
        self.freeze()

    @classmethod
    def from_conv(cls, conv: "Conv1d", group_size: int, bits: int, mode: str = "affine") -> "QuantizedConv1d":
        if conv.groups != 1:
            raise ValueError("only ungrouped convolutions can be quantized")
        c_out, kernel, c_in = conv.weight.shape
        q = cls(c_in, c_out, kernel, conv.stride, (conv.pad_left, conv.pad_right), conv.dilation,
                "bias" in conv, group_size, bits, mode)
        q.weight, q.scales, *biases = mx.quantize(conv.weight.reshape(c_out, kernel * c_in), group_size, bits, mode=mode)
        if biases:
            q.biases = biases[0]
        if "bias" in conv:
            q.bias = conv.bias
        return q

    def __call__(self, x: mx.array) -> mx.array:
        cols = stacked_taps(x, self.kernel_size, self.stride, self.pad_left, self.pad_right, self.dilation)
        y = quantized_product(cols, self)
        return y if "bias" not in self else y + self.bias


class ConvTranspose1d(nn.Module):
    """``nn.ConvTranspose1d`` look-alike (same parameter names) that calls :func:`conv_transpose1d`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        output_padding: int = 0,
        bias: bool = True,
    ):
        super().__init__()
        self.stride = stride
        self.padding = padding
        self.output_padding = output_padding
        scale = math.sqrt(1.0 / (in_channels * kernel_size))
        self.weight = mx.random.uniform(-scale, scale, (out_channels, kernel_size, in_channels))
        if bias:
            self.bias = mx.zeros((out_channels,))

    def __call__(self, x: mx.array) -> mx.array:
        """``[B, T, Cin]`` -> ``[B, (T - 1) * stride - 2 * padding + K + output_padding, Cout]``."""
        return conv_transpose1d(
            x, self.weight, self.get("bias"), self.stride, self.padding, self.output_padding
        )
