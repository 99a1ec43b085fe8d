"""Split long recordings into <= 15 s pieces at pauses, before translation.

SeamlessM4T-v2 is trained on utterance-length audio.  On minutes of audio its output degrades
(dropped sentences, loops) and the speech encoder's attention grows quadratically in memory, so
seamless_communication's maintainers recommend feeding segments of at most ~15 s.  This module
finds those segments with a light energy-based pause detector:

* frame RMS in dB over 30 ms frames (10 ms hop), smoothed with a ~150 ms moving average so a
  single quiet frame inside a word does not count as a pause;
* from the current start, the next cut goes at the quietest frame inside the allowed window
  ``[start + min_segment_s, start + max_segment_s]`` (the middle of the quietest stretch when it
  is flat, e.g. digital silence), with a mild preference (up to 6 dB) for later pauses so that
  segments stay long enough to carry context;
* if nothing in that window is clearly quieter than speech (``PAUSE_DB`` = 20 dB below the loud
  level of the recording, its 99th-percentile frame energy), the cut is a hard one at
  ``start + max_segment_s``.

Why not a neural VAD (silero, pyannote, webrtcvad): they would pull torch/onnx or native code into
an MLX package for a job where the only requirement is "do not cut inside a word, keep pieces
short"; this needs numpy only and runs in milliseconds per hour of audio.  The trade-off: it does
not tell speech from loud background noise (music, crowds), in which case it degrades to cuts at
the quietest moments or hard cuts every ``max_segment_s``.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

FRAME_S = 0.030
HOP_S = 0.010
SMOOTH_FRAMES = 15  # 150 ms moving average of the frame energy
PAUSE_DB = 20.0  # a pause is at least this many dB below the recording's loud level
# The loud (speech) level is this percentile of the smoothed frame dB.  A high percentile keeps
# recordings that are mostly silence (speech in < 10 % of the frames: voicemail, sparse meetings)
# from taking the silence as the "loud" level, which would make every cut a hard one, often
# inside speech.  Overestimating it is benign: cuts still go to the quietest frame.
LOUD_PERCENTILE = 99.0
FLOOR_DB = -100.0
LATE_BONUS_DB = 6.0


def frame_db(audio: np.ndarray, sr: int = 16000) -> Tuple[np.ndarray, int]:
    """Smoothed frame energy in dB (one value per ``HOP_S``) and the hop in samples."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    hop = max(1, int(round(HOP_S * sr)))
    frame = max(hop, int(round(FRAME_S * sr)))
    n_frames = max(1, 1 + (len(x) - frame) // hop) if len(x) >= frame else 1
    sq = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    starts = np.arange(n_frames) * hop
    ends = np.minimum(starts + frame, len(x))
    energy = (sq[ends] - sq[starts]) / np.maximum(ends - starts, 1)
    k = min(SMOOTH_FRAMES, n_frames)
    if k > 1:
        kernel = np.ones(k) / k
        energy = np.convolve(np.pad(energy, (k // 2, k - 1 - k // 2), mode="edge"), kernel, mode="valid")
    db = 10.0 * np.log10(np.maximum(energy, 10 ** (FLOOR_DB / 10)))
    return db, hop


def split_on_pauses(
    audio: np.ndarray,
    sr: int = 16000,
    max_segment_s: float = 15.0,
    min_segment_s: float = 2.0,
    long_s: float = 20.0,
) -> List[Tuple[int, int]]:
    """``[(start, end), ...]`` sample ranges that cover ``audio`` exactly, in order, without overlap.

    Audio of at most ``long_s`` seconds is one segment.  Longer audio is cut at pauses so that
    every segment is at most ``max_segment_s`` long (and, except possibly the last, at least
    ``min_segment_s``).
    """
    x = np.asarray(audio).reshape(-1)
    n = len(x)
    if n == 0:
        return []
    if max_segment_s <= 0:
        raise ValueError(f"max_segment_s must be positive, got {max_segment_s}")
    if n <= long_s * sr:
        return [(0, n)]
    max_len = max(1, int(max_segment_s * sr))
    min_len = min(max(0, int(min_segment_s * sr)), max_len)
    db, hop = frame_db(x, sr)
    centre = max(hop, int(round(FRAME_S * sr))) // 2  # frame i is centred on i * hop + centre
    loud = float(np.percentile(db, LOUD_PERCENTILE))
    threshold = loud - PAUSE_DB

    segments: List[Tuple[int, int]] = []
    start = 0
    while n - start > max_len:
        lo = start + min_len
        hi = start + max_len
        if n - hi < min_len:  # leave a tail of at least min_len when possible
            hi = max(lo, n - min_len)
        # frames whose centre lies inside [lo, hi]
        f_lo = int(np.ceil((lo - centre) / hop))
        f_hi = int(np.floor((hi - centre) / hop))
        f_lo, f_hi = max(f_lo, 0), min(f_hi, len(db) - 1)
        cut = hi
        if f_hi >= f_lo:
            window = db[f_lo : f_hi + 1]
            # quietest frame, with up to LATE_BONUS_DB of preference for later cuts (longer segments
            # give the model more context; equal silences resolve to the last one)
            score = window - LATE_BONUS_DB * np.linspace(0.0, 1.0, len(window))
            m = int(np.argmin(score))
            if window[m] < threshold:
                # the middle of the flat quietest stretch around m (within 1 dB)
                a = b = m
                while a > 0 and window[a - 1] <= window[m] + 1.0:
                    a -= 1
                while b < len(window) - 1 and window[b + 1] <= window[m] + 1.0:
                    b += 1
                cut = (f_lo + (a + b) // 2) * hop + centre
                cut = min(max(cut, lo), hi)
        cut = max(cut, start + 1)
        segments.append((start, cut))
        start = cut
    segments.append((start, n))
    return segments


__all__ = ["split_on_pauses", "frame_db"]
