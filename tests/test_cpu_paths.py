"""CPU-only execution paths give the same numbers as the plain ones."""

import mlx.core as mx
import numpy as np
import pytest

from seamless_mlx import layers
from seamless_mlx.config import ModelConfig
from seamless_mlx.speech_encoder import SpeechEncoder
from checkpoints import TINY


@pytest.mark.parametrize("with_mask", [False, True])
def test_head_parallel_attention_equals_single_stream(monkeypatch, with_mask):
    cfg = ModelConfig.from_dict({**TINY, "vocab_size": 64})
    enc = SpeechEncoder(cfg)
    mx.eval(enc.parameters())
    x = mx.random.normal((2, 40, 160), key=mx.random.key(0))
    mask = mx.array(np.r_[np.ones(40), np.r_[np.ones(25), np.zeros(15)]].reshape(2, 40).astype(np.int32)) if with_mask else None
    monkeypatch.setattr(layers, "HEAD_PARALLEL_MIN_ELEMENTS", 1 << 60)
    ref, _ = enc(x, mask)
    mx.eval(ref)
    monkeypatch.setattr(layers, "HEAD_PARALLEL_MIN_ELEMENTS", 0)
    assert layers.head_groups(2, 4, 40, 40) > 1 or mx.default_device() != mx.cpu
    out, _ = enc(x, mask)
    np.testing.assert_allclose(np.array(out), np.array(ref), atol=1e-6)


def test_split_matvec_equals_plain_product():
    w = mx.random.normal((1000, 64), key=mx.random.key(1))
    b = mx.random.normal((1000,), key=mx.random.key(2))
    x = mx.random.normal((1, 1, 64), key=mx.random.key(3))
    plain = x @ w.T + b
    orig = layers.SPLIT_MATVEC_MIN_BYTES
    try:
        layers.SPLIT_MATVEC_MIN_BYTES = 0
        assert layers.matvec_groups(x, w) > 1 or mx.default_device() != mx.cpu
        np.testing.assert_allclose(np.array(layers.linear(x, w, b)), np.array(plain), atol=1e-5)
    finally:
        layers.SPLIT_MATVEC_MIN_BYTES = orig


def test_greedy_with_split_matvecs_matches_transformers(monkeypatch, tiny_checkpoint, tiny_hf):
    import seamless_mlx as sm

    hf, proc = tiny_hf
    monkeypatch.setattr(layers, "SPLIT_MATVEC_MIN_BYTES", 0)
    model = sm.SeamlessM4Tv2ForTextToText.from_pretrained(tiny_checkpoint)
    enc = proc(text=["Hello world, how are you?", "Bonjour"], src_lang="eng", return_tensors="pt", padding=True)
    ref = hf.generate(**enc, tgt_lang="fra", generate_speech=False).sequences.tolist()
    out = model.generate(input_ids=mx.array(enc["input_ids"].numpy()),
                         attention_mask=mx.array(enc["attention_mask"].numpy()), tgt_lang="fra")
    assert out.sequences.tolist() == ref
