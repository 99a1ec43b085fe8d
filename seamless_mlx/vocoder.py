"""Unit HiFi-GAN vocoder of SeamlessM4T-v2 (HF ``SeamlessM4Tv2CodeHifiGan``, prefix ``vocoder.``).

Discrete units -> embeddings -> per-unit durations -> frames (each unit embedding repeated for
its duration) -> ``[language | units | speaker]`` features -> HiFi-GAN -> waveform.

Behaviours kept from transformers on purpose, because they change the output:

* the duration predictor sees the padding units too (no mask), so padded units get durations
  and are synthesised; padding a batch changes the waveform of its shorter items' tails;
* in a batch, each item's frames are zero-padded to the longest item, while the language and
  speaker embeddings still fill every frame;
* the returned lengths count, per item, the frames of its non-padding units *plus one more
  unit* (transformers gathers the cumulative duration at index ``n_units``, not ``n_units - 1``);
  an item without padding gets all its frames;
* the last leaky ReLU before ``conv_post`` uses torch's default slope 0.01, not
  ``leaky_relu_slope``.

The HiFi-GAN can also run over windows of frames (:meth:`CodeHifiGan.waveform_windows`), each
with the context its receptive field needs (:func:`receptive_field`), so that speech can be
played while the rest is synthesised and long speech needs one window's activations at a time;
the pieces concatenate to the one-pass waveform.
"""

from __future__ import annotations

import math
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import mlx.core as mx
import mlx.nn as nn

from .config import ModelConfig
from .layers import VariancePredictor, repeat_by_durations, sanitize_convs

# transformers' conv_pre and conv_post: kernel 7, "same" padding, not in the config
EDGE_KERNEL = 7
# frame windows for streamed speech (50 frames a second): a short first one so that audio starts
# soon, then each twice the last, up to a size whose context overhead is small
FIRST_WINDOW = 32
LARGEST_WINDOW = 512


class ResidualBlock(nn.Module):
    """HiFi-GAN multi-receptive-field block: per dilation, a dilated conv and a plain conv."""

    def __init__(self, channels: int, kernel_size: int, dilations: List[int], slope: float):
        super().__init__()
        self.slope = slope
        self.convs1 = [
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=(kernel_size * d - d) // 2)
            for d in dilations
        ]
        self.convs2 = [
            nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2) for _ in dilations
        ]

    def __call__(self, x: mx.array) -> mx.array:
        """``[B, T, C]`` -> ``[B, T, C]`` (odd kernels keep the length)."""
        for conv1, conv2 in zip(self.convs1, self.convs2):
            h = conv1(nn.leaky_relu(x, self.slope))
            x = conv2(nn.leaky_relu(h, self.slope)) + x
        return x


