"""The installed ``seamless-mlx`` command never runs code from the folder it is started in."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMAND = Path(sys.executable).with_name("seamless-mlx")
SHADOWS = ("json", "numpy", "soundfile", "argparse")

pytestmark = pytest.mark.skipif(not COMMAND.exists(), reason="the seamless-mlx console script is not installed")


@pytest.fixture(scope="module")
def mlx_model(tiny_checkpoint, tmp_path_factory):
    from seamless_mlx.convert import convert

    return str(convert(tiny_checkpoint, tmp_path_factory.mktemp("conv") / "mlx"))


@pytest.fixture()
def booby_trapped(tmp_path):
    """A working folder whose ``json.py``, ``numpy.py``, ... leave a mark and stop the process
    when imported."""
    for name in SHADOWS:
        mark = tmp_path / f"RAN_{name}"
        (tmp_path / f"{name}.py").write_text(f"open({str(mark)!r}, 'w').close()\nraise SystemExit('SHADOWED by {name}.py')\n")
    return tmp_path


def _run(cwd, *args, **env):
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run([str(COMMAND), *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=300)


def test_modules_in_the_working_folder_are_never_imported(booby_trapped, mlx_model):
    r = _run(booby_trapped, "translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra",
             "--max-new-tokens", "4", "--model", mlx_model)
    assert "SHADOWED" not in r.stderr
    assert sorted(p.name for p in booby_trapped.glob("RAN_*")) == []
    assert r.returncode == 0, r.stderr


def test_a_startup_warning_is_printed_once(tmp_path, mlx_model):
    # a BLAS that does not exist: the "only MLX's reference BLAS" warning, printed at import
    r = _run(tmp_path, "translate", "Hello", "--src-lang", "eng", "--tgt-lang", "fra", "--max-new-tokens", "4",
             "--model", mlx_model, SEAMLESS_MLX_BLAS=str(tmp_path / "no-such-blas.so"))
    if "reference BLAS" not in r.stderr:
        pytest.skip("the default device is not the CPU: no BLAS warning is due")
    assert r.stderr.count("reference BLAS") == 1, r.stderr
    assert r.returncode == 0, r.stderr
