"""Bad input to the ``seamless-mlx`` command: exit code 2 and one line that says what to do, never a
traceback, a crash or a wrong result; and the limits (text length, max_new_tokens) that keep memory
and time bounded.  Each test runs the real command in a subprocess on a tiny converted model."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

FAST = ["--max-new-tokens", "2"]
HELLO = ["translate", "Hello world", "--src-lang", "eng", "--tgt-lang", "fra", *FAST]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = dict(os.environ)
    e.update(SEAMLESS_MLX_CACHE=str(tmp_path_factory.mktemp("cache")), HF_HUB_OFFLINE="1",
             TRANSFORMERS_OFFLINE="1", PYTHONIOENCODING="utf-8", SEAMLESS_MLX_HUGEPAGES="0")
    return e


@pytest.fixture(scope="module")
def mlx_model(tiny_checkpoint, tmp_path_factory):
    from seamless_mlx.convert import convert

    return convert(tiny_checkpoint, tmp_path_factory.mktemp("conv") / "mlx")


@pytest.fixture(scope="module")
def cli(env, mlx_model, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("work")

    def run(*args, model=mlx_model, stdin=None, extra_env=None, timeout=120):
        argv = [sys.executable, "-m", "seamless_mlx.cli", *map(str, args)]
        if model is not None:
            argv += ["--model", str(model)]
        return subprocess.run(argv, env={**env, **(extra_env or {})}, cwd=cwd, capture_output=True,
                              input=stdin, timeout=timeout)

    run.cwd = cwd
    return run


def error_line(r) -> str:
    """The one ``seamless-mlx: error:`` line of a run that exited with code 2."""
    err = r.stderr.decode("utf-8", "replace")
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("seamless-mlx: error: "), err
    return lines[0]


def model_copy(mlx_model, tmp_path, edit=None, drop=None):
    """A copy of the converted tiny model (weights linked) with its config.json rewritten by ``edit``
    (a dict -> JSON value function, or a string written as is) and ``drop`` removed."""
    folder = tmp_path / "model"
    folder.mkdir()
    for f in mlx_model.iterdir():
        if f.suffix == ".safetensors":
            (folder / f.name).symlink_to(f)
        elif f.name != drop:
            shutil.copy(f, folder / f.name)
    if edit is not None:
        cfg = json.loads((folder / "config.json").read_text())
        text = edit if isinstance(edit, str) else json.dumps(edit(cfg))
        (folder / "config.json").write_text(text)
    return folder


# ------------------------------------------------------------------ wrong results without an error


@pytest.mark.parametrize("name", ["recordings/talk", "notes.txt"])
def test_mistyped_file_name_is_an_error_and_text_flag_takes_it_as_text(cli, name):
    msg = error_line(cli("translate", name, "--src-lang", "eng", "--tgt-lang", "fra", *FAST))
    assert repr(name) in msg and "file not found" in msg and "--text" in msg
    r = cli("translate", name, "--text", "--src-lang", "eng", "--tgt-lang", "fra", *FAST)
    assert r.returncode == 0 and r.stdout.strip(), r.stderr


# ------------------------------------------------------------------ limits and resources


# The command run in a child that reports its own peak RSS on its last stderr line: VmHWM on Linux
# (ru_maxrss there survives exec, so a child forked from pytest would start at pytest's size).
PEAK_RSS = """import resource, sys
from seamless_mlx.cli import main
try:
    code = main(sys.argv[1:])
finally:
    try:
        with open("/proc/self/status") as f:
            peak = next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmHWM:"))
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS
    print(peak, file=sys.stderr)
