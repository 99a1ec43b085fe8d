"""Files are sacred: what `convert` may replace, output writes that are atomic and checked before
the work, killed conversions cleaned up, one writer per target, sources checked before writing.

Everything about the command runs the real command in a subprocess; kills are real signals sent to
a real conversion (paused at a known point by a wrapper around one function) or real writes cut off
by a file-size limit (the kernel's SIGXFSZ / EFBIG, i.e. a full disk)."""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR = 16000
FAST = ["--max-new-tokens", "4"]
TIMEOUT = 300


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = dict(os.environ)
    e.update(
        SEAMLESS_MLX_CACHE=str(tmp_path_factory.mktemp("cache")), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
        PYTHONIOENCODING="utf-8", PYTHONDONTWRITEBYTECODE="1", SEAMLESS_MLX_HUGEPAGES="0",
    )
    return e


@pytest.fixture(scope="module")
def mlx_model(tiny_checkpoint, tmp_path_factory):
    from seamless_mlx.convert import convert

    return str(convert(tiny_checkpoint, tmp_path_factory.mktemp("conv") / "mlx"))


def run(args, env, cwd, **kw):
    return subprocess.run([sys.executable, "-m", "seamless_mlx.cli", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=TIMEOUT, **kw)


def one_line_error(r, code=2):
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "error: " in lines[0], r.stderr
    return lines[0]


def hidden(folder: Path):
    """Hidden entries (temporary files/folders, locks) in ``folder``."""
    return sorted(n for n in os.listdir(folder) if n.startswith("."))


def tree(folder: Path):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.fixture()
def hf(tiny_checkpoint, tmp_path):
    """A private copy of the tiny transformers checkpoint (tests damage or convert from it)."""
    dst = tmp_path / "src" / "hf"
    shutil.copytree(tiny_checkpoint, dst)
    return dst


@pytest.fixture()
def wav(tmp_path):
    p = tmp_path / "speech.wav"
    t = np.arange(2 * SR) / SR
    sf.write(p, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR)
    return p


# ------------------------------------------------------------------ convert --force


def test_force_refuses_what_is_not_a_conversion(hf, env, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    unrelated = tmp_path / "photos"
    unrelated.mkdir()
    (unrelated / "a.jpg").write_bytes(b"jpeg")
    a_file = tmp_path / "file.bin"
    a_file.write_bytes(b"data")
    source_before = tree(hf)
    for target, why in [(".", "working directory"), (unrelated, "not a folder written by"),
                        (a_file, "not a folder"), (hf, "source"), (hf.parent, "source")]:
        r = run(["convert", "--hf-path", hf, "--mlx-path", target, "--force"], env, work)
        assert why in one_line_error(r), (target, r.stderr)
    assert (work / "notes.txt").read_text() == "mine"
    assert (unrelated / "a.jpg").read_bytes() == b"jpeg" and a_file.read_bytes() == b"data"
    assert tree(hf) == source_before


def test_force_replaces_a_conversion_but_not_one_holding_user_files(hf, env, tmp_path):
    out = tmp_path / "m"
    assert run(["convert", "--hf-path", hf, "--mlx-path", out], env, tmp_path).returncode == 0
    r = run(["convert", "--hf-path", hf, "--mlx-path", out, "--force", "--dtype", "float16"], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "float16"
    (out / "my_notes.txt").write_text("mine")
    msg = one_line_error(run(["convert", "--hf-path", hf, "--mlx-path", out, "--force"], env, tmp_path))
    assert "not a folder written by" in msg
    assert (out / "my_notes.txt").read_text() == "mine"
    assert hidden(tmp_path) == []


# ------------------------------------------------------------------ outputs of translate / transcribe


def test_output_path_is_checked_before_any_model_work(hf, env, tmp_path, wav):
    """The model is an unconverted folder: any model work would first convert it into the cache."""
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_folder.txt").mkdir()
    (tmp_path / "a_folder.srt").mkdir()
    cases = [("missing/out", "does not exist"), ("a_file/out", "is a file"), ("a_folder", "is a folder")]
    if os.geteuid() != 0:  # root may write in a read-only folder
        (tmp_path / "ro").mkdir(mode=0o555)
        cases.append(("ro/out", "not writable"))
    for out, why in cases:
        r = run(["translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra", "-o", out + ".txt", "--model", hf,
                 *FAST], env, tmp_path)
        assert why in one_line_error(r), r.stderr
    r = run(["transcribe", wav, "--lang", "eng", "-o", "a_folder.srt", "--model", hf, *FAST], env, tmp_path)
    assert "is a folder" in one_line_error(r), r.stderr
    assert os.listdir(env["SEAMLESS_MLX_CACHE"]) == []


def test_existing_output_is_kept_unless_overwrite(mlx_model, env, tmp_path, wav):
    for args, name in [(["translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra"], "t.txt"),
                       (["translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra"], "s.wav"),
                       (["transcribe", wav, "--lang", "eng"], "t.srt")]:
        out = tmp_path / name
        out.write_bytes(b"precious")
        msg = one_line_error(run([*args, "-o", out, "--model", mlx_model, *FAST], env, tmp_path))
        assert "-y/--overwrite" in msg and "exists" in msg
        assert out.read_bytes() == b"precious"
        r = run([*args, "-o", out, "-y", "--model", mlx_model, *FAST], env, tmp_path)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() != b"precious"
    assert hidden(tmp_path) == []


def test_output_never_replaces_the_input(mlx_model, env, tmp_path, wav):
    before = wav.read_bytes()
    for yes in ([], ["-y"]):
        msg = one_line_error(run(["translate", wav, "--tgt-lang", "fra", "-o", wav, *yes, "--model", mlx_model, *FAST],
                                 env, tmp_path))
        assert "input" in msg
        assert wav.read_bytes() == before
    notes = tmp_path / "notes.txt"
    notes.write_text("Hello there.\n")
    link = tmp_path / "link.txt"
    link.symlink_to(notes)
    msg = one_line_error(run(["translate", notes, "--src-lang", "eng", "--tgt-lang", "fra", "-o", link, "-y",
                              "--model", mlx_model, *FAST], env, tmp_path))
    assert "input" in msg and notes.read_text() == "Hello there.\n"


def test_api_save_never_replaces_the_translated_recording(mlx_model, env, tmp_path, wav, monkeypatch):
    from seamless_mlx.api import translate

    monkeypatch.setenv("SEAMLESS_MLX_CACHE", env["SEAMLESS_MLX_CACHE"])
    before = wav.read_bytes()
    r = translate(str(wav), tgt_lang="fra", speech=True, model=mlx_model, max_new_tokens=4)
    with pytest.raises(ValueError, match="input"):
        r.save(wav)
    assert wav.read_bytes() == before


SAVE = """
import os, signal, sys
import numpy as np
if os.environ.get("KILL_AT_LIMIT"):  # Python ignores SIGXFSZ; a plain program dies of it
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
from seamless_mlx.api import Result, Segment
r = Result(text="Bonjour " * 400, audio=np.linspace(-0.5, 0.5, 16000).astype(np.float32),
           segments=[Segment(0.0, 1.0, "Bonjour " * 400)])
r.save(sys.argv[1])
"""


def limited_run(argv, env, cwd, max_bytes, kill):
    """Run ``argv`` with files limited to ``max_bytes``: past it the kernel kills the writer
    (SIGXFSZ, ``kill=True``) or the write fails with EFBIG as on a full disk."""

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    env = dict(env, KILL_AT_LIMIT="1" if kill else "")
    r = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, preexec_fn=limit)
    # the OpenMP runtime's start-up note that it could not size its shared-memory file under the limit
    r.stderr = "".join(ln for ln in r.stderr.splitlines(True) if not ln.startswith("OMP: Warning"))
    return r


@pytest.mark.parametrize("name", ["old.srt", "old.wav"])
def test_full_disk_leaves_the_old_file_and_no_temp(env, tmp_path, name):
    out = tmp_path / name
    out.write_bytes(b"precious" * 1000)
    r = limited_run([sys.executable, "-c", SAVE, out], env, tmp_path, 1024, kill=False)
    assert r.returncode == 1 and "could not write" in r.stderr, r.stderr
    assert out.read_bytes() == b"precious" * 1000
    assert os.listdir(tmp_path) == [name]


def test_write_killed_midway_leaves_the_old_file_and_the_next_write_cleans_up(env, tmp_path):
    out = tmp_path / "old.srt"
    out.write_bytes(b"precious" * 1000)
    r = limited_run([sys.executable, "-c", SAVE, out], env, tmp_path, 1024, kill=True)
    assert r.returncode == -signal.SIGXFSZ, r.stderr
    assert out.read_bytes() == b"precious" * 1000
    r = subprocess.run([sys.executable, "-c", SAVE, out], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.read_text(encoding="utf-8").startswith("1\n00:00:00,000 --> ")
    assert os.listdir(tmp_path) == ["old.srt"]


def start_paused(script, args, env, tmp_path):
    """Start ``script`` (it creates $READY where it pauses, and goes on once $GO exists); return
    the process once it has paused."""
    e = dict(env, READY=str(tmp_path / "READY"), GO=str(tmp_path / "GO"))
    # a test run started in the background (`cmd &` without job control) ignores SIGINT, and so
    # would the child: give it the default, as a terminal's Ctrl-C finds it
    p = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], env=e, cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.time()
    while not (tmp_path / "READY").exists():
        assert p.poll() is None, p.communicate()
        assert time.time() - t0 < TIMEOUT
        time.sleep(0.05)
    return p


# The real command, stopped inside its output write (the temporary file written, not yet renamed).
WRITE_PAUSED = """
import os, sys, time
def paused(fd):
    open(os.environ["READY"], "w").close()
    while True:
        time.sleep(0.05)
os.fsync = paused
from seamless_mlx.cli import main
sys.argv[0] = "seamless-mlx"
sys.exit(main())
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["KILL", "TERM"])
def test_cli_killed_while_writing_keeps_the_old_file(mlx_model, env, tmp_path, wav, sig):
    out = tmp_path / "old.srt"
    out.write_bytes(b"precious")
    args = ["transcribe", wav, "--lang", "eng", "-o", out, "-y", "--model", mlx_model, *FAST]
    p = start_paused(WRITE_PAUSED, args, env, tmp_path)
    p.send_signal(sig)
    _, err = p.communicate(timeout=TIMEOUT)
    assert out.read_bytes() == b"precious"
    if sig == signal.SIGTERM:
        assert p.returncode == 143 and "Traceback" not in err, (p.returncode, err)
        assert hidden(tmp_path) == []
    else:
        assert hidden(tmp_path), "the killed writer's temporary file, for the next run to remove"
    r = run(args, env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert out.read_text(encoding="utf-8").startswith("1\n") and hidden(tmp_path) == []


def test_cli_full_disk_is_one_line_and_leaves_nothing(mlx_model, env, tmp_path, wav):
    argv = [sys.executable, "-m", "seamless_mlx.cli", "transcribe", wav, "--lang", "eng", "--format", "json",
            "-o", "new.json", "--model", mlx_model, *FAST]
    r = limited_run(argv, env, tmp_path, 8, kill=False)
    msg = one_line_error(r, code=1)
    assert "new.json" in msg
    assert sorted(os.listdir(tmp_path)) == ["speech.wav"]


# ------------------------------------------------------------------ killed, concurrent and refused conversions

# A real conversion that stops after writing its weights (READY file) until GO exists.
PAUSED = """
import os, sys, time
import seamless_mlx.convert as c
write = c.save_sharded
def paused(*a, **k):
    write(*a, **k)
    open(os.environ["READY"], "w").close()
    while not os.path.exists(os.environ["GO"]):
        time.sleep(0.05)
c.save_sharded = paused
if sys.argv[1] == "cache":
    from seamless_mlx.api import model_folder
    print(model_folder(sys.argv[2]))
else:
    sys.exit(c.main())
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["KILL", "TERM", "INT"])
def test_killed_conversion_leaves_nothing_after_the_next_run(hf, env, tmp_path, sig):
    work = tmp_path / "work"
    work.mkdir()
    out = work / "tiny-mlx"
    p = start_paused(PAUSED, ["--hf-path", hf, "--mlx-path", out], env, tmp_path)
    assert [n for n in hidden(work) if ".tmp-" in n]  # the conversion is under way
    p.send_signal(sig)
    _, err = p.communicate(timeout=TIMEOUT)
    assert not out.exists()
    if sig != signal.SIGKILL:
        assert p.returncode == 128 + sig and "Traceback" not in err, (p.returncode, err)
        assert hidden(work) == [] and os.listdir(work) == [], os.listdir(work)
    r = run(["convert", "--hf-path", hf, "--mlx-path", out], env, work)
    assert r.returncode == 0, r.stderr
    assert os.listdir(work) == ["tiny-mlx"]


def test_killed_cache_conversion_is_cleaned_on_next_use(hf, env, tmp_path):
    cache = tmp_path / "cache"
    e = dict(env, SEAMLESS_MLX_CACHE=str(cache))
    p = start_paused(PAUSED, ["cache", hf], e, tmp_path)
    p.kill()
    p.communicate(timeout=TIMEOUT)
    assert len(hidden(cache)) >= 1
    r = subprocess.run([sys.executable, "-c", "import sys; from seamless_mlx.api import model_folder; "
                        "print(model_folder(sys.argv[1]))", hf], env=e, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert hidden(cache) == [] and len(os.listdir(cache)) == 1


def test_stale_cleanup_removes_only_provably_dead_temporaries(hf, env, tmp_path):
    out = tmp_path / "m"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:  # this process's start time, as the converter names its temporaries (0 where /proc is missing)
        stat = Path("/proc/self/stat").read_text()
        start = stat[stat.rindex(")") + 2:].split()[19]
    except OSError:
        start = 0
    me = f"{os.getpid()}-{start}"
    folders = {
        f".m.tmp-{dead.pid}-0-abcd1234": False,  # its process is gone
        ".m.tmp-ab12cd34": False,  # an older converter's, untouched for hours
        f".m.tmp-{me}-zzzz9999": True,  # a live process's
        ".m.tmp-ef56gh78": True,  # an older converter's, recent: may still run
        ".m.tmp-mine": True,  # not a name the converter makes
        ".other.tmp-ab12cd34": True,  # another target's
        f".m.tmp-{dead.pid}-0-abcd5678": True,  # our name, but a user's files in it
        f".m.old-{dead.pid}-0-abc123": True,  # the same for a set-aside name
        ".m.old-3999997": True,  # a name no converter of ours makes now
    }
    for name in folders:
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"x")
    for name in (f".m.tmp-{dead.pid}-0-abcd5678", f".m.old-{dead.pid}-0-abc123", ".m.old-3999997"):
        (tmp_path / name / "notes.txt").write_text("mine")
    old = time.time() - 3 * 3600
    for p in (tmp_path / ".m.tmp-ab12cd34", tmp_path / ".m.tmp-ab12cd34" / "model.safetensors"):
        os.utime(p, (old, old))
    r = run(["convert", "--hf-path", hf, "--mlx-path", out], env, tmp_path)
    assert r.returncode == 0, r.stderr
    assert {n for n in folders if (tmp_path / n).exists()} == {n for n, keep in folders.items() if keep}


def test_second_conversion_into_the_same_folder_fails_while_the_first_runs(hf, env, tmp_path):
    out = tmp_path / "m"
    first = start_paused(PAUSED, ["--hf-path", hf, "--mlx-path", out], env, tmp_path)
    try:
        msg = one_line_error(run(["convert", "--hf-path", hf, "--mlx-path", out, "--dtype", "float16"], env, tmp_path))
        assert f"pid {first.pid}" in msg and "another process" in msg
    finally:
        (tmp_path / "GO").touch()
    _, err = first.communicate(timeout=TIMEOUT)
    assert first.returncode == 0, err
    assert "torch_dtype" not in json.loads((out / "config.json").read_text())  # the first one's folder
    assert [n for n in hidden(tmp_path)] == []


def test_cache_conversion_waits_for_the_running_one(hf, env, tmp_path):
    cache = tmp_path / "cache"
    e = dict(env, SEAMLESS_MLX_CACHE=str(cache))
    first = start_paused(PAUSED, ["cache", hf], e, tmp_path)
    log = tmp_path / "second.log"
    with open(log, "w") as err:
        second = subprocess.Popen([sys.executable, "-c", "import sys; from seamless_mlx.api import model_folder; "
                                   "print(model_folder(sys.argv[1]))", str(hf)], env=e, stdout=subprocess.PIPE,
                                  stderr=err, text=True)
    t0 = time.time()
    while "Waiting" not in log.read_text() and second.poll() is None and time.time() - t0 < TIMEOUT:
        time.sleep(0.05)
    (tmp_path / "GO").touch()
    out1, _ = first.communicate(timeout=TIMEOUT)
    out2, _ = second.communicate(timeout=TIMEOUT)
    err2 = log.read_text()
    assert first.returncode == 0 and second.returncode == 0, err2
    assert "Waiting for another process" in err2 and "Converting" not in err2
    assert out1 == out2 and hidden(cache) == []


@pytest.mark.parametrize("damage, named", [
    ("rm sentencepiece.bpe.model", "sentencepiece.bpe.model"),
    ("rm generation_config.json", "generation_config.json"),
    ("set hidden_size 48", "does not match its config.json"),
])
def test_unservable_source_is_refused_before_writing(hf, env, tmp_path, damage, named):
    verb, arg = damage.split(" ", 1)
    if verb == "rm":
        (hf / arg).unlink()
    else:
        key, value = arg.split()
        cfg = json.loads((hf / "config.json").read_text())
        cfg[key] = int(value)
        (hf / "config.json").write_text(json.dumps(cfg))
    out_dir = tmp_path / "outs"
    out_dir.mkdir()
    msg = one_line_error(run(["convert", "--hf-path", hf, "--mlx-path", out_dir / "new" / "m"], env, tmp_path))
    assert named in msg
    assert os.listdir(out_dir) == []


def test_model_card_names_the_target(hf, env, tmp_path):
    out = tmp_path / "tiny-mlx"
    assert run(["convert", "--hf-path", hf, "--mlx-path", out, "-q", "--q-bits", "8"], env, tmp_path).returncode == 0
    card = (out / "README.md").read_text()
    assert "# tiny-mlx\n" in card and 'load("tiny-mlx")' in card
    assert ".tmp" not in card


def test_convert_into_read_only_folder_is_one_line(hf, env, tmp_path):
    if os.geteuid() == 0:  # root writes anywhere but in /sys
        if not os.path.isdir("/sys/fs"):
            pytest.skip("running as root without /sys")
        target = Path("/sys/fs/seamless-mlx-test")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        target = ro / "m"
    msg = one_line_error(run(["convert", "--hf-path", hf, "--mlx-path", target], env, tmp_path))
    assert "permission" in msg.lower() or "not permitted" in msg.lower()
    assert not target.exists()


def test_upload_without_network_is_one_line_and_keeps_the_folder(hf, env, tmp_path):
    out = tmp_path / "m"
    e = dict(env, HF_ENDPOINT="http://127.0.0.1:9")  # nothing listens there; no traffic leaves the machine
    msg = one_line_error(run(["convert", "--hf-path", hf, "--mlx-path", out, "--upload-repo", "me/tiny"], e, tmp_path),
                         code=1)
    assert "upload" in msg and "me/tiny" in msg
    assert (out / "config.json").exists()


def test_a_write_removes_only_its_own_targets_dead_temporaries(tmp_path):
    from seamless_mlx.fileio import write_text_atomic

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    files = {
        f".out.txt.tmp-{dead.pid}-0-abcd1234": False,  # out.txt's, its writer gone
        f".report.pdf.tmp-{dead.pid}-0-abcd1234": True,  # another file's
        f".out.txt.tmp-{dead.pid}-0-keep": True,  # not a name atomic_write makes
        ".mydata.tmp-4000000-1-x": True,
    }
    for name in files:
        (tmp_path / name).write_text("precious")
    write_text_atomic(tmp_path / "out.txt", "new")
    assert {n for n in files if (tmp_path / n).exists()} == {n for n, keep in files.items() if keep}
    assert (tmp_path / "out.txt").read_text() == "new"


def test_overwrite_keeps_a_read_only_file_even_for_root(tmp_path):
    from seamless_mlx.fileio import OutputPathError, check_output_path

    ro = tmp_path / "ro.txt"
    ro.write_text("keep")
    ro.chmod(0o444)  # root could write it anyway: the mode says the user wants it kept
    with pytest.raises(OutputPathError, match="read-only"):
        check_output_path(ro, overwrite=True)
    assert ro.read_text() == "keep"
