"""End-to-end parity on configurations unlike the tiny default one.

The other tests share one tiny config; a user's checkpoint may differ in every dimension.  Each
config here changes many knobs at once (heads, layer counts, adaptor kernel/stride and layer count,
no adaptor, chunking, position clipping or none, activations, embedding scale, vocoder rates and
residual blocks, speaker count) and runs all five tasks, greedy and beam, batched, through the
public ``generate`` against transformers' on the same random checkpoint.
"""

import mlx.core as mx
import numpy as np
import pytest
import torch
from checkpoints import build_checkpoint, load_hf
from routes import use_route

import seamless_mlx as sm
from test_speech_output import _audio, _check, _speech_inputs, _text_inputs

# name: (seed, config overrides); the seeds were picked so that greedy output varies with the input
# (a random model easily repeats one token whatever it hears, and then parity proves little)
CONFIGS = {
    # one head everywhere, no adaptor (the decoder reads every conformer frame), no relative
    # positions, the tanh GELU in the text model, unscaled embeddings, a kernel-31 depthwise conv
    # longer than the input's chunks, a one-block vocoder with odd rates, one speaker
    "single_head_no_adaptor": (5, dict(
        hidden_size=16, encoder_attention_heads=1, decoder_attention_heads=1,
        speech_encoder_attention_heads=1, t2u_encoder_attention_heads=1, t2u_decoder_attention_heads=1,
        encoder_layers=1, decoder_layers=3, encoder_ffn_dim=48, decoder_ffn_dim=40,
        add_adapter=False, position_embeddings_type=None, activation_function="gelu_new",
        scale_embedding=False, conv_depthwise_kernel_size=31, speech_encoder_chunk_size=16,
        speech_encoder_left_chunk_num=0, t2u_variance_predictor_embed_dim=16,
        upsample_initial_channel=16, upsample_rates=[2, 3], upsample_kernel_sizes=[4, 7],
        resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 2, 4]], vocoder_num_spkrs=1,
    )),
    # two adaptor layers with stride 3, one-frame chunks of history, clipping at -1..0, ReLU in the
    # conformer, heads that differ per sub-model, eps 1e-6, v2-large's vocoder block layout
    "stride3_two_adaptors": (6, dict(
        hidden_size=24, encoder_attention_heads=2, decoder_attention_heads=3,
        speech_encoder_attention_heads=4, t2u_encoder_attention_heads=3, t2u_decoder_attention_heads=2,
        speech_encoder_layers=3, adaptor_kernel_size=5, adaptor_stride=3, num_adapter_layers=2,
        speech_encoder_chunk_size=3, speech_encoder_left_chunk_num=1,
        left_max_position_embeddings=1, right_max_position_embeddings=0,
        speech_encoder_hidden_act="relu", layer_norm_eps=1e-6, t2u_variance_predictor_embed_dim=24,
        t2u_variance_predictor_kernel_size=5, variance_predictor_kernel_size=5,
        upsample_initial_channel=32, upsample_rates=[5, 4], upsample_kernel_sizes=[11, 8],
        resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3, vocoder_num_spkrs=5,
    )),
}

TEXTS = ["Hello world, how are you?", "Bonjour tout le monde ! Comment allez-vous ?"]


@pytest.fixture(scope="module", params=list(CONFIGS))
def built(request, tmp_path_factory):
    seed, overrides = CONFIGS[request.param]
    path, _, _ = build_checkpoint(tmp_path_factory.mktemp(request.param) / "hf", seed=seed, overrides=overrides)
    hf, proc = load_hf(path)
    return hf, proc, sm.SeamlessM4Tv2Model.from_pretrained(path), overrides


@pytest.fixture
def pair(built, route):
    """``built`` with its model on each execution path (plain MLX modules, CPU twins)."""
    use_route(built[2], route)
    return built


def _inputs(hf, proc):
    return _text_inputs((hf, proc), TEXTS), _speech_inputs([_audio(3, 1.3), _audio(4, 0.7)])


@pytest.mark.parametrize(
    "source,kw",
    [
        ("text", dict(tgt_lang="fra", max_new_tokens=12)),
        ("text", dict(tgt_lang="deu", max_new_tokens=12, num_beams=3, num_return_sequences=2)),
        ("speech", dict(tgt_lang="spa", max_new_tokens=12)),
        ("speech", dict(tgt_lang="eng", max_new_tokens=10, num_beams=2)),  # ASR
    ],
    ids=["t2tt", "t2tt-beam", "s2tt", "asr-beam"],
)
def test_text_output_matches_transformers(pair, source, kw):
    hf, proc, model, _ = pair
    text, speech = _inputs(hf, proc)
    hf_in, ours_in = text if source == "text" else speech
    with torch.no_grad():
        ref = hf.generate(**hf_in, **kw, generate_speech=False)
    ours = model.generate(**ours_in, **kw, generate_speech=False)
    ref = ref[0] if isinstance(ref, tuple) else getattr(ref, "sequences", ref)
    assert np.array(getattr(ours, "sequences", ours)).tolist() == ref.tolist()
    if kw.get("num_beams", 1) == 1:  # premise: the two sources decode differently
        assert ref[0].tolist() != ref[1].tolist()


@pytest.mark.parametrize("source", ["text", "speech"], ids=["t2st", "s2st"])
def test_speech_output_matches_transformers(pair, source):
    hf, proc, model, cfg = pair
    text, speech = _inputs(hf, proc)
    hf_in, ours_in = text if source == "text" else speech
    kw = dict(tgt_lang="fra", return_intermediate_token_ids=True, max_new_tokens=8, speaker_id=cfg["vocoder_num_spkrs"] - 1)
    with torch.no_grad():
        ref = hf.generate(**hf_in, **kw)
    _check(model.generate(**ours_in, **kw), ref)


def t2u_logits(hf, model, hidden: int):
    """Both T2U models on the same random decoder states and characters (two items, the second
    padded): ``(ours, transformers', ours' padding mask, transformers' padding mask)`` as numpy."""
    rng = np.random.default_rng(0)
    states = rng.standard_normal((2, 5, hidden)).astype(np.float32)
    counts = np.array([[1, 3, 2, 1, 2], [2, 1, 1, 0, 0]])
    chars = rng.integers(2, 30, (2, int(counts.sum(axis=1).max())))
    mask = (counts > 0).astype(np.int64)
    with torch.no_grad():
        ref = hf.t2u_model(
            inputs_embeds=torch.tensor(states), char_input_ids=torch.tensor(chars),
            char_count_per_id=torch.tensor(counts), attention_mask=torch.tensor(mask),
        )
    logits, padding_mask = model.t2u_model(mx.array(states), mx.array(chars), mx.array(counts), mx.array(mask))
    # (transformers returns the logits as `last_hidden_state`)
    return np.array(logits), ref.last_hidden_state.numpy(), np.array(padding_mask).astype(bool), ref.padding_mask.numpy().astype(bool)


def test_t2u_logits_match_transformers(pair):
    """The T2U model alone: its logits, not just the argmax units (a unit sequence can survive a
    small difference in the hidden states)."""
    hf, _, model, cfg = pair
    ours, ref, ours_keep, keep = t2u_logits(hf, model, cfg["hidden_size"])
    assert ours_keep.tolist() == keep.tolist()
    np.testing.assert_allclose(ours[keep], ref[keep], atol=1e-4)
