"""High-level API: one call from text, a recording or an audio file to text and/or speech.

>>> from seamless_mlx.api import translate, transcribe
>>> translate("Hello, how are you?", tgt_lang="fra", src_lang="eng").text
>>> r = translate("talk.wav", tgt_lang="deu", speech=True); r.save("talk_de.wav")
>>> transcribe("lecture.flac", lang="eng").save("lecture.srt")

Models are given as a converted seamless-mlx folder, a transformers folder or a hub id.  The
last two are converted once into ``~/.cache/seamless-mlx/<name>[-q4|-q8]`` (the environment
variable ``SEAMLESS_MLX_CACHE`` moves that root) and loaded from there afterwards, so a hub model
keeps working offline once it has been used.

Recordings longer than 20 s are split at pauses into pieces of at most ``max_segment_s`` seconds
(:mod:`seamless_mlx.segment`); each piece is translated on its own, texts are joined with spaces
and speech pieces are concatenated with 0.2 s of silence in between.

Decoding presets (``preset=``):

* ``"transformers"`` - the checkpoint's ``generation_config.json``, exactly what transformers'
  ``generate`` does with no extra arguments (greedy for the released checkpoints).
* ``"seamless"`` - the text decoding of seamless_communication's ``m4t_predict`` defaults: beam
  search with 5 beams (``--text_generation_beam_size 5``) and a length limit of
  ``max_len_a * src_len + max_len_b`` with ``max_len_a=1``, ``max_len_b=200``, where ``src_len``
  is the encoder output length (source tokens for text, ~6.25 encoder frames per second of
  speech: 50 Hz stacked features / the adaptor stride, 8 in v2-large), applied here as
  ``max_new_tokens`` and capped at 1024.  No n-gram blocking: ``m4t_predict``'s ``--no_repeat_ngram_size 4`` only acts
  with ``--text_generation_ngram_blocking``, which is off by default (pass
  ``no_repeat_ngram_size=4`` / ``--no-repeat-ngram-size 4`` to get it).  Its unknown-token blocking
  (``--text_unk_blocking``, also off by default) is ``model.generate(..., unk_blocking=True)``: the
  unknown token's logit is set to -inf at every step.  The speech part is
  unaffected: v2's text-to-unit model is non-autoregressive, so the unit beam-search options of
  ``m4t_predict`` do not apply.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import mlx.core as mx
import numpy as np

from . import model as model_classes
from .audio import SAMPLE_RATE, AudioFileNotFoundError, load_audio, prepare_audio, save_wav
from .batch import Job, check_batch_size, run_jobs
from .config import read_json_object
from .convert import convert
from .features import check_speech_length
from .fileio import check_output_path, target_lock, write_text_atomic
from .generate import check_target, stream_generate
from .loading import CheckpointError, is_converted, is_hub_id, resolve
from .processor import SeamlessM4TProcessor
from .segment import DEFAULT_MAX_CHARS, split_on_pauses, split_sentences

DEFAULT_MODEL = "facebook/seamless-m4t-v2-large"
GAP_S = 0.2

PRESETS: Dict[str, Dict[str, Any]] = {
    "transformers": {},
    "seamless": {
        "num_beams": 5,
        # max_new_tokens = min(max_len_cap, int(max_len_a * src_len + max_len_b)), see module doc
        "max_len_a": 1.0,
        "max_len_b": 200,
        "max_len_cap": 1024,
    },
}

AUDIO_EXTENSIONS = {
    ".wav", ".wave", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc", ".au",
    ".m4a", ".aac", ".wma", ".caf", ".w64", ".rf64", ".webm", ".mp4", ".snd",
}

TEXT_EXTENSIONS = {".txt", ".md"}
# Pieces of text translated in one padded batch: long text costs one batch's activations at a time,
# whatever its length.  The batch shrinks so that it holds at most TEXT_BATCH_POSITIONS decoder
# positions (sequences x beams x max_new_tokens): the decoder's cache is the largest activation.
TEXT_BATCH = 8
TEXT_BATCH_POSITIONS = 8 * 256
# Target languages written without spaces between sentences.
UNSPACED_LANGS = {"cmn", "cmn_Hant", "yue", "jpn"}
# The text decoder's positions hold the start token and the language code before the output.
DECODER_PREFIX_LEN = 2

TASK_CLASSES = {
    "t2tt": "SeamlessM4Tv2ForTextToText",
    "s2tt": "SeamlessM4Tv2ForSpeechToText",
    "t2st": "SeamlessM4Tv2ForTextToSpeech",
    "s2st": "SeamlessM4Tv2ForSpeechToSpeech",
}


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class Segment:
    """A piece of the translation with its time span in the source recording (seconds)."""

    start: float
    end: float
    text: str


@dataclass
class Result:
    text: str
    audio: Optional[np.ndarray] = None
    sample_rate: int = SAMPLE_RATE
    segments: List[Segment] = field(default_factory=list)
    error: Optional[str] = None  # set (and text empty) for an item of a list that could not be translated
    source_path: Optional[str] = None  # the audio file translated, which save() never replaces

    def to_srt(self) -> str:
        blocks = []
        for i, s in enumerate(self._subtitle_segments(), 1):
            blocks.append(f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text}\n")
        return "\n".join(blocks)

    def to_vtt(self) -> str:
        blocks = ["WEBVTT\n"]
        for s in self._subtitle_segments():
            blocks.append(f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text}\n")
        return "\n".join(blocks)

    def to_json(self) -> str:
        d = {
            "text": self.text,
            "segments": [{"start": round(s.start, 3), "end": round(s.end, 3), "text": s.text} for s in self.segments],
        }
        if self.audio is not None:
            d["audio_seconds"] = round(len(self.audio) / self.sample_rate, 3)
        return json.dumps(d, ensure_ascii=False, indent=2)

    def _subtitle_segments(self) -> List[Segment]:
        segs = [s for s in self.segments if s.text.strip()] or self.segments
        return [Segment(s.start, max(s.end, s.start + 0.001), " ".join(s.text.split()) or "...") for s in segs]

    def save(self, path: Union[str, os.PathLike], overwrite: bool = True) -> Path:
        """Write by extension: ``.txt``, ``.wav``/``.flac`` (needs speech), ``.srt``, ``.vtt``, ``.json``.

        The file is written beside ``path`` under a temporary name and renamed over it, so an
        error (full disk, a kill) leaves any earlier file at ``path`` as it was.  An existing file
        is replaced, as Python's ``open(path, "w")`` would, unless ``overwrite=False``; the
        recording this result was translated from (``source_path``) is never replaced.
        """
        path = Path(path)
        ext = path.suffix.lower()
        writers = {".txt": lambda: self.text + "\n", ".srt": self.to_srt, ".vtt": self.to_vtt, ".json": self.to_json}
        if ext not in writers and ext not in (".wav", ".flac"):
            raise ValueError(
                f"cannot tell the output format from {path.name!r}; use a .txt, .srt, .vtt, .json, .wav or .flac name."
            )
        if ext in (".wav", ".flac") and self.audio is None:
            raise ValueError(f"{path.name}: there is no speech to save; translate with speech output (--speech).")
        inputs = [self.source_path] if self.source_path else []
        target = check_output_path(path, overwrite=overwrite, inputs=inputs, option="overwrite=True")
        if ext in (".wav", ".flac"):
            save_wav(target, self.audio, self.sample_rate)
        else:
            write_text_atomic(target, writers[ext]())
        return path


def _timestamp(t: float, sep: str) -> str:
    ms = int(round(max(t, 0.0) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def cache_root() -> Path:
    return Path(os.environ.get("SEAMLESS_MLX_CACHE") or Path.home() / ".cache" / "seamless-mlx").expanduser()


def cached_folder_name(model_id: str, quantize: Optional[int] = None) -> str:
    """Name of the converted folder in the cache: the repo name for hub ids, name + path hash for folders."""
    if is_hub_id(model_id):
        name = model_id.split("/")[-1]
    else:
        p = Path(os.path.expanduser(model_id)).resolve()
        name = f"{p.name}-{hashlib.sha1(str(p).encode()).hexdigest()[:8]}"
    return name + (f"-q{int(quantize)}" if quantize else "")


def _log(msg: str):
    print(msg, file=sys.stderr, flush=True)


def model_folder(
    model_id: Union[str, os.PathLike],
    quantize: Optional[int] = None,
    convert_if_needed: bool = True,
    quiet: bool = False,
) -> Path:
    """A converted MLX folder for ``model_id`` (converting into the cache on first use, with a
    message on stderr unless ``quiet``)."""
    model_id = str(model_id)
    if quantize not in (None, 4, 8):
        raise ValueError(f"quantize must be 4 or 8 (bits), got {quantize!r}")
    if not is_hub_id(model_id):
        src = resolve(model_id)
        if not (src / "config.json").exists():
            raise CheckpointError(f"{src} has no config.json: it is not a SeamlessM4T-v2 model folder.")
        if is_converted(src):
            q = read_json_object(src / "config.json").get("quantization")
            if quantize is None or (q and int(q.get("bits", 0)) == int(quantize)):
                return src
            if q:
                raise ValueError(
                    f"{src} is already quantized to {q.get('bits')} bits; pass the unquantized folder to "
                    f"quantize to {quantize} bits."
                )
    target = cache_root() / cached_folder_name(model_id, quantize)
    if (target / "config.json").exists() and is_converted(target):
        return target
    if not convert_if_needed:
        return resolve(model_id)
    _check_writable(target.parent)
    src = resolve(model_id)
    what = f"{quantize}-bit quantized MLX" if quantize else "MLX"
    log = (lambda msg: None) if quiet else _log
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PermissionError(f"cannot create the model cache {target.parent} ({e.strerror}); "
                              "set SEAMLESS_MLX_CACHE to a writable folder.") from None
    # Two processes starting on the same new model: the second waits, then uses the first's folder.
    with target_lock(target, wait=True, on_wait=lambda who: log(f"Waiting for another process{who} converting into {target} ...")):
        if (target / "config.json").exists() and is_converted(target):
            return target
        log(f"Converting {model_id} to {what} (one time) into {target} ...")
        t0 = time.time()
        out = convert(src, target, quantize=bool(quantize), q_bits=int(quantize or 4), force=target.exists())
    log(f"Converted in {time.time() - t0:.1f} s.")
    return out


def _check_writable(folder: Path):
    """Fail before any download or conversion when the cache folder cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        reason = "it is a file" if folder.is_file() else (e.strerror or type(e).__name__)
        raise ValueError(
            f"cannot write the model cache {folder} ({reason}): set SEAMLESS_MLX_CACHE to a writable folder with "
            "room for the converted model (9.3 GB for v2-large), or pass an already converted folder as the model."
        ) from None


