"""``seamless-mlx serve``: a local HTTP server that OpenAI-audio and LibreTranslate clients speak.

    pip install "seamless-mlx[server]"
    seamless-mlx serve --model facebook/seamless-m4t-v2-large            # http://127.0.0.1:8000

Endpoints (errors are JSON, never tracebacks):

* ``POST /v1/audio/transcriptions``  speech recognition (multipart ``file``, ``language``,
  ``response_format`` json|text|srt|vtt|verbose_json, ``stream=true`` for server-sent text deltas)
* ``POST /v1/audio/translations``  speech -> text in ``target_language`` (default English)
* ``POST /v1/audio/speech``  text -> speech (``input``, ``voice``, ``language``, ``source_language``;
  wav|flac|pcm); translated when the source language differs
* ``POST /v1/audio/speech-translations``  speech -> speech (multipart ``file``, ``target_language``)
* ``GET /v1/models``; LibreTranslate's ``POST /translate`` and ``GET /languages`` (``POST /detect``
  answers 400: the model cannot detect a text's language); a web page at ``/``.

One model, one inference worker thread: requests queue (503 + ``Retry-After`` when the queue is
full) and text requests with the same language pair that wait together are decoded as one padded
batch.  Starlette and uvicorn are imported only when serving, so the core install stays light.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import hmac
import io
import ipaddress
import json
import os
import reprlib
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .api import DEFAULT_MODEL, SAMPLE_RATE, Result, generation_kwargs, get_model, model_folder, share_model, translate
from .audio import resample
from .batch import MAX_BATCH_SIZE, Job, run_jobs
from .features import check_speech_length
from .segment import DEFAULT_MAX_CHARS

INSTALL_HINT = 'pip install "seamless-mlx[server]"'
STATIC = Path(__file__).with_name("static")

# The model's languages: 3-letter code -> (ISO 639-1 code or None, English name).  LibreTranslate
# clients send ISO 639-1; OpenAI's audio API sends ISO 639-1 too (``language="fr"``).
LANGUAGES: Dict[str, Tuple[Optional[str], str]] = {
    "afr": ("af", "Afrikaans"), "amh": ("am", "Amharic"), "arb": ("ar", "Arabic"),
    "ary": (None, "Moroccan Arabic"), "arz": (None, "Egyptian Arabic"), "asm": ("as", "Assamese"),
    "azj": ("az", "Azerbaijani"), "bel": ("be", "Belarusian"), "ben": ("bn", "Bengali"),
    "bos": ("bs", "Bosnian"), "bul": ("bg", "Bulgarian"), "cat": ("ca", "Catalan"),
    "ceb": (None, "Cebuano"), "ces": ("cs", "Czech"), "ckb": ("ku", "Central Kurdish"),
    "cmn": ("zh", "Chinese (Simplified)"), "cmn_Hant": ("zt", "Chinese (Traditional)"),
    "cym": ("cy", "Welsh"), "dan": ("da", "Danish"), "deu": ("de", "German"), "ell": ("el", "Greek"),
    "eng": ("en", "English"), "est": ("et", "Estonian"), "eus": ("eu", "Basque"),
    "fin": ("fi", "Finnish"), "fra": ("fr", "French"), "fuv": ("ff", "Fula"), "gaz": ("om", "Oromo"),
    "gle": ("ga", "Irish"), "glg": ("gl", "Galician"), "guj": ("gu", "Gujarati"),
    "heb": ("he", "Hebrew"), "hin": ("hi", "Hindi"), "hrv": ("hr", "Croatian"),
    "hun": ("hu", "Hungarian"), "hye": ("hy", "Armenian"), "ibo": ("ig", "Igbo"),
    "ind": ("id", "Indonesian"), "isl": ("is", "Icelandic"), "ita": ("it", "Italian"),
    "jav": ("jv", "Javanese"), "jpn": ("ja", "Japanese"), "kan": ("kn", "Kannada"),
    "kat": ("ka", "Georgian"), "kaz": ("kk", "Kazakh"), "khk": ("mn", "Mongolian"),
    "khm": ("km", "Khmer"), "kir": ("ky", "Kyrgyz"), "kor": ("ko", "Korean"), "lao": ("lo", "Lao"),
    "lit": ("lt", "Lithuanian"), "lug": ("lg", "Ganda"), "luo": (None, "Luo"),
    "lvs": ("lv", "Latvian"), "mai": (None, "Maithili"), "mal": ("ml", "Malayalam"),
    "mar": ("mr", "Marathi"), "mkd": ("mk", "Macedonian"), "mlt": ("mt", "Maltese"),
    "mni": (None, "Meitei"), "mya": ("my", "Burmese"), "nld": ("nl", "Dutch"),
    "nno": ("nn", "Norwegian Nynorsk"), "nob": ("nb", "Norwegian Bokmal"), "npi": ("ne", "Nepali"),
    "nya": ("ny", "Nyanja"), "ory": ("or", "Odia"), "pan": ("pa", "Punjabi"), "pbt": ("ps", "Pashto"),
    "pes": ("fa", "Persian"), "pol": ("pl", "Polish"), "por": ("pt", "Portuguese"),
    "ron": ("ro", "Romanian"), "rus": ("ru", "Russian"), "sat": (None, "Santali"),
    "slk": ("sk", "Slovak"), "slv": ("sl", "Slovenian"), "sna": ("sn", "Shona"), "snd": ("sd", "Sindhi"),
    "som": ("so", "Somali"), "spa": ("es", "Spanish"), "srp": ("sr", "Serbian"),
    "swe": ("sv", "Swedish"), "swh": ("sw", "Swahili"), "tam": ("ta", "Tamil"), "tel": ("te", "Telugu"),
    "tgk": ("tg", "Tajik"), "tgl": ("tl", "Tagalog"), "tha": ("th", "Thai"), "tur": ("tr", "Turkish"),
    "ukr": ("uk", "Ukrainian"), "urd": ("ur", "Urdu"), "uzn": ("uz", "Uzbek"),
    "vie": ("vi", "Vietnamese"), "yor": ("yo", "Yoruba"), "yue": (None, "Cantonese"),
    "zlm": ("ms", "Malay"), "zul": ("zu", "Zulu"),
}
ALIASES = {"no": "nob", "zh-hans": "cmn", "zh-cn": "cmn", "zh-hant": "cmn_Hant", "zh-tw": "cmn_Hant"}
ISO_TO_CODE = {iso: code for code, (iso, _) in LANGUAGES.items() if iso} | ALIASES

# OpenAI's built-in voice names, so clients that hard-code one get a fixed speaker (id modulo the
# model's number of speakers); a number picks a speaker id directly.
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse")
AUDIO_FORMATS = ("wav", "flac", "pcm")
PCM_RATE = 24000  # OpenAI's raw `pcm` speech: 24 kHz, 16-bit little-endian, no header
TEXT_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
MAX_UPLOAD_RATE = 192000  # Hz; the duration limit bounds frames, this bounds frames per second of them
DECODE_BLOCK = 1 << 20  # samples (all channels) decoded at a time from an upload
MAX_CONNECTIONS = 128  # --max-connections: well under the usual 1024 file descriptors of a process
IDLE_TIMEOUT_S = 30.0  # --idle-timeout-s
KEEP_ALIVE_S = 5  # an idle keep-alive connection is closed after this many seconds
MAX_HEADER_BYTES = 16 * 1024  # request line and headers (uvicorn answers 400 above)


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (each is named in the error that enforces it)."""

    max_upload_mb: float = 25.0
    max_audio_s: float = 600.0
    max_text_chars: int = 5000
    max_queue: int = 64
    max_batch: int = 8
    timeout_s: float = 300.0
    max_new_tokens: Optional[int] = None