sys.exit(code)
"""


def test_long_line_is_split_into_sentences_with_flat_memory(cli, env, mlx_model, tmp_path):
    """An 8,000-character line is translated sentence by sentence: one output piece per sentence
    (the JSON segments), and the peak RSS stays within 100 MB of a one-sentence run's (translated
    whole, the line took ~500 MB more on the tiny model, and that grows with the square of its length)."""
    n = 150
    long_line = " ".join(f"This is sentence number {i}, which says a little more." for i in range(n))

    def peak(text, out):  # the line on standard input: a .txt path would be a document (documents.py)
        argv = [sys.executable, "-c", PEAK_RSS, "translate", "-", "--src-lang", "eng", "--tgt-lang", "fra",
                "-o", out, "-q", *FAST, "--model", str(mlx_model)]
        r = subprocess.run(argv, env=env, cwd=tmp_path, input=text, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        return int(r.stderr.strip().splitlines()[-1])

    short, long = peak("Hello world.", "short.json"), peak(long_line, "long.json")
    assert long <= short + 100e6, f"peak RSS {long / 1e6:.0f} MB, a one-sentence run {short / 1e6:.0f} MB"
    assert len(json.loads((tmp_path / "long.json").read_text(encoding="utf-8"))["segments"]) == n


def test_max_new_tokens_past_the_decoder_positions_is_an_error(cli):
    # the tiny model's decoder has 256 positions, 2 of them for the start and language tokens
    msg = error_line(cli("translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra", "--max-new-tokens", 100000,
                         timeout=60))
    assert "254" in msg and "max_new_tokens" in msg and "100000" in msg


# ------------------------------------------------------------------ errors: exit 2 and one useful line


def test_invalid_utf8_on_stdin(cli):
    msg = error_line(cli("translate", "-", "--src-lang", "eng", "--tgt-lang", "fra", *FAST, stdin=b"Hello \xff\xfe world"))
    assert "UTF-8" in msg and "standard input" in msg


def test_output_path_under_a_file_is_bad_input_not_a_crash(cli):
    (cli.cwd / "plain_file").write_text("x")
    msg = error_line(cli(*HELLO, "-o", "plain_file/out.txt"))
    assert "plain_file/out.txt" in msg


@pytest.mark.parametrize("key,value", [("hidden_size", "big"), ("hidden_size", -8), ("decoder_ffn_dim", 0),
                                       ("vocab_size", 10**12)])
def test_config_with_impossible_size_names_file_and_field(cli, mlx_model, tmp_path, key, value):
    folder = model_copy(mlx_model, tmp_path, edit=lambda c: {**c, key: value})
    msg = error_line(cli(*HELLO, model=folder))
    assert str(folder / "config.json") in msg and key in msg and repr(value) in msg


@pytest.mark.parametrize("content", ["[1, 2]", "{not json"], ids=["list", "invalid"])
def test_config_that_is_not_a_json_object_names_the_file(cli, mlx_model, tmp_path, content):
    folder = model_copy(mlx_model, tmp_path, edit=content)
    msg = error_line(cli(*HELLO, model=folder))
    assert str(folder / "config.json") in msg


def test_missing_generation_config_is_named(cli, mlx_model, tmp_path):
    folder = model_copy(mlx_model, tmp_path, drop="generation_config.json")
    msg = error_line(cli(*HELLO, model=folder))
    assert "generation_config.json" in msg and str(folder) in msg
    msg = error_line(cli("languages", model=folder))  # not an empty table with exit 0
    assert "generation_config.json" in msg and str(folder) in msg


def test_one_sample_wav_is_too_short(cli):
    sf.write(cli.cwd / "one.wav", np.zeros(1, np.float32), 16000)
    for cmd in (["translate", "one.wav", "--tgt-lang", "fra"], ["transcribe", "one.wav", "--lang", "eng"]):
        msg = error_line(cli(*cmd, *FAST))
        assert "'one.wav' is too short" in msg and "560 samples" in msg


def test_unwritable_cache_is_named_before_any_work(cli, tiny_checkpoint):
    (cli.cwd / "not_a_folder").write_text("x")
    cache = cli.cwd / "not_a_folder" / "cache"
    msg = error_line(cli(*HELLO, model=tiny_checkpoint, extra_env={"SEAMLESS_MLX_CACHE": str(cache)}))
    assert "SEAMLESS_MLX_CACHE" in msg and str(cache) in msg


def test_failed_download_says_it_once_with_the_disk_needed(cli):
    msg = error_line(cli(*HELLO, model="facebook/no-such-model-here"))
    assert msg.count("--model") == 1 and "18.5 GB" in msg and "HF_HUB_OFFLINE" in msg
    assert "outgoing traffic" not in msg and "LocalEntryNotFoundError" not in msg  # huggingface_hub's own text


def test_transcribe_names_its_own_option_for_an_unknown_language(cli):
    sf.write(cli.cwd / "half.wav", (0.1 * np.sin(np.arange(8000) / 5)).astype(np.float32), 16000)
    msg = error_line(cli("transcribe", "half.wav", "--lang", "xyz", *FAST))
    assert msg.startswith("seamless-mlx: error: --lang 'xyz' is not supported") and "tgt_lang" not in msg
