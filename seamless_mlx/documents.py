"""Documents, subtitle files and folders: translated in batches, layout kept, safe to interrupt.

* A ``.txt`` document: each line is cut into sentences, all sentences are translated in padded
  batches (:func:`seamless_mlx.api.translate` on a list), and the lines are put back together;
  blank lines, indentation and trailing spaces are kept, so paragraphs stay paragraphs.
* A ``.srt``/``.vtt`` file: every cue's text is translated (its lines joined into one sentence,
  the translation wrapped back onto as many lines; a dialogue cue line by line; markup such as
  ``<i>`` or ``{\\an8}`` kept around the translation, not translated); cue numbers, identifiers, timing lines
  (with VTT cue settings), the ``WEBVTT`` header, ``NOTE``/``STYLE``/``REGION`` blocks and the
  file's line endings are copied byte for byte.
* A folder: one output per input, with the input's name, in the output folder.  Outputs that
  exist already are skipped, so an interrupted run resumes where it stopped; each output is
  written to a temporary file beside it and renamed, so a killed run never leaves a half-written
  output.  A file that fails is reported at the end and the others are done.

The parser is a small one of our own rather than ``srt``/``webvtt-py``: those rebuild timing
lines from parsed times (``0:00:01,5`` comes back as ``00:00:01,500``) and renumber cues,
while a translated subtitle file should differ from its source in the cue text only.
"""

from __future__ import annotations

import html
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

from .api import (
    AUDIO_EXTENSIONS, DEFAULT_MODEL, Result, _check_max_new_tokens, _check_request, get_model, transcribe, translate,
)
from .batch import check_batch_size
from .fileio import check_output_path, write_text_atomic
from .segment import _CLOSERS, split_sentences

DOCUMENT_EXTENSIONS = (".txt", ".srt", ".vtt")
SUBTITLE_EXTENSIONS = (".srt", ".vtt")

__all__ = [
    "DOCUMENT_EXTENSIONS", "is_document", "split_sentences", "translate_document", "translate_subtitles",
    "translate_file", "parse_subtitles", "FolderRun", "translate_folder", "transcribe_folder",
]


def is_document(path: str) -> bool:
    """True for an existing ``.txt``/``.srt``/``.vtt`` file (a document, not text to translate)."""
    return isinstance(path, str) and Path(path).suffix.lower() in DOCUMENT_EXTENSIONS and os.path.isfile(path)


# --------------------------------------------------------------------------------------------
# Plain-text documents
# --------------------------------------------------------------------------------------------

# A line that ends a sentence or a clause that may stand alone (closing quotes and brackets after it)
_LINE_END = re.compile("[.!?:;\u2026\u203c\u061f\u06d4\u0964\u0965\u3002\uff01\uff1f\uff1a\uff1b][" + re.escape(_CLOSERS) + "]*$")
_LIST_ITEM = re.compile(r"([-*\u2022+]|\d+[.)]|[a-z][.)])\s")
HARD_WRAP_MIN_CHARS = 40  # a hard-wrapped line (not the last of its paragraph) is at least this long


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _continued(prev: str, line: str, width: int) -> bool:
    """True when ``line`` carries on the sentence of ``prev`` in a hard-wrapped paragraph: ``prev``
    is long (near the document's widest line), ends without a sentence or clause end, and ``line``
    has its indentation and goes on with a lower-case letter (not a list item)."""
    p, q = prev.strip(), line.strip()
    return (
        len(p) >= max(HARD_WRAP_MIN_CHARS, 0.6 * width)
        and not _LINE_END.search(p)
        and q[:1].islower()
        and not _LIST_ITEM.match(q)
        and _indent(prev) == _indent(line)
    )


def _blocks(lines: List[str]) -> List[List[int]]:
    """The document's non-blank lines grouped: a hard-wrapped sentence's lines together, any other
    line alone.  A paragraph's wrap width is its widest line."""
    widths = [0] * len(lines)
    n = 0
    while n < len(lines):
        end = n
        while end < len(lines) and lines[end].strip():
            end += 1
        if end > n:
            widths[n:end] = [max(len(lines[k].strip()) for k in range(n, end))] * (end - n)
        n = max(end, n + 1)
    blocks: List[List[int]] = []
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        if blocks and blocks[-1][-1] == n - 1 and _continued(lines[n - 1], line, widths[n]):
            blocks[-1].append(n)
        else:
            blocks.append([n])
    return blocks