class HifiGan(nn.Module):
    """Features ``[B, T, unit + lang + spkr dims]`` -> waveform ``[B, T * prod(upsample_rates)]``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        in_dim = config.unit_embed_dim + config.lang_embed_dim + config.spkr_embed_dim
        channels = config.upsample_initial_channel
        self.slope = config.leaky_relu_slope
        self.num_kernels = len(config.resblock_kernel_sizes)
        self.conv_pre = nn.Conv1d(in_dim, channels, EDGE_KERNEL, padding=EDGE_KERNEL // 2)
        self.upsampler = [
            nn.ConvTranspose1d(channels // 2**i, channels // 2 ** (i + 1), k, stride=r, padding=(k - r) // 2)
            for i, (r, k) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes))
        ]
        self.resblocks = [
            ResidualBlock(channels // 2 ** (i + 1), k, d, config.leaky_relu_slope)
            for i in range(len(self.upsampler))
            for k, d in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes)
        ]
        self.conv_post = nn.Conv1d(channels // 2 ** len(self.upsampler), 1, EDGE_KERNEL, padding=EDGE_KERNEL // 2)

    def __call__(self, x: mx.array) -> mx.array:
        """``[B, T, in_dim]`` -> ``[B, S]``."""
        x = self.conv_pre(x)
        n = self.num_kernels
        for i, up in enumerate(self.upsampler):
            x = up(nn.leaky_relu(x, self.slope))
            blocks = self.resblocks[i * n : (i + 1) * n]
            acc = blocks[0](x)
            for block in blocks[1:]:
                acc = acc + block(x)
            x = acc / n
        # transformers calls leaky_relu here without a slope: torch's default 0.01
        x = self.conv_post(nn.leaky_relu(x, 0.01))
        return mx.tanh(x)[..., 0]


def _conv_len(length, kernel: int, stride: int, pad: int, dilation: int = 1):
    return (length + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def _transpose_conv_len(length, kernel: int, stride: int, pad: int):
    return (length - 1) * stride - 2 * pad + kernel


def hifigan_output_lengths(config: ModelConfig, frame_lengths):
    """Waveform samples produced from ``frame_lengths`` frames (int or int array, any shape)."""
    n = _conv_len(frame_lengths, EDGE_KERNEL, 1, EDGE_KERNEL // 2)
    for r, k in zip(config.upsample_rates, config.upsample_kernel_sizes):
        n = _transpose_conv_len(n, k, r, (k - r) // 2)
    for _ in config.upsample_rates:
        for k, dilations in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes):
            for d in dilations:
                n = _conv_len(n, k, 1, (k - 1) * d // 2, d)
            for _ in dilations:
                n = _conv_len(n, k, 1, (k - 1) // 2)
    return _conv_len(n, EDGE_KERNEL, 1, EDGE_KERNEL // 2)


def receptive_field(config: ModelConfig) -> Tuple[int, int]:
    """Frames ``(left, right)`` of context the HiFi-GAN needs around a span of frames so that the
    span's samples equal those of one pass over the whole sequence.

    Found by walking the generator backwards from the samples of one frame: a convolution widens
    the span by what its kernel reaches on each side, a transposed convolution maps it to the
    input frames that reach it, and an upsampling stage widens it by its widest residual block.
    Exact, not a bound: one frame less on a side changes that side's first samples.
    """
    edge = EDGE_KERNEL // 2
    lo, hi = -edge, math.prod(config.upsample_rates) - 1 + edge  # samples of frame 0 before conv_post
    stages = list(zip(config.upsample_rates, config.upsample_kernel_sizes))
    for r, k in reversed(stages):
        left = right = 0
        for kernel, dilations in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes):
            reach = [(kernel * d - d) // 2 for d in dilations] + [(kernel - 1) // 2] * len(dilations)
            spans = [d * (kernel - 1) for d in dilations] + [kernel - 1] * len(dilations)
            left = max(left, sum(reach))
            right = max(right, sum(s - p for s, p in zip(spans, reach)))
        lo, hi = lo - left, hi + right
        # output sample o = i * r - pad + tap, tap in [0, k): input frame i reaches o
        pad = (k - r) // 2
        lo, hi = -((k - 1 - pad - lo) // r), (hi + pad) // r
    return edge - lo, hi + edge


def window_spans(num_frames: int, first: int, largest: Optional[int] = None) -> List[Tuple[int, int]]:
    """Frame spans ``[(start, end)]`` covering ``0 .. num_frames``: ``first`` frames, then each
    span twice the previous one, at most ``largest`` (``None``: all of the same size ``first``)."""
    if first < 1 or (largest is not None and largest < first):
        raise ValueError(f"window sizes must satisfy 1 <= first <= largest, got first={first}, largest={largest}")
    spans, start, size = [], 0, first
    while start < num_frames:
        spans.append((start, min(start + size, num_frames)))
        start += size
        if largest is not None:
            size = min(2 * size, largest)
    return spans


def _as_batch_ids(ids: Union[int, mx.array], batch: int) -> mx.array:
    ids = mx.array(ids) if not isinstance(ids, mx.array) else ids
    return mx.broadcast_to(ids.reshape(-1), (batch,))


class CodeHifiGan(nn.Module):
    """The vocoder: units + speaker + language -> waveform.  Parameter tree = HF ``vocoder.*``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.pad_token_id = config.t2u_pad_token_id
        embed = config.unit_embed_dim
        self.dur_predictor = VariancePredictor(embed, embed, config.variance_predictor_kernel_size)
        self.unit_embedding = nn.Embedding(config.unit_hifi_gan_vocab_size, embed)
        self.speaker_embedding = nn.Embedding(config.vocoder_num_spkrs, config.spkr_embed_dim)
        self.language_embedding = nn.Embedding(config.vocoder_num_langs, config.lang_embed_dim)
        self.hifi_gan = HifiGan(config)

    def durations(self, units: mx.array) -> mx.array:
        """Predicted frames per unit ``[B, U]`` (int32, >= 1) from unit embeddings ``[B, U, E]``."""
        log_dur = self.dur_predictor(units)
        return mx.maximum(mx.round(mx.expm1(log_dur)), 1).astype(mx.int32)

    def expand(self, units: mx.array, durations: mx.array) -> Tuple[mx.array, mx.array]:
        """Repeat each unit embedding for its duration; zero-pad items to the longest.

        Args:
            units: ``[B, U, E]``.
            durations: ``[B, U]`` int.

        Returns:
            ``(frames [B, T, E], ends [B, U])`` where ``ends`` is the cumulative duration.
        """
        return repeat_by_durations(units, durations), mx.cumsum(durations, axis=1)

    def __call__(
        self,
        input_ids: mx.array,
        speaker_id: Union[int, mx.array],
        lang_id: Union[int, mx.array],
        window: Optional[int] = None,
    ) -> Tuple[mx.array, mx.array]:
        """Synthesise speech from vocoder units.

        Args:
            input_ids: ``[B, U]`` unit ids, already shifted by ``vocoder_offset``; padding is
                ``t2u_pad_token_id`` (what transformers' generate feeds the vocoder).
            speaker_id: ``[B]``, ``[B, 1]``, ``[1]`` or an int.
            lang_id: same shapes as ``speaker_id``; a vocoder language index.
            window: run the HiFi-GAN over windows of this many frames (same waveform, memory of
                one window; :meth:`waveform_windows`) instead of in one pass.

        Returns:
            ``(waveform [B, S] float32, lengths [B] int32)``; ``waveform[b, :lengths[b]]`` is item
            ``b``'s speech (transformers' length rule, see the module docstring).
        """
        features, lengths = self.features(input_ids, speaker_id, lang_id)
        if window is None:
            return self.hifi_gan(features).astype(mx.float32), lengths
        spans = window_spans(features.shape[1], window)
        return mx.concatenate(list(self.waveform_windows(features, spans)), axis=1), lengths

    def features(
        self, input_ids: mx.array, speaker_id: Union[int, mx.array], lang_id: Union[int, mx.array]
    ) -> Tuple[mx.array, mx.array]:
        """The HiFi-GAN's input and the waveform lengths (arguments as for ``__call__``).

        Returns:
            ``(features [B, T, lang + unit + speaker dims], lengths [B] int32)``.
        """
        batch, num_units = input_ids.shape
        units = self.unit_embedding(input_ids)
        durations = self.durations(units)
        frames, ends = self.expand(units, durations)

        num_frames = frames.shape[1]
        spkr = self.speaker_embedding(_as_batch_ids(speaker_id, batch))[:, None, :]
        lang = self.language_embedding(_as_batch_ids(lang_id, batch))[:, None, :]
        features = mx.concatenate(
            [
                mx.broadcast_to(lang, (batch, num_frames, lang.shape[-1])),
                frames,
                mx.broadcast_to(spkr, (batch, num_frames, spkr.shape[-1])),
            ],
            axis=-1,
        )
        kept = (input_ids != self.pad_token_id).astype(mx.int32).sum(axis=1)
        kept = mx.clip(kept, 0, num_units - 1)
        frame_lengths = mx.take_along_axis(ends, kept[:, None], axis=1)[:, 0]
        return features, hifigan_output_lengths(self.config, frame_lengths)

    def waveform_windows(self, features: mx.array, spans: Sequence[Tuple[int, int]]) -> Iterator[mx.array]:
        """The HiFi-GAN over each frame span of ``features`` ``[B, T, C]`` in turn.

        Each window also reads :func:`receptive_field`'s context on both sides (less at the ends
        of the sequence, where one pass sees zero padding too) and keeps its own samples, so the
        pieces ``[B, n] float32``, concatenated, equal ``hifi_gan(features)``.  ``spans`` must
        cover ``0 .. T`` in order (:func:`window_spans`).  Pieces are lazy: evaluate each one.
        """
        num_frames = features.shape[1]
        hop = math.prod(self.config.upsample_rates)  # samples per frame
        left, right = receptive_field(self.config)
        total = hifigan_output_lengths(self.config, num_frames)
        for start, end in spans:
            lo, hi = max(start - left, 0), min(end + right, num_frames)
            # the pass over frames lo..hi puts frame lo's first sample at 0
            keep_end = end * hop if end < num_frames else total
            yield self.hifi_gan(features[:, lo:hi])[:, (start - lo) * hop : keep_end - lo * hop].astype(mx.float32)


# the vocoder's tensors need nothing but the conv layout changes and weight-norm folding
sanitize = sanitize_convs
