"""Quantized and half-precision export: strict loading, all five tasks, lossless save/load, bad flags."""

import json

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_map

import seamless_mlx as sm
from seamless_mlx import SeamlessM4TFeatureExtractor
from seamless_mlx.convert import convert, main as convert_main
from seamless_mlx.processor import SeamlessM4TProcessor
from seamless_mlx.quantize import quantize_model


@pytest.fixture(scope="module", params=[8, 4])
def qfolder(request, tiny_checkpoint, tmp_path_factory):
    # the tiny model's hidden size is 32, so group size 32 is what fits it
    return convert(tiny_checkpoint, tmp_path_factory.mktemp("q") / "mlx", quantize=True, q_bits=request.param,
                   q_group_size=32), request.param


def _text(folder):
    proc = SeamlessM4TProcessor.from_pretrained(folder)
    return proc(text="Hello world, how are you?", src_lang="eng", return_tensors="mlx")


def _speech():
    t = np.arange(12000) / 16000
    f = SeamlessM4TFeatureExtractor()([(0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)], sampling_rate=16000,
                                      return_tensors="mlx")
    return dict(input_features=f["input_features"], attention_mask=f["attention_mask"])


def test_config_records_quantization(qfolder):
    folder, bits = qfolder
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["quantization"] == {"group_size": 32, "bits": bits}
    assert f"{bits}-bit" in (folder / "README.md").read_text()


def test_quantized_layers_are_the_linear_ones_and_the_embedding(qfolder):
    folder, _ = qfolder
    model = sm.SeamlessM4Tv2Model.from_pretrained(folder)
    assert isinstance(model.shared, nn.QuantizedEmbedding)
    assert isinstance(model.text_decoder.layers[0].ffn.fc1, nn.QuantizedLinear)
    assert isinstance(model.speech_encoder.encoder.layers[0].self_attn.linear_q, nn.QuantizedLinear)
    assert isinstance(model.t2u_model.model.encoder.layers[0].ffn.fc2, nn.QuantizedLinear)
    assert not isinstance(model.vocoder.dur_predictor.proj, nn.QuantizedLinear)  # the vocoder stays float


def test_all_five_tasks_run_from_a_quantized_folder(qfolder, route):
    folder, _ = qfolder
    model = sm.SeamlessM4Tv2Model.from_pretrained(folder, cpu_routes=route == "cpu")
    text, speech = _text(folder), _speech()
    assert model.generate(**text, tgt_lang="fra", generate_speech=False, max_new_tokens=5).sequences.shape[1] > 2
    assert model.generate(**speech, tgt_lang="fra", generate_speech=False, max_new_tokens=5).sequences.shape[1] > 2
    assert model.generate(**speech, tgt_lang="eng", generate_speech=False, max_new_tokens=5).sequences.shape[1] > 2
    wav, n = model.generate(**text, tgt_lang="deu", max_new_tokens=5)
    assert int(n[0].item()) > 0 and np.isfinite(np.array(wav)).all()
    wav, n = model.generate(**speech, tgt_lang="spa", max_new_tokens=5)
    assert int(n[0].item()) > 0 and np.isfinite(np.array(wav)).all()


@pytest.mark.parametrize(
    "cls,kind",
    [
        (sm.SeamlessM4Tv2ForTextToText, "text"),
        (sm.SeamlessM4Tv2ForSpeechToText, "speech"),
        (sm.SeamlessM4Tv2ForTextToSpeech, "text"),
        (sm.SeamlessM4Tv2ForSpeechToSpeech, "speech"),
    ],
)
def test_task_classes_load_a_quantized_folder(qfolder, cls, kind):
    folder, _ = qfolder
    model = cls.from_pretrained(folder)
    inputs = _text(folder) if kind == "text" else _speech()
    out = model.generate(**inputs, tgt_lang="fra", max_new_tokens=4)
    assert out[0] is not None


def test_quantize_save_load_is_lossless(tiny_checkpoint, qfolder):
    folder, bits = qfolder
    # a quantized export keeps its floating-point parts (and scales) in float16 by default, and
    # the CPU backend computes them in float32
    in_memory = sm.SeamlessM4Tv2Model.from_pretrained(tiny_checkpoint, dtype="float16")
    quantize_model(in_memory, bits, 32)
    in_memory.update(tree_map(lambda a: a.astype(mx.float32) if mx.issubdtype(a.dtype, mx.floating) else a,
                              in_memory.parameters()))
    loaded = sm.SeamlessM4Tv2Model.from_pretrained(folder)
    assert loaded.shared.scales.dtype == mx.float32
    text = _text(folder)
    a, _ = in_memory.encode(**text)
    b, _ = loaded.encode(**text)
    np.testing.assert_array_equal(np.array(a), np.array(b))
    x = in_memory.generate(**text, tgt_lang="fra", generate_speech=False).sequences.tolist()
    assert x == loaded.generate(**text, tgt_lang="fra", generate_speech=False).sequences.tolist()
    # the adaptor and T2U convolutions are quantized too: S2ST waveforms are bit-identical
    wa, na = in_memory.generate(**_speech(), tgt_lang="spa", max_new_tokens=5)
    wb, nb = loaded.generate(**_speech(), tgt_lang="spa", max_new_tokens=5)
    assert na.tolist() == nb.tolist()
    np.testing.assert_array_equal(np.array(wa), np.array(wb))


