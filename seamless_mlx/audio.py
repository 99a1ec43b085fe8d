"""Audio file I/O: load (any libsndfile format, mixed to mono, resampled), prepare arrays, save.

Input conventions (the project rule is "a wrong sample rate gets resampled, stereo gets mixed
down"; transformers would raise, or silently take only the first channel):

* multi-channel audio is averaged over channels;
* audio at another sample rate is resampled to 16 kHz with ``soxr`` (high quality), silently;
  ``sampling_rate=None`` means "already 16 kHz";
* integer PCM is scaled to floats in ``[-1, 1]`` (int16 / 32768, int32 / 2**31, int8 / 128,
  uint8 as (x - 128) / 128), i.e. the same values ``soundfile`` returns when it reads a PCM
  file, so ``processor(audios=int16_pcm)`` and ``processor(audios=load_audio(path))`` agree.

  transformers does *not* scale integers: a ``list`` of int16 arrays is cast to float32 by value
  (1000 -> 1000.0), and a bare int16 array even raises ``OverflowError``. Because the features are
  logs of power spectra, a global gain ``g`` only adds the constant ``2 * log(g)`` to every
  (unfloored) value, which the per-mel-bin normalisation removes again: with the default
  ``do_normalize=True`` our features for an int16 array equal transformers' features for the
  same array (checked to 1e-4 in the tests). Only with ``do_normalize=False`` do they differ, by
  exactly ``2 * log(32768)``, ours being the values the model was trained on.
* float inputs are used as they are (no clipping, no peak normalisation), like transformers.
"""

from __future__ import annotations

import io
import os
import struct
from typing import Any, BinaryIO, Optional, Union

import numpy as np

from .fileio import atomic_write

SAMPLE_RATE = 16000

# File extensions whose libsndfile format name is not the extension itself.
_SOUNDFILE_FORMATS = {".wave": "WAV", ".aif": "AIFF", ".aifc": "AIFF", ".oga": "OGG", ".opus": "OGG"}

# Largest channel count accepted when guessing the layout of a 2-D array.
_MAX_CHANNELS = 8

__all__ = [
    "SAMPLE_RATE",
    "AudioFileNotFoundError",
    "load_audio",
    "prepare_audio",
    "resample",
    "save_wav",
    "to_numpy",
    "WavStreamWriter",
]


class AudioFileNotFoundError(FileNotFoundError, ValueError):
    """A path given to :func:`load_audio` does not exist (catchable as ``ValueError`` too)."""


# --------------------------------------------------------------------------------------------
# Loading, converting, resampling, saving
# --------------------------------------------------------------------------------------------


def _supported_formats() -> str:
    try:
        import soundfile as sf

        return ", ".join(sorted(sf.available_formats()))
    except Exception:  # pragma: no cover - soundfile missing or broken
        return "WAV, FLAC, OGG"


MIN_SAMPLE_RATE = 2000  # Hz; telephone speech is 8000