def _spread(text: str, n: int) -> List[str]:
    """``text`` over exactly ``n`` lines of similar length: cut between words when it has enough of
    them, else between characters (a target language written without spaces)."""
    words = text.split()
    if n <= 1:
        return [text]
    if len(words) >= n:
        out: List[str] = []
        k = 0
        for i in range(n):
            rest = words[k:]
            left = n - i
            if left == 1:
                out.append(" ".join(rest))
                break
            target = len(" ".join(rest)) / left
            take = 1
            while take < len(rest) - (left - 1) and len(" ".join(rest[:take + 1])) <= target * 1.1:
                take += 1
            out.append(" ".join(rest[:take]))
            k += take
        return out
    cuts = [round(i * len(text) / n) for i in range(n + 1)]
    return [text[a:b].strip() for a, b in zip(cuts, cuts[1:])]


def translate_document(text: str, src_lang: str, tgt_lang: str, **kw) -> str:
    """Translate a plain-text document, keeping its layout: every line keeps its place, its
    leading and trailing white space, and blank lines stay blank.  Sentences are translated in
    batches; a sentence hard-wrapped over several lines (a long line without a sentence end,
    followed by one that goes on in lower case) is translated whole and spread back over those
    lines.  ``kw`` goes to :func:`seamless_mlx.api.translate` (``model``, ``batch_size``, ...).
    """
    newline = "\r" if "\r" in text and "\n" not in text else "\n"  # CR alone: old Mac files
    lines = text.split(newline)
    blocks = _blocks(lines)
    pieces: List[Tuple[int, str]] = []  # (block number, sentence)
    for b, block in enumerate(blocks):
        pieces.extend((b, s) for s in split_sentences(" ".join(lines[n].strip() for n in block)))
    if not pieces:
        raise ValueError("the document has no text to translate.")
    results = translate([s for _, s in pieces], tgt_lang=tgt_lang, src_lang=src_lang, as_text=True, **kw)
    _raise_first_error(results, [f"line {blocks[b][0] + 1}" for b, _ in pieces])
    translated: Dict[int, List[str]] = {}
    for (b, _), r in zip(pieces, results):
        translated.setdefault(b, []).append(r.text)
    out = list(lines)
    for b, block in enumerate(blocks):
        if b not in translated:
            continue
        for n, new in zip(block, _spread(" ".join(translated[b]), len(block))):
            line = lines[n]
            out[n] = line[: _indent(line)] + new + line[len(line.rstrip()):]
    return newline.join(out)


def _raise_first_error(results: List[Result], where: List[str]):
    for w, r in zip(where, results):
        if r.error:
            raise ValueError(f"{w}: {r.error}")


# --------------------------------------------------------------------------------------------
# Subtitles (SRT, WebVTT)
# --------------------------------------------------------------------------------------------


# Markup a cue's text may hold: HTML-like tags (``<i>``, ``</i>``, ``<font color=...>``, WebVTT's
# ``<v Speaker>``, ``<c.class>``, ``<lang en>``), WebVTT timestamp tags (``<00:01.500>``) and ASS
# override blocks (``{\an8}``, ``{\i1}``).  None of it is words to translate.
_MARKUP = re.compile(r"</?[A-Za-z][^<>]*>|<(?:\d+:)?\d{2}:\d{2}\.\d{3}>|\{\\[^{}]*\}")
_LEADING = re.compile(r"\s*(?:" + _MARKUP.pattern + r"|[-\u2010\u2013\u2014](?![-\u2010\u2013\u2014]))\s*")
_CLOSING = re.compile(r"(?:</[A-Za-z][^<>]*>|\{\\[^{}]*\})\s*$")
_DIALOGUE = re.compile(r"\s*(?:" + _MARKUP.pattern + r")*\s*[-\u2010\u2013\u2014]")


@dataclass
class Piece:
    """One thing a cue says: ``text`` is translated, ``prefix`` (leading markup and a dialogue
    dash) and ``suffix`` (closing markup) are put back around the translation as written."""

    prefix: str
    text: str
    suffix: str

    @classmethod
    def of(cls, line: str, vtt: bool) -> "Piece":
        prefix_end = 0
        while (m := _LEADING.match(line, prefix_end)) and m.end() > prefix_end:
            prefix_end = m.end()
        body, suffix = line[prefix_end:], ""
        while m := _CLOSING.search(body):
            body, suffix = body[: m.start()], body[m.start():] + suffix
        text = " ".join(_MARKUP.sub("", body).split())
        return cls(line[:prefix_end], html.unescape(text) if vtt else text, suffix)

    def render(self, translation: str, vtt: bool) -> str:
        return self.prefix + _cue_text(translation, vtt) + self.suffix


