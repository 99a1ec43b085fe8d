"""Split long inputs before translation: recordings at pauses, text at sentence boundaries.

Text: :func:`split_sentences` (see its docstring).  Audio:

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

import re
import unicodedata
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
MIN_TAIL_S = 0.25  # a last piece shorter than this joins the one before (never a 10 ms piece to translate)


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
    ``min_segment_s``); a tail shorter than :data:`MIN_TAIL_S` joins the segment before it.
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
    if segments and n - start < MIN_TAIL_S * sr:  # a sliver the speech encoder may not even take
        segments[-1] = (segments[-1][0], n)
    else:
        segments.append((start, n))
    return segments


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------

# Closing quotes and brackets that belong to the sentence they end.
_CLOSERS = "\"'\u2019\u201d\u00bb\u203a)]}\u300d\u300f\uff09\u3011\u3009\u300b\uff02\uff07"
# Terminators that end a sentence only before whitespace (or the end): Latin . ! ? and the
# ellipsis, Arabic ؟, Urdu ۔, Devanagari danda । and double danda ॥, Armenian ։, Ethiopic ።,
# Burmese ။, Greek question mark ;.  CJK full stops need no space after them.
_SPACED_END = ".!?\u2026\u203c\u2047\u2048\u2049\u061f\u06d4\u0964\u0965\u0589\u1362\u104b\u037e"
_CJK_END = "\u3002\uff01\uff1f\uff61\uff0e"
_SENTENCE_END = re.compile(
    f"(?:[{re.escape(_SPACED_END)}]+[{re.escape(_CLOSERS)}]*(?=\\s|$)|[{_CJK_END}]+[{re.escape(_CLOSERS)}]*)"
)
_PARAGRAPH = re.compile(r"\n\s*\n")
# Clause marks where an over-long sentence is cut before falling back to any space.
_CLAUSE_END = re.compile("[,;:\u060c\u061b\u3001\uff0c\uff1b\uff1a\u2014\u2013][" + re.escape(_CLOSERS) + "]*\\s*")
_WHITESPACE = re.compile(r"\s+")
# Words that end in a full stop without ending the sentence (lower case; single letters, as in
# initials, are handled separately).
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st sr jr vs etc e.g i.e cf fig no nr vol pp approx dept est inc ltd co corp "
    "jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
DEFAULT_MAX_CHARS = 400


def _ends_sentence(text: str, start: int, end: int) -> bool:
    """Whether the terminator ``text[start:end]`` ends a sentence: not before a lower-case word
    (``"Really?" she said``, ``wait… then``), nor as a single full stop after an initial
    (``J. Smith``) or a common abbreviation (``Dr.``, ``e.g.``)."""
    following = _WHITESPACE.match(text, end)
    nxt = following.end() if following else end
    if text[nxt : nxt + 1].islower():
        return False
    if text[start:end] != ".":
        return True
    word_start = start
    while word_start > 0 and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:start].lstrip("(\"'\u201c\u2018\u00ab").lower()
    return not ((len(word) == 1 and word.isalpha()) or word in ABBREVIATIONS)


def _cut_long(sentence: str, max_chars: int) -> List[str]:
    """Cut a sentence longer than ``max_chars`` into pieces of at most ``max_chars``: after the
    last clause mark (comma, semicolon, ...) in the second half of the window, else at the last
    whitespace, else (a script written without spaces, or one giant word) after ``max_chars``
    characters, not in front of a combining mark (unless marks fill half the window)."""
    pieces: List[str] = []
    start, n = 0, len(sentence)
    while n - start > max_chars:
        stop = start + max_chars
        cut = 0
        for m in _CLAUSE_END.finditer(sentence, start + max_chars // 2, stop + 1):
            if m.end() <= stop:
                cut = m.end()
        if not cut:
            space = max(sentence.rfind(c, start + 1, stop + 1) for c in " \t\n\u3000")
            cut = space + 1 if space > start else stop
            back = cut
            while start + 1 < back < n and unicodedata.combining(sentence[back]):
                back -= 1
            # keep a mark with its base, unless a run of marks fills the window (then any cut will do:
            # walking back to start + 1 would make one piece, one generate call, per character)
            cut = back if back > start + max_chars // 2 else cut
        piece = sentence[start:cut].strip()
        if piece:
            pieces.append(piece)
        start = cut
        while start < n and sentence[start].isspace():
            start += 1
    if sentence[start:].strip():
        pieces.append(sentence[start:].strip())
    return pieces


def split_sentences(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> List[str]:
    """Split ``text`` into its sentences, each at most ``max_chars`` characters, in order.

    SeamlessM4T-v2 was trained on sentences: its output degrades on paragraphs, and memory grows
    with the square of the input length, so long text is translated sentence by sentence.

    A sentence ends at ``. ! ? …`` (and Arabic ``؟``, Urdu ``۔``, Devanagari ``। ॥``, Armenian,
    Ethiopic and Burmese full stops) followed by whitespace, or at a CJK ``。！？`` anywhere;
    closing quotes and brackets stay with their sentence.  A blank line always ends one.  A
    single ``.`` after an initial (``J. Smith``) or a common abbreviation (``Dr.``, ``e.g.``), or
    before a lower-case word, does not.  A sentence still longer than ``max_chars`` is cut after a
    clause mark (``, ; :`` and their CJK/Arabic forms), else at whitespace, else every
    ``max_chars`` characters.

    The pieces are stripped of surrounding whitespace and never empty; whitespace between
    sentences (line breaks included) is not kept.  Text without any boundary comes back as one
    piece when it fits.  Runs in time linear in ``len(text)``.

    Args:
        text: any text, in any script.
        max_chars: the longest piece returned, >= 1.

    Returns:
        A list of strings; ``[]`` for empty or whitespace-only text.
    """
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise ValueError(f"max_chars must be a whole number >= 1, got {max_chars!r}")
    pieces: List[str] = []
    for paragraph in _PARAGRAPH.split(text):
        start = 0
        for m in _SENTENCE_END.finditer(paragraph):
            if not _ends_sentence(paragraph, m.start(), m.end()):
                continue
            pieces.extend(_cut_long(paragraph[start : m.end()].strip(), max_chars))
            start = m.end()
        pieces.extend(_cut_long(paragraph[start:].strip(), max_chars))
    return [p for p in pieces if p]


__all__ = ["split_on_pauses", "frame_db", "split_sentences"]
