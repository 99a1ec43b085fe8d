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
  speech: 50 Hz stacked features / adaptor stride 8), applied here as ``max_new_tokens`` and
  capped at 1024.  No n-gram blocking: ``m4t_predict``'s ``--no_repeat_ngram_size 4`` only acts
  with ``--text_generation_ngram_blocking``, which is off by default (pass
  ``no_repeat_ngram_size=4`` / ``--no-repeat-ngram-size 4`` to get it).  Its unknown-token blocking
  (``--text_unk_blocking``, also off by default) is not implemented.  The speech part is
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

import numpy as np

from .segment import DEFAULT_MAX_CHARS, split_sentences

SAMPLE_RATE = 16000
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

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write by extension: ``.txt``, ``.wav``/``.flac`` (needs speech), ``.srt``, ``.vtt``, ``.json``."""
        path = Path(path)
        ext = path.suffix.lower()
        if ext in (".wav", ".flac"):
            if self.audio is None:
                raise ValueError(f"{path.name}: there is no speech to save; translate with speech output (--speech).")
            from .audio import save_wav

            save_wav(path, self.audio, self.sample_rate)
            return path
        writers = {".txt": lambda: self.text + "\n", ".srt": self.to_srt, ".vtt": self.to_vtt, ".json": self.to_json}
        if ext not in writers:
            raise ValueError(
                f"cannot tell the output format from {path.name!r}; use a .txt, .srt, .vtt, .json, .wav or .flac name."
            )
        path.write_text(writers[ext](), encoding="utf-8")
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


def _is_hub_id(model_id: str) -> bool:
    return (
        model_id.count("/") == 1
        and not model_id.startswith((".", "/", "~"))
        and not Path(os.path.expanduser(model_id)).exists()
    )


def cached_folder_name(model_id: str, quantize: Optional[int] = None) -> str:
    """Name of the converted folder in the cache: the repo name for hub ids, name + path hash for folders."""
    if _is_hub_id(model_id):
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
    from .config import read_json_object
    from .loading import CheckpointError, is_converted, resolve

    model_id = str(model_id)
    if quantize not in (None, 4, 8):
        raise ValueError(f"quantize must be 4 or 8 (bits), got {quantize!r}")
    if not _is_hub_id(model_id):
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
    from .convert import convert

    what = f"{quantize}-bit quantized MLX" if quantize else "MLX"
    log = (lambda msg: None) if quiet else _log
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
    if not (Path(folder) / "generation_config.json").is_file():
        raise ValueError(
            f"{folder} has no generation_config.json (the model's language tables): copy it into that folder from "
            "the original checkpoint (e.g. facebook/seamless-m4t-v2-large)."
        )
    return _load_model(str(Path(folder).resolve()), TASK_CLASSES[task], quantize)


@functools.lru_cache(maxsize=4)
def _load_model(folder: str, class_name: str, quantize: Optional[int]):
    import seamless_mlx
    from .processor import SeamlessM4TProcessor

    cls = getattr(seamless_mlx, class_name)
    return cls.from_pretrained(folder), SeamlessM4TProcessor.from_pretrained(folder)


get_model.cache_clear = _load_model.cache_clear  # type: ignore[attr-defined]
get_model.cache_info = _load_model.cache_info  # type: ignore[attr-defined]


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


def _as_audio(source, sampling_rate: int = SAMPLE_RATE) -> Optional[np.ndarray]:
    """The 16 kHz mono float32 waveform of an array / audio path, or None for text.

    Arrays go through :func:`seamless_mlx.audio.prepare_audio`: float samples as is, int16/int32
    PCM scaled to [-1, 1], channels averaged, resampled from ``sampling_rate`` when it is not 16 kHz.
    """
    from .audio import check_speech_length, load_audio, prepare_audio

    if isinstance(source, os.PathLike) or (isinstance(source, str) and looks_like_audio_path(source)):
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
    gen = model.generation_config
    text_langs = gen.text_decoder_lang_to_code_id
    if not text_langs:
        raise ValueError(
            "this model's generation_config.json has no text_decoder_lang_to_code_id (the language table): "
            "use the generation_config.json of the original checkpoint."
        )
    tgt = _match_lang(tgt_lang, text_langs)
    if tgt is None:
        raise ValueError(f"unknown target language {tgt_lang!r}. Supported: {', '.join(sorted(text_langs))}.")
    if speech:
        speech_langs = gen.vocoder_lang_code_to_id
        if tgt not in speech_langs:
            raise ValueError(
                f"{tgt!r} has text output only in this model, no speech output. Speech output languages: "
                f"{', '.join(sorted(speech_langs))}. Use generate_speech=False (CLI: --text) for text in {tgt!r}."
            )
        n = model.config.vocoder_num_spkrs
        if not isinstance(speaker_id, (int, np.integer)) or not 0 <= int(speaker_id) < n:
            raise ValueError(f"speaker id must be in 0..{n - 1}, got {speaker_id!r}.")
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


def _translate_one(model, processor, inputs, src_len, tgt, speech, speaker_id, gen_kw, on_text):
    """(text, waveform or None) for one text or one audio segment."""
    beams = gen_kw.get("num_beams") or model.generation_config.num_beams or 1
    try:
        from .generation import stream_generate
    except ImportError:  # an older package without streaming: the text is reported at the end
        stream_generate = None
    if on_text is not None and not speech and int(beams) == 1 and stream_generate is not None:
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
    max_chars: int = DEFAULT_MAX_CHARS,
) -> Result:
    """Translate text, an audio file or a 16 kHz waveform into ``tgt_lang`` text (and speech).

    Text is translated line by line; a line longer than ``max_chars`` is split into its sentences
    (:func:`seamless_mlx.segment.split_sentences`), translated in batches and joined, so memory
    stays flat for any length of text.

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
        max_chars: longest line of text translated whole; longer ones are split into sentences.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    if not isinstance(tgt_lang, str) or not tgt_lang:
        raise ValueError("tgt_lang is required, e.g. tgt_lang='fra'.")
    audio = _as_audio(source, sampling_rate)
    if audio is None:
        if not source.strip():
            raise ValueError("the input text is empty.")
        if not src_lang:
            raise ValueError("src_lang is required for text input (e.g. src_lang='eng').")
        try:
            source.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(
                f"the input text holds an invalid character at position {e.start} (a lone surrogate, from text "
                "decoded with errors='surrogateescape'?): decode the text as UTF-8 first."
            ) from None
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
            m, processor, source, src_lang, tgt, speech, speaker_id, preset, decoding, on_text, progress, max_chars
        )

    from .segment import split_on_pauses

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
        src_len = math.ceil(int(inputs["input_features"].shape[1]) / 8)
        gen_kw = generation_kwargs(preset, src_len, **decoding)
        if on_text is not None and i > 0:
            on_text(" ")
        text, wav = _translate_one(m, processor, inputs, src_len, tgt, speech, speaker_id, gen_kw, on_text)
        segments.append(Segment(a / SAMPLE_RATE, b / SAMPLE_RATE, text))
        if wav is not None:
            if waves:
                waves.append(gap)
            waves.append(wav)
    text = " ".join(s.text for s in segments if s.text)
    out_audio = np.concatenate(waves) if waves else (np.zeros(0, np.float32) if speech else None)
    return Result(text=text, audio=out_audio, segments=segments)


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


