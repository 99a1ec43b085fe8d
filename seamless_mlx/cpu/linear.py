"""Matrix products for the CPU: split mat-vecs, transposed few-row products, column blocks, and
quantized products through the BLAS; the ``nn.Linear``, ``nn.Embedding`` (tied head) and
quantized layers that use them.

* MKL runs a matrix-vector product on one core; split by output rows over one CPU stream per core
  the same product reads weights much faster, and decoding one token is nothing but such products.
* MKL's GEMM is slow for a few rows times a wide weight (``x @ W.T``) and about twice as fast when
  asked for the transposed product ``(W @ x.T).T``; the two run level at ~500 rows.
* MKL's GEMM with many rows slows down as the product widens, so a wide product with many rows is
  made in column blocks, each put through its activation as it comes (a block stays in cache).
* MLX's CPU ``quantized_matmul`` is a reference loop: a product with several rows dequantizes the
  weight (a transient float copy) and calls the BLAS GEMM; either kind is split by output rows.
"""

from __future__ import annotations

from typing import Optional

import mlx.core as mx
import mlx.nn as nn

from . import tuning
from .ops import glu, glu_halves
from .streams import cpu_stream_count, kept_parts, on_streams


def matvec_groups(x: mx.array, weight: mx.array) -> int:
    """Streams to spread a one-row product over (1 = no split); only for large float weights."""
    if (
        x.size != x.shape[-1]
        or weight.nbytes < tuning.SPLIT_MATVEC_MIN_BYTES
        or not mx.issubdtype(weight.dtype, mx.floating)
    ):
        return 1
    return cpu_stream_count()


def few_rows(x: mx.array) -> bool:
    rows = x.size // x.shape[-1] if x.shape[-1] else 0
    return 1 < rows <= tuning.TRANSPOSED_PRODUCT_MAX_ROWS


def product(x: mx.array, weight: mx.array) -> mx.array:
    """``x @ weight.T`` for ``x`` ``[..., K]`` and a float ``weight`` ``[N, K]``."""
    if few_rows(x):
        return (weight @ x.reshape(-1, x.shape[-1]).T).T.reshape(*x.shape[:-1], weight.shape[0])
    return x @ weight.T


def _linear_part(weight: mx.array, bias: Optional[mx.array], start: int, stop: int):
    return weight[start:stop].T, None if bias is None else bias[None, start:stop]


def _quantized_part(w: mx.array, scales: mx.array, biases: Optional[mx.array], start: int, stop: int):
    return w[start:stop], scales[start:stop], None if biases is None else biases[start:stop]


def linear(x: mx.array, weight: mx.array, bias: Optional[mx.array] = None) -> mx.array:
    """``x @ weight.T + bias``: one-row products split over CPU streams, a few rows through
    :func:`product`."""
    groups = matvec_groups(x, weight)
    if groups == 1:  # the common case stays free of slicing ops
        if bias is None or few_rows(x):
            y = product(x, weight)
            return y if bias is None else y + bias
        return mx.addmm(bias, x, weight.T)

    row = x.reshape(1, x.shape[-1])  # 2-D operands: no batch reshapes and broadcasts per part

    def part(w_t, b):
        return row @ w_t if b is None else mx.addmm(b, row, w_t)

    parts = kept_parts((weight, bias), groups, _linear_part)
    return on_streams(part, parts, axis=-1).reshape(*x.shape[:-1], weight.shape[0])


def column_blocks(x: mx.array, weight: mx.array, columns: int) -> int:
    """Block width for the first ``columns`` outputs of ``x @ weight.T`` (0: one product)."""
    rows = x.size // x.shape[-1] if x.shape[-1] else 0
    if (
        x.dtype != mx.float32
        or weight.dtype != mx.float32
        or columns <= tuning.WIDE_PRODUCT_COLUMNS
        or rows <= tuning.TRANSPOSED_PRODUCT_MAX_ROWS
        or not tuning.COLUMN_BLOCK
    ):
        return 0
    return tuning.COLUMN_BLOCK


def linear_act(x: mx.array, layer: nn.Module, act) -> mx.array:
    """``act(layer(x))``; a wide float :class:`Linear` with many rows goes in column blocks."""
    weight = layer.get("weight")
    block = column_blocks(x, weight, weight.shape[0]) if type(layer) is Linear else 0
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
    the two halves are separate products: contiguous halves for the GLU kernels, and MKL runs two
    [*, n] products faster than one [*, 2n]; with many rows, in column blocks."""
    weight = layer.get("weight")
    if type(layer) is Linear and "bias" not in layer and x.dtype == mx.float32 and weight.dtype == mx.float32:
        n = weight.shape[0] // 2
        block = column_blocks(x, weight, 2 * n) or n
        parts = [
            glu_halves(linear(x, weight[a : min(a + block, n)]), linear(x, weight[n + a : n + min(a + block, n)]))
            for a in range(0, n, block)
        ]
        return parts[0] if len(parts) == 1 else mx.concatenate(parts, axis=-1)
    return glu(layer(x), axis=-1)


def quantized_product(x: mx.array, layer: nn.Module) -> mx.array:
    """``x @ W.T`` for a layer holding a quantized ``weight`` (with ``scales``, maybe ``biases``,
    ``group_size``, ``bits``, ``mode``): the weight of a quantized linear, embedding or conv."""
    w, scales, biases = layer["weight"], layer["scales"], layer.get("biases")
    kw = dict(group_size=layer.group_size, bits=layer.bits, mode=layer.mode)
    dense = x.size // x.shape[-1] >= tuning.DEQUANTIZE_MIN_ROWS

    def part(w, scales, b):
        if dense:
            return product(x, mx.dequantize(w, scales, b, **kw).astype(x.dtype))
        return mx.quantized_matmul(x, w, scales, b, transpose=True, **kw)

    groups = min(cpu_stream_count(), w.shape[0] // tuning.QUANTIZED_SPLIT_ROWS)
    if groups <= 1:
        return part(w, scales, biases)
    return on_streams(part, kept_parts((w, scales, biases), groups, _quantized_part), axis=-1)


class Linear(nn.Linear):
    """``nn.Linear`` whose product goes through :func:`linear`; quantized, it becomes
    :class:`QuantizedLinear` (so ``nn.quantize`` on an accelerated model keeps the CPU routes)."""

    def __call__(self, x: mx.array) -> mx.array:
        return linear(x, self.weight, self.get("bias"))

    def to_quantized(self, group_size: int = 64, bits: int = 4, mode: str = "affine", **_):
        return QuantizedLinear.from_linear(self, group_size, bits, mode=mode)


class Embedding(nn.Embedding):
    """``nn.Embedding`` whose tied-head product (``as_linear``) goes through :func:`linear`;
    quantized, it becomes :class:`QuantizedEmbedding`."""

    def as_linear(self, x: mx.array) -> mx.array:
        return linear(x, self.weight)

    def to_quantized(self, group_size: int = 64, bits: int = 4, mode: str = "affine", **_):
        return QuantizedEmbedding.from_embedding(self, group_size, bits, mode=mode)


class QuantizedLinear(nn.QuantizedLinear):
    """``nn.QuantizedLinear`` whose product goes through :func:`quantized_product`."""

    def __call__(self, x: mx.array) -> mx.array:
        y = quantized_product(x, self)
        return y + self["bias"] if "bias" in self else y


class QuantizedEmbedding(nn.QuantizedEmbedding):
    """``nn.QuantizedEmbedding`` whose tied-head product goes through :func:`quantized_product`."""

    def as_linear(self, x: mx.array) -> mx.array:
        return quantized_product(x, self)