class ApiError(Exception):
    """A request the server refuses: HTTP status, one-line message, the offending field."""

    def __init__(self, status: int, message: str, param: Optional[str] = None, code: Optional[str] = None,
                 headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers

    def openai_body(self) -> Dict[str, Any]:
        kind = {401: "authentication_error", 404: "not_found_error", 413: "invalid_request_error",
                429: "rate_limit_error", 503: "server_overloaded", 504: "timeout"}.get(self.status)
        if kind is None:
            kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


# --------------------------------------------------------------------------------------------
# Batched text translation
# --------------------------------------------------------------------------------------------


def translate_texts(model, processor, texts: List[str], src: str, tgt: str, gen_kw: Dict[str, Any]) -> List[str]:
    """Translate single-line ``texts`` (all ``src`` -> ``tgt``) as ONE padded batch
    (:func:`seamless_mlx.batch.run_jobs`); the first failure is raised.

    Greedy decoding with the attention mask gives each row what it would get alone; the server
    relies on that to merge concurrent requests (tests/test_server.py checks it).
    """
    jobs = [Job(model=model, processor=processor, tgt_lang=tgt, text=t, src_lang=src, gen_kwargs=gen_kw) for t in texts]
    outs = run_jobs(jobs, batch_size=min(MAX_BATCH_SIZE, max(1, len(jobs))))
    for o in outs:
        if isinstance(o, Exception):
            raise o
    return [o.text for o in outs]


# --------------------------------------------------------------------------------------------
# The inference worker
# --------------------------------------------------------------------------------------------


@dataclass
class _Job:
    future: concurrent.futures.Future
    run: Optional[Callable[[], Any]] = None  # a job of its own
    batch_key: Optional[Tuple] = None  # or a text to merge with others of the same key
    text: str = ""


class Engine:
    """The model and the one thread that runs it.

    ``submit`` queues work and returns a future; at most ``limits.max_queue`` jobs wait or run.
    Text jobs with the same batch key (language pair) waiting together run as one padded batch.
    """

    def __init__(self, model_id: str, quantize: Optional[int] = None, limits: Limits = Limits(), quiet: bool = False):
        self.limits = limits
        self.folder = str(Path(model_folder(model_id, quantize, quiet=quiet)).resolve())
        local = Path(str(model_id)).expanduser()
        self.name = local.resolve().name if local.exists() else str(model_id)  # the id /v1/models lists
        self._jobs: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._pending = 0
        self._closed = False
        # MLX streams belong to the thread that made them: the model is loaded and run on the worker.
        self._loaded = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._work, name="seamless-mlx-worker", daemon=True)
        self._thread.start()
        self._loaded.result()

    def _load(self):
        model, processor = share_model(self.folder)  # one model for every task
        gen = model.generation_config
        self.text_out = set(gen.text_decoder_lang_to_code_id)
        self.speech_out = set(gen.vocoder_lang_code_to_id)
        self.text_in = set(processor.tokenizer.supported_languages)
        self.num_speakers = int(model.config.vocoder_num_spkrs)

    # ------------------------------------------------------------------ queue
    def submit(self, run: Optional[Callable[[], Any]] = None, batch_key=None, text: str = "") -> concurrent.futures.Future:
        """Queue ``run()``, or a single-line ``text`` to translate in a batch (its future's result is then
        ``(translation, batch size)``); raises a 503 ``ApiError`` when the queue is full."""
        return self.submit_all([(run, batch_key, text)])[0]

    def submit_all(self, items: List[Tuple[Optional[Callable[[], Any]], Any, str]]) -> List[concurrent.futures.Future]:
        """Queue every ``(run, batch_key, text)`` of ``items`` (as :meth:`submit`), or none of them: a 503
        ``ApiError`` when they do not all fit in the queue, so a refused request leaves nothing behind."""
        futs = [concurrent.futures.Future() for _ in items]
        with self._cond:
            if self._closed:
                raise ApiError(503, "the server is shutting down; retry on another instance.", headers={"Retry-After": "5"})
            if self._pending + len(items) > self.limits.max_queue:
                raise ApiError(503, f"the server is busy ({self._pending} of {self.limits.max_queue} queue places "
                                    f"taken, --max-queue; this request needs {len(items)}); retry shortly.",
                               code="queue_full", headers={"Retry-After": "1"})
            self._pending += len(items)
            self._jobs.extend(_Job(fut, *item) for fut, item in zip(futs, items))
            self._cond.notify()
        return futs

    def close(self):
        """Finish the queued jobs, then stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _take(self) -> List[_Job]:
        with self._cond:
            while not self._jobs and not self._closed:
                self._cond.wait()
            if not self._jobs:
                return []
            first = self._jobs.popleft()
            batch = [first]
            if first.batch_key is not None:
                rest = collections.deque()
                while self._jobs:
                    j = self._jobs.popleft()
                    if j.batch_key == first.batch_key and len(batch) < self.limits.max_batch:
                        batch.append(j)
                    else:
                        rest.append(j)
                self._jobs = rest
            return batch

    def _work(self):
        _settle(self._loaded, self._load)
        if self._loaded.exception() is not None:
            return
        while True:
            batch = self._take()
            if not batch:
                return
            live = [j for j in batch if j.future.set_running_or_notify_cancel()]  # timed-out jobs are skipped
            try:
                if not live:
                    continue
                if live[0].run is not None:
                    _settle(live[0].future, live[0].run)
                else:
                    _, src, tgt = live[0].batch_key
                    self._translate_jobs(live, src, tgt)
            finally:
                with self._cond:
                    self._pending -= len(batch)

    def _translate_jobs(self, jobs: List[_Job], src: str, tgt: str):
        """Settle each text job with ``(translation, batch size)``.  A failing batch is retried one text
        at a time, so a text the model cannot take fails its own request, never its batch mates'."""
        try:
            outs = self.run_batch([j.text for j in jobs], src, tgt)
        except BaseException as e:  # noqa: BLE001 - reported to the waiting request(s)
            if len(jobs) == 1:
                jobs[0].future.set_exception(e)
            else:
                for j in jobs:
                    self._translate_jobs([j], src, tgt)
            return
        for j, out in zip(jobs, outs):
            j.future.set_result((out, len(jobs)))

    # ------------------------------------------------------------------ model calls (worker thread)
    def gen_kw(self, src_len: int) -> Dict[str, Any]:
        return generation_kwargs("transformers", src_len, max_new_tokens=self.limits.max_new_tokens)

    def run_batch(self, texts: List[str], src: str, tgt: str) -> List[str]:
        model, processor = get_model(self.folder, "t2tt")
        return translate_texts(model, processor, texts, src, tgt, self.gen_kw(0))

    def translate(self, source, tgt: str, src: Optional[str] = None, speech: bool = False, speaker_id: int = 0,
                  on_text: Optional[Callable[[str], None]] = None) -> Result:
        # a request's text is never a path: it must not make the server read its own files
        return translate(source, tgt_lang=tgt, src_lang=src, speech=speech, model=self.folder, speaker_id=speaker_id,
                         max_new_tokens=self.limits.max_new_tokens, on_text=on_text, as_text=True)

    # ------------------------------------------------------------------ request checks
    def language(self, code: Optional[str], param: str, speech_out: bool = False, text_in: bool = False) -> str:
        """The model's code for ``code`` (ISO 639-1 or the model's own), or a 400 naming ``param``."""
        if code is None or not str(code).strip():
            raise ApiError(400, f"'{param}' is required (a language code such as 'en' or 'eng'; see GET /languages).",
                           param=param, code="missing_field")
        raw = str(code).strip().replace("__", "")
        if raw.lower() == "auto":
            raise ApiError(400, f"{param}='auto' is not supported: this model cannot detect the language of its "
                                "input; send the language code (GET /languages lists them).", param=param,
                           code="unsupported_language")
        folded = {c.lower(): c for c in self.text_out | self.text_in}
        found = folded.get(raw.lower()) or ISO_TO_CODE.get(raw.lower())
        if found is None or found not in (self.text_in if text_in else self.text_out):
            raise ApiError(400, f"unknown {param} {_brief(raw)}; this model supports "
                                f"{', '.join(sorted(self.text_out))} (or their ISO 639-1 codes, see GET /languages).",
                           param=param, code="unsupported_language")
        if speech_out and found not in self.speech_out:
            raise ApiError(400, f"{param}={_brief(raw)} has text output only, no speech; speech languages: "
                                f"{', '.join(sorted(self.speech_out))}.", param=param, code="unsupported_language")
        return found

    def speaker(self, voice: Optional[str]) -> int:
        if voice is None or str(voice).strip() == "":
            return 0
        v = str(voice).strip().lower()
        if v in OPENAI_VOICES:
            return OPENAI_VOICES.index(v) % self.num_speakers
        # ASCII digits only ("²".isdigit() is true), and few enough that int() is cheap and cannot refuse
        if v.isascii() and v.isdigit() and len(v) <= 9 and int(v) < self.num_speakers:
            return int(v)
        raise ApiError(400, f"unknown voice {_brief(voice)}; use one of {', '.join(OPENAI_VOICES)} or a speaker id "
                            f"0..{self.num_speakers - 1}.", param="voice")

    def check_text(self, text: Any, param: str) -> str:
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, f"'{param}' must be a non-empty string.", param=param, code="missing_field")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ApiError(400, f"'{param}' holds a lone surrogate (\\u{ord(text[e.start]):x}) at position {e.start}, "
                                "which is not text; send valid UTF-8.", param=param, code="invalid_text") from None
        if len(text) > self.limits.max_text_chars:
            raise ApiError(400, f"'{param}' has {len(text)} characters; the limit is {self.limits.max_text_chars} "
                                "(--max-text-chars).", param=param, code="text_too_long")
        return text


