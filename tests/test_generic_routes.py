"""The routes Metal and CUDA take, checked on the CPU against transformers.

On the CPU seamless-mlx takes its own routes (polynomial exp, split products, blocked attention,
convolutions as GEMMs); every other device takes the plain ones: ``mx.fast`` attention and layer
norm, MLX's own convolutions, fused quantized products.  ``SEAMLESS_MLX_ROUTES=generic``
(``layers.GENERIC_ROUTES``) makes the CPU take those too, so a CPU-only CI still checks the code an
Apple-silicon or CUDA user runs.
"""

import mlx.core as mx
import numpy as np
import pytest
import torch

import seamless_mlx as sm
from seamless_mlx import conv, layers
from test_speech_output import _audio, _check, _speech_inputs


@pytest.fixture
def generic(monkeypatch):
    monkeypatch.setattr(layers, "GENERIC_ROUTES", True)
    monkeypatch.delenv("SEAMLESS_MLX_CONV", raising=False)


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return sm.SeamlessM4Tv2Model.from_pretrained(tiny_checkpoint)


def test_the_switch_turns_every_cpu_route_off(generic):
    assert not layers.cpu_routes()
    assert not conv.use_matmul()
    x = mx.zeros((1, 1, 64))
    assert layers.matvec_groups(x, mx.zeros((1 << 16, 64))) == 1
    assert layers.head_groups(1, 16, 3000, 3000) == 1
    assert not layers._few_rows(mx.zeros((4, 64)))


def test_s2st_batch_matches_transformers_on_the_generic_routes(generic, model, tiny_hf):
    """Speech encoder (sdpa with the relative-position bias), text decoder, T2U, and the vocoder on
    MLX's native dilated and transposed convolutions."""
    hf, _ = tiny_hf
    hf_in, ours_in = _speech_inputs([_audio(0, 1.2), _audio(1, 0.7)])
    kw = dict(tgt_lang="fra", speaker_id=1, return_intermediate_token_ids=True, max_new_tokens=10)
    with torch.inference_mode():
        ref = hf.generate(**hf_in, **kw)
    _check(model.generate(**ours_in, **kw), ref)


def test_t2tt_beam_search_matches_transformers_on_the_generic_routes(generic, model, tiny_hf):
    hf, proc = tiny_hf
    enc = proc(text=["Hello world, how are you?", "Guten Morgen!"], src_lang="eng", return_tensors="pt", padding=True)
    kw = dict(tgt_lang="deu", generate_speech=False, num_beams=3, max_new_tokens=10)
    with torch.inference_mode():
        ref = hf.generate(**enc, **kw)
    ours = model.generate(
        input_ids=mx.array(enc["input_ids"].numpy()), attention_mask=mx.array(enc["attention_mask"].numpy()), **kw
    )
    assert ours.sequences.tolist() == ref.sequences.tolist()


def test_generic_and_cpu_routes_give_the_same_hidden_states(monkeypatch, model):
    """Encoder outputs of both route sets, for text and a speech batch with padding."""
    _, speech_in = _speech_inputs([_audio(2, 1.5), _audio(3, 0.5)])
    ids = mx.array(np.random.default_rng(0).integers(4, 200, size=(2, 9)))
    outs = {}
    for generic_routes in (False, True):
        monkeypatch.setattr(layers, "GENERIC_ROUTES", generic_routes)
        speech, _ = model.encode_speech(speech_in["input_features"], speech_in["attention_mask"])
        text = model.text_encoder(ids, model.shared)
        mx.eval(speech, text)
        outs[generic_routes] = (np.array(speech), np.array(text))
    for a, b in zip(outs[False], outs[True]):
        np.testing.assert_allclose(a, b, atol=2e-4, rtol=1e-4)


def test_layer_by_layer_evaluation_gives_the_same_encoder_output(generic, monkeypatch, model):
    """Long inputs off the CPU evaluate each conformer layer before the next (bounded GPU memory)."""
    from seamless_mlx import speech_encoder

    _, speech_in = _speech_inputs([_audio(4, 1.3), _audio(5, 0.8)])
    args = (speech_in["input_features"], speech_in["attention_mask"])
    whole, _ = model.encode_speech(*args)
    mx.eval(whole)
    calls = []
    monkeypatch.setattr(speech_encoder, "EVAL_EACH_LAYER_BYTES", 0)
    monkeypatch.setattr(speech_encoder.mx, "eval", lambda *a: calls.append(1) or mx.async_eval(*a) or mx.synchronize())
    layered, _ = model.encode_speech(*args)
    monkeypatch.undo()
    assert len(calls) == model.config.speech_encoder_layers
    np.testing.assert_array_equal(np.array(layered), np.array(whole))
