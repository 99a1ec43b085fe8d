"""Documents, subtitles and folders through the ``seamless-mlx`` command, as a user runs them.

Layout checks are exact (bytes of every non-text line, cue numbering and timings parsed back with
the ``srt`` package); translated text is compared with the Python API on the same pieces.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import srt

from seamless_mlx.api import transcribe, translate
from seamless_mlx.documents import Piece, parse_subtitles, split_sentences, translate_subtitles
from seamless_mlx.fileio import write_text_atomic as write_atomic

SR = 16000
FAST = ["--max-new-tokens", "5"]

SRT = (
    "1\r\n00:00:01,000 --> 00:00:02,500\r\nHello world,\r\nhow are you today?\r\n\r\n"
    "2\r\n00:00:03,250 --> 00:00:05,000\r\nGoodbye.\r\n\r\n"
    "3\r\n01:02:03,004 --> 01:02:04,005\r\nThe quick brown fox jumps over the lazy dog.\r\n"
)
VTT = (
    "WEBVTT - a film\n\nNOTE keep this note\n\nSTYLE\n::cue { color: yellow }\n\n"
    "intro\n00:01.000 --> 00:02.000 align:start position:10%\nHello there.\n\n"
    "00:00:03.000 --> 00:00:04.500\nGood night,\nsleep well.\n"
)
DOC = (
    "Hello world. How are you today?\n"
    "\n"
    "  An indented paragraph, with two sentences! It goes on.  \n"
    "The quick brown fox jumps over the lazy dog.\n"
    "\n"
    "\n"
    "Last line.\n"
)


@pytest.fixture(scope="module")
def mlx_model(tiny_checkpoint, tmp_path_factory):
    from seamless_mlx.convert import convert

    return str(convert(tiny_checkpoint, tmp_path_factory.mktemp("conv") / "mlx"))


@pytest.fixture(scope="module")
def cli(mlx_model, tmp_path_factory):
    env = dict(os.environ, SEAMLESS_MLX_CACHE=str(tmp_path_factory.mktemp("cache")), HF_HUB_OFFLINE="1",
               PYTHONIOENCODING="utf-8")
    cwd = tmp_path_factory.mktemp("work")

    def argv(*args):
        return [sys.executable, "-m", "seamless_mlx.cli", *map(str, args), "--model", mlx_model, *FAST]

    def run(*args):
        return subprocess.run(argv(*args), env=env, cwd=cwd, capture_output=True, text=True, timeout=300)

    run.cwd, run.argv, run.env = cwd, argv, env
    return run


def _write_clips(folder, n, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(n):
        t = np.arange(int(rng.uniform(0.5, 1.5) * SR)) / SR
        x = 0.2 * np.sin(2 * np.pi * rng.uniform(150, 600) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(folder / f"clip{k:02d}.wav", x.astype(np.float32), SR)
    return sorted(folder.glob("*.wav"))


def test_write_atomic_never_leaves_a_partial_output(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("the previous output", encoding="utf-8")
    with pytest.raises(UnicodeEncodeError):  # fails half-way through writing
        write_atomic(target, "a new output " * 1000 + "\ud800")
    assert target.read_text(encoding="utf-8") == "the previous output"
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind
    write_atomic(target, "done\n")
    assert target.read_text(encoding="utf-8") == "done\n" and list(tmp_path.iterdir()) == [target]


def test_split_sentences_keeps_every_word():
    line = "Hello world. How are you?  Fine!\u00a0Thanks… «Oui.» 你好。再见！"
    parts = split_sentences(line)
    assert parts == ["Hello world.", "How are you?", "Fine!", "Thanks…", "«Oui.»", "你好。", "再见！"]
    assert split_sentences("No end mark") == ["No end mark"] and split_sentences("   ") == []


LF_SRT = SRT.replace("\r\n", "\n")


@pytest.mark.parametrize("content,cues", [
    (SRT, 3), (VTT, 2), ("\ufeff" + LF_SRT, 3),
    (LF_SRT.replace("Hello world,\n", "Hello world,\r\n"), 3),  # one stray CRLF in an LF file
    (LF_SRT[:-1] + "\r\n", 3),  # CRLF on the last line only
    (SRT.replace("Goodbye.\r\n", "Goodbye.\n"), 3),  # one stray LF in a CRLF file
    (LF_SRT.replace("\n", "\r"), 3),  # old Mac: CR only
    (LF_SRT.replace("\n\n", "\n"), 3),  # no blank lines between cues
    (LF_SRT.replace("\n\n2\n", "\n"), 3),  # nor a cue number
])
def test_subtitle_parser_round_trips_byte_for_byte(content, cues):
    sub = parse_subtitles(content)
    assert sub.render() == content
    assert len(sub.cues) == cues
    texts = [f"text of cue {i}" for i in range(cues)]
    out = sub.render(texts)
    assert out.count("-->") == cues
    timing = [ln for ln in content.replace("\r", "\n").split("\n") if "-->" in ln]
    assert [ln for ln in out.replace("\r", "\n").split("\n") if "-->" in ln] == timing
    assert [c.text(parse_subtitles(out).lines) for c in parse_subtitles(out).cues] == texts
    assert ("\r\n" in out) == ("\r\n" in content) and ("\r" in out) == ("\r" in content)


def test_srt_translation_keeps_cues_numbering_and_timings(cli, mlx_model):
    (cli.cwd / "film.srt").write_bytes(SRT.encode())
    r = cli("translate", "film.srt", "--src-lang", "eng", "--tgt-lang", "spa", "-o", "film.spa.srt")
    assert r.returncode == 0, r.stderr
    out = (cli.cwd / "film.spa.srt").read_bytes().decode()
    src_cues, out_cues = list(srt.parse(SRT)), list(srt.parse(out))
    assert [(c.index, c.start, c.end) for c in out_cues] == [(c.index, c.start, c.end) for c in src_cues]
    src_lines, out_lines = SRT.split("\r\n"), out.split("\r\n")
    for a, b in zip(src_lines, out_lines):  # every number and timing line byte for byte, CRLF kept
        if a.isdigit() or "-->" in a or not a:
            assert a == b
    expected = translate(["Hello world, how are you today?", "Goodbye.", "The quick brown fox jumps over the lazy dog."],
                         tgt_lang="spa", src_lang="eng", model=mlx_model, max_new_tokens=5)
    assert [" ".join(c.content.split()) for c in out_cues] == [" ".join(e.text.split()) for e in expected]


def test_vtt_translation_keeps_header_notes_settings_and_timings(cli):
    (cli.cwd / "film.vtt").write_text(VTT, encoding="utf-8")
    r = cli("translate", "film.vtt", "--src-lang", "eng", "--tgt-lang", "fra", "-o", "film.fra.vtt")
    assert r.returncode == 0, r.stderr
    out = (cli.cwd / "film.fra.vtt").read_text(encoding="utf-8")
    src, got = parse_subtitles(VTT), parse_subtitles(out)
    assert len(got.cues) == len(src.cues) == 2
    kept = lambda sub: [ln for i, ln in enumerate(sub.lines)  # noqa: E731
                        if not any(c.text_start <= i < c.text_end for c in sub.cues)]
    assert kept(got) == kept(src)


MARKED_SRT = (
    "1\n00:00:01,000 --> 00:00:02,000\n<i>Hello there,</i>\n<i>how are you?</i>\n\n"
    "2\n00:00:03,000 --> 00:00:04,000\n- Where are you going?\n-Home.\n\n"
    "3\n00:00:05,000 --> 00:00:06,000\n{\\an8}It is five <b>o'clock</b>.\n\n"
    "4\n00:00:07,000 --> 00:00:08,000\n<i></i>\n"
)


def test_subtitle_markup_is_kept_not_translated_and_dialogue_keeps_a_line_per_speaker(mlx_model):
    out = translate_subtitles(MARKED_SRT, "fra", "eng", model=mlx_model, max_new_tokens=5)
    said = ["Hello there, how are you?", "Where are you going?", "Home.", "It is five o'clock."]
    expected = [r.text for r in translate(said, tgt_lang="fra", src_lang="eng", model=mlx_model, max_new_tokens=5)]
    sub = parse_subtitles(out)
    cue = lambda i: sub.lines[sub.cues[i].text_start:sub.cues[i].text_end]  # noqa: E731
    assert len(sub.cues) == 4 and out.count("-->") == 4
    first = cue(0)
    assert len(first) <= 2 and first[0].startswith("<i>") and first[-1].endswith("</i>")
    assert " ".join(" ".join(first)[3:-4].split()) == " ".join(expected[0].split())
    assert cue(1) == ["- " + expected[1], "-" + expected[2]]  # one line per speaker, dashes as written
    assert cue(2) == ["{\\an8}" + expected[3]]
    assert cue(3) == ["<i></i>"]  # nothing to say: kept


def test_webvtt_cue_text_is_read_unescaped_and_written_escaped():
    piece = Piece.of("<v Roger>Salt &amp; pepper &lt;3", vtt=True)
    assert (piece.prefix, piece.text, piece.suffix) == ("<v Roger>", "Salt & pepper <3", "")
    assert piece.render("Sel & poivre <3", vtt=True) == "<v Roger>Sel &amp; poivre &lt;3"
    srt_piece = Piece.of("Salt &amp; pepper", vtt=False)  # SRT has no entities: text as written
    assert srt_piece.text == "Salt &amp; pepper" and srt_piece.render("a & b", vtt=False) == "a & b"


def test_txt_document_keeps_paragraphs_blank_lines_and_indentation(cli, mlx_model):
    (cli.cwd / "doc.txt").write_text(DOC, encoding="utf-8")
    r = cli("translate", "doc.txt", "--src-lang", "eng", "--tgt-lang", "fra", "-o", "doc.fra.txt")
    assert r.returncode == 0, r.stderr
    src, out = DOC.split("\n"), (cli.cwd / "doc.fra.txt").read_text(encoding="utf-8").split("\n")
    assert len(out) == len(src)
    assert [i for i, s in enumerate(out) if not s] == [i for i, s in enumerate(src) if not s]
    assert out[2].startswith("  ") and out[2].endswith("  ") and not out[2].startswith("   ")
    sentences = split_sentences(src[2])
    assert len(sentences) == 2
    one = [translate(s, tgt_lang="fra", src_lang="eng", model=mlx_model, max_new_tokens=5).text for s in sentences]
    assert out[2].strip() == " ".join(one)


WRAPPED = (
    "A heading\n"
    "\n"
    "It was a bright cold day in April, and the clocks were striking\n"
    "thirteen. Winston Smith slipped quickly through the glass doors of\n"
    "the building, though not quickly enough to keep out the dust.\n"
    "a) a list item that is long enough to look like a wrapped line of text\n"
    "b) another item\n"
    "\n"
    "Last line.\n"
)


def test_txt_sentence_hard_wrapped_over_lines_is_translated_whole_and_spread_back(mlx_model):
    from seamless_mlx.documents import translate_document

    kw = dict(model=mlx_model, max_new_tokens=8)
    out = translate_document(WRAPPED, "eng", "fra", **kw).split("\n")
    src = WRAPPED.split("\n")
    assert len(out) == len(src) and [i for i, s in enumerate(out) if not s] == [i for i, s in enumerate(src) if not s]
    paragraph = " ".join(src[2:5])
    sentences = split_sentences(paragraph)
    assert len(sentences) == 2  # the first sentence spans two lines, the second two more
    whole = " ".join(r.text for r in translate(sentences, tgt_lang="fra", src_lang="eng", **kw))
    assert all(out[2:5]) and "".join("".join(out[2:5]).split()) == "".join(whole.split())  # may be cut in words
    alone = translate([src[0], src[5], src[6], src[8]], tgt_lang="fra", src_lang="eng", **kw)  # lines of their own
    assert [out[0], out[5], out[6], out[8]] == [r.text for r in alone]
    from seamless_mlx.documents import _blocks

    assert _blocks(["x" * 2000, "", *src[2:5]]) == [[0], [2, 3, 4]]  # a wide paragraph elsewhere changes nothing


def test_text_that_names_a_file_is_translated_as_text_never_read(cli, mlx_model):
    """A document line, a cue, standard input and --text are words, even when they name a file."""
    _write_clips(cli.cwd / "here", 1)
    clip = "here/clip00.wav"
    assert (cli.cwd / clip).is_file()
    words = [r.text for r in translate([clip, "Please play intro.mp3"], tgt_lang="fra", src_lang="eng",
                                       model=mlx_model, max_new_tokens=5, as_text=True)]
    (cli.cwd / "names.txt").write_text(f"{clip}\nPlease play intro.mp3\n", encoding="utf-8")
    r = cli("translate", "names.txt", "--src-lang", "eng", "--tgt-lang", "fra")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == words
    (cli.cwd / "names.srt").write_text(f"1\n00:00:01,000 --> 00:00:02,000\n{clip}\n", encoding="utf-8")
    r = cli("translate", "names.srt", "--src-lang", "eng", "--tgt-lang", "fra")
    assert r.returncode == 0 and r.stdout.split("\n")[2] == words[0], r.stderr
    r = subprocess.run(cli.argv("translate", "-", "--src-lang", "eng", "--tgt-lang", "fra"), input=clip, env=cli.env,
                       cwd=cli.cwd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == words[0], r.stderr
    r = cli("translate", "--text", "Please play intro.mp3", "--src-lang", "eng", "--tgt-lang", "fra")
    assert r.returncode == 0 and r.stdout.strip() == words[1], r.stderr


def test_folder_reports_a_corrupt_file_and_does_the_rest(cli):
    folder = cli.cwd / "mixed"
    _write_clips(folder, 3)
    (folder / "broken.wav").write_bytes(b"RIFF not really a wave file")
    (folder / "notes.txt").write_text("Hello world.\n\nGoodbye.\n", encoding="utf-8")
    r = cli("translate", folder, "--src-lang", "eng", "--tgt-lang", "fra", "-o", cli.cwd / "mixed_out")
    assert r.returncode == 2
    summary = r.stderr.strip().splitlines()[-1]
    assert summary.startswith("4 done, 0 skipped (already there), 1 failed: broken.wav: ") and "Traceback" not in r.stderr
    assert sorted(p.name for p in (cli.cwd / "mixed_out").iterdir()) == [
        "clip00.txt", "clip01.txt", "clip02.txt", "notes.txt"]
    notes = (cli.cwd / "mixed_out" / "notes.txt").read_text(encoding="utf-8").split("\n")
    assert len(notes) == 4 and notes[0] and notes[1] == "" and notes[2] and notes[3] == ""


def test_folder_run_killed_midway_resumes_without_redoing_or_half_written_outputs(cli, mlx_model):
    clips = _write_clips(cli.cwd / "interviews", 40, seed=1)
    out = cli.cwd / "transcripts"
    argv = cli.argv("transcribe", cli.cwd / "interviews", "--lang", "eng", "--format", "srt", "-o", out,
                    "--batch-size", "1")
    proc = subprocess.Popen(argv, env=cli.env, cwd=cli.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if out.is_dir() and any(p.suffix == ".srt" and not p.name.startswith(".") for p in out.iterdir()):
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.iterdir() if p.suffix == ".srt"}
    assert 0 < len(before) < len(clips)

    r = subprocess.run(argv, env=cli.env, cwd=cli.cwd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"{len(clips) - len(before)} done, {len(before)} skipped (already there), 0 failed")
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.iterdir()}
    assert sorted(after) == sorted(f"{c.stem}.srt" for c in clips)  # and no temporary files left
    assert all(after[name] == stat for name, stat in before.items())  # finished outputs not redone
    expected = transcribe([str(c) for c in clips], lang="eng", model=mlx_model, max_new_tokens=5)
    for c, e in zip(clips, expected):  # every output whole: what a single run writes
        assert (out / f"{c.stem}.srt").read_text(encoding="utf-8") == e.to_srt()


def test_document_errors_are_one_line_before_any_work(cli):
    (cli.cwd / "doc2.txt").write_text("Hello.\n", encoding="utf-8")
    r = cli("translate", "doc2.txt", "--tgt-lang", "fra", "-o", "doc2.fra.txt")
    assert r.returncode == 2 and "--src-lang is required" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli("translate", "doc2.txt", "--src-lang", "eng", "--tgt-lang", "fra", "-o", "doc2.fra.srt")
    assert r.returncode == 2 and "name the output doc2.fra.txt" in r.stderr
    r = cli("translate", "doc2.txt", "--src-lang", "eng", "--tgt-lang", "fra", "-o", "doc2.txt")
    assert r.returncode == 2 and "overwrite" in r.stderr
    assert (cli.cwd / "doc2.txt").read_text(encoding="utf-8") == "Hello.\n"
    r = cli("translate", cli.cwd, "--tgt-lang", "fra")
    assert r.returncode == 2 and "-o" in r.stderr


def test_document_keeps_an_existing_output_unless_told_to_replace_it(cli):
    (cli.cwd / "keep.srt").write_bytes(SRT.encode())
    (cli.cwd / "keep.spa.srt").write_text("the user's own file\n", encoding="utf-8")
    r = cli("translate", "keep.srt", "--src-lang", "eng", "--tgt-lang", "spa", "-o", "keep.spa.srt")
    assert r.returncode == 2 and "already exists" in r.stderr and "-y" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert (cli.cwd / "keep.spa.srt").read_text(encoding="utf-8") == "the user's own file\n"
    r = cli("translate", "keep.srt", "--src-lang", "eng", "--tgt-lang", "spa", "-o", "keep.spa.srt", "-y")
    assert r.returncode == 0, r.stderr
    assert len(list(srt.parse((cli.cwd / "keep.spa.srt").read_text(encoding="utf-8")))) == len(list(srt.parse(SRT)))
    (cli.cwd / "alias.srt").symlink_to("keep.srt")  # a link to the input is the input, -y or not
    r = cli("translate", "keep.srt", "--src-lang", "eng", "--tgt-lang", "spa", "-o", "alias.srt", "-y")
    assert r.returncode == 2 and (cli.cwd / "keep.srt").read_bytes() == SRT.encode()


def test_folder_run_checks_what_every_file_needs_once_before_any_work(cli, mlx_model):
    from seamless_mlx.documents import translate_folder

    folder = cli.cwd / "checked"
    _write_clips(folder, 2)
    (folder / "notes.txt").write_text("Hello.\n", encoding="utf-8")
    out = cli.cwd / "checked_out"
    for args, says in [
        (["--src-lang", "eng", "--tgt-lang", "xxx"], "tgt_lang='xxx' is not supported"),
        (["--tgt-lang", "fra"], "--src-lang is required"),
    ]:
        r = cli("translate", folder, *args, "-o", out)
        assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not out.exists()  # nothing made, not even the folder
    with pytest.raises(ValueError, match="max_new_tokens must be"):
        translate_folder(folder, out, "fra", "eng", model=mlx_model, max_new_tokens=100000, progress=False)
    assert not out.exists()
    r = cli("translate", folder, "--src-lang", "eng", "--tgt-lang", "fra", "-o", folder)
    assert r.returncode == 2 and "input folder" in r.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["clip00.wav", "clip01.wav", "notes.txt"]
    r = cli("transcribe", folder, "--lang", "eng", "-o", cli.cwd / "transcripts.srt")
    assert r.returncode == 2 and "-o " in r.stderr and not (cli.cwd / "transcripts.srt").exists()


def test_folder_run_reports_an_unwritable_output_and_redoes_all_with_y(cli):
    folder = cli.cwd / "named"
    folder.mkdir()
    long_name = "a" * 246 + ".txt"  # legal; its temporary file's name must fit too
    (folder / long_name).write_text("Hi.\n", encoding="utf-8")
    (folder / "b.txt").write_text("Bye.\n", encoding="utf-8")
    (folder / "c.txt").write_text("See you.\n", encoding="utf-8")
    out = cli.cwd / "named_out"
    r = cli("translate", folder, "--src-lang", "eng", "--tgt-lang", "fra", "-o", out, "--batch-size", "1")
    assert r.returncode == 0 and r.stderr.strip().splitlines()[-1] == "3 done, 0 skipped (already there), 0 failed"
    assert sorted(p.name for p in out.iterdir()) == sorted([long_name, "b.txt", "c.txt"])  # no temporary files
    before = {p.name: p.stat().st_ino for p in out.iterdir()}
    (out / "b.txt").unlink()
    (out / "b.txt").mkdir()  # b's output can no longer be written
    r = cli("translate", folder, "--src-lang", "eng", "--tgt-lang", "fra", "-o", out, "-y")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("2 done, 0 skipped (already there), 1 failed: b.txt: ")
    assert all((out / n).stat().st_ino != ino for n, ino in before.items() if n != "b.txt")  # made again


def test_txt_byte_order_mark_is_kept_and_not_translated(cli, mlx_model):
    (cli.cwd / "bom.txt").write_bytes("\ufeffHello there.\n".encode())
    r = cli("translate", "bom.txt", "--src-lang", "eng", "--tgt-lang", "fra", "-o", "bom.fra.txt")
    assert r.returncode == 0, r.stderr
    want = translate("Hello there.", tgt_lang="fra", src_lang="eng", model=mlx_model, max_new_tokens=5).text
    assert (cli.cwd / "bom.fra.txt").read_bytes().decode() == "\ufeff" + want + "\n"


def test_subtitles_piped_on_stdin_into_an_srt_output_are_translated_as_subtitles(cli, mlx_model):
    r = subprocess.run(cli.argv("translate", "-", "--src-lang", "eng", "--tgt-lang", "spa", "-o", "piped.spa.srt"),
                       input=SRT, env=cli.env, cwd=cli.cwd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    want = translate_subtitles(SRT.replace("\r\n", "\n"), "spa", "eng", model=mlx_model, max_new_tokens=5)
    assert (cli.cwd / "piped.spa.srt").read_text(encoding="utf-8") == want  # text-mode pipes carry LF


def test_old_mac_txt_keeps_its_lines_and_unspaced_translations_keep_a_cue_s_lines(mlx_model):
    from seamless_mlx.documents import _wrap, translate_document

    out = translate_document("One.\rTwo.\r\rThree.", "eng", "fra", model=mlx_model, max_new_tokens=3)
    assert "\n" not in out and len(out.split("\r")) == 4 and out.split("\r")[2] == ""
    text = "这是一个很长的中文句子没有空格真的很长"  # a cmn translation of a two-line cue
    assert _wrap(text, 2) == [text[:10], text[10:]]
    assert _wrap("Supercalifragilistic", 2) == ["Supercalifragilistic"]  # one short word stays whole


def test_recursive_folder_run_mirrors_subfolders_and_leaves_its_output_out(cli, mlx_model):
    root = cli.cwd / "archive"
    _write_clips(root / "2019", 1, seed=3)
    _write_clips(root / "2020" / "march", 1, seed=4)
    _write_clips(root / ".trash", 1, seed=5)  # hidden: not searched
    (root / "notes.txt").write_text("Hello.\n", encoding="utf-8")
    out = root / "translated"  # inside the input folder: left out of the search
    args = ("translate", root, "--src-lang", "eng", "--tgt-lang", "fra", "-o", out, "-r")
    r = cli(*args)
    assert r.returncode == 0 and r.stderr.strip().splitlines()[-1] == "3 done, 0 skipped (already there), 0 failed"
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert made == ["2019/clip00.txt", "2020/march/clip00.txt", "notes.txt"]
    want = translate(str(root / "2020" / "march" / "clip00.wav"), tgt_lang="fra", model=mlx_model, max_new_tokens=5)
    assert (out / "2020" / "march" / "clip00.txt").read_text(encoding="utf-8") == want.text + "\n"
    r = cli(*args)  # a second run finds its outputs, not new inputs
    assert r.returncode == 0 and r.stderr.strip().splitlines()[-1] == "0 done, 3 skipped (already there), 0 failed"
    r = cli(*args[:-1])  # without -r only the folder's own files
    assert r.returncode == 0 and r.stderr.strip().splitlines()[-1] == "0 done, 1 skipped (already there), 0 failed"