def check_generation_config(folder) -> None:
    """A ``ValueError`` saying what to do when ``folder`` lacks the model's language tables."""
    if not (Path(folder) / "generation_config.json").is_file():
        raise ValueError(
            f"{folder} has no generation_config.json (the model's language tables): copy it into that folder from "
            "the original checkpoint (e.g. facebook/seamless-m4t-v2-large)."
        )


def get_model(model_id: str = DEFAULT_MODEL, task: str = "t2tt", quantize: Optional[int] = None):
    """``(model, processor)`` for ``task`` in ``t2tt s2tt t2st s2st`` (cached per process).

    Each task loads its own class, which reads only the weights it needs (text-to-text skips the
    speech encoder, T2U model and vocoder).  The cache is keyed on the resolved converted folder,
    so ``"./m"`` and ``"/abs/path/m"`` share one model and a relative path is not mistaken for
    another folder after a ``chdir``.
    """
    if task not in TASK_CLASSES:
        raise ValueError(f"task must be one of {', '.join(TASK_CLASSES)}, got {task!r}")
    folder = model_folder(model_id, quantize)
    if str(Path(folder).resolve()) in _SHARED:
        return _SHARED[str(Path(folder).resolve())]
    check_generation_config(folder)
    return _load_model(str(Path(folder).resolve()), TASK_CLASSES[task], quantize)