def _brief(value: Any, limit: int = 40) -> str:
    """A client's value as an error message shows it: cut to about ``limit`` characters, so a huge
    input is never echoed back whole."""
    if isinstance(value, str):
        return repr(value[:limit]) + ("..." if len(value) > limit else "")
    return reprlib.repr(value)


def _settle(future: concurrent.futures.Future, run: Callable[[], Any]):
    try:
        future.set_result(run())
    except BaseException as e:  # noqa: BLE001 - reported to the waiting request
        future.set_exception(e)


# --------------------------------------------------------------------------------------------
# Request helpers
# --------------------------------------------------------------------------------------------


def decode_upload(data: bytes, limits: Limits, param: str = "file") -> np.ndarray:
    """The 16 kHz mono waveform of uploaded bytes; 400 for empty/non-audio, 413 over the duration limit.

    Decoded from memory: no temporary file, so no client-supplied name ever reaches the disk.
    """
    import soundfile as sf

    if not data:
        raise ApiError(400, f"the uploaded '{param}' is empty; send an audio file (WAV, FLAC, OGG, MP3).", param=param)
    try:
        info = sf.info(io.BytesIO(data))
        seconds = info.frames / float(info.samplerate)
    except Exception:  # noqa: BLE001 - libsndfile's many reasons all mean "not audio we can read"
        raise ApiError(400, f"the uploaded '{param}' is not audio this server can decode; send WAV, FLAC, OGG or "
                            "MP3 (e.g. `ffmpeg -i in.m4a -ac 1 -ar 16000 out.wav`).", param=param,
                       code="invalid_audio") from None
    if info.samplerate > MAX_UPLOAD_RATE:
        raise ApiError(400, f"the uploaded audio's sample rate is {info.samplerate} Hz; the limit is {MAX_UPLOAD_RATE} "
                            "Hz: resample it first (e.g. `ffmpeg -i in.wav -ar 16000 out.wav`).", param=param,
                       code="invalid_audio")
    if seconds > limits.max_audio_s:
        raise ApiError(413, f"the uploaded audio lasts {seconds:.0f} s; the limit is {limits.max_audio_s:g} s "
                            "(--max-audio-s).", param=param, code="audio_too_long")
    try:
        mono = _decode_mono(io.BytesIO(data), info.frames)
    except (sf.SoundFileError, RuntimeError, TypeError, EOFError, ValueError):
        mono = np.zeros(0, np.float32)
    if not len(mono):
        raise ApiError(400, f"the uploaded '{param}' has no audio samples or cannot be decoded; send WAV, FLAC, "
                            "OGG or MP3.", param=param, code="invalid_audio")
    try:
        return resample(mono, info.samplerate, SAMPLE_RATE)
    except ValueError as e:  # a sample rate too low for speech
        raise ApiError(400, f"the uploaded audio: {e}", param=param, code="invalid_audio") from None


