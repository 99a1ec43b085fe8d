"""Pause-based segmentation of long recordings (numpy only)."""

import unicodedata

import numpy as np
import pytest

from seamless_mlx.segment import split_on_pauses

SR = 16000


def bursts(total_s=60.0, seed=0, gap=(0.5, 1.0), burst=(1.5, 6.0), noise_floor=0.0):
    """Noise bursts separated by silences; returns (audio, [(gap_start, gap_end), ...])."""
    rng = np.random.default_rng(seed)
    parts, gaps, pos = [], [], 0
    while pos < total_s * SR:
        n = int(rng.uniform(*burst) * SR)
        parts.append(0.3 * rng.standard_normal(n))
        pos += n
        g = int(rng.uniform(*gap) * SR)
        parts.append(noise_floor * rng.standard_normal(g))
        gaps.append((pos, pos + g))
        pos += g
    return np.concatenate(parts).astype(np.float32), gaps


def check_cover(segs, n):
    assert segs[0][0] == 0 and segs[-1][1] == n
    for (a, b), (c, d) in zip(segs, segs[1:]):
        assert b == c
    assert all(b > a for a, b in segs)


@pytest.mark.parametrize("floor", [0.0, 0.003])
def test_cuts_land_in_silences(floor):
    audio, gaps = bursts(noise_floor=floor)
    segs = split_on_pauses(audio, SR)
    check_cover(segs, len(audio))
    assert len(segs) >= 4
    for _, cut in segs[:-1]:
        assert any(a <= cut <= b for a, b in gaps), f"cut at {cut / SR:.2f}s is not in a pause"
    for a, b in segs:
        assert b - a <= 15 * SR


def test_max_length_and_coverage_for_other_limits():
    audio, _ = bursts(total_s=120, seed=3)
    for max_s, min_s in [(15, 2), (8, 1), (5, 0.5)]:
        segs = split_on_pauses(audio, SR, max_segment_s=max_s, min_segment_s=min_s)
        check_cover(segs, len(audio))
        assert max(b - a for a, b in segs) <= max_s * SR
        assert all(b - a >= min_s * SR for a, b in segs[:-1])


def test_no_pause_gives_hard_cuts_at_max():
    rng = np.random.default_rng(1)
    audio = (0.3 * rng.standard_normal(50 * SR)).astype(np.float32)
    segs = split_on_pauses(audio, SR)
    check_cover(segs, len(audio))
    assert [b - a for a, b in segs[:-1]] == [15 * SR] * (len(segs) - 1)
    assert len(segs) == 4


def test_constant_tone_has_no_pause():
    t = np.arange(40 * SR) / SR
    audio = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    segs = split_on_pauses(audio, SR)
    check_cover(segs, len(audio))
    assert max(b - a for a, b in segs) <= 15 * SR


def test_short_audio_is_one_segment():
    audio, _ = bursts(total_s=18)
    audio = audio[: 19 * SR]
    assert split_on_pauses(audio, SR) == [(0, len(audio))]
    assert split_on_pauses(np.zeros(10, np.float32), SR) == [(0, 10)]
    assert split_on_pauses(np.zeros(0, np.float32), SR) == []


def test_all_silence_is_covered():
    audio = np.zeros(45 * SR, np.float32)
    segs = split_on_pauses(audio, SR)
    check_cover(segs, len(audio))
    assert max(b - a for a, b in segs) <= 15 * SR


def test_fast_on_an_hour():
    import time

    audio = np.random.default_rng(0).standard_normal(3600 * SR).astype(np.float32) * 0.1
    t0 = time.time()
    segs = split_on_pauses(audio, SR)
    assert time.time() - t0 < 20
    check_cover(segs, len(audio))