def _cue_text(text: str, vtt: bool) -> str:
    """``text`` as a cue holds it: a WebVTT cue's text cannot hold a bare ``&`` or ``<``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") if vtt else text


@dataclass
class Cue:
    """A subtitle cue: ``lines[text_start:text_end]`` of the file are its text lines."""

    text_start: int
    text_end: int

    def text(self, lines: List[str]) -> str:
        return " ".join(" ".join(lines[i].split()) for i in range(self.text_start, self.text_end)).strip()

    def dialogue(self, lines: List[str]) -> bool:
        """Two or more lines that each start with a dash: one speaker per line."""
        own = lines[self.text_start:self.text_end]
        return len(own) > 1 and all(_DIALOGUE.match(ln) for ln in own)

    def pieces(self, lines: List[str], vtt: bool) -> List[Piece]:
        """What is translated: each line of a dialogue, else the cue's lines joined."""
        if self.dialogue(lines):
            return [Piece.of(lines[i].rstrip("\r"), vtt) for i in range(self.text_start, self.text_end)]
        return [Piece.of(self.text(lines), vtt)]

    def eol(self, lines: List[str]) -> str:
        """``"\r"`` when the cue's text lines end in CRLF in a file split at LF (mixed files too)."""
        return "\r" if lines[self.text_start].endswith("\r") else ""

    def render(self, lines: List[str], pieces: List[Piece], translations: List[Optional[str]], vtt: bool) -> List[str]:
        """The cue's new text lines: a dialogue keeps one line per speaker; other text is wrapped
        onto as many lines as the cue had, its markup around the whole."""
        eol = self.eol(lines)
        if len(pieces) > 1:
            return [lines[self.text_start + k] if t is None else p.render(t, vtt) + eol
                    for k, (p, t) in enumerate(zip(pieces, translations))]
        (piece,), (t,) = pieces, translations
        if t is None:
            return lines[self.text_start:self.text_end]
        wrapped = _wrap(_cue_text(t, vtt), max(1, self.text_end - self.text_start))
        wrapped[0] = piece.prefix + wrapped[0]
        wrapped[-1] += piece.suffix  # the same line when the translation takes one
        return [w + eol for w in wrapped]


@dataclass
class SubtitleFile:
    lines: List[str]
    newline: str = "\n"
    bom: bool = False
    cues: List[Cue] = field(default_factory=list)

    @property
    def vtt(self) -> bool:
        return bool(self.lines) and self.lines[0].startswith("WEBVTT")

    def render(self, texts: Optional[List[Union[None, str, List[str]]]] = None) -> str:
        """The file with each cue's text replaced by ``texts[i]``: a string is wrapped onto as many
        lines as the cue had, a list is the new lines, ``None`` keeps the cue's lines; everything
        else as read.  ``texts=None`` gives the file back unchanged."""
        out: List[str] = []
        pos = 0
        for i, cue in enumerate(self.cues):
            out.extend(self.lines[pos:cue.text_start])
            new = None if texts is None else texts[i]
            if new is None:
                out.extend(self.lines[cue.text_start:cue.text_end])
            elif isinstance(new, str):
                out.extend(w + cue.eol(self.lines) for w in _wrap(new, max(1, cue.text_end - cue.text_start)))
            else:
                out.extend(new)
            pos = cue.text_end
        out.extend(self.lines[pos:])
        return ("\ufeff" if self.bom else "") + self.newline.join(out)


_TIMING = re.compile(r"\s*(?:\d+:)?\d{1,2}:\d{1,2}[,.]\d{1,3}\s*-->\s*(?:\d+:)?\d{1,2}:\d{1,2}[,.]\d{1,3}")


