"""The SeamlessM4T speech front end: Kaldi-style log-mel filterbanks and the feature extractor.

The feature pipeline reproduces ``transformers.SeamlessM4TFeatureExtractor`` (transformers 4.56)
number for number, but is vectorised (all frames of a clip go through one batched FFT) and
never needs torch:

1. the waveform (float, nominally in ``[-1, 1]``) is scaled by ``2**15`` (Kaldi works on 16-bit
   sample values);
2. it is cut into 25 ms frames (400 samples) every 10 ms (160 samples), without centre padding,
   so a clip of ``n >= 400`` samples gives ``1 + (n - 400) // 160`` frames;
3. each frame has its mean removed, is pre-emphasised (0.97), multiplied by a symmetric Povey
   window and zero-padded to 512 for the real FFT;
4. the power spectrum goes through 80 triangular filters laid out on Kaldi's mel scale between
   20 Hz and the Nyquist frequency, is floored at ``1.192092955078125e-07`` and its natural log is
   taken;
5. each clip is normalised per mel bin (mean over its frames, unbiased variance, ``+1e-7``),
   the batch is right-padded with ``padding_value`` up to the longest clip rounded up to an even
   number of frames, and pairs of consecutive frames are concatenated into 160-dim vectors. The
   attention mask keeps, for each stacked frame, the mask value of its *second* source frame.

Input arrays go through :func:`seamless_mlx.audio.prepare_audio` first (mono, 16 kHz, floats).
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from .audio import SAMPLE_RATE, prepare_audio, to_numpy
from .tokenizer import BatchEncoding

# Fixed analysis parameters of SeamlessM4T's front end (they do not follow sampling_rate in
# transformers either).
FRAME_LENGTH = 400  # 25 ms at 16 kHz
HOP_LENGTH = 160  # 10 ms at 16 kHz
FFT_LENGTH = 512
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07  # float32 machine epsilon, as in Kaldi
MIN_FREQUENCY = 20.0
NORM_EPS = 1e-7

# Frames per FFT batch: bounds the temporary complex buffer (~8 MB) on hour-long inputs.
_FRAMES_PER_CHUNK = 4096

__all__ = [
    "SeamlessM4TFeatureExtractor",
    "extract_features",
    "fbank_features",
    "kaldi_mel_filters",
    "povey_window",
]


# --------------------------------------------------------------------------------------------
# Filterbank features
# --------------------------------------------------------------------------------------------



# The shortest clip the speech encoder takes: two 25 ms frames, 10 ms apart (the features stack
# frames in pairs), i.e. 35 ms at 16 kHz.
MIN_SPEECH_SAMPLES = FRAME_LENGTH + HOP_LENGTH


def check_speech_length(waveform: np.ndarray, name: str) -> np.ndarray:
    """``waveform`` (16 kHz) unchanged, or ``ValueError`` naming ``name`` when it is shorter than
    the speech encoder's :data:`MIN_SPEECH_SAMPLES`."""
    n = int(np.asarray(waveform).size)
    if n < MIN_SPEECH_SAMPLES:
        raise ValueError(
            f"{name} is too short to translate: {n} sample{'s' if n != 1 else ''} ({1000 * n / SAMPLE_RATE:.1f} ms); "
            f"the speech encoder needs at least {MIN_SPEECH_SAMPLES} samples "
            f"({1000 * MIN_SPEECH_SAMPLES / SAMPLE_RATE:.0f} ms at 16 kHz)."
        )
    return waveform


def _kaldi_mel(freq):
    return 1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