def _translate_batch(m, processor, texts, src_lang, tgt, speech, speaker_id, preset, decoding):
    """[(text, waveform or None)] for a padded batch of source texts."""
    inputs = processor(text=texts, src_lang=src_lang.replace("__", ""), return_tensors="mlx")
    inputs = {"input_ids": inputs["input_ids"], "attention_mask": inputs.get("attention_mask")}
    gen_kw = generation_kwargs(preset, int(inputs["input_ids"].shape[1]), **decoding)
    if speech:
        out = m.generate(
            **inputs, tgt_lang=tgt, generate_speech=True, speaker_id=int(speaker_id),
            return_intermediate_token_ids=True, **gen_kw,
        )
        lengths, wav = np.array(out.waveform_lengths), np.array(out.waveform, dtype=np.float32)
        waves = [wav[j, : int(lengths[j])] for j in range(len(texts))]
    else:
        out = m.generate(**inputs, tgt_lang=tgt, generate_speech=False, **gen_kw)
        waves = [None] * len(texts)
    decoded = processor.batch_decode(np.array(out.sequences).tolist(), skip_special_tokens=True)
    return [(t.strip(), w) for t, w in zip(decoded, waves)]


def _translate_text(m, processor, source, src_lang, tgt, speech, speaker_id, preset, decoding, on_text,
                    progress=False, max_chars=DEFAULT_MAX_CHARS):
    """Text is translated line by line (empty lines kept): a document piped in is not one giant
    sentence truncated at ``max_new_tokens``.  A line longer than ``max_chars`` is split into its
    sentences, joined again with spaces; memory is that of one batch of ``TEXT_BATCH`` pieces,
    whatever the length of the text.  Speech pieces are joined with 0.2 s silences."""
    pieces, n_lines = _text_pieces(source, max_chars)
    gen = m.generation_config
    beams = int(decoding.get("num_beams") or gen.num_beams or 1)
    max_new = int(decoding.get("max_new_tokens") or gen.max_new_tokens or 1)
    streaming = on_text is not None and not speech and beams == 1
    # Streamed text goes token by token, one piece at a time; speech pieces go one at a time too,
    # since a padded batch's shorter items would get the padding units' sound.
    batch = 1 if streaming or speech else max(1, min(TEXT_BATCH, TEXT_BATCH_POSITIONS // (beams * max_new)))
    sep = "" if tgt in UNSPACED_LANGS else " "
    bar = None
    if progress and len(pieces) > batch:
        from tqdm import tqdm

        bar = tqdm(total=len(pieces), desc="Translating", unit="sentence", file=sys.stderr, disable=None)
    results = []
    for b0 in range(0, len(pieces), batch):
        chunk = pieces[b0 : b0 + batch]
        if streaming:
            if b0:
                on_text("\n" if chunk[0][0] != pieces[b0 - 1][0] else sep)
            inputs = processor(text=chunk[0][1], src_lang=src_lang.replace("__", ""), return_tensors="mlx")
            inputs = {"input_ids": inputs["input_ids"], "attention_mask": inputs.get("attention_mask")}
            src_len = int(inputs["input_ids"].shape[1])
            gen_kw = generation_kwargs(preset, src_len, **decoding)
            results.append(_translate_one(m, processor, inputs, src_len, tgt, speech, speaker_id, gen_kw, on_text))
        else:
            texts = [p for _, p in chunk]
            out = _translate_batch(m, processor, texts, src_lang, tgt, speech, speaker_id, preset, decoding)
            if on_text is not None:
                for j, (text, _) in enumerate(out):
                    if b0 + j:
                        on_text("\n" if pieces[b0 + j][0] != pieces[b0 + j - 1][0] else sep)
                    on_text(text)
            results.extend(out)
        if bar is not None:
            bar.update(len(chunk))
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


def transcribe(audio, lang: str, **kw) -> Result:
    """Speech recognition: ``translate`` of a recording into its own language ``lang``."""
    if isinstance(audio, str) and not looks_like_audio_path(audio):
        from .audio import AudioFileNotFoundError

        raise AudioFileNotFoundError(f"audio file not found: {audio!r} (check the path)")
    return translate(audio, tgt_lang=lang, **kw)


__all__ = ["PRESETS", "Result", "Segment", "translate", "transcribe", "get_model", "model_folder", "cache_root"]