@functools.lru_cache(maxsize=4)
def _load_model(folder: str, class_name: str, quantize: Optional[int]):
    cls = getattr(model_classes, class_name)
    return cls.from_pretrained(folder), SeamlessM4TProcessor.from_pretrained(folder)


get_model.cache_clear = _load_model.cache_clear  # type: ignore[attr-defined]
get_model.cache_info = _load_model.cache_info  # type: ignore[attr-defined]

_SHARED: Dict[str, Any] = {}


def share_model(model_id: str, quantize: Optional[int] = None):
    """Load the full ``SeamlessM4Tv2Model`` once and answer ``get_model`` for every task with it.

    A long-running process that serves all tasks (``seamless-mlx serve``) then holds one copy of
    the weights instead of up to four task-specific ones.  Returns ``(model, processor)``.
    """
    folder = str(Path(model_folder(model_id, quantize)).resolve())
    if folder not in _SHARED:
        _SHARED[folder] = (model_classes.SeamlessM4Tv2Model.from_pretrained(folder),
                           SeamlessM4TProcessor.from_pretrained(folder))
    return _SHARED[folder]


# --------------------------------------------------------------------------------------------
# Translation
# --------------------------------------------------------------------------------------------


def looks_like_file_name(s: str) -> bool:
    """Whether a command-line argument reads as a file name rather than as text to translate:
    one line with an audio or text extension (``talk.wav``, ``notes.txt``), or a single word with
    a path separator (``recordings/talk``, ``~/x``)."""
    if not isinstance(s, str) or "\n" in s or len(s) >= 4096:
        return False
    if Path(s).suffix.lower() in AUDIO_EXTENSIONS | TEXT_EXTENSIONS:
        return True
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return not any(c.isspace() for c in s) and (any(c in s for c in seps) or s.startswith("~"))


def max_new_tokens_limit(config) -> int:
    """The longest text output ``config``'s decoder can address: its ``max_position_embeddings``
    less the start and language tokens that precede the output."""
    return int(config.max_position_embeddings) - DECODER_PREFIX_LEN


