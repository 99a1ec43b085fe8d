"""``seamless-mlx``: translate text and recordings, transcribe, convert, list languages.

    seamless-mlx translate "Hello, how are you?" --src-lang eng --tgt-lang fra
    seamless-mlx translate talk.wav --tgt-lang deu                 # speech -> German text
    seamless-mlx translate talk.wav --tgt-lang spa -o talk_es.wav  # speech -> Spanish speech
    echo "Good morning" | seamless-mlx translate - --src-lang eng --tgt-lang fra --speech -o hi.wav
    seamless-mlx translate talk.wav --tgt-lang fra --speech -o - | ffplay -nodisp -autoexit -   # listen as it comes
    seamless-mlx transcribe lecture.flac --lang eng --format srt -o lecture.srt
    seamless-mlx convert --hf-path facebook/seamless-m4t-v2-large --mlx-path m4t-v2-mlx -q
    seamless-mlx languages

Exit codes: 0 success, 2 bad usage or input (one ``seamless-mlx: error: ...`` line on stderr),
1 unexpected failure (``--verbose`` prints the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from . import api, server
from .api import DEFAULT_MODEL, Result, looks_like_audio_path, looks_like_file_name
from .audio import WavStreamWriter, load_audio, load_audio_bytes, looks_like_audio_bytes
from .batch import MAX_BATCH_SIZE
from .config import GenerationConfig
from .convert import main as convert_main
from .documents import _api_options, cli_transcribe, cli_translate, is_document, parse_subtitles, translate_subtitles
from .features import check_speech_length
from .fileio import WriteError, check_output_path, exit_on_sigterm, write_text_atomic
from .loading import CheckpointError
from .processor import SeamlessM4TProcessor

PROG = "seamless-mlx"
TEXT_FORMATS = (".txt", ".srt", ".vtt", ".json")
AUDIO_FORMATS = (".wav", ".flac")


class UsageError(ValueError):
    """Bad command-line input, reported as one line with exit code 2."""


def _add_model_args(p):
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="converted seamless-mlx folder, transformers folder or hub id (default: %(default)s); "
                        "the last two are converted once into ~/.cache/seamless-mlx/<name> "
                        "(env SEAMLESS_MLX_CACHE) and reused, also offline")
    p.add_argument("--quantize", type=int, choices=(4, 8), default=None,
                   help="use a 4- or 8-bit quantized copy (made once into the cache as <name>-q4/-q8); "
                        "try 4 when memory runs out")


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error format: one ``seamless-mlx: error: ...`` line, exit code 2."""

    def error(self, message):
        print(f"{PROG}: error: {' '.join(message.split())} (see `{self.prog} --help`)", file=sys.stderr, flush=True)
        sys.exit(2)


def _int_at_least(minimum: int, hint: str):
    """argparse type: a whole number >= ``minimum`` (``hint`` names the bound in the message)."""

    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {s!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be {hint}, got {v}")
        return v

    return parse


def _batch_size(s: str) -> int:
    v = _positive_int(s)
    if v > MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_BATCH_SIZE}, got {v}")
    return v


_positive_int = _int_at_least(1, "at least 1")
_non_negative_int = _int_at_least(0, "0 (off) or more")


