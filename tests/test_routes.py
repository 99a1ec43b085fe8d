"""Which execution path a loaded model takes: the plain MLX modules (what Metal and CUDA run) or,
on the CPU, the twins of seamless_mlx.cpu; and the switch between them.  The parity tests
themselves run on both paths (the ``route`` fixture in conftest.py)."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

import seamless_mlx as sm
from routes import use_route
from seamless_mlx import cpu
from test_speech_output import _audio, _speech_inputs


def _modules(model):
    return {type(m).__module__.split(".")[1] for _, m in model.named_modules()}


def test_loading_on_the_cpu_swaps_in_the_cpu_modules(tiny_checkpoint, monkeypatch):
    monkeypatch.delenv("SEAMLESS_MLX_ROUTES", raising=False)
    model = sm.SeamlessM4Tv2Model.from_pretrained(tiny_checkpoint)
    assert ("cpu" in _modules(model)) == (mx.default_device() == mx.cpu)


@pytest.mark.parametrize("how", ["env", "keyword", "load"])
def test_the_switch_keeps_the_plain_modules(tiny_checkpoint, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("SEAMLESS_MLX_ROUTES", "generic")
        model = sm.SeamlessM4Tv2Model.from_pretrained(tiny_checkpoint)
    elif how == "keyword":
        model = sm.SeamlessM4Tv2Model.from_pretrained(tiny_checkpoint, cpu_routes=False)
    else:
        model, _ = sm.load(tiny_checkpoint, cpu_routes=False)
    assert "cpu" not in _modules(model)
    assert type(model.text_decoder.layers[0].self_attn.q_proj) is nn.Linear


def test_the_swap_changes_no_parameter(tiny_checkpoint):
    model = sm.SeamlessM4Tv2Model.from_pretrained(tiny_checkpoint, cpu_routes=False)
    before = dict(tree_flatten(model.parameters()))
    cpu.accelerate(model)
    model.generate(input_ids=mx.array([[3, 40, 50, 2]]), tgt_lang="fra", max_new_tokens=3)  # fuses q/k/v
    after = dict(tree_flatten(model.parameters()))
    assert "cpu" in _modules(model)
    assert list(after) == list(before)
    assert all(after[k].dtype == before[k].dtype and mx.array_equal(after[k], before[k]) for k in before)
    cpu.plain(model)
    assert "cpu" not in _modules(model)


def test_cpu_and_plain_paths_give_the_same_hidden_states(tiny_checkpoint):
    """Encoder outputs of both paths, for text and a speech batch with padding."""
    model = sm.SeamlessM4Tv2Model.from_pretrained(tiny_checkpoint)
    _, speech_in = _speech_inputs([_audio(2, 1.5), _audio(3, 0.5)])
    ids = mx.array(np.random.default_rng(0).integers(4, 200, size=(2, 9)))
    outs = {}
    for route in ("cpu", "plain"):
        use_route(model, route)
        speech, _ = model.encode_speech(speech_in["input_features"], speech_in["attention_mask"])
        text = model.text_encoder(ids, model.shared)
        mx.eval(speech, text)
        outs[route] = (np.array(speech), np.array(text))
    for a, b in zip(outs["cpu"], outs["plain"]):
        np.testing.assert_allclose(a, b, atol=2e-4, rtol=1e-4)


def test_layer_by_layer_evaluation_gives_the_same_encoder_output(tiny_checkpoint, monkeypatch):
    """Long inputs on the plain path evaluate each conformer layer before the next (bounded GPU memory)."""
    from seamless_mlx import speech_encoder

    model = sm.SeamlessM4Tv2Model.from_pretrained(tiny_checkpoint, cpu_routes=False)
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