def parse_subtitles(content: str) -> SubtitleFile:
    """Find the cues of an SRT or WebVTT file.

    Blocks are separated by blank lines; a block with a ``-->`` timing line is a cue, whose text
    is every line after the timing line, up to another timing line (cues not separated by a blank
    line; the cue number just before it is not text).  Blocks without one (``WEBVTT`` header,
    ``NOTE``, ``STYLE``, ``REGION``) are kept as they are.  Lines are split at LF and each keeps
    its own CR, so a file mixing CRLF and LF lines comes back as it was (old Mac files, CR only,
    are split at CR).
    """
    bom = content.startswith("\ufeff")
    if bom:
        content = content[1:]
    newline = "\r" if "\r" in content and "\n" not in content else "\n"
    lines = content.split(newline)
    sub = SubtitleFile(lines=lines, newline=newline, bom=bom)
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        j = i
        while j < len(lines) and lines[j].strip():
            j += 1
        timing = next((k for k in range(i, j) if "-->" in lines[k]), None)
        while timing is not None:
            after = next((k for k in range(timing + 1, j) if _TIMING.match(lines[k])), None)
            end = j if after is None else after
            if after is not None and after - 1 > timing and lines[after - 1].strip().isdigit():
                end = after - 1  # the next cue's number
            if timing + 1 < end:
                sub.cues.append(Cue(timing + 1, end))
            timing = after
        i = j
    return sub


# Scripts written without spaces between words: Han, kana, Thai, Lao, Myanmar, Khmer
_UNSPACED = re.compile("[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff]")


def _wrap(text: str, n_lines: int) -> List[str]:
    """``text`` over at most ``n_lines`` lines of similar length, cut between words (between
    characters for a script written without spaces)."""
    words = text.split()
    if n_lines > 1 and len(words) < n_lines and _UNSPACED.search(text):
        return _spread(text, n_lines)
    if n_lines <= 1 or len(words) <= 1:
        return [text]
    target = len(text) / n_lines
    out, cur = [], []
    for w in words:
        if cur and len(out) < n_lines - 1 and len(" ".join(cur + [w])) > target * 1.15:
            out.append(" ".join(cur))
            cur = []
        cur.append(w)
    out.append(" ".join(cur))
    return out


def translate_subtitles(content: str, tgt_lang: str, src_lang: str, **kw) -> str:
    """Translate the cue texts of an SRT/VTT file given as text; all else is kept byte for byte.

    Markup is not translated: a cue's leading tags (``<i>``, ``<v Speaker>``, ``{\\an8}``) and
    closing tags stay around its translation, tags inside it are dropped, WebVTT entities
    (``&amp;``) are read as characters and written escaped.  A dialogue cue (every line starts
    with a dash) is translated line by line, so each speaker keeps a line."""
    sub = parse_subtitles(content)
    vtt = sub.vtt
    pieces = [c.pieces(sub.lines, vtt) for c in sub.cues]
    todo = [(i, k) for i, ps in enumerate(pieces) for k, p in enumerate(ps) if p.text]
    if not todo:
        raise ValueError("the subtitle file has no cues with text.")
    results = translate([pieces[i][k].text for i, k in todo], tgt_lang=tgt_lang, src_lang=src_lang, as_text=True,
                        **kw)
    _raise_first_error(results, [f"cue {i + 1}" for i, _ in todo])
    done = {ik: r.text for ik, r in zip(todo, results)}
    return sub.render([
        cue.render(sub.lines, ps, [done.get((i, k)) for k in range(len(ps))], vtt)
        for i, (cue, ps) in enumerate(zip(sub.cues, pieces))
    ])


def translate_file(path: Union[str, os.PathLike], tgt_lang: str, src_lang: Optional[str], **kw) -> str:
    """The translation of a ``.txt``, ``.srt`` or ``.vtt`` file, as the text of the same format."""
    path = Path(path)
    if not src_lang:
        raise ValueError(f"{path.name}: --src-lang is required for text documents (e.g. --src-lang eng).")
    try:
        with open(path, encoding="utf-8", newline="") as f:  # newline="": CRLF files stay CRLF
            content = f.read()
    except UnicodeDecodeError:
        raise ValueError(f"{path.name} is not UTF-8 text; save it as UTF-8 and try again.") from None
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}.") from None
    if path.suffix.lower() in SUBTITLE_EXTENSIONS:
        return translate_subtitles(content, tgt_lang, src_lang, **kw)
    bom = "\ufeff" if content.startswith("\ufeff") else ""  # kept in the output, not sent to the model
    return bom + translate_document(content[len(bom):], src_lang, tgt_lang, **kw)


# --------------------------------------------------------------------------------------------
# Writing outputs and folder runs
# --------------------------------------------------------------------------------------------


