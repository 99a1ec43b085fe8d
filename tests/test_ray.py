"""The Ray Data adapter on a local Ray instance: same translations as the single-process API, in
order, none lost, a bad row reported in its own ``error`` column."""

import pytest

ray = pytest.importorskip("ray")

from seamless_mlx.api import translate  # noqa: E402
from seamless_mlx.ray import Translator  # noqa: E402

TEXTS = [
    ("Hello world, how are you today?", "eng"),
    ("Bonjour tout le monde ! Comment allez-vous ?", "fra"),
    ("Hi.", "eng"),
    ("", "eng"),  # a bad row: empty text
    ("The quick brown fox jumps over the lazy dog, and then it runs far away.", "eng"),
    ("Guten Morgen, wie geht es dir?", "deu"),
    ("Numbers 1234 567 89.", "eng"),
    ("Je voudrais un café, s'il vous plaît.", "fra"),
] * 2


@pytest.fixture(scope="module")
def mlx_model(tiny_checkpoint, tmp_path_factory):
    from seamless_mlx.convert import convert

    return str(convert(tiny_checkpoint, tmp_path_factory.mktemp("conv") / "mlx"))


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()


def test_map_batches_equals_single_process_api_in_order(local_ray, mlx_model):
    rows = [{"id": i, "text": t, "src_lang": s} for i, (t, s) in enumerate(TEXTS)]
    ds = ray.data.from_items(rows).map_batches(
        Translator, fn_constructor_kwargs=dict(model=mlx_model, tgt_lang="spa", max_new_tokens=6, batch_size=4),
        batch_size=5, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=2), num_cpus=1,
    )
    out = ds.take_all()
    assert [r["id"] for r in out] == list(range(len(rows)))  # in order, none lost
    expected = translate([t for t, _ in TEXTS], tgt_lang="spa", src_lang=[s for _, s in TEXTS], model=mlx_model,
                         max_new_tokens=6)
    assert [r["translation"] for r in out] == [e.text for e in expected]
    assert [bool(r["error"]) for r in out] == [not t for t, _ in TEXTS]
    assert all("empty" in r["error"] for r in out if r["error"])


def _clip(seconds, freq, rate):
    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    return (0.2 * np.sin(2 * np.pi * freq * t) + 0.02 * np.cos(2 * np.pi * 3 * freq * t)).astype(np.float32)


def test_audio_rows_as_file_bytes_and_as_waveforms_equal_the_api(local_ray, mlx_model, tmp_path):
    """read_binary_files' bytes (storage workers cannot open as paths) and waveform columns."""
    import numpy as np
    import soundfile as sf

    folder = tmp_path / "recordings"
    folder.mkdir()
    files = [folder / "a.wav", folder / "b.flac"]
    sf.write(files[0], _clip(1.2, 220, 16000), 16000)
    sf.write(files[1], _clip(0.8, 330, 8000), 8000)  # resampled on the way in
    (folder / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    kw = dict(model=mlx_model, tgt_lang="fra", max_new_tokens=6, batch_size=4, speech_input=True)
    out = ray.data.read_binary_files(str(folder), include_paths=True).map_batches(
        Translator, fn_constructor_kwargs=dict(source_column="bytes", **kw), batch_size=3, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1,
    ).take_all()
    got = {r["path"].rsplit("/", 1)[-1]: r for r in out}
    assert sorted(got) == ["a.wav", "b.flac", "broken.wav"]
    expected = translate([str(f) for f in files], tgt_lang="fra", model=mlx_model, max_new_tokens=6)
    assert [got[f.name]["translation"] for f in files] == [e.text for e in expected]
    assert [got[f.name]["error"] for f in files] == ["", ""]
    assert "broken.wav" in got["broken.wav"]["error"] and got["broken.wav"]["translation"] == ""

    waves = [_clip(1.0, 200, 8000), _clip(0.6, 500, 8000), np.zeros(3, np.float32)]  # the last is too short
    rows = [{"id": i, "audio": w} for i, w in enumerate(waves)]
    out = ray.data.from_items(rows).map_batches(
        Translator, fn_constructor_kwargs=dict(source_column="audio", sampling_rate=8000, **kw), batch_size=3,
        batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1,
    ).take_all()
    expected = translate(waves[:2], tgt_lang="fra", model=mlx_model, max_new_tokens=6, sampling_rate=8000)
    assert [r["id"] for r in out] == [0, 1, 2]
    assert [r["translation"] for r in out[:2]] == [e.text for e in expected] and out[2]["error"]


def test_translator_called_directly_exits_cleanly_and_reports_empty_cells(mlx_model, tmp_path):
    """Outside Ray too: a missing cell is that row's error (not the text "None"), a missing language
    cell takes the constructor's, and the process exits 0 (MLX 0.32 aborted at exit when the
    translator's thread was joined at interpreter shutdown)."""
    import subprocess
    import sys

    script = tmp_path / "direct.py"
    script.write_text(f"""
import numpy as np, pandas as pd
from seamless_mlx.api import translate
from seamless_mlx.ray import Translator
t = Translator(model={mlx_model!r}, tgt_lang="fra", src_lang="eng", max_new_tokens=6)
out = t(pd.DataFrame({{"text": ["Hello world.", None, float("nan"), "Good night."], "tgt_lang": ["spa", "deu", None, None]}}))
want = translate(["Hello world.", "Good night."], tgt_lang=["spa", "fra"], src_lang="eng", model={mlx_model!r}, max_new_tokens=6)
assert list(out["translation"]) == [want[0].text, "", "", want[1].text], out
assert [bool(e) for e in out["error"]] == [False, True, True, False] and "empty" in out["error"][1], out
print("ok")
""")
    for _ in range(2):
        r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