def _decode_mono(file, frames: int) -> np.ndarray:
    """The first ``frames`` frames of a sound file, mixed to mono as :func:`seamless_mlx.audio.load_audio`
    does, decoded a block at a time: memory is ``frames`` x 4 bytes whatever the channel count."""
    import soundfile as sf

    with sf.SoundFile(file) as f:
        step = max(1, DECODE_BLOCK // f.channels)
        mono = np.empty(frames, np.float32)  # untouched pages cost nothing if the header over-promises
        n = 0
        while n < frames:
            # SoundFile.read, not .blocks: blocks yields a whole buffer even when a truncated file runs short
            block = f.read(min(step, frames - n), dtype="float32", always_2d=True)
            if not len(block):
                break
            mono[n:n + len(block)] = block[:, 0] if f.channels == 1 else block.mean(axis=1, dtype=np.float32)
            n += len(block)
    return mono[:n]


def encode_audio(wave: np.ndarray, fmt: str, sample_rate: int = SAMPLE_RATE) -> Tuple[bytes, str]:
    """(bytes, media type) of a float waveform as 16-bit WAV, FLAC or raw little-endian PCM.

    ``pcm`` carries no header, so its rate is the one OpenAI's clients assume: ``PCM_RATE``
    (24 kHz); WAV and FLAC keep ``sample_rate`` and say so in their header."""
    import soundfile as sf

    x = np.nan_to_num(np.asarray(wave, dtype=np.float32))
    if fmt == "pcm":
        x = np.clip(resample(x, sample_rate, PCM_RATE), -1.0, 1.0)
        return (np.round(x * 32767.0).astype("<i2")).tobytes(), "audio/pcm"
    x = np.clip(x, -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, x, sample_rate, format=fmt.upper(), subtype="PCM_16")
    return buf.getvalue(), f"audio/{fmt}"


def verbose_json(result: Result, task: str, language: str, duration: float) -> Dict[str, Any]:
    segs = [{"id": i, "seek": 0, "start": round(s.start, 3), "end": round(s.end, 3), "text": s.text, "tokens": [],
             "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 0.0, "no_speech_prob": 0.0}
            for i, s in enumerate(result.segments)]
    return {"task": task, "language": language, "duration": round(duration, 3), "text": result.text, "segments": segs}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------
# The ASGI application
# --------------------------------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before the app reads it all
    (by Content-Length, or by counting a chunked body as it arrives)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"the request body is larger than {self.limit / 1e6:g} MB (--max-upload-mb)."
        headers = dict(scope.get("headers") or [])
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        too_large = error_body(scope.get("path", ""), ApiError(413, message, code="upload_too_large"))
        if declared > self.limit:
            return await _send_json(send, 413, too_large)
        state = {"seen": 0, "over": False, "started": False}

        async def limited_receive():
            msg = await receive()
            if msg["type"] == "http.request":
                state["seen"] += len(msg.get("body", b""))
                if state["seen"] > self.limit:
                    state["over"] = True
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg):
            if state["over"]:
                return  # the 413 below replaces whatever the app answers to a cut-off body
            state["started"] = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["started"]:
            await _send_json(send, 413, too_large)


async def _send_json(send, status: int, body: Dict[str, Any], headers: Optional[Dict[str, str]] = None):
    data = json.dumps(body).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *extra]})
    await send({"type": "http.response.body", "body": data})