@dataclass
class FolderRun:
    """What a folder run did: outputs written, skipped (already there) and failed with reasons."""

    done: List[Path] = field(default_factory=list)
    skipped: List[Path] = field(default_factory=list)
    failed: List[Tuple[Path, str]] = field(default_factory=list)
    root: Optional[Path] = None  # the input folder: failed files are named relative to it

    def summary(self) -> str:
        line = f"{len(self.done)} done, {len(self.skipped)} skipped (already there), {len(self.failed)} failed"
        if self.failed:
            line += ": " + "; ".join(f"{_one_line(self._name(p))}: {why}" for p, why in self.failed)
        return line

    def _name(self, p: Path) -> str:
        try:
            return str(p.relative_to(self.root)) if self.root is not None else p.name
        except ValueError:
            return p.name


def _one_line(name: str) -> str:
    return name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def _check_output_folder(out_dir: Path) -> None:
    """Refuse, before any work, an output folder that is a file, looks like a file name, or cannot
    be created or written."""
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise ValueError(f"the output {out_dir} is a file (or a broken link); give a folder for a folder of "
                             "inputs (-o out/).")
        if not os.access(out_dir, os.W_OK | os.X_OK):
            raise ValueError(f"the output folder {out_dir} is not writable (permission denied); choose another.")
        return
    if out_dir.suffix.lower() in TRANSCRIPT_EXTENSIONS:
        raise ValueError(f"{out_dir} names a file, but a folder of inputs writes one output per input into a "
                         f"folder: give -o {out_dir.with_suffix('')}/ (it is created).")
    probe = out_dir.parent
    while not probe.exists() and probe != probe.parent:
        if probe.is_symlink():
            raise ValueError(f"cannot create the output folder {out_dir}: {probe} is a broken link.")
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"cannot create the output folder {out_dir}: {probe} is a file, not a folder.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"cannot create the output folder {out_dir}: {probe} is not writable (permission denied).")


def _folder_files(in_dir: Path, out_dir: Path, recursive: bool) -> List[Path]:
    """The visible files of ``in_dir`` (and, ``recursive``, of its visible subfolders, links to
    folders not followed, the output folder left out), sorted by path."""
    if not recursive:
        return sorted(p for p in in_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    skip = out_dir.resolve() if out_dir.exists() else None
    files = []
    for root, dirs, names in os.walk(in_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".") and (skip is None or (Path(root) / d).resolve() != skip)]
        files.extend(Path(root) / n for n in names if not n.startswith(".") and (Path(root) / n).is_file())
    return sorted(files)


