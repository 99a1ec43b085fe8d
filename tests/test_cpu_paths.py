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
