"""Quantized and half-precision folders compute the same math as a float32 model with rounded weights.

A quantized folder is compared with the float32 model whose quantized weights are replaced by
``dequantize(quantize(W))``, computed here with ``mx.quantize`` on the layout the folder documents
(a convolution as the ``[Cout, K * Cin]`` matrix of its stacked taps, an embedding as its table).
Same weights, same math: ids and units must be equal and states agree to float rounding.  A
quantized layer that reads its weight in another layout, or quantizes a different matrix, drifts
far past that (8-bit units then agree with float32 on a few percent of positions).

A float16/bfloat16 folder is compared the same way with the float32 model holding its rounded weights.
"""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_unflatten

import seamless_mlx as sm
from seamless_mlx.convert import convert

TEXTS = ["Hello world, how are you today?", "Bonjour tout le monde ! Comment allez-vous ?"]
ATOL = 1e-4


def _audio(seed, seconds):
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * (170 + 40 * seed) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _inputs(processor):
    text = processor(text=TEXTS, src_lang="eng", return_tensors="mlx", padding=True)
    speech = processor(audios=[_audio(0, 0.9), _audio(1, 0.6)], sampling_rate=16000, return_tensors="mlx")
    return dict(text), dict(speech)


def _round_trip_quantized(float_model, quantized_model):
    """Give ``float_model`` ``dequantize(quantize(W))`` for every layer that ``quantized_model`` holds quantized."""
    weights = dict(tree_flatten(float_model.parameters()))
    rounded = []
    for path, module in tree_flatten(quantized_model.leaf_modules(), is_leaf=nn.Module.is_module):
        if "scales" not in module:
            continue
        w = weights[f"{path}.weight"]
        matrix = w.reshape(w.shape[0], -1)  # [Cout, K, Cin] -> [Cout, K * Cin]: taps outermost
        q = mx.quantize(matrix, module.group_size, module.bits)
        rounded.append((f"{path}.weight", mx.dequantize(*q, module.group_size, module.bits).reshape(w.shape)))
    assert {p.split(".")[0] for p, _ in rounded} >= {"shared", "text_encoder", "speech_encoder", "t2u_model"}
    assert any(w.ndim == 3 for _, w in rounded), "no convolution is quantized: the layout goes unchecked"
    float_model.update(tree_unflatten(rounded))
    mx.eval(float_model.parameters())


def _rounded_to(float_model, dtype):
    params = tree_flatten(float_model.parameters())
    float_model.update(tree_unflatten(
        [(k, v.astype(dtype).astype(mx.float32)) for k, v in params if mx.issubdtype(v.dtype, mx.floating)]))
    mx.eval(float_model.parameters())


def _rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def _assert_same_outputs(ours, ref, inputs, text_states_atol=ATOL):
    text, speech = inputs
    for x in (text, speech):
        a, b = ours.encode(**x)[0], ref.encode(**x)[0]
        np.testing.assert_allclose(np.array(a), np.array(b), atol=text_states_atol)
    kw = dict(tgt_lang="fra", return_intermediate_token_ids=True, max_new_tokens=10)
    for x in (text, speech):
        a, b = ours.generate(**x, **kw), ref.generate(**x, **kw)
        assert a.sequences.tolist() == b.sequences.tolist()
        assert a.unit_sequences.tolist() == b.unit_sequences.tolist()
        assert a.waveform_lengths.tolist() == b.waveform_lengths.tolist()
        wa, wb = np.array(a.waveform), np.array(b.waveform)
        for i, n in enumerate(b.waveform_lengths.tolist()):
            assert _rel(wa[i, :n], wb[i, :n]) < 1e-4


@pytest.fixture(scope="module")
def processor(tiny_checkpoint):
    return sm.load(tiny_checkpoint, model_class=sm.SeamlessM4Tv2ForTextToText)[1]


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_folder_equals_float_model_with_round_tripped_weights(tiny_checkpoint, tmp_path, processor, bits):
    # float32 scales and float parts: the folder then holds exactly mx.quantize's output
    folder = convert(tiny_checkpoint, tmp_path / f"q{bits}", quantize=True, q_bits=bits, q_group_size=32,
                     dtype="float32")
    quantized = sm.SeamlessM4Tv2Model.from_pretrained(folder)
    reference = sm.SeamlessM4Tv2Model.from_pretrained(tiny_checkpoint)
    inputs = _inputs(processor)
    plain = np.array(reference.encode(**inputs[1])[0])
    _round_trip_quantized(reference, quantized)
    # the rounding moves the states far past the tolerance, so the reference is what makes this pass
    assert np.abs(np.array(reference.encode(**inputs[1])[0]) - plain).max() > 100 * ATOL
    _assert_same_outputs(quantized, reference, inputs)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_folder_equals_float_model_with_rounded_weights(tiny_checkpoint, tmp_path, processor, dtype):
    folder = convert(tiny_checkpoint, tmp_path / dtype, dtype=dtype)
    half = sm.SeamlessM4Tv2Model.from_pretrained(folder)  # computed in float32 on the CPU
    reference = sm.SeamlessM4Tv2Model.from_pretrained(tiny_checkpoint)
    _rounded_to(reference, getattr(mx, dtype))
    _assert_same_outputs(half, reference, _inputs(processor))


@pytest.mark.parametrize("dtype,rtol", [("float16", 5e-3), ("bfloat16", 4e-2)])
def test_half_precision_compute_stays_near_the_rounded_float_model(tiny_checkpoint, tmp_path, processor, dtype, rtol):
    folder = convert(tiny_checkpoint, tmp_path / dtype, dtype=dtype)
    half = sm.SeamlessM4Tv2Model.from_pretrained(folder, dtype=dtype)
    reference = sm.SeamlessM4Tv2Model.from_pretrained(tiny_checkpoint)
    _rounded_to(reference, getattr(mx, dtype))
    for x in _inputs(processor):
        a = np.array(half.encode(**x)[0].astype(mx.float32))
        b = np.array(reference.encode(**x)[0])
        assert _rel(a, b) < rtol
