"""Weight quantization (mlx-lm conventions).

Quantized: the linear layers of the text encoder/decoder, speech encoder (with adaptor) and T2U
model, the shared token embedding (which is also the tied LM head, used through
``QuantizedEmbedding.as_linear``), and the wide convolutions of the speech adaptor and the T2U
decoder layers (as the ``[Cout, K * Cin]`` matrix of their stacked taps, see
:class:`QuantizedConv1d`), and two large lookup tables: the T2U character
embedding and the vocoder's unit embedding (a lookup error is one rounding of one row; measured in
benchmarks/quantization.py).  Kept in floating point: the depthwise convolution, norms, small
embeddings (positions, speakers, languages), the T2U duration predictor (its rounding decides how
many units are spoken) and the rest of the vocoder (its output is the audio).

Quantized exports store those floating-point parts, and the quantization scales and biases, in
float16 unless another ``dtype`` is asked for: float32 scales alone cost half a bit per weight.
"""

from __future__ import annotations

from typing import Dict

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_map_with_path

from .layers import stacked_taps

QUANTIZED_ROOTS = ("shared", "text_encoder.", "text_decoder.", "speech_encoder.", "t2u_model.")
QUANTIZED_CONV_ROOTS = ("speech_encoder.adapter.", "t2u_model.model.decoder.layers.")
QUANTIZED_EMBEDDINGS = ("shared", "t2u_model.model.decoder.embed_char", "vocoder.unit_embedding")
DEFAULT_DTYPE = "float16"  # of the parts a quantized export keeps in floating point
ALLOWED_BITS = (4, 8)
ALLOWED_GROUPS = (32, 64, 128)


def check_quant_args(bits: int, group_size: int):
    if bits not in ALLOWED_BITS:
        raise ValueError(f"--q-bits must be one of {', '.join(map(str, ALLOWED_BITS))}, got {bits}")
    if group_size not in ALLOWED_GROUPS:
        raise ValueError(f"--q-group-size must be one of {', '.join(map(str, ALLOWED_GROUPS))}, got {group_size}")


class QuantizedConv1d(nn.Module):
    """An ungrouped ``nn.Conv1d`` whose weight is stored quantized as the ``[Cout, K * Cin]`` matrix
    of its stacked taps; the forward pass is one quantized product.

    Wide, short convolutions (the T2U decoder's kernel-7 1024-channel convs, the speech adaptor's
    stride-8 convs) hold most of the non-linear bytes of the model, so quantizing them is what
    brings a 4-bit folder under its size target.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 bias=True, group_size=64, bits=4, mode="affine"):
        super().__init__()
        self.stride, self.padding, self.dilation, self.kernel_size = stride, padding, dilation, kernel_size
        self.group_size, self.bits, self.mode = group_size, bits, mode
        w = mx.zeros((out_channels, kernel_size * in_channels))
        self.weight, self.scales, *biases = mx.quantize(w, group_size, bits, mode=mode)
        if biases:
            self.biases = biases[0]
        if bias:
            self.bias = mx.zeros((out_channels,))
        self.freeze()

    @classmethod
    def from_conv(cls, conv: nn.Conv1d, group_size: int, bits: int, mode: str = "affine") -> "QuantizedConv1d":
        if conv.groups != 1:
            raise ValueError("only ungrouped convolutions can be quantized")
        c_out, kernel, c_in = conv.weight.shape
        q = cls(c_in, c_out, kernel, conv.stride, conv.padding, conv.dilation, "bias" in conv, group_size, bits, mode)
        q.weight, q.scales, *biases = mx.quantize(conv.weight.reshape(c_out, kernel * c_in), group_size, bits, mode=mode)
        if biases:
            q.biases = biases[0]
        if "bias" in conv:
            q.bias = conv.bias
        return q

    def __call__(self, x: mx.array) -> mx.array:
        """``[B, T, Cin]`` -> ``[B, T_out, Cout]``."""
        cols = stacked_taps(x, self.kernel_size, self.stride, self.padding, self.padding, self.dilation)
        y = mx.quantized_matmul(cols, self.weight, self.scales, self.get("biases"), transpose=True,
                                group_size=self.group_size, bits=self.bits, mode=self.mode)
        return y if "bias" not in self else y + self.bias


def should_quantize(path: str, module: nn.Module, group_size: int) -> bool:
    """The quantization rule of this package (see the module docstring)."""
    if isinstance(module, nn.Embedding):
        return path in QUANTIZED_EMBEDDINGS and module.weight.shape[-1] % group_size == 0
    if not path.startswith(QUANTIZED_ROOTS) or ".duration_predictor." in path:
        return False
    if isinstance(module, nn.Conv1d):
        c_out, kernel, c_in = module.weight.shape
        return path.startswith(QUANTIZED_CONV_ROOTS) and module.groups == 1 and (kernel * c_in) % group_size == 0
    if isinstance(module, nn.Linear):
        return module.weight.shape[-1] % group_size == 0
    return False


def quantize_modules(model: nn.Module, predicate, group_size: int, bits: int) -> None:
    """``nn.quantize`` with ``predicate(path, module)`` for the linear layers and embeddings, and the
    same rule for ungrouped convolutions (as :class:`QuantizedConv1d`, or what a conv's own
    ``to_quantized`` makes).  In place."""
    nn.quantize(model, group_size, bits, class_predicate=lambda p, m: not isinstance(m, nn.Conv1d) and predicate(p, m))

    def conv(path, m):
        if isinstance(m, nn.Conv1d) and predicate(path, m):
            if hasattr(m, "to_quantized"):
                return m.to_quantized(group_size, bits)
            return QuantizedConv1d.from_conv(m, group_size, bits)
        return m

    model.update_modules(tree_map_with_path(conv, model.leaf_modules(), is_leaf=nn.Module.is_module))


def quantize_model(model: nn.Module, bits: int, group_size: int) -> Dict:
    """Quantize a built float model in place by this package's rule; returns the
    ``{"group_size", "bits"}`` entry that config.json stores."""
    quantize_modules(model, lambda p, m: should_quantize(p, m, group_size), group_size, bits)
    return {"group_size": group_size, "bits": bits}


def apply_quantization(model: nn.Module, qconf: Dict, weights: Dict[str, mx.array]) -> None:
    """Turn exactly the layers stored quantized (``<path>.scales`` present) into quantized ones."""
    quantize_modules(model, lambda p, m: f"{p}.scales" in weights, int(qconf["group_size"]), int(qconf["bits"]))
