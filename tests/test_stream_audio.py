"""Chunked vocoder and streamed speech.

The HiFi-GAN run over windows of frames, each with its receptive field's context, gives the
one-pass waveform (bit for bit on the plain path) and transformers' waveform; stream_generate,
``translate(on_audio=...)`` and ``seamless-mlx translate ... --speech -o -`` deliver it piece by
piece, each piece right after its own window has run, before the later windows.
"""

import contextlib
import io
import math
import subprocess
import sys
import wave

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf
from test_vocoder import make_pair, run_both, units  # the random vocoders of the parity tests
from transformers import SeamlessM4Tv2Config

import seamless_mlx as sm
from seamless_mlx import SeamlessM4TFeatureExtractor, api, cli
from seamless_mlx import generate as generate_mod
from seamless_mlx.audio import WavStreamWriter
from seamless_mlx.config import ModelConfig
from seamless_mlx.processor import SeamlessM4TProcessor
from seamless_mlx.vocoder import HifiGan, receptive_field, window_spans

# The plain path runs the same kernels on every window: identical samples.  The CPU twins pick a
# product layout by length, so a window's sums may round differently (measured: 4e-7 relative).
CPU_ROUTE_REL = 1e-6
# one pass vs transformers, samples in [-1, 1] (measured below 1e-5)
HF_ATOL = 1e-4


