"""``seamless-mlx serve`` as clients see it: the real server in a subprocess on 127.0.0.1, driven by the
official ``openai`` client, ``libretranslatepy``, raw HTTP and a real browser.  Every answer is
compared with what the Python API (``seamless_mlx.api``) returns for the same input."""

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf

from seamless_mlx.audio import resample

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette", reason="the [server] extra is not installed")
pytest.importorskip("uvicorn", reason="the [server] extra is not installed")

SR = 16000
KEY = "test-key-123"
MAX_NEW = 8  # --max-new-tokens of the server and of every reference call


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlx_model(tiny_checkpoint, tmp_path_factory):
    from seamless_mlx.convert import convert

    return str(convert(tiny_checkpoint, tmp_path_factory.mktemp("conv") / "mlx"))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = dict(os.environ)
    e.update(SEAMLESS_MLX_CACHE=str(tmp_path_factory.mktemp("cache")), HF_HUB_OFFLINE="1", PYTHONIOENCODING="utf-8",
             SEAMLESS_MLX_HUGEPAGES="0")
    return e


class Server:
    def __init__(self, model, env, tmp, *extra):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp / "server.log", "w+")
        e = dict(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "seamless_mlx.cli", "serve", "--model", model, "--port", str(self.port),
             "--max-new-tokens", str(MAX_NEW), *extra], env=e, cwd=tmp, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.output()}")
            try:
                urllib.request.urlopen(self.url + "/", timeout=2).read()  # the one path open without a key
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        raise RuntimeError("server did not start in 120 s: " + self.output())

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def server(mlx_model, env, tmp_path_factory):
    s = Server(mlx_model, env, tmp_path_factory.mktemp("srv"), "--api-key", KEY, "--max-upload-mb", "1",
               "--max-audio-s", "10", "--max-queue", "16")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def oai(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def api(mlx_model):
    """The Python API's answer for the same request, with the server's decoding options."""
    from seamless_mlx.api import translate

    def ref(source, tgt, src=None, speech=False, speaker_id=0):
        return translate(source, tgt_lang=tgt, src_lang=src, speech=speech, model=mlx_model, speaker_id=speaker_id,
                         max_new_tokens=MAX_NEW)

    return ref


def tone(seconds=2.0, f=220.0, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * f * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def wav_bytes(x, sr=SR) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 2 s WAV and the waveform the server will decode from it (16-bit)."""
    p = tmp_path_factory.mktemp("audio") / "my recording (1).wav"
    p.write_bytes(wav_bytes(tone()))
    return p, sf.read(p, dtype="float32")[0]


def pcm16(x):
    return np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)


def openai_pcm(x):
    """What OpenAI's raw `pcm` speech holds: 24 kHz 16-bit samples (the model speaks at 16 kHz)."""
    return pcm16(resample(np.asarray(x, np.float32), 16000, 24000))


def same_samples(encoded: bytes, ref) -> bool:
    """A 16-bit WAV/FLAC holds ``ref`` (float) up to libsndfile's own 16-bit rounding."""
    got, sr = sf.read(io.BytesIO(encoded), dtype="float32")
    return sr == SR and got.shape == ref.shape and float(np.abs(got - ref).max()) <= 2 / 32768


# ------------------------------------------------------------------------------- OpenAI client


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt", "verbose_json"])
def test_openai_transcription_formats_equal_api(oai, clip, api, fmt):
    path, audio = clip
    ref = api(audio, "eng")
    with open(path, "rb") as f:
        r = oai.audio.transcriptions.create(model="whisper-1", file=f, language="en", response_format=fmt)
    if fmt == "json":
        assert r.text == ref.text
    elif fmt == "verbose_json":
        assert r.text == ref.text and r.language == "eng" and abs(r.duration - 2.0) < 1e-3
        assert [s.text for s in r.segments] == [s.text for s in ref.segments]
    else:
        assert r == {"text": ref.text, "srt": ref.to_srt(), "vtt": ref.to_vtt()}[fmt]


def test_openai_transcription_stream_deltas_join_to_api_text(oai, clip, api):
    path, audio = clip
    with open(path, "rb") as f:
        events = list(oai.audio.transcriptions.create(model="whisper-1", file=f, language="eng", stream=True))
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) > 1
    assert "".join(deltas).strip() == api(audio, "eng").text
    assert events[-1].type == "transcript.text.done" and events[-1].text == api(audio, "eng").text


def test_openai_translation_defaults_to_english_and_takes_target_language(oai, clip, api):
    path, audio = clip
    with open(path, "rb") as f:
        assert oai.audio.translations.create(model="whisper-1", file=f).text == api(audio, "eng").text
    with open(path, "rb") as f:
        r = oai.audio.translations.create(model="whisper-1", file=f, extra_body={"target_language": "de"})
    assert r.text == api(audio, "deu").text


def test_openai_speech_translates_text_into_speech_like_api(oai, api):
    r = oai.audio.speech.create(model="tts-1", voice="alloy", input="Hello world, how are you?",
                                response_format="wav", extra_body={"language": "fr", "source_language": "en"})
    ref = api("Hello world, how are you?", "fra", "eng", speech=True, speaker_id=0)
    assert same_samples(r.content, ref.audio)


@pytest.mark.parametrize("voice,speaker", [("echo", 4 % 3), ("2", 2)])
def test_openai_speech_voice_picks_speaker_and_pcm_is_raw_samples(oai, api, voice, speaker):
    r = oai.audio.speech.create(model="tts-1", voice=voice, input="Good morning", response_format="pcm")
    ref = api("Good morning", "eng", "eng", speech=True, speaker_id=speaker)
    got = np.frombuffer(r.content, "<i2")
    assert len(got) == round(len(ref.audio) * 1.5)  # 24 kHz
    assert np.array_equal(got, openai_pcm(ref.audio))


def test_models_lists_the_served_model(oai):
    assert [m.id for m in oai.models.list().data] == ["mlx"]


# ------------------------------------------------------------------------------- raw HTTP


def test_speech_translation_endpoint_returns_audio_and_text_like_api(http, clip, api):
    path, audio = clip
    ref = api(audio, "spa", speech=True, speaker_id=1)
    r = http.post("/v1/audio/speech-translations", files={"file": path.read_bytes()},
                  data={"target_language": "es", "voice": "1", "response_format": "flac"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/flac"
    assert same_samples(r.content, ref.audio)
    r = http.post("/v1/audio/speech-translations", files={"file": path.read_bytes()},
                  data={"target_language": "spa", "voice": "1", "response_format": "json"})
    import base64

    body = r.json()
    assert body["text"] == ref.text
    assert same_samples(base64.b64decode(body["audio"]), ref.audio)


def test_translate_accepts_json_list_and_form_bodies(http, api):
    q = ["Hello world", "Good morning, my friend."]
    r = http.post("/translate", json={"q": q, "source": "en", "target": "deu", "format": "text"})
    assert r.status_code == 200
    assert r.json()["translatedText"] == [api(t, "deu", "eng").text for t in q]
    r = http.post("/translate", data={"q": "Hello world", "source": "eng", "target": "de"})
    assert r.json()["translatedText"] == api("Hello world", "deu", "eng").text


def test_text_naming_a_file_on_the_server_is_spoken_as_text_never_read(oai, clip, mlx_model):
    from seamless_mlx.api import translate

    path = str(clip[0])  # a recording the server's machine holds
    r = oai.audio.speech.create(model="tts-1", voice="alloy", input=path, response_format="wav",
                                extra_body={"language": "fr", "source_language": "en"})
    ref = translate(path, tgt_lang="fra", src_lang="eng", speech=True, model=mlx_model, max_new_tokens=MAX_NEW,
                    as_text=True)
    assert ref.text and same_samples(r.content, ref.audio)


def test_translate_keeps_lines_like_api(http, api):
    text = "Hello world\n\nGood morning"
    r = http.post("/translate", json={"q": text, "source": "en", "target": "fr"})
    assert r.json()["translatedText"] == api(text, "fra", "eng").text


def test_a_long_line_is_cut_at_sentences_like_api(http, api):
    line = " ".join(f"This is sentence number {i}, which says a little more." for i in range(12))  # > 400 chars
    r = http.post("/translate", json={"q": line, "source": "en", "target": "fr"})
    want = api(line, "fra", "eng")
    assert len(want.segments) == 12  # the library's path: one piece per sentence
    assert r.json()["translatedText"] == want.text


def test_batched_generate_equals_one_at_a_time(mlx_model, api):
    from seamless_mlx.api import get_model
    from seamless_mlx.server import translate_texts

    import checkpoints

    texts = [t for t in checkpoints.CORPUS if "\n" not in t][:8]
    model, processor = get_model(mlx_model, "t2tt")
    got = translate_texts(model, processor, texts, "eng", "fra", {"max_new_tokens": MAX_NEW})
    assert got == [api(t, "fra", "eng").text for t in texts]


def test_concurrent_text_requests_are_batched_and_answered_correctly(server, api):
    import checkpoints

    texts = checkpoints.CORPUS[:8]

    def ask(t):
        with httpx.Client(base_url=server.url, timeout=120) as c:
            r = c.post("/translate", json={"q": t, "source": "en", "target": "fr", "api_key": KEY})
            return r.json()["translatedText"], int(r.headers["x-batch-size"])

    for _ in range(3):  # the first request of a burst may run alone; the others wait together
        with ThreadPoolExecutor(8) as ex:
            out = list(ex.map(ask, texts))
        if max(n for _, n in out) > 1:
            break
    assert [t for t, _ in out] == [api(t, "fra", "eng").text for t in texts]
    assert max(n for _, n in out) > 1, "no two concurrent requests shared a generate call"


def test_a_bad_text_fails_alone_and_its_batch_mates_get_their_answers(server, api):
    texts = ["Hello world", "Good morning, my friend.", "a\ud800b", "How are you?", "Thank you very much."]

    def ask(t):
        with httpx.Client(base_url=server.url, timeout=120) as c:
            body = json.dumps({"q": t, "source": "en", "target": "fr", "api_key": KEY})  # ASCII: \ud800 escaped
            return c.post("/translate", content=body, headers={"content-type": "application/json"})

    with ThreadPoolExecutor(len(texts)) as ex:
        rs = list(ex.map(ask, texts))
    bad = rs.pop(2)
    assert bad.status_code == 400 and "surrogate" in bad.json()["error"], bad.text
    good = [t for t in texts if "\ud800" not in t]
    assert [r.json()["translatedText"] for r in rs] == [api(t, "fra", "eng").text for t in good]


def test_a_failing_batch_is_retried_one_text_at_a_time(mlx_model, api, monkeypatch):
    """The worker's own defence, below the request checks: a text the model raises on fails alone."""
    from seamless_mlx import api as api_module
    from seamless_mlx.server import Engine, Limits

    texts = ["Hello world", "a\ud800b", "Good morning, my friend."]  # the surrogate skips check_text here
    want = [api(texts[i], "fra", "eng").text for i in (0, 2)]
    # the worker thread's model (and its MLX streams) must not outlive this test in the shared cache
    monkeypatch.setattr(api_module, "_SHARED", {})
    engine = Engine(mlx_model, limits=Limits(max_new_tokens=MAX_NEW), quiet=True)
    try:
        gate = threading.Event()
        engine.submit(gate.wait)  # holds the worker so the texts below queue up and batch together
        futs = [engine.submit(batch_key=("t2tt", "eng", "fra"), text=t) for t in texts]
        gate.set()
        with pytest.raises(Exception):
            futs[1].result(120)
        assert [futs[i].result(120) for i in (0, 2)] == [(w, 1) for w in want]  # each retried alone
    finally:
        engine.close()


# ------------------------------------------------------------------------------- LibreTranslate client


def test_libretranslatepy_translates_and_lists_languages(server, api):
    from libretranslatepy import LibreTranslateAPI

    lt = LibreTranslateAPI(server.url, api_key=KEY)
    assert lt.translate("Hello world", "en", "es") == api("Hello world", "spa", "eng").text
    langs = {l["code"]: l for l in lt.languages()}
    assert {"en", "fr", "de", "es", "ru", "zh", "ar", "hi"} == set(langs)
    assert langs["ru"]["speech_output"] is False and langs["fr"]["speech_output"] is True


# ------------------------------------------------------------------------------- bad input


def openai_error(r, status, param=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert "Traceback" not in r.text
    if param is not None:
        assert err["param"] == param
    return err["message"]


def test_non_audio_upload_is_400(http):
    r = http.post("/v1/audio/transcriptions", files={"file": ("notes.wav", b"this is not audio" * 100)},
                  data={"language": "en"})
    assert "not audio" in openai_error(r, 400, "file")


def test_empty_upload_is_400(http):
    r = http.post("/v1/audio/transcriptions", files={"file": ("x.wav", b"")}, data={"language": "en"})
    assert "empty" in openai_error(r, 400, "file")


def test_oversize_upload_is_413_naming_the_limit(http):
    r = http.post("/v1/audio/transcriptions", files={"file": ("big.wav", b"\0" * 1_200_000)}, data={"language": "en"})
    assert "1 MB" in openai_error(r, 413)


def test_oversize_libretranslate_body_is_413_in_its_own_error_shape(http):
    r = http.post("/translate", content=b"x" * 1_200_000, headers={"content-type": "application/json"})
    assert r.status_code == 413 and isinstance(r.json()["error"], str) and "1 MB" in r.json()["error"]


def test_an_upload_below_2_khz_is_400_saying_so(http):
    r = http.post("/v1/audio/transcriptions", files={"file": ("low.wav", wav_bytes(tone(2.0, 100, 1000), 1000))},
                  data={"language": "en"})
    assert "too low for speech" in openai_error(r, 400, "file")


def test_404_and_405_show_at_most_a_short_piece_of_the_path(http):
    r = http.get("/" + "a" * 15000)
    assert r.status_code == 404 and len(r.content) < 600
    r = http.request("X" * 5000, "/translate")
    assert r.status_code in (400, 405) and len(r.content) < 600


def test_oversize_chunked_upload_is_413(http):
    def chunks():
        for _ in range(40):
            yield b"\0" * 50_000

    r = http.post("/translate", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "--max-upload-mb" in r.text


def test_too_long_audio_is_413_naming_the_limit(http):
    r = http.post("/v1/audio/transcriptions", files={"file": wav_bytes(tone(12.0, sr=8000), 8000)},
                  data={"language": "en"})
    assert "10 s" in openai_error(r, 413, "file")


def test_a_sample_rate_above_192_khz_is_400_naming_the_limit(http):
    buf = io.BytesIO()
    sf.write(buf, np.zeros((3000, 8), np.float32), 655350, format="WAV", subtype="PCM_16")  # 48 KB
    r = http.post("/v1/audio/transcriptions", files={"file": buf.getvalue()}, data={"language": "en"})
    assert "192000 Hz" in openai_error(r, 400, "file")


def test_many_channels_decode_a_block_at_a_time_to_what_the_library_reads(tmp_path):
    """Memory for an upload is its mono samples, not frames x channels (an 8-channel 'bomb')."""
    import tracemalloc

    from seamless_mlx.audio import load_audio
    from seamless_mlx.server import DECODE_BLOCK, Limits, decode_upload

    sr, frames = 192000, 192000 * 8
    t = np.arange(frames) / sr
    wave = np.stack([0.1 * np.sin(2 * np.pi * (200 + 50 * c) * t) for c in range(8)], axis=1).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, wave, sr, format="FLAC", subtype="PCM_16")
    data = buf.getvalue()
    del wave, t
    tracemalloc.start()
    try:
        got = decode_upload(data, Limits(max_audio_s=10))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the mono result plus a few blocks in flight; all 8 channels at once would be 49 MB
    assert peak < frames * 4 + 4 * DECODE_BLOCK * 4, f"decoding took {peak / 1e6:.0f} MB"
    assert np.array_equal(got, load_audio(io.BytesIO(data)))


def test_too_long_text_is_400_naming_the_limit(http):
    r = http.post("/v1/audio/speech", json={"input": "a" * 5001})
    assert "5000" in openai_error(r, 400, "input")


@pytest.mark.parametrize("data,param", [({"language": "en"}, "file"), ({}, "language")])
def test_missing_field_is_400_naming_it(http, clip, data, param):
    files = {"file": clip[0].read_bytes()} if param != "file" else {"other": b"x"}
    r = http.post("/v1/audio/transcriptions", files=files, data=data)
    assert param in openai_error(r, 400, param)


def test_unknown_language_is_400(http, clip):
    r = http.post("/v1/audio/transcriptions", files={"file": clip[0].read_bytes()}, data={"language": "xx"})
    assert "unknown language 'xx'" in openai_error(r, 400, "language")
    r = http.post("/translate", json={"q": "Hello", "source": "en", "target": "klingon"})
    assert r.status_code == 400 and "unknown target" in r.json()["error"]


def test_auto_source_is_400_saying_why(http):
    r = http.post("/translate", json={"q": "Hello", "source": "auto", "target": "fr"})
    assert r.status_code == 400 and "cannot detect" in r.json()["error"]


def test_text_only_language_with_speech_output_is_400(http):
    r = http.post("/v1/audio/speech", json={"input": "Hello", "language": "ru"})
    assert "text output only" in openai_error(r, 400, "language")


def test_invalid_json_is_400(http):
    r = http.post("/v1/audio/speech", content=b"{not json", headers={"content-type": "application/json"})
    assert "not valid JSON" in openai_error(r, 400)


DEEP = b"[" * 2000 + b"]" * 2000


@pytest.mark.parametrize("path,body,param", [
    ("/v1/audio/speech", DEEP, None),
    ("/translate", DEEP, None),
    ("/v1/audio/speech", {"input": "Hello", "response_format": 5}, "response_format"),
    ("/v1/audio/speech", {"input": "Hello", "response_format": True}, "response_format"),
    ("/v1/audio/speech", {"input": "Hello", "voice": "\u00b2"}, "voice"),
    ("/v1/audio/speech", {"input": "Hello", "voice": "1" * 5000}, "voice"),
])
def test_odd_json_values_are_400_not_500(http, path, body, param):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = http.post(path, content=content, headers={"content-type": "application/json"})
    if path == "/translate":
        assert r.status_code == 400 and r.json()["error"], r.text
    else:
        openai_error(r, 400, param)


@pytest.mark.parametrize("path,field", [("/translate", "source"), ("/translate", "target"),
                                        ("/translate", "format"), ("/v1/audio/speech", "voice"),
                                        ("/v1/audio/speech", "response_format"), ("/v1/audio/speech", "language")])
def test_errors_never_echo_a_huge_value_whole(http, path, field):
    body = {"q": "Hello", "input": "Hello", "source": "en", "target": "fr"}
    body[field] = "x" * 900_000  # under the test server's --max-upload-mb 1
    r = http.post(path, json=body)
    assert r.status_code == 400 and len(r.content) < 2000, (r.status_code, len(r.content))
    assert "x" * 40 + "'..." in r.text and "x" * 41 not in r.text


@pytest.mark.parametrize("key", [5, ["test-key-123"], {"k": 1}, None, True])
def test_a_non_string_api_key_in_the_body_is_401(server, key):
    r = httpx.post(server.url + "/translate", json={"q": "Hello", "source": "en", "target": "fr", "api_key": key})
    assert r.status_code == 401 and "API key" in r.json()["error"], r.text


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_wrong_or_missing_api_key_is_401(server, headers):
    r = httpx.get(server.url + "/v1/models", headers=headers)
    assert "API key" in openai_error(r, 401)
    r = httpx.get(server.url + "/languages", headers=headers)
    assert r.status_code == 401 and "API key" in r.json()["error"]
    assert httpx.get(server.url + "/languages", params={"api_key": KEY}).status_code == 200
    r = httpx.post(server.url + "/translate", data={"q": "Hello", "source": "en", "target": "fr", "api_key": "nope"})
    assert r.status_code == 401


@pytest.mark.parametrize("headers,status", [
    ({}, 401), ({"Authorization": "Bearer wrong"}, 401), ({"Authorization": f"Bearer {KEY}"}, 400)])
def test_translate_checks_the_key_before_judging_the_body(server, headers, status):
    r = httpx.post(server.url + "/translate", content=b"{not json",
                   headers={"content-type": "application/json", **headers})
    assert r.status_code == status, r.text
    assert ("API key" if status == 401 else "not valid JSON") in r.json()["error"]


def test_a_wrong_header_key_is_401_before_the_body_arrives(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"q\": ")
        assert s.recv(100).startswith(b"HTTP/1.1 401")  # the body was never sent: it was not waited for


@pytest.mark.parametrize("method,path,allow", [("GET", "/translate", "POST"), ("POST", "/languages", "GET"),
                                              ("PUT", "/v1/audio/speech", "POST")])
def test_a_wrong_method_is_405_with_an_allow_header(http, method, path, allow):
    r = http.request(method, path)
    assert r.status_code == 405 and allow in r.headers["allow"], (r.status_code, r.headers)
    assert r.json()["error"]


def test_detect_says_detection_is_unsupported_in_libretranslate_shape(server):
    r = httpx.post(server.url + "/detect", data={"q": "Hello", "api_key": KEY})
    assert r.status_code == 400 and "not supported" in r.json()["error"] and "source" in r.json()["error"]
    assert httpx.post(server.url + "/detect", data={"q": "Hello"}).status_code == 401


def test_media_types_are_matched_case_insensitively(http, api):
    r = http.post("/translate", content=json.dumps({"q": "Hello world", "source": "en", "target": "de"}),
                  headers={"content-type": "Application/JSON; charset=UTF-8"})
    assert r.status_code == 200 and r.json()["translatedText"] == api("Hello world", "deu", "eng").text


def test_client_disconnect_mid_upload_leaves_server_healthy(server, http):
    boundary = "xyz"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                  f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 900000\r\n\r\n".encode())
        s.sendall(head + b"\0" * 100_000)
    time.sleep(0.5)
    assert http.get("/v1/models").status_code == 200
    r = http.post("/translate", json={"q": "Hello", "source": "en", "target": "fr"})
    assert r.status_code == 200 and "Traceback" not in server.output()


def test_uploads_never_reach_disk_under_the_client_name(http):
    import tempfile
    import uuid

    name = f"client-name-{uuid.uuid4().hex}"
    big = wav_bytes(tone(9.0, sr=44100), 44100)  # near the 1 MB limit, over Starlette's in-memory spool size
    r = http.post("/v1/audio/transcriptions", files={"file": (name + ".wav", big)}, data={"language": "en"})
    assert r.status_code == 200
    assert [f for f in os.listdir(tempfile.gettempdir()) if name in f] == []


def test_cors_is_off_by_default(server):
    r = httpx.options(server.url + "/translate", headers={"Origin": "chrome-extension://abc",
                                                          "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers


# ------------------------------------------------------------------------------- command line


def run_cli(env, *args, pre="pass"):
    code = f"import sys; {pre}; from seamless_mlx.cli import main; sys.exit(main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_serve_without_the_extra_exits_2_with_the_pip_command(env, mlx_model):
    r = run_cli(env, "serve", "--model", mlx_model, pre="sys.modules['uvicorn'] = None")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and 'pip install "seamless-mlx[server]"' in r.stderr


def test_serve_on_a_public_address_needs_an_api_key(env, mlx_model):
    r = run_cli(env, "serve", "--model", mlx_model, "--host", "0.0.0.0")
    assert r.returncode == 2 and "--api-key" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------------------- queue and shutdown


@pytest.fixture(scope="module")
def small(mlx_model, env, tmp_path_factory):
    """A second server: a queue of one, CORS for one origin; the SIGTERM test stops it."""
    s = Server(mlx_model, env, tmp_path_factory.mktemp("small"), "--max-queue", "1",
               "--cors-origin", "chrome-extension://abc")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory):
    from test_cli import recording_60s

    # five minutes: long enough that the one worker is still busy with it after the 1 s head start
    folder = tmp_path_factory.mktemp("long")
    parts = []
    for seed in range(5):
        recording_60s(folder / f"part{seed}.wav", seed=seed)
        parts.append(sf.read(folder / f"part{seed}.wav", dtype="float32")[0])
    p = folder / "long.wav"
    sf.write(p, np.concatenate(parts), 16000)
    return p


def slow_request(server, long_wav):
    """Start a 5-minute transcription in a thread; returns (thread, result dict)."""
    out = {}

    def go():
        data = long_wav.read_bytes()
        out["response"] = httpx.post(server.url + "/v1/audio/transcriptions", files={"file": data},
                                     data={"language": "en"}, timeout=120)

    t = threading.Thread(target=go)
    t.start()
    time.sleep(1.0)
    return t, out


def test_cors_origin_is_allowed_when_given(small):
    r = httpx.options(small.url + "/translate", headers={"Origin": "chrome-extension://abc",
                                                         "Access-Control-Request-Method": "POST"})
    assert r.headers.get("access-control-allow-origin") == "chrome-extension://abc"


def test_full_queue_is_503_with_retry_after(small, long_wav):
    t, out = slow_request(small, long_wav)
    refused = None
    while t.is_alive() and refused is None:  # asked again until the slow request holds the one place
        r = httpx.post(small.url + "/translate", json={"q": "Hello", "source": "en", "target": "fr"})
        refused = r if r.status_code == 503 else None
    t.join()
    assert out["response"].status_code == 200
    assert refused is not None, "no request was refused while the queue of one was taken"
    assert refused.headers["retry-after"] == "1" and "--max-queue" in refused.json()["error"]


def test_more_texts_than_the_queue_holds_is_400_naming_the_limit(http):
    r = http.post("/translate", json={"q": ["Hello"] * 17, "source": "en", "target": "fr"})
    assert r.status_code == 400 and "at most 16" in r.json()["error"] and "--max-queue" in r.json()["error"]


@pytest.fixture(scope="module")
def servers(mlx_model, env, tmp_path_factory):
    """More servers, each started once by name with its own options: ``servers("q4", "--max-queue", "4")``."""
    started = {}

    def get(name, *options):
        if name not in started:
            started[name] = Server(mlx_model, env, tmp_path_factory.mktemp(name), *options)
        return started[name]

    yield get
    for s in started.values():
        s.stop()


def test_a_request_that_does_not_fit_in_the_queue_queues_none_of_its_texts(servers, long_wav):
    queue4 = servers("queue4", "--max-queue", "4")
    t, out = slow_request(queue4, long_wav)  # holds one of the four places
    r = httpx.post(queue4.url + "/translate", json={"q": ["Hello", "Good morning", "Thanks", "Bye"],
                                                    "source": "en", "target": "fr"}, timeout=120)
    assert t.is_alive(), "the slow request ended too soon for this test"
    assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
    fits = {}
    follow = threading.Thread(target=lambda: fits.update(r=httpx.post(
        queue4.url + "/translate", json={"q": ["Hello", "Good morning", "Thanks"], "source": "en", "target": "fr"},
        timeout=120)))
    follow.start()
    time.sleep(0.5)
    assert t.is_alive(), "the slow request ended too soon for this test"
    follow.join()
    t.join()
    assert out["response"].status_code == 200
    assert fits["r"].status_code == 200, "the refused request left texts in the queue: " + fits["r"].text


def test_sigterm_finishes_in_flight_requests_and_exits_0(small, long_wav, api):
    t, out = slow_request(small, long_wav)
    small.proc.send_signal(signal.SIGTERM)
    t.join()
    assert small.proc.wait(60) == 0, small.output()
    assert out["response"].status_code == 200
    assert out["response"].json()["text"] == api(str(long_wav), "eng").text


def test_request_over_the_time_limit_is_504_naming_it(servers, long_wav):
    impatient = servers("impatient", "--timeout-s", "0.3")
    r = httpx.post(impatient.url + "/v1/audio/transcriptions", files={"file": long_wav.read_bytes()},
                   data={"language": "en"}, timeout=120)
    assert "--timeout-s" in openai_error(r, 504)


def test_a_stream_over_the_time_limit_ends_with_a_timeout_event(servers, long_wav):
    impatient = servers("impatient", "--timeout-s", "0.3")
    start = time.time()
    r = httpx.post(impatient.url + "/v1/audio/transcriptions", files={"file": long_wav.read_bytes()},
                   data={"language": "en", "stream": "true"}, timeout=120)
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert r.status_code == 200 and events[-1]["type"] == "error", events[-1:]
    assert events[-1]["error"]["code"] == "timeout" and "--timeout-s" in events[-1]["error"]["message"]
    assert time.time() - start < 10


def test_streamed_bad_audio_is_the_same_400_as_unstreamed(http):
    short = wav_bytes(tone(0.005))  # 80 samples: fewer than the speech encoder takes
    for stream in ("false", "true"):
        r = http.post("/v1/audio/transcriptions", files={"file": short}, data={"language": "en", "stream": stream})
        assert "too short" in openai_error(r, 400, "file")


def test_idle_sockets_are_closed_and_connections_over_the_limit_get_503(mlx_model, env, tmp_path_factory):
    s = Server(mlx_model, env, tmp_path_factory.mktemp("conns"), "--max-connections", "4", "--idle-timeout-s", "1.5")
    socks = []
    try:
        for i in range(6):
            socks.append(socket.create_connection(("127.0.0.1", s.port), timeout=6))
            if i == 0:  # a request head that never ends
                socks[0].sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.2)
        r = httpx.post(s.url + "/translate", json={"q": "Hello", "source": "en", "target": "fr"}, timeout=5)
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert "--max-connections" in r.json()["error"]
        start = time.time()
        for sock in socks:
            assert sock.recv(100) == b"", "the server should close a connection that sends nothing"
        assert time.time() - start < 4
        r = httpx.post(s.url + "/translate", json={"q": "Hello", "source": "en", "target": "fr"}, timeout=30)
        assert r.status_code == 200 and s.proc.poll() is None
    finally:
        for sock in socks:
            sock.close()
        s.stop()


def test_a_request_head_sent_a_byte_at_a_time_is_closed_at_the_idle_timeout(mlx_model, env, tmp_path_factory):
    s = Server(mlx_model, env, tmp_path_factory.mktemp("loris"), "--max-connections", "2", "--idle-timeout-s", "2")
    socks = [socket.create_connection(("127.0.0.1", s.port), timeout=6) for _ in range(2)]
    try:
        closed, start = set(), time.time()
        while len(closed) < 2 and time.time() - start < 8:  # one byte every 0.5 s re-arms the idle timer
            for i, sock in enumerate(socks):
                if i not in closed:
                    try:
                        sock.sendall(b"G" if time.time() - start < 0.1 else b"x")
                    except OSError:
                        closed.add(i)
            time.sleep(0.5)
        assert len(closed) == 2 and time.time() - start < 5, "slow request heads held the connection slots"
        r = httpx.post(s.url + "/translate", json={"q": "Hello", "source": "en", "target": "fr"}, timeout=30)
        assert r.status_code == 200
    finally:
        for sock in socks:
            sock.close()
        s.stop()


# ------------------------------------------------------------------------------- load


def test_32_concurrent_clients_mixing_endpoints_get_their_own_answers(server, clip, api):
    import checkpoints

    path, audio = clip
    texts = checkpoints.CORPUS
    want_text = {t: api(t, "fra", "eng").text for t in texts}
    want_asr = api(audio, "eng").text
    want_tts = openai_pcm(api("Good morning", "deu", "eng", speech=True).audio)
    data = path.read_bytes()
    stop = time.time() + 4.0
    tally = {"ok": 0, "503": 0, 0: 0, 1: 0, 2: 0}
    lock = threading.Lock()

    def client(i):
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as c:
            n = 0
            while time.time() < stop:
                kind = (i + n) % 3
                n += 1
                if kind == 0:
                    t = texts[(i + n) % len(texts)]
                    r = c.post("/translate", json={"q": t, "source": "en", "target": "fr"})
                    check = lambda r: r.json()["translatedText"] == want_text[t]  # noqa: E731
                elif kind == 1:
                    r = c.post("/v1/audio/transcriptions", files={"file": data}, data={"language": "en"})
                    check = lambda r: r.json()["text"] == want_asr  # noqa: E731
                else:
                    r = c.post("/v1/audio/speech", json={"input": "Good morning", "language": "de",
                                                         "source_language": "en", "response_format": "pcm"})
                    check = lambda r: np.array_equal(np.frombuffer(r.content, "<i2"), want_tts)  # noqa: E731
                if r.status_code == 503:
                    assert r.headers["retry-after"]
                    with lock:
                        tally["503"] += 1
                    time.sleep(float(r.headers["retry-after"]))  # as a polite client does
                    continue
                assert r.status_code == 200 and check(r), (kind, r.status_code, r.text[:200])
                with lock:
                    tally["ok"] += 1
                    tally[kind] += 1

    with ThreadPoolExecutor(32) as ex:
        list(ex.map(client, range(32)))
    assert all(tally[k] > 0 for k in (0, 1, 2)), tally  # every kind of request got through
    status = open(f"/proc/{server.proc.pid}/status").read() if sys.platform.startswith("linux") else ""
    peak_mb = int(status.split("VmHWM:")[1].split()[0]) / 1024 if status else 0
    assert peak_mb < 1024, f"server peak RSS {peak_mb:.0f} MB after the load (tiny model)"


# ------------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them as root)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--proxy-server=direct://", "--proxy-bypass-list=*", "--no-first-run"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(driver_path), options=opts)
    d.set_script_timeout(60)
    yield d
    d.quit()


def open_page(browser, server, key_in_url=False):
    """The page with its language lists filled: the server wants the key for /languages too, so the
    key is typed into the page's field, or given in the URL fragment (/#key=KEY)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get("about:blank")  # a fresh page: going from / to /#key=... alone would not reload it
    browser.get(server.url + "/" + (f"#key={KEY}" if key_in_url else ""))
    if not key_in_url:
        WebDriverWait(browser, 30).until(lambda d: "API key" in d.find_element(By.ID, "status").text)
        browser.find_element(By.ID, "apikey").send_keys(KEY)
    WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#target option")) >= 8)
    return By, Select, WebDriverWait


def test_web_page_translates_typed_text(browser, server, api):
    By, Select, Wait = open_page(browser, server)
    Select(browser.find_element(By.ID, "source")).select_by_value("eng")
    Select(browser.find_element(By.ID, "target")).select_by_value("deu")
    browser.find_element(By.ID, "text").send_keys("Hello world, how are you?")
    browser.find_element(By.ID, "translate").click()
    Wait(browser, 60).until(lambda d: d.find_element(By.ID, "output").text.strip())
    assert browser.find_element(By.ID, "output").text == api("Hello world, how are you?", "deu", "eng").text


def test_web_page_turns_an_uploaded_wav_into_playable_speech(browser, server, clip, api):
    By, Select, Wait = open_page(browser, server, key_in_url=True)
    Select(browser.find_element(By.ID, "target")).select_by_value("fra")
    browser.find_element(By.ID, "speak").click()
    browser.find_element(By.ID, "file").send_keys(str(clip[0]))
    browser.find_element(By.ID, "upload").click()
    Wait(browser, 60).until(lambda d: d.find_elements(By.ID, "result-audio"))
    duration = browser.execute_async_script(
        "const done = arguments[0], a = document.getElementById('result-audio');"
        "if (a.readyState >= 1) done(a.duration); else { a.onloadedmetadata = () => done(a.duration);"
        " a.onerror = () => done(-1); a.load(); }")
    ref = api(clip[1], "fra", speech=True)
    assert browser.find_element(By.ID, "output").text == ref.text
    assert abs(duration - len(ref.audio) / SR) < 0.01