def _check_max_new_tokens(max_new_tokens, config):
    limit = max_new_tokens_limit(config)
    if max_new_tokens is None:
        return
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or not (
        1 <= max_new_tokens <= limit
    ):
        raise ValueError(
            f"max_new_tokens must be a whole number from 1 to {limit} for this model (its text decoder has "
            f"max_position_embeddings={config.max_position_embeddings}, {DECODER_PREFIX_LEN} of them for the start "
            f"and language tokens), got {max_new_tokens!r}."
        )


def looks_like_audio_path(s: str) -> bool:
    return (
        isinstance(s, str)
        and "\n" not in s
        and len(s) < 4096
        and (os.path.isfile(s) or Path(s).suffix.lower() in AUDIO_EXTENSIONS)
    )


def _as_audio(source, sampling_rate: int = SAMPLE_RATE, as_text: bool = False) -> Optional[np.ndarray]:
    """The 16 kHz mono float32 waveform of an array / audio path, or None for text (every string
    with ``as_text``).

    Arrays go through :func:`seamless_mlx.audio.prepare_audio`: float samples as is, int16/int32
    PCM scaled to [-1, 1], channels averaged, resampled from ``sampling_rate`` when it is not 16 kHz.
    """
    if isinstance(source, os.PathLike) or (isinstance(source, str) and not as_text and looks_like_audio_path(source)):
        return check_speech_length(load_audio(os.fspath(source), SAMPLE_RATE), f"audio file {os.fspath(source)!r}")
    if isinstance(source, str):
        return None
    if isinstance(source, np.ndarray) or type(source).__module__.startswith("mlx"):
        return check_speech_length(prepare_audio(source, int(sampling_rate), SAMPLE_RATE), "the audio")
    raise TypeError(f"source must be text, an audio file path or a numpy waveform, got {type(source).__name__}")


def _match_lang(code: str, supported) -> Optional[str]:
    """``code`` as spelled in ``supported`` (``__fra__``, ``FRA`` and ``fra`` all match ``fra``), or None."""
    code = str(code).strip().replace("__", "")
    if code in supported:
        return code
    folded = {str(k).lower(): k for k in supported}
    return folded.get(code.lower())


def _check_request(model, tgt_lang: str, speech: bool, speaker_id: int):
    tgt = _match_lang(tgt_lang, model.generation_config.text_decoder_lang_to_code_id) or tgt_lang
    check_target(model, tgt, speech, speaker_id)
    return tgt