def test_quantized_folder_layout(qfolder):
    folder, _ = qfolder
    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    weights = {}
    for shard in set(index.values()):
        weights.update(mx.load(str(folder / shard)))
    for conv in ("t2u_model.model.decoder.layers.0.conv1", "speech_encoder.adapter.layers.0.residual_conv"):
        assert weights[conv + ".weight"].dtype == mx.uint32 and conv + ".scales" in weights
    assert weights["shared.scales"].dtype == mx.float16
    assert weights["vocoder.hifi_gan.conv_pre.weight"].dtype == mx.float16
    assert "t2u_model.model.decoder.embed_tokens.weight" not in weights  # only the tied head reads it
    # two large lookup tables are quantized; the duration predictors and the rest of the vocoder are not
    assert "t2u_model.model.decoder.embed_char.scales" in weights
    assert not any(".duration_predictor." in k and k.endswith(".scales") for k in weights)
    # (the tiny vocoder's 16-wide unit table is narrower than a group and stays float too)
    assert [k for k in weights if k.startswith("vocoder.") and k.endswith(".scales")] == []


def test_quantized_export_can_keep_float32(tiny_checkpoint, tmp_path):
    folder = convert(tiny_checkpoint, tmp_path / "q8f32", quantize=True, q_bits=8, q_group_size=32, dtype="float32")
    model = sm.SeamlessM4Tv2ForTextToText.from_pretrained(folder)
    assert model.shared.scales.dtype == mx.float32


def test_8bit_keeps_greedy_text_of_fp32(tiny_checkpoint, tmp_path, route):
    folder = convert(tiny_checkpoint, tmp_path / "q8", quantize=True, q_bits=8, q_group_size=32)
    fp32 = sm.SeamlessM4Tv2ForTextToText.from_pretrained(tiny_checkpoint, cpu_routes=route == "cpu")
    q8 = sm.SeamlessM4Tv2ForTextToText.from_pretrained(folder, cpu_routes=route == "cpu")
    text = _text(folder)
    assert q8.generate(**text, tgt_lang="fra", max_new_tokens=8).sequences.tolist() == fp32.generate(
        **text, tgt_lang="fra", max_new_tokens=8).sequences.tolist()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_folder_runs_without_overflow(tiny_checkpoint, tmp_path, dtype):
    folder = convert(tiny_checkpoint, tmp_path / dtype, dtype=dtype)
    assert sm.SeamlessM4Tv2ForTextToText.from_pretrained(folder).shared.weight.dtype == mx.float32  # CPU default
    model = sm.SeamlessM4Tv2Model.from_pretrained(folder, dtype=dtype)
    assert model.shared.weight.dtype == getattr(mx, dtype)
    wav, n = model.generate(**_speech(), tgt_lang="fra", max_new_tokens=5)
    assert np.isfinite(np.array(wav)).all() and int(n[0].item()) > 0


@pytest.mark.parametrize("flags,msg", [(["-q", "--q-bits", "3"], "--q-bits"), (["-q", "--q-group-size", "48"],
                                                                            "--q-group-size"),
                                       (["--q-bits", "8"], "add -q")])  # not a silent full-precision copy
def test_bad_quantization_flags_are_refused(tiny_checkpoint, tmp_path, capsys, flags, msg):
    code = convert_main(["--hf-path", str(tiny_checkpoint), "--mlx-path", str(tmp_path / "o")] + flags)
    assert code == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("rows", [1, 3, 16, 40])
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("out_dims", [1, 96, 160])
def test_cpu_quantized_product_matches_the_fused_kernel(rows, bits, out_dims):
    # on the CPU, several rows go through dequantize + GEMM and wide ones are split over streams
    from seamless_mlx.cpu.linear import QuantizedLinear

    lin = nn.Linear(128, out_dims)
    q = QuantizedLinear.from_linear(lin, 32, bits)
    x = mx.random.normal((2, rows, 128))
    ref = mx.quantized_matmul(x, q.weight, q.scales, q.biases, transpose=True, group_size=32, bits=bits) + q.bias
    np.testing.assert_allclose(np.array(q(x)), np.array(ref), atol=1e-4, rtol=1e-4)