def rel_l2(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def assert_same_waveform(got, want, route):
    assert got.shape == want.shape
    if route == "plain":
        np.testing.assert_array_equal(got, want)
    else:
        assert rel_l2(got, want) <= CPU_ROUTE_REL


@contextlib.contextmanager
def counting_windows(vocoder):
    """Record the frames of each HiFi-GAN pass (through the generator's own ``__call__``, whichever
    route's class it has)."""
    gen = vocoder.hifi_gan
    base = type(gen)
    calls = []

    class Counting(base):
        def __call__(self, x):
            calls.append(x.shape[1])
            return super().__call__(x)

    gen.__class__ = Counting
    try:
        yield calls
    finally:
        gen.__class__ = base


# ------------------------------------------------------------------------ receptive field

GEOMETRIES = {
    "tiny": dict(upsample_rates=[4, 2, 2], upsample_kernel_sizes=[8, 4, 4], resblock_kernel_sizes=[3, 5],
                 resblock_dilation_sizes=[[1, 3], [1, 2]]),
    "v2-large": {},  # SeamlessM4Tv2Config's defaults: five stages, kernel 11 over stride 5, ...
    "odd-overhang": dict(upsample_rates=[3, 2], upsample_kernel_sizes=[7, 5], resblock_kernel_sizes=[5],
                         resblock_dilation_sizes=[[2, 4]]),
}


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_receptive_field_is_exactly_the_frames_that_reach_a_frame(geometry):
    # which input frames the samples of frame f depend on, read off the gradient (leaky ReLU
    # never zeroes it); narrow channels keep it cheap, the geometry is the config's
    cfg = ModelConfig.from_dict(SeamlessM4Tv2Config(upsample_initial_channel=32, **GEOMETRIES[geometry]).to_dict())
    mx.random.seed(0)
    gen = HifiGan(cfg)
    left, right = receptive_field(cfg)
    hop = math.prod(cfg.upsample_rates)
    f = left + 3
    x = mx.random.normal((1, left + right + 7, gen.conv_pre.weight.shape[-1])) * 0.1
    _, (grad,) = mx.vjp(lambda x: gen(x)[:, f * hop : (f + 1) * hop], [x], [mx.ones((1, hop))])
    reach = np.nonzero(np.abs(np.array(grad)).sum(axis=-1)[0])[0]
    assert (f - reach.min(), reach.max() - f) == (left, right)


def test_window_spans_cover_the_frames_first_short_then_doubling():
    assert window_spans(100, 8, 32) == [(0, 8), (8, 24), (24, 56), (56, 88), (88, 100)]
    assert window_spans(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert window_spans(3, 10, 40) == [(0, 3)]
    assert window_spans(0, 4) == []
    with pytest.raises(ValueError, match="first"):
        window_spans(10, 0)
    with pytest.raises(ValueError, match="largest"):
        window_spans(10, 8, 4)


# ------------------------------------------------------------------------ chunked == one pass


def _windows(cfg_left):
    # smaller than the receptive field, one frame either side of it, larger, and past the end
    return [1, 2, cfg_left - 1, cfg_left, cfg_left + 1, 16, 10_000]


@pytest.mark.parametrize("variant", ["tiny", "large_geometry"])
def test_windowed_vocoder_equals_one_pass_per_batch_row(route, variant):
    _, model, cfg = make_pair(variant, route=route)
    ids = mx.array(units(np.random.default_rng(5), [40, 23], cfg))  # rows of different lengths
    spk, lang = mx.array([2, 0]), mx.array([1, 2])
    whole, lengths = model(ids, spk, lang)
    whole, lengths = np.array(whole), np.array(lengths)
    assert lengths[1] < lengths[0] <= whole.shape[1]
    for window in _windows(receptive_field(model.config)[0]):
        got, got_lengths = model(ids, spk, lang, window=window)
        np.testing.assert_array_equal(np.array(got_lengths), lengths)
        got = np.array(got)
        for b, n in enumerate(lengths):
            assert_same_waveform(got[b, :n], whole[b, :n], route)


@pytest.mark.parametrize("variant", ["tiny", "large_geometry"])
def test_windowed_vocoder_matches_transformers(variant):
    hf, model, cfg = make_pair(variant, route="plain")
    ids = units(np.random.default_rng(6), [30, 19], cfg)
    _, lengths, ref, ref_lengths = run_both(hf, model, ids, [1, 2], [0, 3])
    np.testing.assert_array_equal(lengths, ref_lengths)
    got, _ = model(mx.array(ids), mx.array([1, 2]), mx.array([0, 3]), window=3)
    got = np.array(got)
    assert np.abs(ref).std() > 0.05  # a real signal
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(got[b, :n], ref[b, :n], atol=HF_ATOL, rtol=0)


@pytest.mark.parametrize("frames,window", [(1, 1), (1, 5), (2, 1), (3, 2)])
def test_single_frame_windows_at_the_sequence_edges(route, frames, window):
    _, model, _ = make_pair("tiny", route=route)
    x = mx.array(np.random.default_rng(frames).standard_normal((2, frames, model.hifi_gan.conv_pre.weight.shape[-1])))
    x = x.astype(mx.float32)
    pieces = list(model.waveform_windows(x, window_spans(frames, window)))
    assert len(pieces) == math.ceil(frames / window)
    assert_same_waveform(np.array(mx.concatenate(pieces, axis=1)), np.array(model.hifi_gan(x)), route)


# ------------------------------------------------------------------------ streamed speech

TEXT = "Hello world, how are you today?"


@pytest.fixture(scope="module", params=["plain", "cpu"])
def speech_model(tiny_checkpoint, request):
    model = sm.SeamlessM4Tv2Model.from_pretrained(tiny_checkpoint, cpu_routes=request.param == "cpu")
    return model, SeamlessM4TProcessor.from_pretrained(tiny_checkpoint), request.param


def _speech_inputs():
    t = np.arange(16000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    f = SeamlessM4TFeatureExtractor()(audio, sampling_rate=16000, return_tensors="np")
    return dict(input_features=mx.array(f["input_features"]), attention_mask=mx.array(f["attention_mask"]))


@pytest.mark.parametrize("task", ["t2st", "s2st"])
def test_stream_generate_yields_each_window_as_it_runs(speech_model, task):
    model, proc, route = speech_model
    if task == "t2st":
        inputs = dict(proc(text=TEXT, src_lang="eng", return_tensors="mlx"))
    else:
        inputs = _speech_inputs()
    kw = dict(tgt_lang="fra", max_new_tokens=12)
    whole, lengths = model.generate(**inputs, **kw)
    whole = np.array(whole)[0, : int(lengths[0].item())]

    arrivals, kinds, pieces = [], [], []
    with counting_windows(model.vocoder) as calls:
        for chunk in model.stream_generate(proc, **inputs, **kw, generate_speech=True, vocoder_window=4):
            kinds.append("audio" if chunk.waveform is not None else "text")
            if chunk.waveform is not None:
                arrivals.append(len(calls))  # HiFi-GAN windows run when this piece came
                pieces.append(np.array(chunk.waveform))
    assert kinds.index("audio") > 0 and "text" not in kinds[kinds.index("audio") :]  # text first
    assert len(pieces) > 2
    # each piece comes right after its own window, the first long before the last window runs
    assert arrivals == list(range(1, len(calls) + 1))
    assert all(c <= 4 + sum(receptive_field(model.config)) for c in calls)
    assert_same_waveform(np.concatenate(pieces), whole, route)


def test_default_stream_starts_with_a_short_window(speech_model, monkeypatch):
    model, proc, route = speech_model
    monkeypatch.setattr(generate_mod, "FIRST_WINDOW", 3)
    monkeypatch.setattr(generate_mod, "LARGEST_WINDOW", 12)
    inputs = dict(proc(text=TEXT, src_lang="eng", return_tensors="mlx"))
    whole, lengths = model.generate(**inputs, tgt_lang="fra", max_new_tokens=12)
    with counting_windows(model.vocoder) as calls:
        pieces = [np.array(c.waveform) for c in model.stream_generate(
            proc, **inputs, tgt_lang="fra", max_new_tokens=12, generate_speech=True) if c.waveform is not None]
    hop = math.prod(model.config.upsample_rates)
    assert [len(p) for p in pieces[:3]] == [3 * hop, 6 * hop, 12 * hop]
    assert_same_waveform(np.concatenate(pieces), np.array(whole)[0, : int(lengths[0].item())], route)


# ------------------------------------------------------------------------ API and CLI


@pytest.fixture(scope="module")
def mlx_model(tiny_checkpoint, tmp_path_factory):
    from seamless_mlx.convert import convert

    return str(convert(tiny_checkpoint, tmp_path_factory.mktemp("conv") / "mlx"))


@pytest.fixture()
def small_windows(monkeypatch):
    monkeypatch.setattr(generate_mod, "FIRST_WINDOW", 4)
    monkeypatch.setattr(generate_mod, "LARGEST_WINDOW", 8)


@pytest.mark.parametrize("task", ["t2st", "s2st"])
def test_translate_on_audio_streams_the_result_audio(mlx_model, small_windows, task):
    if task == "t2st":  # two lines: two pieces with a silence between them
        source, kw = "Hello world, how are you today?\nThe quick brown fox.", dict(src_lang="eng")
    else:
        t = np.arange(16000) / 16000
        source, kw = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), {}
    whole = api.translate(source, tgt_lang="fra", speech=True, model=mlx_model, max_new_tokens=12, **kw)
    model, _ = api.get_model(mlx_model, task)
    got, arrivals = [], []
    with counting_windows(model.vocoder) as calls:
        def on_audio(piece):
            got.append(piece)
            arrivals.append(len(calls))

        streamed = api.translate(source, tgt_lang="fra", speech=True, model=mlx_model, max_new_tokens=12,
                                 on_audio=on_audio, **kw)
    assert streamed.text == whole.text
    assert all(isinstance(p, np.ndarray) and p.dtype == np.float32 for p in got)
    np.testing.assert_array_equal(np.concatenate(got), streamed.audio)
    assert arrivals[0] == 1 < len(calls)  # first audio after the first window, not after the last
    assert rel_l2(streamed.audio, whole.audio) <= CPU_ROUTE_REL  # the API loads the CPU route


def test_on_audio_refuses_a_list(mlx_model):
    with pytest.raises(ValueError, match="on_audio"):
        api.translate(["a", "b"], tgt_lang="fra", src_lang="eng", speech=True, model=mlx_model, on_audio=print)


def test_wav_stream_writer_flushes_each_piece_and_reads_back():
    buf = io.BytesIO()
    w = WavStreamWriter(buf)
    w.write(np.array([0.0, 0.5, -0.5], np.float32))
    assert len(buf.getvalue()) == 44 + 6  # header and the first samples are out before the next piece
    w.write(np.array([2.0, -1.0], np.float32))  # clipped, as save_wav clips
    w.close()
    with wave.open(io.BytesIO(buf.getvalue())) as r:
        assert (r.getnchannels(), r.getsampwidth(), r.getframerate()) == (1, 2, 16000)
        pcm = np.frombuffer(r.readframes(100), dtype="<i2")
    assert pcm.tolist()[1:] == [16384, -16384, 32767, -32768] and pcm[0] == 0
    empty = io.BytesIO()
    WavStreamWriter(empty).close()
    assert len(empty.getvalue()) == 44


@pytest.fixture()
def plain_api(monkeypatch):
    """The API's models loaded on the plain path, where windows and one pass agree bit for bit."""
    monkeypatch.setenv("SEAMLESS_MLX_ROUTES", "generic")
    api.get_model.cache_clear()
    yield
    api.get_model.cache_clear()


def test_cli_speech_to_stdout_is_the_file_output_as_a_wav_stream(mlx_model, tmp_path, capsysbinary, plain_api):
    args = ["translate", TEXT, "--src-lang", "eng", "--tgt-lang", "fra", "--model", mlx_model, "--max-new-tokens", "12"]
    assert cli.main(args + ["-o", str(tmp_path / "out.wav")]) == 0
    capsysbinary.readouterr()
    assert cli.main(args + ["--speech", "-o", "-"]) == 0
    streamed = capsysbinary.readouterr()
    assert streamed.out[:4] == b"RIFF" and streamed.out[40:44] == b"\xff\xff\xff\xff"  # length unknown, as ffmpeg
    assert streamed.err.strip()  # the text went to stderr, not into the audio
    with wave.open(io.BytesIO(streamed.out)) as r:
        assert (r.getnchannels(), r.getsampwidth(), r.getframerate()) == (1, 2, 16000)
        piped = r.readframes(10**7)
    with wave.open(str(tmp_path / "out.wav")) as r:
        written = r.readframes(r.getnframes())
    assert len(written) > 1000 and piped == written


def test_cli_speech_to_a_real_pipe_plays_as_wav(mlx_model):
    argv = [sys.executable, "-m", "seamless_mlx.cli", "translate", "Bonjour tout le monde", "--src-lang", "eng",
            "--tgt-lang", "deu", "--speech", "-o", "-", "--model", mlx_model, "--max-new-tokens", "8", "-q"]
    p = subprocess.run(argv, capture_output=True, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stderr == b""  # -q: nothing but the audio
    audio, rate = sf.read(io.BytesIO(p.stdout), dtype="float32")
    assert rate == 16000 and audio.ndim == 1 and audio.size > 0


@pytest.mark.parametrize("extra,message", [([], "add --speech"), (["--text"], "add --speech")])
def test_cli_stdout_audio_needs_speech(mlx_model, capsys, extra, message):
    code = cli.main(["translate", "Hi", "--src-lang", "eng", "--tgt-lang", "fra", "-o", "-", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