def looks_like_audio_bytes(data: bytes) -> bool:
    """True when ``data`` starts like an audio file (WAV/RF64/W64, FLAC, Ogg, MP3, AIFF, AU, CAF):
    what ``ffmpeg -i talk.mp4 -f wav - | seamless-mlx transcribe -`` pipes in."""
    head = bytes(data[:12])
    return (
        (head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE")
        or head[:4] in (b"fLaC", b"OggS", b".snd", b"caff", b"riff")
        or head[:3] == b"ID3"
        or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)  # an MPEG audio frame
        or (head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"))
    )


def resample(waveform: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a mono float waveform from ``orig_sr`` to ``target_sr`` Hz with soxr ("HQ")."""
    x = np.ascontiguousarray(waveform, dtype=np.float32)
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr} Hz")
    if orig_sr < MIN_SAMPLE_RATE and orig_sr != target_sr:  # also bounds the upsampled length (x16000 at 1 Hz)
        raise ValueError(f"a sample rate of {orig_sr} Hz is too low for speech (at least {MIN_SAMPLE_RATE} Hz); "
                         "check the file's header or the sampling_rate given.")
    if orig_sr == target_sr or x.size == 0:
        return x
    import soxr

    return np.ascontiguousarray(soxr.resample(x, orig_sr, target_sr, quality="HQ"), dtype=np.float32)


def load_audio(path_or_file: Any, sampling_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file into a mono float32 waveform at ``sampling_rate`` Hz (default 16 kHz).

    ``path_or_file`` is a path (``str``/``os.PathLike``) or a binary file-like object. Anything
    libsndfile decodes works (WAV, FLAC, OGG/Vorbis, MP3 with libsndfile >= 1.1, AIFF, ...).
    Integer PCM comes back as floats in ``[-1, 1]``; several channels are averaged; the signal is
    resampled with soxr when the file's rate differs from ``sampling_rate``.

    Raises :class:`AudioFileNotFoundError` (a ``FileNotFoundError`` and ``ValueError``) for a
    missing path, and ``ValueError`` for an unreadable/unsupported file or one with no samples.
    """
    import soundfile as sf

    is_path = isinstance(path_or_file, (str, bytes, os.PathLike))
    name = os.fsdecode(path_or_file) if is_path else getattr(path_or_file, "name", repr(path_or_file))
    if is_path:
        if not os.path.exists(name):
            raise AudioFileNotFoundError(f"audio file not found: {name!r} (check the path)")
        if os.path.isdir(name):
            raise ValueError(f"expected an audio file but {name!r} is a directory")
    try:
        # a path as bytes: libsndfile takes any name the file system holds (a str with surrogates, a
        # name that is not UTF-8, fails to encode)
        data, file_sr = sf.read(os.fsencode(path_or_file) if is_path else path_or_file, dtype="float32",
                                always_2d=True)
    except (sf.SoundFileError, RuntimeError, TypeError, EOFError) as err:
        detail = str(err).replace(repr(os.fsencode(path_or_file)), repr(name)) if is_path else str(err)
        raise ValueError(
            f"could not decode audio file {name!r}: {detail}. The file is corrupt or in a format "
            f"libsndfile cannot read; supported formats: {_supported_formats()}. Convert it to "
            "WAV or FLAC first, e.g. `ffmpeg -i input.m4a -ac 1 -ar 16000 output.wav`."
        ) from err
    if data.shape[0] == 0:
        raise ValueError(f"audio file {name!r} contains no samples (empty audio)")
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    return resample(mono, file_sr, sampling_rate)


def load_audio_bytes(data: bytes, name: str, sampling_rate: int = SAMPLE_RATE) -> np.ndarray:
    """:func:`load_audio` of an audio file's bytes (a pipe, a dataset column); errors call it ``name``."""
    f = io.BytesIO(bytes(data))
    f.name = name
    return load_audio(f, sampling_rate)


def to_numpy(array: Any) -> np.ndarray:
    """numpy view/copy of a numpy array, an ``mx.array``, a list/tuple or anything array-like."""
    if isinstance(array, np.ndarray):
        return array
    if type(array).__module__.startswith("mlx"):
        import mlx.core as mx

        if array.dtype == mx.bfloat16:  # numpy has no bfloat16
            array = array.astype(mx.float32)
        return np.asarray(array)
    if isinstance(array, (list, tuple)):
        # Python numbers are taken by value (as transformers does), never rescaled.
        try:
            return np.asarray(array, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise ValueError(f"could not convert the audio list to a float array: {err}") from err
    return np.asarray(array)


def _to_float32(x: np.ndarray) -> np.ndarray:
    kind = x.dtype.kind
    if kind == "f":
        return x.astype(np.float32, copy=False)
    if x.dtype == np.int16:
        return x.astype(np.float32) / np.float32(32768.0)
    if x.dtype == np.int32:
        return (x.astype(np.float64) / 2147483648.0).astype(np.float32)
    if x.dtype == np.int8:
        return x.astype(np.float32) / np.float32(128.0)
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - np.float32(128.0)) / np.float32(128.0)
    raise ValueError(
        f"unsupported audio dtype {x.dtype}: pass float32/float64 samples in [-1, 1] or "
        "int16/int32 PCM (int64 and other integer types have no defined full scale; convert them)"
    )


def prepare_audio(
    array: Any, sampling_rate: Optional[int] = None, target_sampling_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Turn one clip into a contiguous mono float32 waveform at ``target_sampling_rate`` Hz.

    ``array`` may be a numpy array, an ``mx.array`` or a (nested) list, 1-D (mono) or 2-D:
    ``(samples, channels)`` or ``(channels, samples)``, the channel axis being the one of length
    <= 8 when the other is longer. Channels are averaged.

    dtypes: float16/32/64 are used as is; int16, int32, int8 and uint8 PCM are scaled to
    ``[-1, 1]`` (int16 / 32768, ...) - see the module docstring for how this relates to
    transformers, which casts integers by value. Python lists are converted by value.

    ``sampling_rate`` is the rate ``array`` was recorded at; ``None`` means it is already
    ``target_sampling_rate`` (16 kHz). Any other rate is resampled with soxr, silently.

    Raises ``ValueError`` for empty audio, more than 2 dimensions, an ambiguous 2-D layout,
    non-finite samples or an unsupported dtype.
    """
    x = to_numpy(array)
    if x.dtype == np.bool_ or x.dtype.kind in "cOUS":
        raise ValueError(f"unsupported audio dtype {x.dtype}: expected real-valued samples")
    if x.size == 0:
        raise ValueError(f"empty audio: got an array of shape {x.shape} with no samples")
    if x.ndim == 0:
        raise ValueError("audio must be a 1-D array of samples, got a scalar")
    if x.ndim > 2:
        raise ValueError(
            f"audio must be 1-D (samples,) or 2-D (samples, channels) / (channels, samples), got "
            f"shape {x.shape}; to process a batch, pass a list of clips"
        )
    x = _to_float32(x)
    if x.ndim == 2:
        rows, cols = x.shape
        if cols == 1 or (cols <= _MAX_CHANNELS and rows > cols):
            x = x[:, 0] if cols == 1 else x.mean(axis=1, dtype=np.float32)  # (samples, channels)
        elif rows == 1 or (rows <= _MAX_CHANNELS and cols > rows):
            x = x[0] if rows == 1 else x.mean(axis=0, dtype=np.float32)  # (channels, samples)
        else:
            raise ValueError(
                f"cannot tell channels from samples in an audio array of shape {x.shape}: expected "
                f"(samples, channels) or (channels, samples) with at most {_MAX_CHANNELS} channels; "
                "to process a batch of clips, pass a list of 1-D arrays"
            )
    if not np.all(np.isfinite(x)):
        raise ValueError("audio contains NaN or infinite samples")
    if sampling_rate is not None and int(sampling_rate) != int(target_sampling_rate):
        x = resample(x, int(sampling_rate), int(target_sampling_rate))
    return np.ascontiguousarray(x, dtype=np.float32)


def save_wav(
    path: Union[str, os.PathLike],
    waveform: Any,
    sampling_rate: int = SAMPLE_RATE,
    subtype: Optional[str] = None,
) -> None:
    """Write a mono float waveform (numpy, ``mx.array`` or list) to an audio file.

    Samples are clipped to ``[-1, 1]``. The default ``subtype`` is 16-bit PCM (``"PCM_16"``) for
    ``.wav``/``.flac``/``.aiff`` and libsndfile's default for other extensions; pass
    ``subtype="FLOAT"`` for a 32-bit float WAV. A 2-D ``(samples, channels)`` array is written as
    is (multi-channel).  The file is replaced atomically (temporary file beside it, then a rename).
    """
    import soundfile as sf

    x = _writable_samples(waveform)
    ext = os.path.splitext(os.fsdecode(path))[1].lower()
    if subtype is None and ext in (".wav", ".flac", ".aif", ".aiff"):
        subtype = "PCM_16"
    fmt = _SOUNDFILE_FORMATS.get(ext, ext[1:].upper())
    if fmt not in sf.available_formats():
        raise ValueError(f"cannot write audio as {ext or 'a file without extension'!r}; use .wav or .flac.")
    # Encoded in memory, then written beside the target and renamed over it: a full disk or a kill
    # never leaves a truncated file where an earlier one was (libsndfile's own writes would).
    buf = io.BytesIO()
    sf.write(buf, x, int(sampling_rate), subtype=subtype, format=fmt)
    with atomic_write(path, "wb") as f:
        f.write(buf.getbuffer())


def _writable_samples(waveform: Any) -> np.ndarray:
    """float32 samples clipped to ``[-1, 1]`` (NaN as 0), 1-D or ``(samples, channels)``."""
    x = to_numpy(waveform)
    x = _to_float32(x) if x.dtype.kind in "iu" else np.asarray(x, dtype=np.float32)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim not in (1, 2):
        raise ValueError(f"expected a 1-D waveform (or 2-D samples x channels), got shape {x.shape}")
    return np.clip(np.nan_to_num(x), -1.0, 1.0)


class WavStreamWriter:
    """A mono 16-bit WAV written piece by piece to a binary stream that cannot seek (a pipe).

    The header goes out before the first samples, so its sizes are unknown: both are written as
    0xFFFFFFFF, as ffmpeg writes them on a pipe, which readers (``ffplay -``, ``aplay``,
    libsndfile, Python's ``wave``) take as "until the end of the stream".  Samples are converted
    exactly as :func:`save_wav` converts them, so the data equal a ``.wav`` file's written from
    the whole waveform.
    """

    def __init__(self, stream: BinaryIO, sampling_rate: int = SAMPLE_RATE):
        self.stream = stream
        self.sampling_rate = int(sampling_rate)
        self.started = False

    def _header(self) -> bytes:
        unknown = 0xFFFFFFFF
        fmt = struct.pack("<HHIIHH", 1, 1, self.sampling_rate, 2 * self.sampling_rate, 2, 16)  # PCM, mono, 16-bit
        return b"RIFF" + struct.pack("<I", unknown) + b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack(
            "<I", unknown
        )

    def write(self, waveform: Any) -> None:
        """Append a 1-D float waveform (clipped to [-1, 1]) and flush."""
        import soundfile as sf

        x = _writable_samples(waveform)
        if x.ndim != 1:
            raise ValueError(f"expected a 1-D waveform, got shape {x.shape}")
        buf = io.BytesIO()
        if x.size:
            sf.write(buf, x, self.sampling_rate, subtype="PCM_16", format="RAW", endian="LITTLE")
        data = buf.getvalue() if x.size else b""
        if not self.started:
            data, self.started = self._header() + data, True
        self.stream.write(data)
        self.stream.flush()

    def close(self) -> None:
        """Write the header if no samples came (an empty but valid stream); the stream stays open."""
        if not self.started:
            self.write(np.zeros(0, np.float32))