@functools.lru_cache(maxsize=8)
def kaldi_mel_filters(
    num_mel_bins: int = 80, sampling_rate: int = SAMPLE_RATE, fft_length: int = FFT_LENGTH
) -> np.ndarray:
    """``[fft_length // 2 + 1, num_mel_bins]`` float64 Kaldi filterbank (unnormalised triangles).

    Filter edges are equally spaced on Kaldi's mel scale ``1127 * ln(1 + f / 700)`` between 20 Hz
    and ``sampling_rate // 2``; each FFT bin's weight is its triangular response computed in mel
    space (as Kaldi/torchaudio do). The returned array is read-only and cached.
    """
    mel_points = np.linspace(
        _kaldi_mel(MIN_FREQUENCY), _kaldi_mel(sampling_rate // 2), num_mel_bins + 2
    )
    n_bins = fft_length // 2 + 1
    bin_mels = _kaldi_mel(np.arange(n_bins) * (sampling_rate / fft_length))[:, None]
    left, centre, right = mel_points[None, :-2], mel_points[None, 1:-1], mel_points[None, 2:]
    rising = (bin_mels - left) / (centre - left)
    falling = (right - bin_mels) / (right - centre)
    filters = np.maximum(0.0, np.minimum(rising, falling))
    filters.setflags(write=False)
    return filters


@functools.lru_cache(maxsize=4)
def povey_window(length: int = FRAME_LENGTH) -> np.ndarray:
    """Symmetric Povey window (a Hann window raised to the power 0.85), float64, read-only."""
    window = np.hanning(length) ** 0.85
    window.setflags(write=False)
    return window


def fbank_features(
    waveform: Any, num_mel_bins: int = 80, sampling_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Kaldi-style log-mel filterbank of one mono 16 kHz clip: ``[frames, num_mel_bins]`` float32.

    ``waveform`` holds float samples nominally in ``[-1, 1]`` (they are cast to float32 and
    multiplied by 2**15). ``frames = 1 + (n - 400) // 160`` for ``n >= 400`` samples and 0 for
    shorter input. No normalisation is applied here (see :func:`extract_features`).
    """
    x = np.asarray(to_numpy(waveform), dtype=np.float32)
    x = np.atleast_1d(np.squeeze(x))  # a one-sample clip stays 1-D (and too short, said later)
    if x.ndim != 1:
        raise ValueError(f"fbank_features expects a mono 1-D waveform, got shape {x.shape}")
    # float32 scaling by a power of two is exact; the rest runs in float64 like the reference.
    x = (x * np.float32(2**15)).astype(np.float64)

    n_frames = 1 + (x.size - FRAME_LENGTH) // HOP_LENGTH if x.size >= FRAME_LENGTH else 0
    mel = kaldi_mel_filters(num_mel_bins, sampling_rate, FFT_LENGTH)
    if n_frames == 0:
        return np.zeros((0, num_mel_bins), dtype=np.float32)
    window = povey_window(FRAME_LENGTH)
    all_frames = np.lib.stride_tricks.sliding_window_view(x, FRAME_LENGTH)[::HOP_LENGTH][:n_frames]

    # Column-major like the reference's transposed output, so that later float32 reductions over
    # frames (per-bin mean/variance) sum in the same order and give bit-identical results.
    out = np.empty((n_frames, num_mel_bins), dtype=np.float32, order="F")
    for start in range(0, n_frames, _FRAMES_PER_CHUNK):
        frames = all_frames[start : start + _FRAMES_PER_CHUNK]
        frames = frames - frames.mean(axis=1, keepdims=True)  # remove DC offset (copies)
        emphasised = np.empty_like(frames)
        emphasised[:, 1:] = frames[:, 1:] - PREEMPHASIS * frames[:, :-1]
        emphasised[:, 0] = frames[:, 0] * (1.0 - PREEMPHASIS)
        emphasised *= window
        spectrum = np.fft.rfft(emphasised, n=FFT_LENGTH, axis=1)
        # The reference stores the FFT in complex64 before taking |.|^2 in float64.
        power = np.abs(spectrum.astype(np.complex64), dtype=np.float64) ** 2
        out[start : start + len(frames)] = np.log(np.maximum(MEL_FLOOR, power @ mel))
    return out


def _min_frames(stride: int) -> int:
    return max(2, int(stride))


def extract_features(
    waveforms: Sequence[Any],
    do_normalize: bool = True,
    stride: int = 2,
    pad_to_multiple_of: Optional[int] = 2,
    padding_value: float = 0.0,
    *,
    padding: Union[bool, str] = True,
    max_length: Optional[int] = None,
    truncation: bool = False,
    padding_side: str = "right",
    num_mel_bins: int = 80,
    sampling_rate: int = SAMPLE_RATE,
) -> Dict[str, np.ndarray]:
    """Batch features for the speech encoder from prepared mono 16 kHz float waveforms.

    Returns ``{"input_features": [B, T // stride, num_mel_bins * stride] float32,
    "attention_mask": [B, T // stride] int32}`` where ``T`` is the padded frame count.

    Per clip: :func:`fbank_features`, then (``do_normalize``) per-mel-bin normalisation over all
    of the clip's frames ``(x - mean) / sqrt(var_unbiased + 1e-7)``. Padding happens *after*
    normalisation, with ``padding_value``: ``padding=True``/``"longest"`` pads to the longest clip
    and ``"max_length"`` to ``max_length`` (``truncation=True`` cuts longer clips first), both
    rounded up to ``pad_to_multiple_of``; ``padding=False`` requires equal frame counts. Trailing
    frames that do not fill a stride group are dropped, each group of ``stride`` frames is
    concatenated, and the mask keeps the value of the group's frame at offset 1 (the second
    frame; the whole mask for ``stride == 1``). A clip with an odd number of real frames thus
    ends in a stacked frame whose mask is 0, exactly as in transformers.

    Raises ``ValueError`` for an empty batch or a clip shorter than
    ``400 + 160 * (max(2, stride) - 1)`` samples (560 = 35 ms for stride 2).
    """
    if isinstance(waveforms, np.ndarray) and waveforms.ndim == 1:
        waveforms = [waveforms]
    waveforms = list(waveforms)
    if not waveforms:
        raise ValueError("extract_features needs at least one waveform, got an empty batch")
    stride = int(stride)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")

    features: List[np.ndarray] = []
    for i, wav in enumerate(waveforms):
        feats = fbank_features(wav, num_mel_bins=num_mel_bins, sampling_rate=sampling_rate)
        if feats.shape[0] < _min_frames(stride):
            n = np.asarray(to_numpy(wav)).size
            need = FRAME_LENGTH + HOP_LENGTH * (_min_frames(stride) - 1)
            raise ValueError(
                f"audio clip {i} is too short: {n} samples give {feats.shape[0]} frame(s); the "
                f"speech encoder needs at least {need} samples ({1000 * need / SAMPLE_RATE:.0f} ms "
                "at 16 kHz)"
                + ("" if n else " (empty audio)")
            )
        if do_normalize:
            mean = np.expand_dims(feats.mean(0), 0)
            var = np.expand_dims(feats.var(0, ddof=1), 0)
            feats = (feats - mean) / np.sqrt(var + NORM_EPS)
        features.append(feats)

    if truncation:
        if max_length is None:
            raise ValueError("truncation=True needs max_length")
        limit = _round_up(max_length, pad_to_multiple_of)
        features = [f[:limit] for f in features]

    lengths = [f.shape[0] for f in features]
    if padding is True or padding == "longest":
        target = _round_up(max(lengths), pad_to_multiple_of)
    elif padding == "max_length":
        if max_length is None:
            raise ValueError('padding="max_length" needs max_length')
        target = max(_round_up(max_length, pad_to_multiple_of), max(lengths))
    elif padding is False or padding in ("do_not_pad", None):
        if len(set(lengths)) != 1:
            raise ValueError(
                f"clips have different frame counts {lengths}; use padding=True to batch them"
            )
        target = lengths[0]
    else:
        raise ValueError(f"unknown padding strategy {padding!r}")
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")

    batch = len(features)
    input_features = np.full((batch, target, num_mel_bins), padding_value, dtype=np.float32)
    attention_mask = np.zeros((batch, target), dtype=np.int32)
    for b, f in enumerate(features):
        n = f.shape[0]
        rows = slice(0, n) if padding_side == "right" else slice(target - n, target)
        input_features[b, rows] = f
        attention_mask[b, rows] = 1

    usable = target - target % stride
    input_features = input_features[:, :usable].reshape(batch, usable // stride, num_mel_bins * stride)
    attention_mask = attention_mask[:, :usable]
    if stride > 1:
        attention_mask = attention_mask[:, 1::stride]
    return {
        "input_features": np.ascontiguousarray(input_features),
        "attention_mask": np.ascontiguousarray(attention_mask),
    }


def _round_up(n: int, multiple: Optional[int]) -> int:
    n = int(n)
    if multiple and n % multiple:
        n = (n // multiple + 1) * multiple
    return n


# --------------------------------------------------------------------------------------------
# Feature extractor object
# --------------------------------------------------------------------------------------------


def _is_clip_like(x: Any) -> bool:
    return isinstance(x, (np.ndarray, list, tuple)) or type(x).__module__.startswith("mlx") or (
        hasattr(x, "__array__") and not np.isscalar(x)
    )


class SeamlessM4TFeatureExtractor:
    """numpy re-implementation of ``transformers.SeamlessM4TFeatureExtractor``.

    Same defaults and the same outputs for 16 kHz float input (see the module docstring for the
    extras: resampling, channel mix-down and integer scaling instead of errors).
    """

    model_input_names = ["input_features", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 80,
        sampling_rate: int = SAMPLE_RATE,
        num_mel_bins: int = 80,
        padding_value: float = 0.0,
        stride: int = 2,
        padding_side: str = "right",
        return_attention_mask: bool = True,
        do_normalize_per_mel_bins: bool = True,
        **kwargs: Any,
    ):
        self.feature_size = int(feature_size)
        self.sampling_rate = int(sampling_rate)
        self.num_mel_bins = int(num_mel_bins)
        self.padding_value = float(padding_value)
        self.stride = int(stride)
        self.padding_side = padding_side
        self.return_attention_mask = bool(return_attention_mask)
        self.do_normalize = bool(kwargs.pop("do_normalize", do_normalize_per_mel_bins))
        self.extra_config = kwargs  # unknown config fields are kept, unused

    @classmethod
    def from_pretrained(cls, folder: Union[str, os.PathLike], **overrides: Any):
        """Build from ``folder/preprocessor_config.json`` when present, defaults otherwise.

        ``overrides`` take precedence over the file. Nothing is downloaded.
        """
        config: Dict[str, Any] = {}
        path = os.path.join(os.fspath(folder), "preprocessor_config.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                config = json.load(fh)
            if not isinstance(config, dict):
                raise ValueError(f"{path} does not contain a JSON object")
        config.update(overrides)
        for key in ("feature_extractor_type", "processor_class", "_processor_class"):
            config.pop(key, None)
        return cls(**config)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "feature_extractor_type": "SeamlessM4TFeatureExtractor",
            "feature_size": self.feature_size,
            "sampling_rate": self.sampling_rate,
            "num_mel_bins": self.num_mel_bins,
            "padding_value": self.padding_value,
            "stride": self.stride,
            "padding_side": self.padding_side,
            "return_attention_mask": self.return_attention_mask,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()})"

    def _split_batch(self, audios: Any) -> List[Any]:
        if isinstance(audios, (list, tuple)):
            if len(audios) == 0:
                raise ValueError("empty audio: got an empty list")
            if _is_clip_like(audios[0]):
                return list(audios)  # a batch of clips
            return [audios]  # one clip given as a list of numbers
        return [audios]  # one array: 1-D mono or 2-D multi-channel

    def __call__(
        self,
        audios: Any,
        sampling_rate: Optional[int] = None,
        return_tensors: Optional[str] = "np",
        padding: Union[bool, str] = True,
        return_attention_mask: Optional[bool] = None,
        pad_to_multiple_of: Optional[int] = 2,
        max_length: Optional[int] = None,
        truncation: bool = False,
        do_normalize_per_mel_bins: Optional[bool] = None,
        **kwargs: Any,
    ) -> BatchEncoding:
        """Featurise one clip or a list of clips.

        ``audios``: a 1-D array/list (one mono clip), a 2-D array (one multi-channel clip,
        ``(samples, channels)`` or ``(channels, samples)``, averaged), or a list of those (a
        batch). numpy arrays, ``mx.array`` and lists are accepted; integer PCM is scaled to
        ``[-1, 1]``.

        ``sampling_rate``: the input's rate; ``None`` assumes ``self.sampling_rate`` (16 kHz);
        a different rate is resampled with soxr.

        Returns a :class:`~seamless_mlx.tokenizer.BatchEncoding` with ``input_features`` ``[B, T, 160]`` float32 and
        (unless ``return_attention_mask=False``) ``attention_mask`` ``[B, T]`` int32, as numpy
        arrays (``return_tensors="np"`` or ``None``) or ``mx.array`` (``"mlx"``). Extra keyword
        arguments (e.g. ``do_normalize``) are accepted; unknown ones are ignored.
        """
        if audios is None:
            raise ValueError("no audio given")
        do_normalize = kwargs.pop("do_normalize", None)
        if do_normalize is None:
            do_normalize = do_normalize_per_mel_bins
        if do_normalize is None:
            do_normalize = self.do_normalize
        if return_attention_mask is None:
            return_attention_mask = self.return_attention_mask

        clips = [
            prepare_audio(clip, sampling_rate, target_sampling_rate=self.sampling_rate)
            for clip in self._split_batch(audios)
        ]
        out = extract_features(
            clips,
            do_normalize=bool(do_normalize),
            stride=self.stride,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_value=self.padding_value,
            padding=padding,
            max_length=max_length,
            truncation=truncation,
            padding_side=self.padding_side,
            num_mel_bins=self.num_mel_bins,
            sampling_rate=self.sampling_rate,
        )
        if not return_attention_mask:
            out.pop("attention_mask")
        return BatchEncoding(out).to(return_tensors)