def test_mostly_silent_recording_still_cuts_in_silence():
    """Speech in ~5 % of the frames (voicemail-like): the loud level must come from the speech."""
    rng = np.random.default_rng(7)
    parts, bursts, pos = [], [], 0
    while pos < 300 * SR:
        g = int(rng.uniform(25, 40) * SR)
        parts.append(np.zeros(g))
        pos += g
        n = int(rng.uniform(1.5, 3.0) * SR)
        parts.append(0.3 * rng.standard_normal(n))
        bursts.append((pos, pos + n))
        pos += n
    audio = np.concatenate(parts).astype(np.float32)
    segs = split_on_pauses(audio, SR)
    check_cover(segs, len(audio))
    assert max(b - a for a, b in segs) <= 15 * SR
    for _, cut in segs[:-1]:
        assert not any(a < cut < b for a, b in bursts), f"cut at {cut / SR:.2f}s is inside speech"


# ------------------------------------------------------------------------------ text sentences

from seamless_mlx.segment import split_sentences  # noqa: E402


@pytest.mark.parametrize(
    "text,pieces",
    [
        ("Hello there. How are you? Fine!", ["Hello there.", "How are you?", "Fine!"]),
        ("今天天气很好。我们去公园吧！你觉得呢？好的", ["今天天气很好。", "我们去公园吧！", "你觉得呢？", "好的"]),
        ("मैं ठीक हूँ। आप कैसे हैं? धन्यवाद।", ["मैं ठीक हूँ।", "आप कैसे हैं?", "धन्यवाद।"]),
        ("كيف حالك؟ أنا بخير.", ["كيف حالك؟", "أنا بخير."]),
        ('Dr. Smith met J. R. Tolkien, e.g. in 1950. "Really?" she asked. Yes.',
         ["Dr. Smith met J. R. Tolkien, e.g. in 1950.", '"Really?" she asked.', "Yes."]),
        ("Pi is 3.14 today.\n\nA new paragraph\nwrapped", ["Pi is 3.14 today.", "A new paragraph\nwrapped"]),
        ("  \n ", []),
    ],
    ids=["latin", "cjk", "devanagari", "arabic", "abbreviations-quotes", "paragraphs"] + ["blank"],
)
def test_split_sentences(text, pieces):
    assert split_sentences(text) == pieces


@pytest.mark.parametrize(
    "text,max_chars,pieces",
    [
        ("alpha beta, gamma delta epsilon", 20, ["alpha beta,", "gamma delta epsilon"]),
        ("a b c d e f g h", 5, ["a b c", "d e f", "g h"]),
        ("x" * 25, 10, ["x" * 10, "x" * 10, "x" * 5]),
    ],
    ids=["clause", "space", "no-space"],
)
def test_long_sentence_is_cut_at_clause_then_space_then_characters(text, max_chars, pieces):
    assert split_sentences(text, max_chars=max_chars) == pieces


def test_split_sentences_bounds_every_piece_and_keeps_every_character():
    text = ("Ceci est une phrase assez longue, avec des virgules; et encore des mots. " * 50) + "字" * 1000
    pieces = split_sentences(text, max_chars=100)
    assert max(map(len, pieces)) <= 100
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


def test_a_sliver_at_the_end_joins_the_piece_before_it():
    n = int(21.04 * SR)  # cut every second, 40 ms would be left on its own
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32) * 0.1
    segments = split_on_pauses(x, SR, max_segment_s=1.0)
    assert segments[0][0] == 0 and segments[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(segments, segments[1:]))
    assert min(b - a for a, b in segments) >= 0.25 * SR


def test_a_run_of_combining_marks_is_cut_into_full_pieces_not_one_per_character():
    pieces = split_sentences("\u0301" * 4000)  # 4000 marks without a base: a client's 10 KB request
    assert "".join(pieces) == "\u0301" * 4000 and len(pieces) == 10 and max(map(len, pieces)) <= 400
    text = "e\u0301" * 300  # a mark stays with its base when there is one
    assert all(not unicodedata.combining(p[0]) for p in split_sentences(text))