def _segment_seconds(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {s!r}") from None
    if not 1.0 <= v <= 60.0:
        raise argparse.ArgumentTypeError(f"must be between 1 and 60 seconds (15 is recommended), got {s}")
    return v


def _add_common(p):
    p.add_argument("--num-beams", type=_positive_int, default=None, help="beam size (default: from the preset)")
    p.add_argument("--max-new-tokens", type=_positive_int, default=None, help="limit on generated text tokens")
    p.add_argument("--preset", choices=("transformers", "seamless"), default="transformers",
                   help="decoding defaults: the checkpoint's generation config, or seamless_communication's "
                        "m4t_predict (5 beams, at most 1*source length+200 tokens)")
    p.add_argument("--no-repeat-ngram-size", type=_non_negative_int, default=None,
                   help="forbid repeated n-grams of this size in the text (m4t_predict uses 4 when blocking is on)")
    p.add_argument("--max-segment-s", type=_segment_seconds, default=15.0,
                   help="long recordings are cut at pauses into pieces of at most this many seconds")
    p.add_argument("--batch-size", type=_batch_size, default=16,
                   help=f"sentences or recording pieces decoded together for documents and folders, 1 to "
                        f"{MAX_BATCH_SIZE} (default: 16)")
    _add_model_args(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress messages on stderr")
    p.add_argument("--verbose", "-v", action="store_true", help="tracebacks and timings on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, description="SeamlessM4T-v2 speech and text translation on MLX.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1],
    )
    sub = parser.add_subparsers(dest="command", metavar="{translate,transcribe,convert,languages,serve}")

    t = sub.add_parser("translate", help="translate text, stdin or an audio file into text or speech")
    t.add_argument("input", help="text to translate, '-' for stdin, an audio file, a .txt/.srt/.vtt document or a folder")
    t.add_argument("--tgt-lang", required=True, help="target language code, e.g. fra (see `seamless-mlx languages`)")
    t.add_argument("--src-lang", default=None, help="source language of text input, e.g. eng")
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--speech", action="store_true", help="output speech (needs --output x.wav or x.flac)")
    mode.add_argument("--text", action="store_true",
                      help="output text (default); also takes an input that names no existing file as text")
    t.add_argument("--output", "-o", default=None,
                   help="write the result: .txt .srt .vtt .json (text) or .wav .flac (speech, implies --speech); "
                        "an existing file is kept unless -y is given, the input file always; '-' with --speech: "
                        "a WAV stream on stdout, written as the speech is made (pipe it to ffplay - or aplay)")
    t.add_argument("-y", "--overwrite", action="store_true",
                   help="replace an existing output file (as ffmpeg -y); for a folder, make every output again")
    t.add_argument("-r", "--recursive", action="store_true",
                   help="for a folder, also its subfolders (outputs in the same subfolders of -o)")
    t.add_argument("--speaker-id", type=int, default=0, help="voice of the speech output: 0..N-1 for a model with N speakers "
                        "(200 in v2-large; default 0)")
    _add_common(t)

    r = sub.add_parser("transcribe", help="speech recognition: an audio file to text or subtitles")
    r.add_argument("audio", help="audio file (WAV, FLAC, OGG, MP3, ...) or a folder of them (with -o out/)")
    r.add_argument("--lang", required=True, help="language spoken in the recording, e.g. eng")
    r.add_argument("--format", choices=("txt", "srt", "vtt", "json"), default=None,
                   help="output format (default: from --output's extension, else txt)")
    r.add_argument("--output", "-o", default=None,
                   help="output file (default: stdout); an existing file is kept unless -y is given")
    r.add_argument("-y", "--overwrite", action="store_true",
                   help="replace an existing output file (as ffmpeg -y); for a folder, make every output again")
    r.add_argument("-r", "--recursive", action="store_true",
                   help="for a folder, also its subfolders (outputs in the same subfolders of -o)")
    _add_common(r)

    sub.add_parser("convert", help="convert a transformers checkpoint to MLX (see `seamless-mlx convert -h`)",
                   add_help=False)

    lg = sub.add_parser("languages", help="list the languages a model supports per modality")
    lg.add_argument("--model", default=DEFAULT_MODEL, help="model folder or hub id (default: %(default)s)")
    lg.add_argument("--verbose", "-v", action="store_true")


    server.add_arguments(sub.add_parser("serve", help="HTTP server for OpenAI-audio and LibreTranslate clients, "
                                                     "with a web page (needs the [server] extra)"))
    return parser


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def _progress(args):
    return (lambda msg: None) if getattr(args, "quiet", False) else (lambda msg: print(msg, file=sys.stderr, flush=True))


def _streamer(enabled: bool):
    if not enabled:
        return None

    def write(piece: str):
        sys.stdout.write(piece)
        sys.stdout.flush()

    return write


def _preload(args, task: str) -> float:
    """Find (or convert, once, into the cache) the model folder, honouring --quiet; with --verbose
    also load the model up front (it stays cached for the run) and say where from and how long."""
    t0 = time.time()
    folder = api.model_folder(args.model, args.quantize, quiet=args.quiet)
    if args.verbose:
        api.get_model(args.model, task, args.quantize)
        print(f"Loaded {task} model from {folder} in {time.time() - t0:.1f} s.", file=sys.stderr, flush=True)
    return time.time()


def _report_time(args, t0: float, result):
    if args.verbose:
        n = len(result.segments)
        print(f"Generated in {time.time() - t0:.1f} s ({n} segment{'s' if n != 1 else ''}).",
              file=sys.stderr, flush=True)


def _decode_utf8(data: bytes, what: str) -> str:
    """Text input as UTF-8 (a leading BOM dropped), or a UsageError that says how to convert it."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UsageError(
            f"{what} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}): convert it first, "
            "e.g. `iconv -f latin1 -t utf-8`."
        ) from None


def cmd_translate(args) -> int:
    if args.input != "-" and (os.path.isdir(args.input) or is_document(args.input)):
        return cli_translate(args)  # a .txt/.srt/.vtt document or a folder
    log = _progress(args)
    to_pipe = args.output == "-"  # speech as a WAV stream on stdout
    out = Path(args.output) if args.output and not to_pipe else None
    ext = out.suffix.lower() if out else ""
    if to_pipe and not args.speech:
        raise UsageError("-o - streams speech to standard output as WAV: add --speech (text goes to standard output "
                         "without -o).")
    if to_pipe and sys.stdout.isatty():
        raise UsageError("not writing WAV audio to a terminal: pipe it (-o - | ffplay -nodisp -autoexit -, or | aplay) "
                         "or name a file (-o translation.wav).")
    if out is not None and ext not in TEXT_FORMATS + AUDIO_FORMATS:
        raise UsageError(f"cannot tell the output format from {out.name!r}; use .txt .srt .vtt .json .wav or .flac.")
    speech = args.speech or ext in AUDIO_FORMATS
    if args.text and ext in AUDIO_FORMATS:
        raise UsageError(f"--text writes text; name the output .txt/.srt/.vtt/.json, or drop --text for speech in {out.name}.")
    if speech and ext not in AUDIO_FORMATS and not to_pipe:
        raise UsageError("--speech needs an audio output file: add --output translation.wav (or .flac).")
    if out is not None:  # before any work: a bad output path must not cost the translation
        check_output_path(out, overwrite=args.overwrite, inputs=[args.input])

    piped = sys.stdin.buffer.read() if args.input == "-" else b""
    if args.input == "-" and not args.text and looks_like_audio_bytes(piped):
        source = check_speech_length(load_audio_bytes(piped, "standard input"), "standard input")  # a recording piped in
        is_audio = True
    elif args.input == "-":
        source = _decode_utf8(piped, "standard input")
        is_audio = False
        if ext in (".srt", ".vtt") and parse_subtitles(source).cues:  # `cat film.srt | ... - -o film.fra.srt`
            if not args.src_lang:
                raise UsageError("--src-lang is required for text input (e.g. --src-lang eng).")
            content = translate_subtitles(source, args.tgt_lang, args.src_lang, **_api_options(args))
            write_text_atomic(check_output_path(out, overwrite=args.overwrite), content)
            log(f"Wrote {out}.")
            return 0
    elif os.path.isfile(args.input) and Path(args.input).suffix.lower() in (".txt", ".md"):
        source = _decode_utf8(Path(args.input).read_bytes(), repr(args.input))  # a text file: translate its lines
        is_audio = False
    elif not os.path.exists(args.input) and looks_like_file_name(args.input) and not args.text:
        raise UsageError(f"file not found: {args.input!r}. Check the path; to translate these words as text, add --text "
                         "or pass them on standard input (echo ... | seamless-mlx translate - ...).")
    else:
        source = args.input
        is_audio = looks_like_audio_path(source) and not (args.text and not os.path.exists(source))
    if not is_audio:
        if not source.strip():
            raise UsageError("the input text is empty.")
        if not args.src_lang:
            raise UsageError("--src-lang is required for text input (e.g. --src-lang eng).")

    # Text appears as it is decoded on a terminal (it is then its own progress display: no bar
    # over the segments, which would garble the same screen); piped output is printed at the end.
    if is_audio and isinstance(source, str):  # read it now: a missing/corrupt/too short file is reported
        source = check_speech_length(load_audio(source), repr(args.input))  # before any model is loaded
    stream = not speech and sys.stdout.isatty() and (out is None or ext not in TEXT_FORMATS)
    task = ("s2" if is_audio else "t2") + ("st" if speech else "tt")
    t0 = _preload(args, task)
    wav_pipe = WavStreamWriter(sys.stdout.buffer) if to_pipe else None
    result = api.translate(
        source, tgt_lang=args.tgt_lang, src_lang=args.src_lang, speech=speech, model=args.model,
        speaker_id=args.speaker_id, num_beams=args.num_beams, preset=args.preset,
        max_new_tokens=args.max_new_tokens, max_segment_s=args.max_segment_s,
        progress=not args.quiet and not stream, quantize=args.quantize, on_text=_streamer(stream),
        no_repeat_ngram_size=args.no_repeat_ngram_size, on_audio=wav_pipe.write if wav_pipe else None,
        as_text=not is_audio,
    )
    _report_time(args, t0, result)
    if wav_pipe is not None:
        wav_pipe.close()
        if not args.quiet:
            print(result.text, file=sys.stderr, flush=True)
    elif stream:
        sys.stdout.write("\n")
    elif out is None or ext in AUDIO_FORMATS:
        print(result.text)
    if out is not None:
        result.save(out, overwrite=args.overwrite)
        if speech:
            log(f"Wrote {out} ({len(result.audio) / result.sample_rate:.2f} s of speech, 16 kHz).")
        else:
            log(f"Wrote {out}.")
    return 0


def cmd_transcribe(args) -> int:
    if os.path.isdir(args.audio):
        return cli_transcribe(args)  # a folder of recordings
    log = _progress(args)
    out = Path(args.output) if args.output else None
    if out is not None and out.suffix.lower() not in TEXT_FORMATS:
        raise UsageError(f"transcribe writes text: name the output .txt, .srt, .vtt or .json, not {out.name!r} "
                         "(for translated speech use `seamless-mlx translate AUDIO --tgt-lang L -o out.wav`).")
    fmt = args.format or (out.suffix.lower().lstrip(".") if out is not None else "txt")
    if out is not None:
        check_output_path(out, overwrite=args.overwrite, inputs=[args.audio])

    # a missing/corrupt/too short file is reported before any model is loaded
    if args.audio == "-":  # a recording piped in: ffmpeg -i talk.mp4 -f wav - | seamless-mlx transcribe - ...
        audio = check_speech_length(load_audio_bytes(sys.stdin.buffer.read(), "standard input"), "standard input")
    else:
        audio = check_speech_length(load_audio(args.audio), repr(args.audio))
    stream = fmt == "txt" and out is None and sys.stdout.isatty()
    t0 = _preload(args, "s2tt")
    result = api.transcribe(
        audio, lang=args.lang, model=args.model, num_beams=args.num_beams, preset=args.preset,
        max_new_tokens=args.max_new_tokens, max_segment_s=args.max_segment_s,
        progress=not args.quiet and not stream, quantize=args.quantize,
        no_repeat_ngram_size=args.no_repeat_ngram_size, on_text=_streamer(stream),
    )
    _report_time(args, t0, result)
    if stream:
        sys.stdout.write("\n")
        return 0
    content = {
        "txt": lambda r: r.text + "\n",
        "srt": Result.to_srt,
        "vtt": Result.to_vtt,
        "json": lambda r: r.to_json() + "\n",
    }[fmt](result)
    if out is None:
        sys.stdout.write(content)
    else:
        write_text_atomic(check_output_path(out, overwrite=args.overwrite, inputs=[args.audio]), content)
        log(f"Wrote {out} ({len(result.segments)} segment{'s' if len(result.segments) != 1 else ''}).")
    return 0


def cmd_languages(args) -> int:
    folder = api.model_folder(args.model, convert_if_needed=False)
    api.check_generation_config(folder)
    gen = GenerationConfig.from_pretrained(folder)
    try:
        text_in = set(SeamlessM4TProcessor.from_pretrained(folder).tokenizer.supported_languages)
    except Exception:
        text_in = set()
    text_out = set(gen.text_decoder_lang_to_code_id)
    speech_out = set(gen.vocoder_lang_code_to_id)
    codes = sorted(text_in | text_out | speech_out)
    yes = lambda b: "yes" if b else "-"  # noqa: E731
    print(f"{'code':<6} {'text in':<8} {'text out':<9} {'speech in':<10} {'speech out'}")
    for c in codes:
        # The speech encoder takes no language tag: any recording can be the source; its language
        # only needs to be one the model was trained on (see the model card).
        print(f"{c:<6} {yes(c in text_in):<8} {yes(c in text_out):<9} {yes(c in text_out):<10} {yes(c in speech_out)}")
    print(
        f"\n{len(codes)} codes; text output {len(text_out)}, speech output {len(speech_out)}. The checkpoint does not "
        "list speech-input languages (the speech encoder takes no language code), so 'speech in' assumes the text "
        "languages; see the model card for the recognised speech languages.",
        file=sys.stderr,
    )
    return 0


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split())


def _hint(e: BaseException, command: str = "") -> str:
    """The error's message in the command line's words (its options, not the API's keywords)."""
    msg = _one_line(e)
    if isinstance(e, CheckpointError):
        if "--model" not in msg:
            msg += " Use --model /path/to/local/folder (a transformers or converted seamless-mlx checkpoint)."
    msg = msg.replace("generate_speech=False (CLI: --text)", "--text (or drop --speech/the .wav output)")
    msg = msg.replace("src_lang is required", "--src-lang is required")
    if command == "transcribe":  # transcribe is translate into --lang
        msg = msg.replace("tgt_lang=", "--lang ").replace("for text output", "for transcripts")
    return msg


def _error(msg: str, code: int) -> int:
    print(f"{PROG}: error: {msg}", file=sys.stderr, flush=True)
    return code


def main(argv=None) -> int:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if from_command_line:  # SIGTERM unwinds like Ctrl-C: temporary files are removed, exit 143
        exit_on_sigterm(f"{PROG}: terminated.")
    for name in ("stdin", "stdout"):  # closed by the caller (`>&-`): reads find nothing, writes go nowhere
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "r" if name == "stdin" else "w", encoding="utf-8"))
    if argv and argv[0] == "convert":
        return convert_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    verbose = getattr(args, "verbose", False)
    try:
        if args.command == "translate":
            return cmd_translate(args)
        if args.command == "transcribe":
            return cmd_transcribe(args)
        if args.command == "languages":
            return cmd_languages(args)
        if args.command == "serve":
            return server.serve(args)
        parser.error(f"unknown command {args.command!r}")
    except KeyboardInterrupt:
        return _error("interrupted.", 130)
    except MemoryError:
        if verbose:
            traceback.print_exc()
        return _error("out of memory. Try a quantized model with --quantize 4 (or --quantize 8), "
                      "or shorter pieces with --max-segment-s 10.", 1)
    except RuntimeError as e:
        if verbose:
            traceback.print_exc()
        msg = _one_line(e)
        if any(k in msg.lower() for k in ("malloc", "out of memory", "outofmemory", "memory limit")):
            return _error(f"out of memory ({msg}). Try a quantized model with --quantize 4 (or --quantize 8), "
                          "or shorter pieces with --max-segment-s 10.", 1)
        return _error(f"unexpected RuntimeError: {msg}" + ("" if verbose else " (run with --verbose for the traceback)"), 1)
    except WriteError as e:  # disk full and the like: the output file was left as it was
        return _error(_one_line(e), 1)
    except (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        if verbose:
            traceback.print_exc()
        return _error(_hint(e, args.command), 2)
    except BrokenPipeError:  # the reader (a player, head) went away: stop quietly, also at exit
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # a stdout without a file descriptor
            pass
        return 0
    except Exception as e:  # noqa: BLE001 - the CLI's last resort
        if verbose:
            traceback.print_exc()
            return _error(f"unexpected {type(e).__name__}: {_one_line(e)}", 1)
        return _error(f"unexpected {type(e).__name__}: {_one_line(e)} (run with --verbose for the traceback)", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