LIBRE_PATHS = ("/translate", "/languages", "/detect")


def error_body(path: str, err: ApiError) -> Dict[str, Any]:
    """``err`` in the error shape of the endpoint at ``path``: LibreTranslate's or OpenAI's."""
    return {"error": err.message} if path in LIBRE_PATHS else err.openai_body()


async def _overloaded(scope, receive, send):
    """The ASGI app for a connection over ``--max-connections``: 503, then the connection is closed."""
    if scope["type"] != "http":
        return
    err = ApiError(503, "the server has too many open connections (--max-connections); retry shortly.",
                   code="too_many_connections")
    await _send_json(send, 503, error_body(scope["path"], err), {"Retry-After": "1", "Connection": "close"})


def _protocol(max_connections: int, idle_timeout_s: float):
    """uvicorn's HTTP/1.1 protocol with two bounds it lacks, so idle or slow sockets cannot pile up
    until the process runs out of file descriptors:

    * a connection opened while ``max_connections`` are open is answered 503 and closed, and gets
      only a second to send its request;
    * a connection that sends nothing for ``idle_timeout_s`` while its request is incomplete (or
      before it sends one) is closed, and so is one whose request head is not complete
      ``idle_timeout_s`` after its first byte (however slowly it keeps sending).  A request the
      app is working on is not idle: ``--timeout-s`` bounds that; a body may arrive slowly."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class BoundedH11Protocol(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._idle_timer = self._head_timer = None
            self._idle_s = idle_timeout_s
            if len(self.connections) > max_connections:
                self.app, self._idle_s = _overloaded, min(1.0, idle_timeout_s)
            self._arm()

        def data_received(self, data: bytes):
            self._arm()
            if self._head_timer is None and not self._answering():  # the first bytes of a request head
                self._head_timer = self.loop.call_later(self._idle_s, self._on_head_late)
            super().data_received(data)
            if self._head_timer is not None and self._answering():  # the head is complete
                self._head_timer.cancel()
                self._head_timer = None

        def connection_lost(self, exc):
            for timer in (self._idle_timer, self._head_timer):
                if timer is not None:
                    timer.cancel()
            super().connection_lost(exc)

        def _answering(self) -> bool:
            return self.cycle is not None and not self.cycle.response_complete

        def _on_head_late(self):
            """A request head still incomplete ``idle_s`` after its first byte: a client sending a
            byte now and then (which keeps re-arming the idle timer) must not hold a slot for ever."""
            self._head_timer = None
            if not self._answering() and not self.transport.is_closing():
                self.transport.close()

        def _arm(self):
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            self._idle_timer = self.loop.call_later(self._idle_s, self._on_idle)

        def _on_idle(self):
            if self._answering() and self.conn.their_state is h11.DONE:  # the app is working on it
                self._arm()
            elif not self.transport.is_closing():
                self.transport.close()

    return BoundedH11Protocol


def build_app(engine: Engine, api_key: Optional[str] = None, cors_origin: Optional[str] = None):
    """The Starlette application serving ``engine`` (see the module docstring for the routes)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    limits = engine.limits

    def content_type(request: Request) -> str:
        return request.headers.get("content-type", "").lower()  # media types are case-insensitive

    def authorize(request: Request, body_key: Any = None):
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:].strip()
        else:
            given = body_key if isinstance(body_key, str) else ""  # a JSON 'api_key' of 5 or [...] is no key
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise ApiError(401, "missing or wrong API key; send the header 'Authorization: Bearer <key>'.",
                           code="invalid_api_key")

    async def run(fn: Callable[[], Any] = None, batch_key=None, text: str = ""):
        return await wait(engine.submit(fn, batch_key, text))

    async def wait(fut: concurrent.futures.Future):
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), limits.timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(504, f"the request took longer than {limits.timeout_s:g} s (--timeout-s).",
                           code="timeout") from None
        except ValueError as e:  # the library's own input checks
            raise ApiError(400, " ".join(str(e).split())) from None

    async def form_of(request: Request) -> Tuple[Dict[str, str], Optional[bytes]]:
        """(text fields, bytes of the 'file' field or None) of a multipart body; the parsed form's
        spooled files are closed here, whatever the handler does next."""
        if "multipart/form-data" not in content_type(request):
            raise ApiError(400, "send the request as multipart/form-data with the audio in a 'file' field.",
                           param="file")
        try:
            form = await request.form(max_files=1, max_fields=50)
        except HTTPException as e:
            raise ApiError(400, f"malformed multipart body: {e.detail}") from None
        try:
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            f = form.get("file")
            return fields, (None if f is None or isinstance(f, str) else await f.read())
        finally:
            await form.close()

    async def upload(data: Optional[bytes]) -> np.ndarray:
        if data is None:
            raise ApiError(400, "'file' is required: the audio file, sent as a multipart file field.",
                           param="file", code="missing_field")
        audio = await asyncio.to_thread(decode_upload, data, limits, "file")
        try:  # here, so a streamed answer never starts (200) for audio the model cannot take
            return check_speech_length(audio, "the uploaded 'file'")
        except ValueError as e:
            raise ApiError(400, str(e), param="file", code="invalid_audio") from None

    def choice(value: Any, allowed, default: str, param: str) -> str:
        if value is not None and not isinstance(value, str):
            raise ApiError(400, f"{param} must be a string, one of {', '.join(allowed)}.", param=param)
        v = (value or default).strip().lower()
        if v not in allowed:
            raise ApiError(400, f"{param}={_brief(value)} is not supported; use one of {', '.join(allowed)}.",
                           param=param)
        return v

    def flag(value: Optional[str]) -> bool:
        return str(value or "").strip().lower() in ("1", "true", "yes", "on")

    def text_response(result: Result, fmt: str, task: str, language: str, duration: float):
        if fmt == "text":
            return PlainTextResponse(result.text)
        if fmt == "srt":
            return PlainTextResponse(result.to_srt(), media_type="application/x-subrip")
        if fmt == "vtt":
            return PlainTextResponse(result.to_vtt(), media_type="text/vtt")
        if fmt == "verbose_json":
            return JSONResponse(verbose_json(result, task, language, duration))
        return JSONResponse({"text": result.text})

    def sse(audio: np.ndarray, tgt: str):
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        done = object()

        def on_text(piece: str):
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        fut = engine.submit(lambda: engine.translate(audio, tgt, on_text=on_text))
        fut.add_done_callback(lambda f: loop.call_soon_threadsafe(pieces.put_nowait, done))

        deadline = loop.time() + limits.timeout_s

        async def events():
            while True:
                try:
                    piece = await asyncio.wait_for(pieces.get(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    # the 200 is already sent, so the time limit ends the stream with an error event
                    fut.cancel()
                    err = ApiError(504, f"the request took longer than {limits.timeout_s:g} s (--timeout-s).",
                                   code="timeout")
                    yield f"data: {json.dumps({'type': 'error', **err.openai_body()})}\n\n"
                    return
                if piece is done:
                    break
                yield f"data: {json.dumps({'type': 'transcript.text.delta', 'delta': piece})}\n\n"
            if fut.exception() is not None:
                err = ApiError(400 if isinstance(fut.exception(), ValueError) else 500, str(fut.exception()))
                yield f"data: {json.dumps({'type': 'error', **err.openai_body()})}\n\n"
            else:
                yield f"data: {json.dumps({'type': 'transcript.text.done', 'text': fut.result().text})}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def speech_to_text(request: Request, task: str):
        authorize(request)
        form, data = await form_of(request)
        if task == "transcribe":
            tgt = engine.language(form.get("language"), "language")
        else:
            tgt = engine.language(form.get("target_language") or "eng", "target_language")
        fmt = choice(form.get("response_format"), TEXT_FORMATS, "json", "response_format")
        audio = await upload(data)
        if flag(form.get("stream")):
            return sse(audio, tgt)
        result = await run(lambda: engine.translate(audio, tgt))
        return text_response(result, fmt, task, tgt, len(audio) / SAMPLE_RATE)

    async def transcriptions(request: Request):
        return await speech_to_text(request, "transcribe")

    async def translations(request: Request):
        return await speech_to_text(request, "translate")

    def audio_response(result: Result, fmt: str):
        data, media = encode_audio(result.audio, fmt)
        return Response(data, media_type=media)

    async def speech(request: Request):
        authorize(request)
        body = await json_body(request)
        text = engine.check_text(body.get("input"), "input")
        tgt = engine.language(body.get("language") or "eng", "language", speech_out=True)
        src = engine.language(body.get("source_language") or tgt, "source_language", text_in=True)
        fmt = choice(body.get("response_format"), AUDIO_FORMATS, "wav", "response_format")
        spk = engine.speaker(body.get("voice"))
        result = await run(lambda: engine.translate(text, tgt, src, speech=True, speaker_id=spk))
        return audio_response(result, fmt)

    async def speech_translations(request: Request):
        authorize(request)
        form, data = await form_of(request)
        tgt = engine.language(form.get("target_language") or form.get("language") or "eng", "target_language",
                              speech_out=True)
        fmt = choice(form.get("response_format"), AUDIO_FORMATS + ("json",), "wav", "response_format")
        spk = engine.speaker(form.get("voice"))
        audio = await upload(data)
        result = await run(lambda: engine.translate(audio, tgt, speech=True, speaker_id=spk))
        if fmt == "json":
            wav, _ = encode_audio(result.audio, "wav")
            return JSONResponse({"text": result.text, "audio": base64.b64encode(wav).decode()})
        return audio_response(result, fmt)

    async def models(request: Request):
        authorize(request)
        return JSONResponse({"object": "list", "data": [
            {"id": engine.name, "object": "model", "created": 0, "owned_by": "seamless-mlx"}]})

    async def json_body(request: Request) -> Dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            raise ApiError(400, "the request body is not valid JSON.", code="invalid_json") from None
        except RecursionError:
            raise ApiError(400, "the request body's JSON is nested too deeply; send a flat JSON object.",
                           code="invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object.", code="invalid_json")
        return body

    # ---------------------------------------------------------------- LibreTranslate
    async def libre_body(request: Request) -> Dict[str, Any]:
        """A LibreTranslate request's fields (JSON or form), its API key checked before any feedback on
        the body: a Bearer header before the body is read, and a 401 for an unreadable body without one."""
        bearer = request.headers.get("authorization", "").lower().startswith("bearer ")
        if bearer:
            authorize(request)  # a key in the header is checked before the body is read
        try:
            if "application/json" in content_type(request):
                body = await json_body(request)
            else:
                try:
                    form = await request.form(max_files=0)
                except HTTPException as e:
                    raise ApiError(400, f"malformed form body: {e.detail}; send JSON or a urlencoded form.") from None
                body = {k: form.getlist(k) if k == "q" and len(form.getlist(k)) > 1 else form.get(k) for k in form}
        except ApiError:
            authorize(request)  # no readable key anywhere: 401 when one is required, not feedback on the body
            raise
        if not bearer:
            authorize(request, body.get("api_key"))
        return body

    async def detect(request: Request):
        await libre_body(request)
        raise ApiError(400, "language detection is not supported: this model cannot tell the language of a text; "
                            "send 'source' to /translate (GET /languages lists the codes).", code="unsupported")

    async def libre_translate(request: Request):
        body = await libre_body(request)
        q = body.get("q")
        if body.get("format", "text") not in ("text", None):
            raise ApiError(400, f"format={_brief(body.get('format'))} is not supported; use format=text.",
                           param="format")
        src = engine.language(body.get("source"), "source", text_in=True)
        tgt = engine.language(body.get("target"), "target")
        items = q if isinstance(q, list) else [q]
        if not items:
            raise ApiError(400, "'q' is an empty list.", param="q")
        for item in items:
            engine.check_text(item, "q")
        if sum(len(t) for t in items) > limits.max_text_chars:
            raise ApiError(400, f"'q' has more than {limits.max_text_chars} characters in all (--max-text-chars).",
                           param="q", code="text_too_long")

        if len(items) > limits.max_queue:
            raise ApiError(400, f"'q' has {len(items)} texts; send at most {limits.max_queue} per request "
                                "(--max-queue), or split them over several requests.", param="q", code="too_many_texts")

        def job(t: str):
            if "\n" in t.strip() or len(t.strip()) > DEFAULT_MAX_CHARS:
                # several lines keep their layout, and a long line is cut at sentence ends: the
                # library's own text path (api.translate) does both, as for the command line
                return lambda: engine.translate(t, tgt, src), None, ""
            return None, ("t2tt", src, tgt), t.strip()

        async def one(fut: concurrent.futures.Future) -> Tuple[str, int]:
            out = await wait(fut)
            return (out.text, 1) if isinstance(out, Result) else out

        outs = await asyncio.gather(*(one(f) for f in engine.submit_all([job(t) for t in items])))
        texts = [t for t, _ in outs]
        # X-Batch-Size: how many texts shared the generate call (benchmarks and tests read it)
        return JSONResponse({"translatedText": texts if isinstance(q, list) else texts[0]},
                            headers={"X-Batch-Size": str(max(n for _, n in outs))})

    async def languages(request: Request):
        key = request.query_params.get("api_key")
        if key is None and api_key is not None and "form-urlencoded" in content_type(request):
            try:
                key = (await request.form(max_files=0)).get("api_key")  # libretranslatepy sends it as a GET body
            except HTTPException:
                pass  # an unreadable body holds no key: the 401 below says what to send
        authorize(request, key)
        codes = sorted(engine.text_out)
        targets = [LANGUAGES.get(c, (None, c))[0] or c for c in codes]
        return JSONResponse([{"code": LANGUAGES.get(c, (None, c))[0] or c, "model_code": c,
                              "name": LANGUAGES.get(c, (None, c))[1], "targets": targets,
                              "speech_output": c in engine.speech_out} for c in codes])

    async def index(request: Request):
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    def error_response(request: Request, err: ApiError):
        return JSONResponse(error_body(request.url.path, err), status_code=err.status, headers=err.headers)

    async def on_api_error(request: Request, exc: ApiError):
        return error_response(request, exc)

    async def on_http_error(request: Request, exc: HTTPException):
        path, method = _brief(request.url.path), _brief(request.method)
        msg = {404: f"no route {path}; see GET /v1/models, POST /v1/audio/*, POST /translate.",
               405: f"{method} is not allowed on {path}."}.get(exc.status_code, _brief(str(exc.detail), 200))
        return error_response(request, ApiError(exc.status_code, msg, headers=exc.headers))  # 405 keeps its Allow

    async def on_disconnect(request: Request, exc: ClientDisconnect):
        return Response(status_code=499)  # nobody is listening; the connection is gone

    async def on_error(request: Request, exc: Exception):
        print(f"seamless-mlx serve: internal error on {request.url.path}: {type(exc).__name__}: "
              f"{' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return error_response(request, ApiError(500, f"internal error ({type(exc).__name__}); see the server log."))

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
        Route("/v1/audio/translations", translations, methods=["POST"]),
        Route("/v1/audio/speech", speech, methods=["POST"]),
        Route("/v1/audio/speech-translations", speech_translations, methods=["POST"]),
        Route("/translate", libre_translate, methods=["POST"]),
        Route("/languages", languages, methods=["GET"]),
        Route("/detect", detect, methods=["POST"]),
    ]
    middleware = []
    if cors_origin:
        from starlette.middleware.cors import CORSMiddleware

        middleware.append(Middleware(CORSMiddleware, allow_origins=[cors_origin], allow_methods=["GET", "POST"],
                                     allow_headers=["authorization", "content-type"]))
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={
        ApiError: on_api_error, HTTPException: on_http_error, ClientDisconnect: on_disconnect, Exception: on_error})
    return BodyLimit(app, int(limits.max_upload_mb * 1e6))


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def add_arguments(p):
    """The ``serve`` subcommand's options (``p`` is its argparse parser)."""
    p.add_argument("--model", default=DEFAULT_MODEL, help="model folder or hub id (default: %(default)s)")
    p.add_argument("--quantize", "-q", type=int, choices=(4, 8), default=None, help="use a 4- or 8-bit copy")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (needed off loopback)")
    p.add_argument("--insecure-no-auth", action="store_true", help="allow a non-loopback --host without --api-key")
    p.add_argument("--cors-origin", default=None, help="allow browser requests from this origin (default: none)")
    d = Limits()
    p.add_argument("--max-upload-mb", type=float, default=d.max_upload_mb, help="largest request body (413 above)")
    p.add_argument("--max-audio-s", type=float, default=d.max_audio_s, help="longest uploaded recording (413 above)")
    p.add_argument("--max-text-chars", type=int, default=d.max_text_chars, help="longest text input (400 above)")
    p.add_argument("--max-queue", type=int, default=d.max_queue, help="requests waiting or running (503 above)")
    p.add_argument("--max-batch", type=int, default=d.max_batch, help="text requests decoded together")
    p.add_argument("--timeout-s", type=float, default=d.timeout_s, help="per-request time limit (504 after)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="limit on generated text tokens per piece")
    p.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS,
                   help="open connections; one more is answered 503 and closed (default: %(default)s)")
    p.add_argument("--idle-timeout-s", type=float, default=IDLE_TIMEOUT_S,
                   help="close a connection that sends nothing this long mid-request (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no startup messages")


def serve(args) -> int:
    """Run ``seamless-mlx serve`` until SIGINT/SIGTERM; in-flight requests finish, then exit 0."""
    import signal

    try:
        import multipart  # noqa: F401 - Starlette needs it for forms; fail now, not on the first upload
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise ValueError(f"`seamless-mlx serve` needs the server extra ({e.name} is missing): {INSTALL_HINT}") from None
    if not _is_loopback(args.host) and not args.api_key and not args.insecure_no_auth:
        raise ValueError(f"--host {args.host} is reachable from other machines: add --api-key KEY "
                         "(or --insecure-no-auth to serve without one).")
    for name in ("max_upload_mb", "max_audio_s", "max_text_chars", "max_queue", "max_batch", "timeout_s",
                 "max_connections", "idle_timeout_s"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}.")
    limits = Limits(args.max_upload_mb, args.max_audio_s, args.max_text_chars, args.max_queue, args.max_batch,
                    args.timeout_s, args.max_new_tokens)
    engine = Engine(args.model, args.quantize, limits, quiet=args.quiet)
    app = build_app(engine, api_key=args.api_key, cors_origin=args.cors_origin)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                            lifespan="off", http=_protocol(args.max_connections, args.idle_timeout_s),
                            timeout_keep_alive=KEEP_ALIVE_S, h11_max_incomplete_event_size=MAX_HEADER_BYTES)
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal it shut down on; with these no-op handlers in place that ends in
    # a normal return (exit 0) once in-flight requests are answered.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    if not args.quiet:
        print(f"seamless-mlx: serving {engine.folder} on http://{args.host}:{args.port}/ (Ctrl-C to stop)",
              file=sys.stderr, flush=True)
    server.run()
    engine.close()
    if not server.started:
        raise ValueError(f"could not listen on {args.host}:{args.port} (in use?); pick another --port.")
    # Every request is answered.  MLX's streams made on the worker thread can abort the process in
    # C++ static destructors at interpreter exit ("terminate called without an active exception"),
    # so leave now, with the exit status a clean shutdown deserves.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
