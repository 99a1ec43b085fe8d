"""Tests for seamless_mlx.audio (file I/O) and seamless_mlx.features (parity with transformers), errors."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr

from seamless_mlx import audio as A
from seamless_mlx import features as F

SR = 16000


def _signal(n, seed=0, sr=SR):
    """Sum of a few sines plus some white noise, amplitude well inside [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    x = sum(a * np.sin(2 * np.pi * f * t + p) for a, f, p in [(0.3, 220, 0.1), (0.2, 1330, 1.0), (0.1, 3070, 2.0)])
    return (x + 0.05 * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module")
def hf_fe():
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()  # silences "pass sampling_rate" warnings
    return transformers.SeamlessM4TFeatureExtractor()


@pytest.fixture(scope="module")
def fe():
    return F.SeamlessM4TFeatureExtractor()


def _assert_same(ours, ref, atol=1e-4):
    ref_feats = np.asarray(ref["input_features"])
    assert ours["input_features"].shape == ref_feats.shape
    assert ours["input_features"].dtype == np.float32
    np.testing.assert_allclose(ours["input_features"], ref_feats, atol=atol, rtol=0)
    np.testing.assert_array_equal(ours["attention_mask"], np.asarray(ref["attention_mask"]))


# ------------------------------------------------------------------ parity with transformers


def test_filterbank_and_window_match_reference(hf_fe):
    np.testing.assert_allclose(F.kaldi_mel_filters(80, SR), hf_fe.mel_filters, atol=1e-12, rtol=0)
    np.testing.assert_allclose(F.povey_window(400), hf_fe.window, atol=1e-12, rtol=0)


# 0.3 s, 1 s, 2.37 s; 16160 samples -> 99 frames (odd); 560 -> 2 frames (the minimum)
@pytest.mark.parametrize("n", [4800, 16000, 37920, 16160, 560])
def test_single_clip_parity(hf_fe, fe, n):
    x = _signal(n, seed=n)
    raw = F.fbank_features(x)
    assert raw.shape == (1 + (n - 400) // 160, 80) and raw.dtype == np.float32
    np.testing.assert_allclose(raw, hf_fe._extract_fbank_features(x), atol=1e-4, rtol=0)
    _assert_same(fe(x, sampling_rate=SR), hf_fe(x, sampling_rate=SR, return_tensors="np"))


def test_odd_frame_count_masks_last_stacked_frame(fe):
    out = fe(_signal(16160))  # 99 frames -> padded to 100 -> 50 stacked frames
    assert out["input_features"].shape == (1, 50, 160)
    assert out["attention_mask"].tolist() == [[1] * 49 + [0]]
    np.testing.assert_array_equal(out["input_features"][0, -1, 80:], 0.0)  # padding value


def test_unnormalised_parity(hf_fe, fe):
    x = _signal(20000, seed=3)
    ref = hf_fe(x, sampling_rate=SR, do_normalize_per_mel_bins=False, return_tensors="np")
    _assert_same(fe(x, do_normalize=False), ref, atol=2e-4)


def test_batch_of_unequal_lengths_parity(hf_fe, fe):
    clips = [_signal(n, seed=i) for i, n in enumerate([16000, 4800, 37920, 16160])]
    ref = hf_fe(clips, sampling_rate=SR, return_tensors="np")
    ours = fe(clips, sampling_rate=SR)
    _assert_same(ours, ref)
    assert ours["input_features"].shape == (4, 118, 160)
    assert ours["attention_mask"].sum(1).tolist() == [49, 14, 117, 49]
    # low-level function gives the same thing
    low = F.extract_features(clips)
    np.testing.assert_array_equal(low["input_features"], ours["input_features"])
    np.testing.assert_array_equal(low["attention_mask"], ours["attention_mask"])


def test_float64_input_parity(hf_fe, fe):
    x = _signal(24000, seed=5).astype(np.float64)
    _assert_same(fe(x), hf_fe(x, sampling_rate=SR, return_tensors="np"))


def test_int16_input(hf_fe, fe):
    pcm = np.clip(_signal(30000, seed=7) * 32768, -32768, 32767).astype(np.int16)
    ours = fe(pcm, sampling_rate=SR)
    # transformers casts a list of int16 clips by value (no /32768) - normalisation removes the
    # resulting constant log offset, so the normalised features agree. (Their log values are
    # ~20.8 larger, which costs float32 precision on their side: up to ~1.5e-4 after dividing by
    # the small per-bin std of tonal bins, while ours stay within 4e-5 of a float64 computation.)
    ref = hf_fe([pcm], sampling_rate=SR, return_tensors="np")
    _assert_same(ours, ref, atol=3e-4)
    assert np.abs(ours["input_features"] - ref["input_features"]).mean() < 1e-5
    # and we treat int16 exactly like the float waveform soundfile would return
    scaled = fe(pcm.astype(np.float32) / 32768)
    np.testing.assert_array_equal(ours["input_features"], scaled["input_features"])
    # without normalisation the only difference is the gain: 2 * log(32768)
    raw_ours = fe(pcm, do_normalize=False)["input_features"]
    raw_ref = hf_fe([pcm], sampling_rate=SR, do_normalize_per_mel_bins=False)["input_features"]
    np.testing.assert_allclose(raw_ref - raw_ours, 2 * math.log(32768), atol=1e-3)


def test_other_dtypes_and_containers(fe):
    x = _signal(8000, seed=9)
    ref = fe(x)["input_features"]
    i32 = (x.astype(np.float64) * 2**31).astype(np.int32)
    np.testing.assert_allclose(fe(i32)["input_features"], ref, atol=1e-4)
    np.testing.assert_allclose(fe(x.tolist())["input_features"], ref, atol=1e-5)
    mx = pytest.importorskip("mlx.core")
    np.testing.assert_allclose(fe(mx.array(x))["input_features"], ref, atol=1e-5)
    out = fe([mx.array(x)], return_tensors="mlx")
    assert isinstance(out["input_features"], mx.array) and isinstance(out["attention_mask"], mx.array)
    assert out["input_features"].shape == (1, 24, 160) and out["input_features"].dtype == mx.float32
    assert "attention_mask" not in fe(x, return_attention_mask=False)


def test_stereo_layouts_are_mixed_down(fe):
    left, right = _signal(12000, seed=1), _signal(12000, seed=2)
    mono = (left + right) / 2
    np.testing.assert_allclose(A.prepare_audio(np.stack([left, right])), mono, atol=1e-7)  # (2, n)
    np.testing.assert_allclose(A.prepare_audio(np.stack([left, right], 1)), mono, atol=1e-7)  # (n, 2)
    np.testing.assert_allclose(
        fe(np.stack([left, right]))["input_features"], fe(mono)["input_features"], atol=1e-5
    )
    with pytest.raises(ValueError, match="list"):
        A.prepare_audio(np.zeros((20, 3000), np.float32))  # ambiguous: a batch must be a list


def test_wrong_sampling_rate_is_resampled(fe):
    x16 = _signal(16000, seed=4)
    x8 = soxr.resample(x16, SR, 8000)
    y = A.prepare_audio(x8, 8000)
    assert abs(len(y) - 16000) <= 2
    assert fe(x8, sampling_rate=8000)["input_features"].shape[1] == fe(y)["input_features"].shape[1]
    # sampling_rate=None means "already 16 kHz": nothing is resampled
    np.testing.assert_array_equal(A.prepare_audio(x16, None), x16)


# ------------------------------------------------------------------ files


def test_stereo_44k_file_is_mixed_down_and_resampled(tmp_path, fe):
    duration = 2.0
    x16 = _signal(int(duration * SR), seed=11)
    x44 = soxr.resample(x16, SR, 44100)
    rng = np.random.default_rng(12)
    diff = 0.01 * rng.standard_normal(len(x44)).astype(np.float32)  # cancels in the mix-down
    path = tmp_path / "stereo44k.wav"
    sf.write(path, np.stack([x44 + diff, x44 - diff], axis=1), 44100, subtype="PCM_16")
    assert sf.info(path).channels == 2 and sf.info(path).samplerate == 44100

    y = A.load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - duration * SR) <= 2
    n = min(len(y), len(x16))
    assert np.corrcoef(y[:n], x16[:n])[0, 1] > 0.99
    feats_file = fe(y)["input_features"][0]
    feats_orig = fe(x16)["input_features"][0]
    m = min(len(feats_file), len(feats_orig))
    assert np.corrcoef(feats_file[:m].ravel(), feats_orig[:m].ravel())[0, 1] > 0.95

    # file objects work too, and a custom target rate
    with open(path, "rb") as fh:
        y8 = A.load_audio(fh, sampling_rate=8000)
    assert abs(len(y8) - duration * 8000) <= 2


def test_save_wav_roundtrip(tmp_path):
    x = _signal(5000, seed=13)
    x[0] = 1.5  # clipped
    path = tmp_path / "out.wav"
    A.save_wav(path, x)
    info = sf.info(path)
    assert info.subtype == "PCM_16" and info.samplerate == SR and info.channels == 1
    y = A.load_audio(path)
    assert y[0] == pytest.approx(32767 / 32768)
    np.testing.assert_allclose(y[1:], x[1:], atol=1 / 32768 + 1e-6)


def test_from_pretrained(tmp_path):
    default = F.SeamlessM4TFeatureExtractor.from_pretrained(tmp_path)  # no json: defaults
    assert (default.feature_size, default.num_mel_bins, default.stride, default.sampling_rate) == (80, 80, 2, SR)
    assert default.padding_value == 0.0 and default.return_attention_mask
    cfg = {
        "feature_extractor_type": "SeamlessM4TFeatureExtractor",
        "feature_size": 80,
        "num_mel_bins": 80,
        "padding_side": "right",
        "padding_value": 1.0,
        "processor_class": "SeamlessM4TProcessor",
        "return_attention_mask": True,
        "sampling_rate": 16000,
        "stride": 2,
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(cfg))
    fx = F.SeamlessM4TFeatureExtractor.from_pretrained(tmp_path)
    assert fx.padding_value == 1.0
    out = fx([_signal(16000), _signal(8000)])
    assert out["input_features"][1, -1, 0] == 1.0 and out["attention_mask"][1, -1] == 0


# ------------------------------------------------------------------ errors


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(ValueError, match="not found") as info:
        A.load_audio(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def test_corrupt_file(tmp_path):
    path = tmp_path / "garbage.wav"
    path.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(ValueError) as info:
        A.load_audio(path)
    msg = str(info.value)
    assert "garbage.wav" in msg and "WAV" in msg and "FLAC" in msg and "onvert" in msg


def test_empty_inputs(tmp_path, fe):
    with pytest.raises(ValueError, match="empty"):
        A.prepare_audio(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="empty"):
        fe(np.zeros(0, np.int16))
    with pytest.raises(ValueError, match="empty"):
        fe([])
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), SR)
    with pytest.raises(ValueError, match="no samples"):
        A.load_audio(path)


def test_too_short_and_bad_inputs(fe):
    with pytest.raises(ValueError, match="too short.*560 samples"):
        fe(np.zeros(500, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        fe(np.full(1000, np.nan, np.float32))
    with pytest.raises(ValueError, match="dtype"):
        fe(np.zeros(1000, np.int64))
    with pytest.raises(ValueError, match="shape"):
        fe(np.zeros((2, 2, 1000), np.float32))
    with pytest.raises(ValueError, match="return_tensors"):
        fe(np.zeros(1000, np.float32), return_tensors="pt")


def test_runtime_module_imports_neither_torch_nor_transformers():
    root = os.path.dirname(os.path.dirname(F.__file__))
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from seamless_mlx.features import SeamlessM4TFeatureExtractor\n"
        "SeamlessM4TFeatureExtractor()(np.zeros(4000, np.float32), return_tensors='mlx')\n"
        "bad = [k for k in ('torch', 'transformers') if k in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=root)


def test_a_file_whose_name_is_not_utf8_is_read(tmp_path):
    name = os.path.join(os.fsencode(tmp_path), b"caf\xe9.wav")  # Latin-1 bytes, as an old archive holds
    x = (0.1 * np.sin(np.arange(4000) / 7)).astype(np.float32)
    sf.write(name, x, 16000, subtype="FLOAT")  # soundfile takes a bytes path
    np.testing.assert_array_equal(A.load_audio(os.fsdecode(name)), x)


def test_a_sample_rate_too_low_for_speech_is_refused_before_resampling(tmp_path):
    path = tmp_path / "one_hertz.wav"
    sf.write(path, np.zeros(10000, np.float32), 1)  # resampled to 16 kHz it would be 160M samples
    with pytest.raises(ValueError, match="1 Hz is too low for speech"):
        A.load_audio(str(path))
