"""The ``seamless-mlx`` command, driven as a user would: subprocesses, exit codes, files, messages."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

SR = 16000
FAST = ["--max-new-tokens", "4"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    e = dict(os.environ)
    e.update(SEAMLESS_MLX_CACHE=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONIOENCODING="utf-8")
    return e


@pytest.fixture(scope="module")
def mlx_model(tiny_checkpoint, tmp_path_factory):
    from seamless_mlx.convert import convert

    return str(convert(tiny_checkpoint, tmp_path_factory.mktemp("conv") / "mlx"))


@pytest.fixture(scope="module")
def cli(env, mlx_model, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("work")

    def run(*args, model=True, stdin=None):
        argv = [sys.executable, "-m", "seamless_mlx.cli", *map(str, args)]
        if model:
            argv += ["--model", mlx_model]
        return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, input=stdin, timeout=300)

    run.cwd = cwd
    return run


@pytest.fixture(scope="module")
def wav2s(cli):
    p = cli.cwd / "two_seconds.wav"
    t = np.arange(2 * SR) / SR
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    sf.write(p, x.astype(np.float32), SR)
    return p


def recording_60s(path, seed=0):
    """Bursts of tones and noise separated by 0.5-1 s silences, ~60 s, written as a 16 kHz WAV."""
    rng = np.random.default_rng(seed)
    parts, pos = [], 0
    while pos < 60 * SR:
        n = int(rng.uniform(1.5, 5.0) * SR)
        t = np.arange(n) / SR
        tone = np.sin(2 * np.pi * rng.uniform(120, 800) * t) * 0.2
        parts.append(tone + 0.05 * rng.standard_normal(n))
        g = int(rng.uniform(0.5, 1.0) * SR)
        parts.append(np.zeros(g))
        pos += n + g
    x = np.concatenate(parts).astype(np.float32)
    sf.write(path, x, SR)
    return len(x) / SR


def error_line(r):
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("seamless-mlx: error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


# ------------------------------------------------------------------------------------ success


def test_text_to_text(cli):
    r = cli("translate", "Hello world, how are you?", "--src-lang", "eng", "--tgt-lang", "fra", *FAST)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_text_from_stdin_to_txt_file(cli):
    out = cli.cwd / "t.txt"
    r = cli("translate", "-", "--src-lang", "eng", "--tgt-lang", "deu", "-o", out, *FAST, stdin="Good morning")
    assert r.returncode == 0, r.stderr
    assert out.read_text(encoding="utf-8").strip()


def test_seamless_preset(cli):
    r = cli("translate", "Hello world", "--src-lang", "eng", "--tgt-lang", "spa", "--preset", "seamless",
            "--no-repeat-ngram-size", "2", *FAST)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_text_to_speech_wav(cli):
    out = cli.cwd / "out.wav"
    r = cli("translate", "Hello world", "--src-lang", "eng", "--tgt-lang", "fra", "-o", out, "--speaker-id", 2, *FAST)
    assert r.returncode == 0, r.stderr
    data, sr = sf.read(out)
    assert sr == 16000 and data.ndim == 1 and len(data) > 0
    assert r.stdout.strip()  # the text of the translation is printed too


def test_audio_file_to_text(cli, wav2s):
    r = cli("translate", wav2s, "--tgt-lang", "eng", *FAST)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_a_recording_piped_on_stdin_is_audio(cli, env, mlx_model, wav2s):
    """``ffmpeg -i talk.mp4 -f wav - | seamless-mlx transcribe - ...``: the bytes are a recording."""
    data = wav2s.read_bytes()
    for cmd in (["transcribe", "-", "--lang", "eng"], ["translate", "-", "--tgt-lang", "fra"]):
        r = subprocess.run([sys.executable, "-m", "seamless_mlx.cli", *cmd, *FAST, "--model", mlx_model], env=env,
                           cwd=cli.cwd, capture_output=True, input=data, timeout=300)
        want = cli(cmd[0], wav2s, *cmd[2:], *FAST)
        assert r.returncode == 0 and want.returncode == 0, r.stderr
        assert r.stdout.decode() == want.stdout and want.stdout.strip()
    r = subprocess.run([sys.executable, "-m", "seamless_mlx.cli", "transcribe", "-", "--lang", "eng", "--model",
                        mlx_model], env=env, cwd=cli.cwd, capture_output=True, input=b"not audio", timeout=300)
    assert r.returncode == 2 and b"standard input" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_audio_file_to_speech_flac(cli, wav2s):
    out = cli.cwd / "s2st.flac"
    r = cli("translate", wav2s, "--tgt-lang", "spa", "-o", out, "--quiet", *FAST)
    assert r.returncode == 0, r.stderr
    data, sr = sf.read(out)
    assert sr == 16000 and len(data) > 0
    assert r.stderr == ""


def parse_srt(text):
    blocks = [b for b in text.strip().split("\n\n") if b.strip()]
    times = []
    for i, b in enumerate(blocks, 1):
        lines = b.splitlines()
        assert lines[0] == str(i), b
        m = re.fullmatch(r"(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)", lines[1])
        assert m, lines[1]
        g = [int(x) for x in m.groups()]
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
        assert len(lines) >= 3 and lines[2].strip(), b
        times.append((start, end))
    return times


def test_transcribe_long_recording_to_srt(cli):
    path = cli.cwd / "long.wav"
    total = recording_60s(path)
    out = cli.cwd / "long.srt"
    r = cli("transcribe", path, "--lang", "eng", "--format", "srt", "-o", out, *FAST)
    assert r.returncode == 0, r.stderr
    times = parse_srt(out.read_text(encoding="utf-8"))
    assert len(times) > 1
    assert times[0][0] == 0.0
    for (s, e), (s2, e2) in zip(times, times[1:]):
        assert s < e <= s2 < e2
    assert abs(times[-1][1] - total) < 0.01
    assert all(e - s <= 15.0 + 1e-3 for s, e in times)


def test_transcribe_json_and_vtt_to_stdout(cli, wav2s):
    r = cli("transcribe", wav2s, "--lang", "eng", "--format", "json", *FAST)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["segments"][0]["start"] == 0.0 and abs(d["segments"][0]["end"] - 2.0) < 1e-3
    r = cli("transcribe", wav2s, "--lang", "eng", "--format", "vtt", *FAST)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("WEBVTT") and "00:00:00.000 --> 00:00:02.000" in r.stdout


def test_languages(cli):
    r = cli("languages")
    assert r.returncode == 0, r.stderr
    rows = {ln.split()[0]: ln.split()[1:] for ln in r.stdout.strip().splitlines()[1:]}
    assert set(rows) == {"eng", "fra", "deu", "spa", "rus", "cmn", "arb", "hin"}
    assert rows["fra"] == ["yes", "yes", "yes", "yes"]
    assert rows["rus"][3] == "-"


def test_hf_folder_is_converted_once_into_the_cache(cli, tiny_checkpoint, env):
    r = cli("translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra", "--model", tiny_checkpoint, *FAST, model=False)
    assert r.returncode == 0, r.stderr
    assert "Converting" in r.stderr
    cached = [n for n in os.listdir(env["SEAMLESS_MLX_CACHE"]) if not n.endswith(("-q4", "-q8"))]
    assert len(cached) == 1 and cached[0].startswith("hf-")
    r = cli("translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra", "--model", tiny_checkpoint, *FAST, model=False)
    assert r.returncode == 0 and "Converting" not in r.stderr


def test_python_module_help():
    r = subprocess.run([sys.executable, "-m", "seamless_mlx.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "translate" in r.stdout and "transcribe" in r.stdout


def test_convert_subcommand(cli, tiny_checkpoint):
    out = cli.cwd / "converted"
    r = cli("convert", "--hf-path", tiny_checkpoint, "--mlx-path", out, model=False)
    assert r.returncode == 0, r.stderr
    assert (out / "config.json").exists()
    r = cli("convert", "--hf-path", tiny_checkpoint, "--mlx-path", out, model=False)
    assert r.returncode == 2 and "--force" in r.stderr


# ------------------------------------------------------------------------------------ errors


def test_unknown_language_lists_codes(cli):
    msg = error_line(cli("translate", "Hello", "--src-lang", "eng", "--tgt-lang", "xyz", *FAST))
    assert "xyz" in msg and "fra" in msg and "eng" in msg


def test_unknown_source_language(cli):
    msg = error_line(cli("translate", "Hello", "--src-lang", "zzz", "--tgt-lang", "fra", *FAST))
    assert "zzz" in msg and "eng" in msg


def test_speech_for_text_only_language(cli):
    msg = error_line(cli("translate", "Hello", "--src-lang", "eng", "--tgt-lang", "rus", "--speech", "-o", "r.wav", *FAST))
    assert "rus" in msg and "--text" in msg and "speech" in msg


def test_speaker_id_out_of_range(cli):
    msg = error_line(cli("translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra", "-o", "s.wav", "--speaker-id", 99, *FAST))
    assert "0..2" in msg and "99" in msg


def test_missing_audio_file(cli):
    msg = error_line(cli("translate", "no_such_file.wav", "--tgt-lang", "fra", *FAST))
    assert "not found" in msg and "no_such_file.wav" in msg
    msg = error_line(cli("transcribe", "no_such_file.flac", "--lang", "eng", *FAST))
    assert "not found" in msg


def test_corrupt_audio_file(cli):
    p = cli.cwd / "corrupt.wav"
    p.write_bytes(np.random.default_rng(0).bytes(4000))
    msg = error_line(cli("translate", p, "--tgt-lang", "fra", *FAST))
    assert "corrupt" in msg and "WAV" in msg


def test_empty_audio_file(cli):
    p = cli.cwd / "empty.wav"
    sf.write(p, np.zeros(0, np.float32), SR)
    msg = error_line(cli("transcribe", p, "--lang", "eng", *FAST))
    assert "no samples" in msg or "empty" in msg


def test_missing_src_lang_for_text(cli):
    msg = error_line(cli("translate", "Hello there", "--tgt-lang", "fra", *FAST))
    assert "--src-lang" in msg


def test_speech_without_audio_output(cli):
    msg = error_line(cli("translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra", "--speech", *FAST))
    assert "--output" in msg and ".wav" in msg


def test_nonexistent_model_folder(cli):
    msg = error_line(cli("translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra",
                         "--model", "/nonexistent/folder", *FAST, model=False))
    assert "/nonexistent/folder" in msg and "--model /path/to/local/folder" in msg


def test_offline_hub_id(cli):
    msg = error_line(cli("translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra",
                         "--model", "nobody-here/no-such-model", *FAST, model=False))
    assert "nobody-here/no-such-model" in msg and "local folder" in msg
    msg = error_line(cli("languages", "--model", "nobody-here/no-such-model", model=False))
    assert "local folder" in msg


def test_folder_without_config(cli):
    msg = error_line(cli("translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra",
                         "--model", cli.cwd, *FAST, model=False))
    assert "config.json" in msg


def test_bad_config_json_is_one_line(cli, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json", encoding="utf-8")
    r = cli("translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra", "--model", bad, *FAST, model=False)
    error_line(r)
    r = cli("translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra", "--model", bad, "--verbose", *FAST, model=False)
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_unexpected_error_is_exit_1(monkeypatch, capsys):
    from seamless_mlx import api, cli as cli_mod

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(api, "translate", boom)
    monkeypatch.setattr(cli_mod, "_preload", lambda args, task: 0.0)  # --verbose would load the default model
    assert cli_mod.main(["translate", "Hi", "--src-lang", "eng", "--tgt-lang", "fra"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "kaboom" in err and "--verbose" in err and "Traceback" not in err
    assert cli_mod.main(["translate", "Hi", "--src-lang", "eng", "--tgt-lang", "fra", "--verbose"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_memory_error_suggests_quantization(monkeypatch, capsys):
    from seamless_mlx import api, cli as cli_mod

    def oom(*a, **k):
        raise MemoryError()

    monkeypatch.setattr(api, "translate", oom)
    monkeypatch.setattr(cli_mod, "_preload", lambda args, task: 0.0)
    assert cli_mod.main(["translate", "Hi", "--src-lang", "eng", "--tgt-lang", "fra"]) == 1
    assert "--quantize 4" in capsys.readouterr().err


def run_in_pty(argv, env):
    """Run with stdout on a pseudo-terminal (stderr piped); returns (returncode, stdout text, stderr text)."""
    master, slave = os.openpty()
    try:
        p = subprocess.Popen(argv, env=env, stdout=slave, stderr=subprocess.PIPE)
        os.close(slave)
        slave = None
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO once the child has closed the terminal
                break
            if not chunk:
                break
            out += chunk
        err = p.stderr.read()
        p.wait(timeout=120)
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    return p.returncode, out.decode("utf-8", "replace").replace("\r\n", "\n"), err.decode("utf-8", "replace")


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_streams_to_a_terminal(env, mlx_model, cli):
    base = [sys.executable, "-m", "seamless_mlx.cli"]
    args = ["translate", "Hello world", "--src-lang", "eng", "--tgt-lang", "fra", "--model", mlx_model, *FAST]
    rc, streamed, err = run_in_pty(base + args, env)
    assert rc == 0, err
    piped = subprocess.run(base + args, env=env, capture_output=True, text=True, timeout=120)
    assert streamed.strip() == piped.stdout.strip() != ""

    # a long recording: text streams segment after segment, no progress bar garbling the terminal
    path = cli.cwd / "long_tty.wav"
    recording_60s(path, seed=4)
    args = ["transcribe", str(path), "--lang", "eng", "--model", mlx_model, *FAST]
    rc, streamed, err = run_in_pty(base + args, env)
    assert rc == 0, err
    assert "%|" not in err  # no tqdm bar while text streams
    piped = subprocess.run(base + args, env=env, capture_output=True, text=True, timeout=120)
    assert streamed.strip() == piped.stdout.strip() != ""


# ------------------------------------------------------------------------------------ examples

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def test_examples_run(cli, env, mlx_model, tiny_checkpoint, wav2s):
    def ex(name, *args):
        r = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *map(str, args)], env=env,
                           cwd=cli.cwd, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (name, r.stderr)
        assert r.stdout.strip(), name
        return r

    m = ["--model", mlx_model, "--max-new-tokens", "4"]
    ex("t2tt.py", *m)
    ex("s2tt.py", *m, "--audio", wav2s)
    ex("asr.py", *m, "--audio", wav2s)
    ex("t2st.py", *m, "--output", cli.cwd / "ex_t2st.wav")
    ex("s2st.py", *m, "--audio", wav2s, "--output", cli.cwd / "ex_s2st.wav")
    assert sf.info(cli.cwd / "ex_t2st.wav").samplerate == 16000
    folder = cli.cwd / "batch_in"
    folder.mkdir()
    sf.write(folder / "a.wav", sf.read(wav2s)[0], SR)
    (folder / "b.txt").write_text("Hello world", encoding="utf-8")
    ex("batch_translate_folder.py", folder, *m, "--tgt-lang", "fra", "--src-lang", "eng", "--speech",
       "--out", cli.cwd / "batch_out")
    assert sorted(p.name for p in (cli.cwd / "batch_out").iterdir()) == [
        "a.fra.txt", "a.fra.wav", "b.fra.txt", "b.fra.wav"]
    ex("quantized_export.py", "--model", tiny_checkpoint, "--bits", "8", "--out", cli.cwd / "q8")
    long = cli.cwd / "long_ex.wav"
    recording_60s(long, seed=1)
    ex("long_form_subtitles.py", long, *m, "--lang", "eng", "-o", cli.cwd / "long_ex.srt")
    assert len(parse_srt((cli.cwd / "long_ex.srt").read_text(encoding="utf-8"))) > 1


# ------------------------------------------------------------------------------------ high-level API


@pytest.fixture()
def api_env(monkeypatch, tmp_path):
    from seamless_mlx import api

    monkeypatch.setenv("SEAMLESS_MLX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    api.get_model.cache_clear()
    yield api
    api.get_model.cache_clear()


def test_api_long_array_with_speech(api_env, mlx_model, tmp_path):
    api = api_env
    recording_60s(tmp_path / "r.wav", seed=2)
    audio = sf.read(tmp_path / "r.wav", dtype="float32")[0]
    r = api.translate(audio, "fra", speech=True, model=mlx_model, max_new_tokens=4, speaker_id=1)
    assert len(r.segments) > 1 and r.sample_rate == 16000
    assert r.text == " ".join(s.text for s in r.segments if s.text)
    assert r.segments[0].start == 0 and abs(r.segments[-1].end - len(audio) / SR) < 1e-6
    # pieces joined with 0.2 s silences
    assert r.audio.dtype == np.float32 and len(r.audio) > (len(r.segments) - 1) * int(0.2 * SR)
    for ext in ("txt", "srt", "vtt", "json", "wav", "flac"):
        r.save(tmp_path / f"o.{ext}")
    assert json.loads((tmp_path / "o.json").read_text())["segments"][1]["start"] > 0
    assert sf.info(tmp_path / "o.flac").frames == len(r.audio)
    with pytest.raises(ValueError, match=".srt"):
        r.save(tmp_path / "o.docx")


def test_api_text_lines_transcribe_and_cache(api_env, mlx_model, wav2s, tmp_path):
    api = api_env
    r = api.translate("Hello world\n\nGood morning", "deu", src_lang="eng", model=mlx_model, max_new_tokens=4)
    assert r.audio is None and len(r.segments) == 2 and r.text.count("\n") == 2
    with pytest.raises(ValueError, match="no speech"):
        r.save(tmp_path / "x.wav")
    with pytest.raises(ValueError, match="src_lang"):
        api.translate("Hello", "fra", model=mlx_model)
    t = api.transcribe(str(wav2s), "eng", model=mlx_model, max_new_tokens=4)
    assert len(t.segments) == 1 and t.segments[0].end == pytest.approx(2.0)
    assert api.get_model(mlx_model, "s2tt") is api.get_model(mlx_model, "s2tt")  # cached per process
    pieces = []
    s = api.translate("Hello world", "fra", src_lang="eng", model=mlx_model, max_new_tokens=4, on_text=pieces.append)
    assert "".join(pieces).strip() == s.text


def test_api_presets():
    from seamless_mlx.api import PRESETS, generation_kwargs

    assert PRESETS["transformers"] == {}
    assert generation_kwargs("transformers", 10) == {}
    kw = generation_kwargs("seamless", 10)
    assert kw == {"num_beams": 5, "max_new_tokens": 210}  # m4t_predict: n-gram blocking off by default
    assert generation_kwargs("seamless", 10, no_repeat_ngram_size=4)["no_repeat_ngram_size"] == 4
    assert generation_kwargs("seamless", 5000)["max_new_tokens"] == 1024
    assert generation_kwargs("seamless", 10, num_beams=2, max_new_tokens=7)["num_beams"] == 2
    with pytest.raises(ValueError, match="seamless"):
        generation_kwargs("fast", 10)


def test_cli_quantize_caches_a_quantized_copy(cli, tiny_checkpoint, env):
    r = cli("translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra", "--model", tiny_checkpoint,
            "--quantize", "4", *FAST, model=False)
    assert r.returncode == 0, r.stderr
    assert "4-bit" in r.stderr
    names = os.listdir(env["SEAMLESS_MLX_CACHE"])
    q = [n for n in names if n.endswith("-q4")]
    assert len(q) == 1
    cfg = json.loads(open(os.path.join(env["SEAMLESS_MLX_CACHE"], q[0], "config.json")).read())
    assert cfg["quantization"]["bits"] == 4


def test_default_hub_model_works_offline_once_cached(tmp_path, mlx_model, env):
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(mlx_model, cache / "seamless-m4t-v2-large")
    e = dict(env, SEAMLESS_MLX_CACHE=str(cache))
    r = subprocess.run([sys.executable, "-m", "seamless_mlx.cli", "translate", "Hello", "--src-lang", "eng",
                        "--tgt-lang", "fra", *FAST], env=e, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_text_file_and_folder_inputs(cli):
    p = cli.cwd / "notes.txt"
    p.write_text("Hello world\nGood night\n", encoding="utf-8")
    r = cli("translate", p, "--src-lang", "eng", "--tgt-lang", "fra", *FAST)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 2
    d = cli.cwd / "a_folder"
    d.mkdir(exist_ok=True)
    assert "folder" in error_line(cli("translate", d, "--tgt-lang", "fra", *FAST))


def test_unsupported_output_formats(cli, wav2s):
    msg = error_line(cli("translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra", "-o", "out.mp3", *FAST))
    assert "out.mp3" in msg and ".wav" in msg and ".txt" in msg
    msg = error_line(cli("transcribe", wav2s, "--lang", "eng", "-o", "t.wav", *FAST))
    assert "t.wav" in msg and ".srt" in msg
    assert not (cli.cwd / "t.wav").exists()
    msg = error_line(cli("translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra", "--text", "-o", "x.wav", *FAST))
    assert "--text" in msg


def test_usage_errors_are_one_line(cli):
    msg = error_line(cli("translate", "Hello", "--src-lang", "eng", *FAST))
    assert "--tgt-lang" in msg and "--help" in msg
    msg = error_line(cli("translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra", "--num-beams", "0"))
    assert "--num-beams" in msg
    msg = error_line(cli("translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra", "--max-new-tokens", "x"))
    assert "--max-new-tokens" in msg
    msg = error_line(cli("transcribe", "a.wav", "--lang", "eng", "--max-segment-s", "0"))
    assert "--max-segment-s" in msg
    msg = error_line(cli("translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra", "--quantize", "3"))
    assert "--quantize" in msg
    r = cli(model=False)
    assert r.returncode == 2 and "translate" in r.stderr


def test_language_codes_are_case_insensitive(cli):
    r = cli("translate", "Hello world", "--src-lang", "ENG", "--tgt-lang", "__fra__", *FAST)
    assert r.returncode == 0, r.stderr
    ref = cli("translate", "Hello world", "--src-lang", "eng", "--tgt-lang", "fra", *FAST)
    assert r.stdout == ref.stdout


def test_verbose_reports_model_and_timings(cli):
    r = cli("translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra", "--verbose", *FAST)
    assert r.returncode == 0, r.stderr
    assert "Loaded t2tt model from" in r.stderr and "Generated in" in r.stderr


def test_api_model_cache_is_keyed_on_the_folder(api_env, mlx_model, monkeypatch):
    api = api_env
    a = api.get_model(mlx_model, "t2tt")
    monkeypatch.chdir(os.path.dirname(mlx_model))
    b = api.get_model(os.path.join(".", os.path.basename(mlx_model)), "t2tt")
    assert a is b
    assert api.get_model(mlx_model, "s2tt")[0] is not a[0]
    assert type(a[0]).__name__ == "SeamlessM4Tv2ForTextToText"


def test_api_integer_pcm_and_other_rates(api_env, mlx_model):
    api = api_env
    t = np.arange(2 * SR) / SR
    x = 0.3 * np.sin(2 * np.pi * 220 * t)
    pcm16 = (x * 32767).astype(np.int16)
    ref = api.translate(pcm16.astype(np.float32) / 32768, "eng", model=mlx_model, max_new_tokens=4)
    pcm = api.translate(pcm16, "eng", model=mlx_model, max_new_tokens=4)  # int16 PCM is scaled to [-1, 1]
    assert pcm.text == ref.text
    x8 = 0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 8000)
    r = api.translate(x8.astype(np.float32), "eng", model=mlx_model, max_new_tokens=4, sampling_rate=8000)
    assert r.segments[0].end == pytest.approx(2.0)
    with pytest.raises(ValueError, match="empty"):
        api.translate(np.zeros(0, np.float32), "eng", model=mlx_model)
