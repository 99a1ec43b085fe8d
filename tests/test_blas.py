"""Which BLAS MLX's CPU backend ends up with on Linux (fresh interpreters: the choice is made once,
when mlx.core is first imported)."""

import os
import subprocess
import sys

import pytest

from seamless_mlx import _blas

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _blas._candidates(), reason="Linux with MKL or OpenBLAS installed"
)
LATE = "imported before seamless_mlx"


def _run(code, **env):
    proc = subprocess.run(
        [sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, env={**os.environ, **env}
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_importing_seamless_mlx_first_loads_a_fast_blas():
    proc = _run("import seamless_mlx; from seamless_mlx import _blas; print(_blas.loaded)")
    assert proc.stdout.strip() in _blas._candidates()
    assert LATE not in proc.stderr


def test_mlx_imported_first_gets_a_warning_with_the_ways_out():
    code = "import mlx.core as mx; import seamless_mlx; print(mx.default_device() == mx.cpu)"
    proc = _run(code)
    if proc.stdout.strip() != "True":
        pytest.skip("the default device is a GPU: the CPU BLAS hardly matters and no warning is due")
    assert LATE in proc.stderr
    assert "LD_PRELOAD=" + _blas._candidates()[0] in proc.stderr


def test_no_warning_when_a_fast_blas_is_preloaded_or_the_choice_is_off():
    code = "import mlx.core; import seamless_mlx"
    assert LATE not in _run(code, LD_PRELOAD=_blas._candidates()[0]).stderr
    assert LATE not in _run(code, SEAMLESS_MLX_BLAS="off").stderr