def plan_folder(in_dir, out_dir, inputs: Callable[[Path], bool], output_name: Callable[[Path], str],
                what: str = "audio files, .txt, .srt or .vtt documents",
                recursive: bool = False) -> List[Tuple[Path, Path]]:
    """``(input, output)`` pairs for the files of ``in_dir`` that ``inputs`` accepts (``what`` names
    them in the error when there are none), checked before any work: the output folder can be
    written, no output is an input, no two inputs share an output.  Subfolders are searched only
    when ``recursive``; their outputs go to the same subfolders of ``out_dir``."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise ValueError(f"{in_dir} is not a folder.")
    _check_output_folder(out_dir)
    files = [p for p in _folder_files(in_dir, out_dir, recursive) if inputs(p)]
    if not files:
        where = "" if recursive else "; subfolders are not searched without -r"
        raise ValueError(f"{in_dir} has no files to process ({what}{where}).")
    pairs, seen = [], {}
    for f in files:
        rel = f.relative_to(in_dir)
        o = out_dir / rel.parent / output_name(f)
        if o.resolve() == f.resolve():
            raise ValueError(f"the output for {rel} would overwrite it; choose another output folder (-o).")
        key = o.relative_to(out_dir)
        if key in seen:
            raise ValueError(f"{seen[key]} and {rel} would both write {key}; move one of them.")
        seen[key] = rel
        pairs.append((f, o))
    return pairs


def run_folder(
    pairs: List[Tuple[Path, Path]],
    work: Callable[[List[Path]], List[Union[str, Exception]]],
    chunk: int,
    progress: bool = True,
    overwrite: bool = False,
    check: Optional[Callable[[List[Path]], None]] = None,
    root: Optional[Path] = None,
) -> FolderRun:
    """Produce each missing output (every output with ``overwrite``): ``work(inputs)`` gives the
    contents (or an exception) of up to ``chunk`` inputs at a time, written atomically as soon as
    they are ready; a file that cannot be written is reported and the others go on.  ``check(inputs)``
    runs once before any work when there is work: what it raises (a bad model or language, which
    every file would hit) ends the run before anything is written.  Failed files are named relative
    to ``root`` (the input folder)."""
    from tqdm import tqdm

    run = FolderRun(root=root)
    todo = []
    for f, o in pairs:
        if o.exists() and not overwrite:
            run.skipped.append(o)
        else:
            todo.append((f, o))
    if todo and check is not None:
        check([f for f, _ in todo])
    bar = tqdm(total=len(todo), unit="file", file=sys.stderr, disable=not progress or not sys.stderr.isatty())
    for k in range(0, len(todo), chunk):
        part = todo[k:k + chunk]
        try:
            outs = work([f for f, _ in part])
        except Exception:  # noqa: BLE001 - a failing chunk: retry its files one by one
            outs = []
            for f, _ in part:
                try:
                    outs.extend(work([f]))
                except Exception as e:  # noqa: BLE001 - reported in the summary; the others go on
                    outs.append(e)
        for (f, o), content in zip(part, outs):
            if not isinstance(content, Exception):
                try:
                    o.parent.mkdir(parents=True, exist_ok=True)  # created with the first output
                    write_text_atomic(o, content)
                except OSError as e:
                    content = e
            if isinstance(content, Exception):
                run.failed.append((f, " ".join(str(content).split()) or type(content).__name__))
            else:
                run.done.append(o)
            bar.update(1)
    bar.close()
    return run


def _error_or(r: Result, content: Callable[[Result], str]):
    return ValueError(r.error) if r.error else content(r)


TRANSCRIPT_FORMATS: Dict[str, Callable[[Result], str]] = {
    "txt": lambda r: r.text + "\n",
    "srt": Result.to_srt,
    "vtt": Result.to_vtt,
    "json": lambda r: r.to_json() + "\n",
}
TRANSCRIPT_EXTENSIONS = tuple(f".{k}" for k in TRANSCRIPT_FORMATS)


def _is_audio(p: Path) -> bool:
    return p.suffix.lower() in AUDIO_EXTENSIONS


def _preflight(files: List[Path], tgt_lang: str, src_lang: Optional[str], kw: dict) -> None:
    """What every file of a folder run would fail on, raised once before any work: the model, the
    target language, ``max_new_tokens``, a missing source language for documents."""
    tasks = sorted({"s2tt" if _is_audio(f) else "t2tt" for f in files})
    if "t2tt" in tasks and not src_lang:
        raise ValueError("--src-lang is required for the text documents in the folder (e.g. --src-lang eng).")
    for task in tasks:
        m, _ = get_model(str(kw.get("model") or DEFAULT_MODEL), task, kw.get("quantize"))
        _check_request(m, tgt_lang, False, 0)
        _check_max_new_tokens(kw.get("max_new_tokens"), m.config)


def transcribe_folder(in_dir, out_dir, lang: str, fmt: str = "txt", batch_size: int = 16, progress: bool = True,
                      overwrite: bool = False, recursive: bool = False, **kw) -> FolderRun:
    """Transcribe every audio file of ``in_dir`` (and its subfolders with ``recursive``) into
    ``out_dir/<name>.<fmt>`` (resumable; with ``overwrite`` every output is made again)."""
    if fmt not in TRANSCRIPT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(TRANSCRIPT_FORMATS)}.")
    check_batch_size(batch_size)
    pairs = plan_folder(in_dir, out_dir, _is_audio, lambda f: f"{f.stem}.{fmt}", what="audio files",
                        recursive=recursive)

    def work(files):
        results = transcribe([str(f) for f in files], lang=lang, batch_size=batch_size, **kw)
        return [_error_or(r, TRANSCRIPT_FORMATS[fmt]) for r in results]

    return run_folder(pairs, work, chunk=batch_size, progress=progress, overwrite=overwrite,
                      check=lambda files: _preflight(files, lang, None, kw), root=Path(in_dir))


def translate_folder(in_dir, out_dir, tgt_lang: str, src_lang: Optional[str] = None, batch_size: int = 16,
                     progress: bool = True, overwrite: bool = False, recursive: bool = False, **kw) -> FolderRun:
    """Translate every audio file and document of ``in_dir`` into ``out_dir`` (resumable; with
    ``overwrite`` every output is made again): ``x.txt``/``x.srt``/``x.vtt`` -> the same name and
    format, audio ``x.wav`` -> ``x.txt``; with ``recursive`` subfolders too, into the same
    subfolders of ``out_dir``.  The output folder must not be the input folder (its outputs would
    be inputs of the next run); inside it, it is left out of the search."""
    check_batch_size(batch_size)
    if Path(out_dir).resolve() == Path(in_dir).resolve():
        raise ValueError("the output folder is the input folder: its translations would be taken as documents to "
                         "translate next time; choose another (-o translated/).")
    pairs = plan_folder(in_dir, out_dir, lambda f: _is_audio(f) or f.suffix.lower() in DOCUMENT_EXTENSIONS,
                        lambda f: f.name if f.suffix.lower() in DOCUMENT_EXTENSIONS else f"{f.stem}.txt",
                        recursive=recursive)

    def work(files):
        audio = [f for f in files if _is_audio(f)]
        done: Dict[Path, Union[str, Exception]] = {}
        if audio:
            results = translate([str(f) for f in audio], tgt_lang=tgt_lang, batch_size=batch_size, **kw)
            done.update((f, _error_or(r, TRANSCRIPT_FORMATS["txt"])) for f, r in zip(audio, results))
        for f in files:
            if f not in done:
                try:
                    done[f] = translate_file(f, tgt_lang, src_lang, batch_size=batch_size, **kw)
                except Exception as e:  # noqa: BLE001 - reported in the summary; the others go on
                    done[f] = e
        return [done[f] for f in files]

    return run_folder(pairs, work, chunk=batch_size, progress=progress, overwrite=overwrite,
                      check=lambda files: _preflight(files, tgt_lang, src_lang, kw), root=Path(in_dir))


# --------------------------------------------------------------------------------------------
# Command line (``seamless-mlx translate/transcribe`` with a document or a folder)
# --------------------------------------------------------------------------------------------


def _api_options(args) -> dict:
    return dict(model=args.model, quantize=args.quantize, num_beams=args.num_beams, preset=args.preset,
                max_new_tokens=args.max_new_tokens, no_repeat_ngram_size=args.no_repeat_ngram_size,
                max_segment_s=args.max_segment_s, batch_size=args.batch_size)


def _finish(run: FolderRun) -> int:
    print(run.summary(), file=sys.stderr, flush=True)
    return 2 if run.failed else 0


def cli_translate(args) -> int:
    """``seamless-mlx translate`` of a ``.txt``/``.srt``/``.vtt`` file or of a folder."""
    out = Path(args.output) if args.output else None
    if args.speech or (out is not None and out.suffix.lower() in (".wav", ".flac")):
        raise ValueError("speech output takes one text or recording at a time; drop --speech (and the "
                         ".wav/.flac output) to translate a document or folder into text.")
    progress = not args.quiet and sys.stderr.isatty()
    if os.path.isdir(args.input):
        if out is None:
            raise ValueError("a folder needs an output folder: add -o translated/.")
        return _finish(translate_folder(args.input, out, args.tgt_lang, args.src_lang, progress=not args.quiet,
                                        overwrite=args.overwrite, recursive=args.recursive, **_api_options(args)))
    src = Path(args.input)
    if args.output == "-":  # standard output, as without -o
        out = None
    if out is not None:
        if out.suffix.lower() != src.suffix.lower():
            raise ValueError(f"a {src.suffix} document translates into a {src.suffix} file; name the output "
                             f"{out.stem}{src.suffix}.")
        if out.resolve() == src.resolve():
            raise ValueError(f"the output would overwrite the input {src.name}; choose another name (-o).")
        out = check_output_path(out, overwrite=args.overwrite, inputs=[src])  # before the work, as for one text
    content = translate_file(src, args.tgt_lang, args.src_lang, progress=progress, **_api_options(args))
    if out is None:
        sys.stdout.write(content if content.endswith("\n") else content + "\n")
        return 0
    write_text_atomic(out, content)
    if not args.quiet:
        print(f"Wrote {out}.", file=sys.stderr, flush=True)
    return 0


def cli_transcribe(args) -> int:
    """``seamless-mlx transcribe`` of a folder of recordings."""
    if not args.output:
        raise ValueError("a folder needs an output folder: add -o transcripts/.")
    opts = _api_options(args)
    return _finish(transcribe_folder(args.audio, args.output, args.lang, args.format or "txt",
                                     progress=not args.quiet, overwrite=args.overwrite, recursive=args.recursive,
                                     **opts))