def generation_kwargs(
    preset: str, src_len: int, num_beams=None, max_new_tokens=None, no_repeat_ngram_size=None, limit=None
) -> Dict[str, Any]:
    """Generation keywords for ``preset``, a source of ``src_len`` tokens and the caller's
    overrides; ``limit`` caps a length the preset derives from the source."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    p = dict(PRESETS[preset])
    kw: Dict[str, Any] = {}
    if "max_len_b" in p:
        a, b, cap = p.pop("max_len_a"), p.pop("max_len_b"), p.pop("max_len_cap")
        kw["max_new_tokens"] = min(cap, int(a * src_len + b), limit or cap)
    kw.update(p)
    if num_beams is not None:
        kw["num_beams"] = int(num_beams)
    if max_new_tokens is not None:
        kw["max_new_tokens"] = int(max_new_tokens)
    if no_repeat_ngram_size:
        kw["no_repeat_ngram_size"] = int(no_repeat_ngram_size)
    return kw


def _translate_one(model, processor, inputs, src_len, tgt, speech, speaker_id, gen_kw, on_text, on_audio=None):
    """(text, waveform or None) for one text or one audio segment."""
    beams = gen_kw.get("num_beams") or model.generation_config.num_beams or 1
    if on_audio is not None and speech and int(beams) == 1:
        pieces, waves = [], []
        for chunk in stream_generate(model, processor, tgt_lang=tgt, generate_speech=True,
                                     speaker_id=int(speaker_id), **inputs, **gen_kw):
            if chunk.text:
                pieces.append(chunk.text)
            if chunk.waveform is not None:
                if not waves and on_text is not None:  # the text is complete once speech starts
                    on_text("".join(pieces).strip())
                waves.append(np.array(chunk.waveform, dtype=np.float32))
                on_audio(waves[-1])
        if not waves and on_text is not None:
            on_text("".join(pieces).strip())
        return "".join(pieces).strip(), np.concatenate(waves) if waves else np.zeros(0, np.float32)
    if on_text is not None and not speech and int(beams) == 1:
        pieces = []
        for chunk in stream_generate(model, processor, tgt_lang=tgt, **inputs, **gen_kw):
            if chunk.text:
                pieces.append(chunk.text)
                on_text(chunk.text)
        return "".join(pieces).strip(), None
    if speech:
        out = model.generate(
            **inputs, tgt_lang=tgt, generate_speech=True, speaker_id=int(speaker_id),
            return_intermediate_token_ids=True, **gen_kw,
        )
        n = int(out.waveform_lengths[0].item())
        wav = np.array(out.waveform[0, :n], dtype=np.float32)
        seq = out.sequences
        if on_audio is not None:
            on_audio(wav)
    else:
        out = model.generate(**inputs, tgt_lang=tgt, generate_speech=False, **gen_kw)
        seq, wav = out.sequences, None
    text = processor.decode(np.array(seq[0]).tolist(), skip_special_tokens=True).strip()
    if on_text is not None:
        on_text(text)
    return text, wav


def translate(
    source,
    tgt_lang: str,
    src_lang: Optional[str] = None,
    speech: bool = False,
    model: str = DEFAULT_MODEL,
    speaker_id: int = 0,
    num_beams: Optional[int] = None,
    preset: str = "transformers",
    max_new_tokens: Optional[int] = None,
    max_segment_s: float = 15.0,
    progress: bool = False,
    quantize: Optional[int] = None,
    on_text: Optional[Callable[[str], None]] = None,
    no_repeat_ngram_size: Optional[int] = None,
    sampling_rate: int = SAMPLE_RATE,
    batch_size: int = 16,
    max_chars: int = DEFAULT_MAX_CHARS,
    on_audio: Optional[Callable[[np.ndarray], None]] = None,
    as_text: bool = False,
) -> Union[Result, List[Result]]:
    """Translate text, an audio file or a 16 kHz waveform into ``tgt_lang`` text (and speech).

    Text is translated line by line; a line longer than ``max_chars`` is split into its sentences
    (:func:`seamless_mlx.segment.split_sentences`), translated in batches and joined, so memory
    stays flat for any length of text.

    A list of sources gives a list of results in the same order, decoded in padded batches of up
    to ``batch_size`` (:mod:`seamless_mlx.batch`); each result equals the one for its source
    alone.  ``src_lang``/``tgt_lang`` may then be lists too (one per source).  A source that
    cannot be translated gets a result with ``error`` set and empty text; the others are done.

    Args:
        source: text (needs ``src_lang``), an audio file path, or a mono float32 16 kHz array.
        tgt_lang: target language code, e.g. ``"fra"``.
        src_lang: source language of text input (ignored for audio: the speech encoder needs none).
        speech: also synthesise speech (``Result.audio``).
        model: converted folder, transformers folder or hub id.
        speaker_id: vocoder voice, ``0 .. vocoder_num_spkrs - 1``.
        num_beams, max_new_tokens: override the preset's text decoding (``max_new_tokens`` at most
            :func:`max_new_tokens_limit`, 4094 for v2-large).
        preset: ``"transformers"`` or ``"seamless"`` (see the module docstring).
        max_segment_s: longest piece of a long recording sent to the model at once.
        progress: show a progress bar over the pieces of a long recording or text (for text only
            when stderr is a terminal).
        quantize: 4 or 8 to use (and create on first use) a quantized copy of the model.
        on_text: called with text as it is produced (per token for greedy text output).
        no_repeat_ngram_size: forbid repeating n-grams of this size in the text (0/None: off).
        sampling_rate: rate of an array ``source`` (resampled to 16 kHz); files carry their own.
        batch_size: most sources (lines, recording pieces) decoded together for a list ``source``.
        max_chars: longest line of text translated whole; longer ones are split into sentences.
        on_audio: with ``speech``, called with each piece of speech (float32, 16 kHz) as soon as it
            is synthesised: with greedy decoding a piece's first audio comes right after its text,
            before the rest of its speech (beam search: each piece's speech at once).  The calls,
            concatenated, are ``Result.audio`` (0.2 s silences between pieces included).
        as_text: a string source is text to translate, never an audio file's path, even when it
            names a file or ends in ``.wav``: for text that comes from documents, standard input or
            other programs (a server's requests), which must never make the program read a file.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    for name, value, least in (("num_beams", num_beams, 1), ("no_repeat_ngram_size", no_repeat_ngram_size, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least):
            raise ValueError(f"{name} must be a whole number, at least {least}, got {value!r}.")
    if isinstance(source, (list, tuple)):
        if on_text is not None or on_audio is not None:
            raise ValueError("on_text/on_audio stream one source; pass a single source, or drop them for a list.")
        decoding = dict(num_beams=num_beams, max_new_tokens=max_new_tokens, no_repeat_ngram_size=no_repeat_ngram_size)
        return _translate_list(list(source), tgt_lang, src_lang, speech, str(model), speaker_id, preset, decoding,
                               max_segment_s, progress, quantize, sampling_rate, batch_size, max_chars, as_text)
    if not isinstance(tgt_lang, str) or not tgt_lang:
        raise ValueError("tgt_lang is required, e.g. tgt_lang='fra'.")
    audio = _as_audio(source, sampling_rate, as_text)
    if audio is None:
        if not source.strip():
            raise ValueError("the input text is empty.")
        if not src_lang:
            raise ValueError("src_lang is required for text input (e.g. src_lang='eng').")
        _check_encodable(source)
    task = ("s2" if audio is not None else "t2") + ("st" if speech else "tt")
    m, processor = get_model(str(model), task, quantize)
    tgt = _check_request(m, tgt_lang, speech, speaker_id)
    _check_max_new_tokens(max_new_tokens, m.config)
    if audio is None:
        try:
            known = processor.tokenizer.supported_languages
        except Exception:  # noqa: BLE001 - let the processor report unknown codes itself
            known = None
        if known:
            src_lang = _match_lang(src_lang, known) or src_lang

    decoding = dict(
        num_beams=num_beams, max_new_tokens=max_new_tokens, no_repeat_ngram_size=no_repeat_ngram_size,
        limit=max_new_tokens_limit(m.config),
    )
    if audio is None:
        return _translate_text(
            m, processor, source, src_lang, tgt, speech, speaker_id, preset, decoding, on_text, progress, max_chars,
            on_audio,
        )

    ranges = split_on_pauses(audio, SAMPLE_RATE, max_segment_s=max_segment_s, long_s=max(20.0, max_segment_s))
    it = ranges
    if progress and len(ranges) > 1:
        from tqdm import tqdm

        it = tqdm(ranges, desc="Translating", unit="segment", file=sys.stderr)
    segments: List[Segment] = []
    waves: List[np.ndarray] = []
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    for i, (a, b) in enumerate(it):
        feats = processor(audios=audio[a:b], sampling_rate=SAMPLE_RATE, return_tensors="mlx")
        inputs = {"input_features": feats["input_features"], "attention_mask": feats.get("attention_mask")}
        src_len = math.ceil(int(inputs["input_features"].shape[1]) / m.config.adaptor_stride)
        gen_kw = generation_kwargs(preset, src_len, **decoding)
        if on_text is not None and i > 0:
            on_text(" ")
        if on_audio is not None and speech and i > 0:
            on_audio(gap)
        text, wav = _translate_one(m, processor, inputs, src_len, tgt, speech, speaker_id, gen_kw, on_text, on_audio)
        segments.append(Segment(a / SAMPLE_RATE, b / SAMPLE_RATE, text))
        if wav is not None:
            if waves:
                waves.append(gap)
            waves.append(wav)
    text = " ".join(s.text for s in segments if s.text)
    out_audio = np.concatenate(waves) if waves else (np.zeros(0, np.float32) if speech else None)
    path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    return Result(text=text, audio=out_audio, segments=segments, source_path=path)


def _text_pieces(source: str, max_chars: int):
    """``[(line index, text)]``: the non-empty lines of ``source``, a line longer than
    ``max_chars`` split into its sentences; and the number of lines."""
    lines = source.strip("\n").split("\n")
    pieces = []
    for i, line in enumerate(lines):
        line = line.strip()
        if line:
            pieces.extend((i, p) for p in ([line] if len(line) <= max_chars else split_sentences(line, max_chars)))
    return pieces, len(lines)


def _translate_text(m, processor, source, src_lang, tgt, speech, speaker_id, preset, decoding, on_text,
                    progress=False, max_chars=DEFAULT_MAX_CHARS, on_audio=None):
    """Text is translated line by line (empty lines kept): a document piped in is not one giant
    sentence truncated at ``max_new_tokens``.  A line longer than ``max_chars`` is split into its
    sentences, joined again with spaces; memory is that of one batch of ``TEXT_BATCH`` pieces,
    whatever the length of the text.  Speech pieces are joined with 0.2 s silences."""
    pieces, n_lines = _text_pieces(source, max_chars)
    gen = m.generation_config
    beams = int(decoding.get("num_beams") or gen.num_beams or 1)
    max_new = int(decoding.get("max_new_tokens") or gen.max_new_tokens or 1)
    streaming = on_text is not None and not speech and beams == 1  # token by token, one piece at a time
    # Streamed speech goes piece by piece: each piece's audio is out before the next one is decoded.
    speaking = on_audio is not None and speech
    batch = 1 if speaking else max(1, min(TEXT_BATCH, TEXT_BATCH_POSITIONS // (beams * max_new)))
    sep = "" if tgt in UNSPACED_LANGS else " "
    src = src_lang.replace("__", "")
    jobs, encoded = [], []
    for _, text in pieces:
        encoded.append(processor(text=text, src_lang=src))  # lists; kept for the piece-by-piece path
        length = len(encoded[-1]["input_ids"])
        jobs.append(Job(model=m, processor=processor, tgt_lang=tgt, text=text, src_lang=src, length=length,
                        speech=speech, speaker_id=speaker_id, gen_kwargs=generation_kwargs(preset, length, **decoding)))

    def joiner(i):  # what goes between piece i - 1 and piece i
        return "\n" if pieces[i][0] != pieces[i - 1][0] else sep

    def shown(i, out):  # pieces in order; the first failure ends the call, as for a single piece
        if isinstance(out, Exception):
            raise out
        if on_text is None:
            return
        if streaming:  # this piece's text is out already: the joiner comes before the next one's
            if i + 1 < len(pieces):
                on_text(joiner(i + 1))
            return
        if i:
            on_text(joiner(i))
        on_text(out.text)

    bar = None
    if progress and len(pieces) > batch:
        from tqdm import tqdm

        bar = tqdm(total=len(pieces), desc="Translating", unit="sentence", file=sys.stderr, disable=None)
    try:
        if speaking:
            results = []
            for i, job in enumerate(jobs):
                if i and on_text is not None:
                    on_text(joiner(i))
                if i:
                    on_audio(np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32))
                inputs = {k: mx.array([encoded[i][k]], dtype=mx.int32) for k in ("input_ids", "attention_mask")}
                results.append(_translate_one(m, processor, inputs, job.length, tgt, speech, speaker_id,
                                              job.gen_kwargs, on_text, on_audio))
                if bar is not None:
                    bar.update(1)
        else:
            outs = run_jobs(jobs, batch, on_progress=bar.update if bar is not None else None, on_output=shown,
                            stream=(lambda _, piece: on_text(piece)) if streaming else None)
            results = [(o.text, o.waveform) for o in outs]
    finally:
        if bar is not None:
            bar.close()

    out_lines: List[List[str]] = [[] for _ in range(n_lines)]
    segments: List[Segment] = []
    waves: List[np.ndarray] = []
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    t = 0.0
    for (line, _), (text, wav) in zip(pieces, results):
        out_lines[line].append(text)
        dur = len(wav) / SAMPLE_RATE if wav is not None else 0.0
        if wav is not None:
            if waves:
                waves.append(gap)
                t += GAP_S
            waves.append(wav)
        segments.append(Segment(t, t + dur, text))
        t += dur
    audio = np.concatenate(waves) if waves else (np.zeros(0, np.float32) if speech else None)
    return Result(text="\n".join(sep.join(p for p in parts if p) for parts in out_lines), audio=audio, segments=segments)


def _check_encodable(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"the input text holds an invalid character at position {e.start} (a lone surrogate, from text "
            "decoded with errors='surrogateescape'?): decode the text as UTF-8 first."
        ) from None


class _CallError(Exception):
    """Wraps what is wrong with a whole list call (model, target language, options), raised as is."""


def _translate_list(sources, tgt_lang, src_lang, speech, model, speaker_id, preset, decoding, max_segment_s,
                    progress, quantize, sampling_rate, batch_size, max_chars=DEFAULT_MAX_CHARS,
                    as_text=False) -> List[Result]:
    """``translate`` of each source, in padded batches: each source is cut into jobs exactly as
    alone (text lines and their sentences, recording pieces), the jobs of a window of sources run
    together."""
    n = len(sources)
    batch_size = check_batch_size(batch_size)
    tgts, srcs = ([*v] if isinstance(v, (list, tuple, np.ndarray)) else [v] * n for v in (tgt_lang, src_lang))
    if len(tgts) != n or len(srcs) != n:
        raise ValueError(f"give one tgt_lang/src_lang, or a list of {n} (one per source).")
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise ValueError(f"max_chars must be a whole number of characters, at least 1, got {max_chars!r}.")
    if not isinstance(max_segment_s, (int, float)) or not max_segment_s > 0:
        raise ValueError(f"max_segment_s must be positive, got {max_segment_s!r}")
    one_tgt = not isinstance(tgt_lang, (list, tuple, np.ndarray))

    def call_level(check, *args):
        """``check(*args)``; what it raises is the whole call's error (every item would get it)."""
        try:
            return check(*args)
        except Exception as e:  # noqa: BLE001 - re-raised as is, outside the item's handler
            raise _CallError() from e
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=0, desc="Translating", unit="piece", file=sys.stderr)
    results: List[Result] = []
    window = max(4 * batch_size, 64)  # bounds the features held in memory at once
    for w0 in range(0, n, window):
        jobs: List[Job] = []
        plans: Dict[int, Any] = {}  # item -> (parts, text lines or None, joiner) or its exception
        for i in range(w0, min(n, w0 + window)):
            try:
                audio = _as_audio(sources[i], sampling_rate, as_text)
                if audio is None and not sources[i].strip():
                    raise ValueError("the input text is empty.")
                if audio is None and not srcs[i]:
                    raise ValueError("src_lang is required for text input (e.g. src_lang='eng').")
                if audio is None:
                    _check_encodable(sources[i])
                task = ("s2" if audio is not None else "t2") + ("st" if speech else "tt")
                m, proc = call_level(get_model, model, task, quantize)
                call_level(_check_max_new_tokens, decoding["max_new_tokens"], m.config)
                tgt = call_level(_check_request, m, tgts[i], speech, speaker_id) if one_tgt else \
                    _check_request(m, tgts[i], speech, speaker_id)
                dec = dict(decoding, limit=max_new_tokens_limit(m.config))
                base = dict(model=m, processor=proc, tgt_lang=tgt, speech=speech, speaker_id=speaker_id)
                parts = []
                if audio is None:  # parts: (job, line, 0), as _translate_text cuts the text
                    src = _match_lang(srcs[i], proc.tokenizer.supported_languages or [srcs[i]]) or srcs[i]
                    pieces, n_lines = _text_pieces(sources[i], max_chars)
                    for line, text in pieces:
                        length = len(proc(text=text, src_lang=src)["input_ids"])
                        jobs.append(Job(**base, text=text, src_lang=src, length=length,
                                        gen_kwargs=generation_kwargs(preset, length, **dec)))
                        parts.append((len(jobs) - 1, line, 0))
                    plans[i] = (parts, n_lines, "" if tgt in UNSPACED_LANGS else " ", None)
                else:  # parts: (job, first sample, end sample)
                    for a, b in split_on_pauses(audio, SAMPLE_RATE, max_segment_s=max_segment_s,
                                                long_s=max(20.0, max_segment_s)):
                        f = proc(audios=audio[a:b], sampling_rate=SAMPLE_RATE, return_tensors="np")
                        frames = int(f["input_features"].shape[1])
                        src_len = math.ceil(frames / m.config.adaptor_stride)
                        jobs.append(Job(**base, features=f["input_features"][0], feature_mask=f["attention_mask"][0],
                                        length=frames, gen_kwargs=generation_kwargs(preset, src_len, **dec)))
                        parts.append((len(jobs) - 1, a, b))
                    plans[i] = (parts, None, " ", os.fspath(sources[i]) if isinstance(sources[i], (str, os.PathLike))
                                else None)
            except _CallError as e:
                raise e.__cause__ from None
            except Exception as e:  # noqa: BLE001 - the item's own error, reported in its result
                plans[i] = e
        if bar is not None:
            bar.total += len(jobs)
            bar.refresh()
        outs = run_jobs(jobs, batch_size, on_progress=bar.update if bar is not None else None)
        for i in sorted(plans):
            results.append(_assemble(plans[i], outs, speech))
    if bar is not None:
        bar.close()
    return results


def _assemble(plan, outs, speech: bool) -> Result:
    """One item's ``Result`` from its jobs' outputs, laid out as ``translate`` does for it alone."""
    if isinstance(plan, Exception):
        return Result(text="", error=" ".join(str(plan).split()) or type(plan).__name__)
    parts, n_lines, sep, path = plan
    is_text = n_lines is not None
    failed = [outs[j] for j, _, _ in parts if isinstance(outs[j], Exception)]
    if failed:
        return Result(text="", error=" ".join(str(failed[0]).split()) or type(failed[0]).__name__)
    lines: List[List[str]] = [[] for _ in range(n_lines if is_text else 1)]
    segments, waves, t = [], [], 0.0
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    for j, a, b in parts:
        o = outs[j]
        lines[a if is_text else 0].append(o.text)
        if o.waveform is not None:
            if waves:
                waves.append(gap)
                t += GAP_S
            waves.append(o.waveform)
        dur = len(o.waveform) / SAMPLE_RATE if o.waveform is not None else 0.0
        segments.append(Segment(t, t + dur, o.text) if is_text else Segment(a / SAMPLE_RATE, b / SAMPLE_RATE, o.text))
        t += dur
    text = "\n".join(sep.join(x for x in line if x) for line in lines)
    audio = np.concatenate(waves) if waves else (np.zeros(0, np.float32) if speech else None)
    return Result(text=text, audio=audio, segments=segments, source_path=path)


def transcribe(audio, lang: str, **kw) -> Union[Result, List[Result]]:
    """Speech recognition: ``translate`` of a recording into its own language ``lang``.

    A list of recordings gives a list of results (see ``translate``); a missing file in it gets
    its error in its own result."""
    if isinstance(audio, (list, tuple)):
        return translate([Path(a) if isinstance(a, str) else a for a in audio], tgt_lang=lang, **kw)
    if isinstance(audio, str) and not looks_like_audio_path(audio):
        raise AudioFileNotFoundError(f"audio file not found: {audio!r} (check the path)")
    return translate(audio, tgt_lang=lang, **kw)


__all__ = ["PRESETS", "Result", "Segment", "translate", "transcribe", "get_model", "model_folder", "cache_root"]
