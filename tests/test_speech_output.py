"""T2ST and S2ST parity with transformers: text ids, unit ids and waveforms, speakers and languages."""

import mlx.core as mx
import numpy as np
import pytest
import torch
from routes import route_of

import seamless_mlx as sm
from seamless_mlx import SeamlessM4TFeatureExtractor

TEXTS = ["Hello world, how are you?", "Bonjour tout le monde !"]


def _audio(seed, seconds):
    rng = np.random.default_rng(seed)
    n = int(16000 * seconds)
    t = np.arange(n) / 16000
    return (0.3 * np.sin(2 * np.pi * (150 + 50 * seed) * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module", params=["plain", "cpu"])
def model(tiny_checkpoint, request):
    """The full model on each execution path (plain MLX modules, CPU twins)."""
    return sm.SeamlessM4Tv2Model.from_pretrained(tiny_checkpoint, cpu_routes=request.param == "cpu")


def _rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def _check(ours, ref):
    assert ours.sequences.tolist() == ref.sequences.tolist()
    assert ours.unit_sequences.tolist() == ref.unit_sequences.tolist()
    lens = np.atleast_1d(ref.waveform_lengths.numpy()).tolist()  # transformers squeezes B=1
    assert np.array(ours.waveform_lengths).tolist() == lens
    w, r = np.array(ours.waveform), ref.waveform.numpy()
    assert w.shape == r.shape
    for i, n in enumerate(lens):
        assert _rel(w[i, :n], r[i, :n]) < 1e-4


def _text_inputs(tiny_hf, texts):
    _, proc = tiny_hf
    enc = proc(text=texts, src_lang="eng", return_tensors="pt", padding=True)
    return enc, dict(input_ids=mx.array(enc["input_ids"].numpy()), attention_mask=mx.array(enc["attention_mask"].numpy()))


def _speech_inputs(audios):
    f = SeamlessM4TFeatureExtractor()(audios, sampling_rate=16000, return_tensors="np")
    return (
        dict(input_features=torch.tensor(f["input_features"]), attention_mask=torch.tensor(f["attention_mask"])),
        dict(input_features=mx.array(f["input_features"]), attention_mask=mx.array(f["attention_mask"])),
    )


@pytest.mark.parametrize("texts", [TEXTS[:1], TEXTS], ids=["single", "batched"])
def test_t2st_matches_transformers(model, tiny_hf, texts):
    hf, _ = tiny_hf
    enc, ours_in = _text_inputs(tiny_hf, texts)
    kw = dict(tgt_lang="fra", return_intermediate_token_ids=True, max_new_tokens=10)
    ref = hf.generate(**enc, **kw)
    _check(model.generate(**ours_in, **kw), ref)


@pytest.mark.parametrize("n", [1, 2], ids=["single", "batched"])
def test_s2st_matches_transformers(model, tiny_hf, n):
    hf, _ = tiny_hf
    hf_in, ours_in = _speech_inputs([_audio(0, 1.0), _audio(1, 0.6)][:n])
    kw = dict(tgt_lang="deu", return_intermediate_token_ids=True, max_new_tokens=10)
    ref = hf.generate(**hf_in, **kw)
    _check(model.generate(**ours_in, **kw), ref)


@pytest.mark.parametrize("speaker_id,tgt", [(0, "eng"), (2, "eng"), (1, "spa")])
def test_speaker_and_language_change_waveform_like_transformers(model, tiny_hf, speaker_id, tgt):
    hf, _ = tiny_hf
    enc, ours_in = _text_inputs(tiny_hf, TEXTS[:1])
    kw = dict(tgt_lang=tgt, speaker_id=speaker_id, return_intermediate_token_ids=True, max_new_tokens=6)
    _check(model.generate(**ours_in, **kw), hf.generate(**enc, **kw))


def test_different_speakers_give_different_waveforms(model, tiny_hf):
    _, ours_in = _text_inputs(tiny_hf, TEXTS[:1])
    a = model.generate(**ours_in, tgt_lang="eng", speaker_id=0, max_new_tokens=6)
    b = model.generate(**ours_in, tgt_lang="eng", speaker_id=1, max_new_tokens=6)
    assert not np.allclose(np.array(a.waveform), np.array(b.waveform))


def test_default_return_is_waveform_and_lengths(model, tiny_hf):
    _, ours_in = _text_inputs(tiny_hf, TEXTS)
    wav, lengths = model.generate(**ours_in, tgt_lang="fra", max_new_tokens=5)
    assert wav.ndim == 2 and wav.shape[0] == 2 and lengths.shape == (2,)
    # the batch is as long as its longest item's frames, padding units included (as in transformers):
    # an item's length counts its non-padding units only
    assert 0 < int(mx.min(lengths).item()) and int(mx.max(lengths).item()) <= wav.shape[1]


def test_speech_encoder_runs_once_per_s2st_call(model, monkeypatch):
    calls = []
    cls = type(model.speech_encoder)
    original = cls.__call__

    def counting(self, *a, **k):
        calls.append(1)
        return original(self, *a, **k)

    _, ours_in = _speech_inputs([_audio(2, 0.8)])
    monkeypatch.setattr(cls, "__call__", counting)
    model.generate(**ours_in, tgt_lang="fra", max_new_tokens=5)
    assert len(calls) == 1


def test_text_only_language_with_speech_output_is_refused(model, tiny_hf):
    _, ours_in = _text_inputs(tiny_hf, TEXTS[:1])
    with pytest.raises(ValueError, match="generate_speech=False"):
        model.generate(**ours_in, tgt_lang="rus")


def test_speaker_id_out_of_range_names_the_range(model, tiny_hf):
    _, ours_in = _text_inputs(tiny_hf, TEXTS[:1])
    with pytest.raises(ValueError, match=r"0\.\.2"):
        model.generate(**ours_in, tgt_lang="fra", speaker_id=3)


def test_speech_sampling_is_seeded_and_differs_from_greedy(model, tiny_hf):
    _, ours_in = _text_inputs(tiny_hf, TEXTS[:1])
    kw = dict(tgt_lang="fra", return_intermediate_token_ids=True, max_new_tokens=8)
    greedy = model.generate(**ours_in, **kw)
    mx.random.seed(0)
    s1 = model.generate(**ours_in, speech_do_sample=True, speech_temperature=1.5, **kw)
    mx.random.seed(0)
    s2 = model.generate(**ours_in, speech_do_sample=True, speech_temperature=1.5, **kw)
    assert s1.unit_sequences.tolist() == s2.unit_sequences.tolist()
    assert s1.sequences.tolist() == greedy.sequences.tolist()  # speech_ options leave the text alone
    assert s1.unit_sequences.tolist() != greedy.unit_sequences.tolist()


def test_speech_temperature_one_stays_greedy_like_transformers(model, tiny_hf):
    _, ours_in = _text_inputs(tiny_hf, TEXTS[:1])
    kw = dict(tgt_lang="fra", return_intermediate_token_ids=True, max_new_tokens=8)
    greedy = model.generate(**ours_in, **kw)
    sampled = model.generate(**ours_in, speech_do_sample=True, **kw)
    assert sampled.unit_sequences.tolist() == greedy.unit_sequences.tolist()


def test_task_classes_match_the_full_model(tiny_checkpoint, model, tiny_hf):
    enc, ours_in = _text_inputs(tiny_hf, TEXTS[:1])
    on_cpu = route_of(model) == "cpu"
    t2st = sm.SeamlessM4Tv2ForTextToSpeech.from_pretrained(tiny_checkpoint, cpu_routes=on_cpu)
    assert not hasattr(t2st, "speech_encoder")
    a = t2st.generate(**ours_in, tgt_lang="fra", max_new_tokens=6)
    b = model.generate(**ours_in, tgt_lang="fra", max_new_tokens=6)
    np.testing.assert_array_equal(np.array(a.waveform), np.array(b.waveform))
    s2st = sm.SeamlessM4Tv2ForSpeechToSpeech.from_pretrained(tiny_checkpoint, cpu_routes=on_cpu)
    assert not hasattr(s2st, "text_encoder")
    _, sp = _speech_inputs([_audio(3, 0.7)])
    a = s2st.generate(**sp, tgt_lang="fra", max_new_tokens=6)
    b = model.generate(**sp, tgt_lang="fra", max_new_tokens=6)
    np.testing.assert_array_equal(np.array(a.waveform), np.array(b.waveform))


def test_beam_search_then_speech_matches_transformers(model, tiny_hf):
    hf, _ = tiny_hf
    enc, ours_in = _text_inputs(tiny_hf, TEXTS)
    kw = dict(tgt_lang="fra", return_intermediate_token_ids=True, max_new_tokens=8, num_beams=3)
    _check(model.generate(**ours_in, **kw), hf.generate(**enc, **kw))
