"""Weight quantization (mlx-lm conventions).

Quantized: the linear layers of the text encoder/decoder, speech encoder (with adaptor) and T2U
model, the shared token embedding (which is also the tied LM head, used through
``QuantizedEmbedding.as_linear``), and the wide convolutions of the speech adaptor and the T2U
decoder layers (as the ``[Cout, K * Cin]`` matrix of their stacked taps, see
:class:`seamless_mlx.conv.QuantizedConv1d`), and two large lookup tables: the T2U character
embedding and the vocoder's unit embedding (a lookup error is one rounding of one row; measured in
benchmarks/quantization.py).  Kept in floating point: the depthwise convolution, norms, small
embeddings (positions, speakers, languages), the T2U duration predictor (its rounding decides how
many units are spoken) and the rest of the vocoder (its output is the audio).

Quantized exports store those floating-point parts, and the quantization scales and biases, in
float16 unless another ``dtype`` is asked for: float32 scales alone cost half a bit per weight.
"""

from __future__ import annotations

from typing import Dict, Tuple

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_map_with_path

from .conv import Conv1d
from .layers import QuantizedEmbedding, QuantizedLinear

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


def should_quantize(path: str, module: nn.Module, group_size: int) -> bool:
    if isinstance(module, nn.Embedding):
        return path in QUANTIZED_EMBEDDINGS and module.weight.shape[-1] % group_size == 0
    if not path.startswith(QUANTIZED_ROOTS) or ".duration_predictor." in path:
        return False
    if isinstance(module, Conv1d):
        c_out, kernel, c_in = module.weight.shape
        return path.startswith(QUANTIZED_CONV_ROOTS) and module.groups == 1 and (kernel * c_in) % group_size == 0
    if isinstance(module, nn.Linear):
        return module.weight.shape[-1] % group_size == 0
    return False


def quantize_modules(model: nn.Module, predicate, group_size: int, bits: int) -> None:
    """``nn.quantize`` with this package's quantized classes, whose products take the fast route
    on the CPU (see :func:`seamless_mlx.layers.quantized_product`).  In place."""

    def swap(path, m):
        if not predicate(path, m):
            return m
        if isinstance(m, nn.Linear):
            return QuantizedLinear.from_linear(m, group_size, bits)
        if isinstance(m, nn.Embedding):
            return QuantizedEmbedding.from_embedding(m, group_size, bits)
        if isinstance(m, Conv1d):
            return m.to_quantized(group_size, bits)
        raise ValueError(f"cannot quantize {path} ({type(m).__name__})")

    model.update_modules(tree_map_with_path(swap, model.leaf_modules(), is_leaf=nn.Module.is_module))


def quantize_model(model: nn.Module, bits: int, group_size: int) -> None:
    quantize_modules(model, lambda p, m: should_quantize(p, m, group_size), group_size, bits)


def quantize_weights(config, weights: Dict[str, mx.array], bits: int, group_size: int) -> Tuple[Dict, Dict]:
    """Full-model weights -> (quantized weights, ``{"group_size", "bits"}`` for config.json)."""
    from .loading import load_strict
    from .model import SeamlessM4Tv2Model

    check_quant_args(bits, group_size)
    model = SeamlessM4Tv2Model(config)
    load_strict(model, weights)
    quantize_model(model, bits, group_size)
    out = dict(tree_flatten(model.parameters()))
    mx.eval(out)
    return out, {"group_size": group_size, "bits": bits}


def apply_quantization(model: nn.Module, qconf: Dict, weights: Dict[str, mx.array]) -> None:
    """Turn exactly the layers stored quantized (``<path>.scales`` present) into quantized ones."""
    quantize_modules(model, lambda p, m: f"{p}.scales" in weights, int(qconf["group_size"]), int(qconf["bits"]))
