"""S2TT and ASR parity with transformers: speech encoder + text decoder, greedy ids token for token."""

import mlx.core as mx
import numpy as np
import pytest
import torch

from checkpoints import build_checkpoint, load_hf
from routes import use_route

import seamless_mlx as sm
from seamless_mlx import SeamlessM4TFeatureExtractor


def _audio(seed, seconds):
    rng = np.random.default_rng(seed)
    n = int(16000 * seconds)
    t = np.arange(n) / 16000
    tone = 0.3 * np.sin(2 * np.pi * (180 + 40 * seed) * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return (tone + 0.05 * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module", params=["tiny", "stride8"])
def built(request, tmp_path_factory):
    overrides = None
    if request.param == "stride8":
        # adaptor kernel 8 / stride 8 and a longer chunk: other shapes than the default tiny config
        overrides = dict(adaptor_kernel_size=8, adaptor_stride=8, speech_encoder_chunk_size=10,
                         speech_encoder_left_chunk_num=2, left_max_position_embeddings=6)
    path, _, _ = build_checkpoint(tmp_path_factory.mktemp("s2tt") / "hf", seed=3, overrides=overrides)
    hf, proc = load_hf(path)
    return sm.SeamlessM4Tv2ForSpeechToText.from_pretrained(path), hf, proc


@pytest.fixture
def pair(built, route):
    """``built`` with its model on each execution path (plain MLX modules, CPU twins)."""
    use_route(built[0], route)
    return built


def _features(audios):
    f = SeamlessM4TFeatureExtractor()(audios, sampling_rate=16000, return_tensors="np")
    return f["input_features"], f["attention_mask"]


def test_speech_encoder_output_matches_transformers(pair):
    model, hf, _ = pair
    feats, mask = _features([_audio(0, 1.3), _audio(1, 0.7)])
    with torch.no_grad():
        ref = hf.speech_encoder(input_features=torch.tensor(feats), attention_mask=torch.tensor(mask)).last_hidden_state
    ours, out_mask = model.encode_speech(mx.array(feats), mx.array(mask))
    valid = np.array(out_mask).astype(bool)
    np.testing.assert_allclose(np.array(ours)[valid], ref.numpy()[valid], atol=1e-4)


@pytest.mark.parametrize("seconds", [0.5, 1.7])
@pytest.mark.parametrize("tgt", ["fra", "eng"], ids=["s2tt", "asr"])
def test_greedy_single_matches_transformers(pair, seconds, tgt):
    model, hf, _ = pair
    feats, mask = _features([_audio(2, seconds)])
    ref = hf.generate(input_features=torch.tensor(feats), attention_mask=torch.tensor(mask), tgt_lang=tgt,
                      generate_speech=False).sequences.tolist()
    out = model.generate(input_features=mx.array(feats), attention_mask=mx.array(mask), tgt_lang=tgt)
    assert out.sequences.tolist() == ref


def test_greedy_batched_unequal_lengths_matches_transformers(pair):
    model, hf, _ = pair
    feats, mask = _features([_audio(4, 1.2), _audio(5, 0.4), _audio(6, 2.0)])
    ref = hf.generate(input_features=torch.tensor(feats), attention_mask=torch.tensor(mask), tgt_lang="deu",
                      generate_speech=False).sequences.tolist()
    out = model.generate(input_features=mx.array(feats), attention_mask=mx.array(mask), tgt_lang="deu")
    assert out.sequences.tolist() == ref


def test_different_recordings_give_different_text(pair):
    model, _, _ = pair
    feats, mask = _features([_audio(7, 1.0), _audio(8, 1.0)])
    out = model.generate(input_features=mx.array(feats), attention_mask=mx.array(mask), tgt_lang="fra",
                         max_new_tokens=8)
    a, b = out.sequences.tolist()
    assert a != b


def test_speech_to_text_model_holds_no_text_encoder(pair):
    model, _, _ = pair
    assert not hasattr(model, "text_encoder") and not hasattr(model, "t2u_model")
    with pytest.raises(ValueError, match="no text encoder"):
        model.generate(input_ids=mx.array([[5, 6, 3]]), tgt_lang="fra")
