"""The few-row product kernel behind MLX's cblas_sgemm (seamless_mlx/cpu/_skinny.c, installed by
seamless_mlx.cpu.blas.install_few_rows).

Its products are compared with float64 numpy on odd shapes for every kernel this CPU runs (the
AVX-512 kernel's 16-lane logic is also built for AVX2, so that logic is checked on any x86 with
AVX2), on one thread and shared by several; decoding through it is compared with transformers
(beam search, scores to 1e-4) with every product shared by threads.  Skipped where the library was
not built (no C compiler at install time) or off Linux."""

import os
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest

from test_beam import BEAM_CASES, _assert_same, _ids, _run_both, pair  # noqa: F401  (pair: a fixture)

from seamless_mlx.cpu import blas, tuning

lib = blas._few_rows_handle()
pytestmark = pytest.mark.skipif(lib is None or not blas.few_rows_active(), reason="the few-row library is not built here")

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
KERNELS = [k for k in ("avx512", "avx2", "wide-avx2", "baseline") if lib is not None and lib.seamless_set_kernel(k.encode())]
if lib is not None:
    lib.seamless_set_kernel(b"auto")


@pytest.fixture
def settings(monkeypatch):
    """Set tuning values and a kernel for one test; the defaults come back after it."""

    def apply(kernel="auto", **values):
        for name, value in values.items():
            monkeypatch.setattr(tuning, name, value)
        assert blas.configure_few_rows(kernel)

    yield apply
    monkeypatch.undo()
    assert blas.configure_few_rows("auto")


def sgemm(a, b, c, alpha=1.0, beta=0.0):
    """``c = alpha * a @ b.T + beta * c`` through the library's cblas_sgemm entry (row-major)."""
    lib.seamless_sgemm(ROW_MAJOR, NO_TRANS, TRANS, a.shape[0], b.shape[0], a.shape[1], alpha,
                       a.ctypes.data, a.strides[0] // 4, b.ctypes.data, b.strides[0] // 4, beta,
                       c.ctypes.data, c.strides[0] // 4)


# (rows, columns, inner): inner sizes off every vector width, odd rows, columns off the 4-row
# blocks and the 64-column tasks, the most rows taken
SHAPES = [(2, 5, 3), (3, 7, 17), (5, 4, 8), (2, 9, 300), (7, 1000, 1), (16, 333, 1030), (16, 64, 4111), (32, 130, 64)]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("parallel", [False, True], ids=["one-thread", "threads"])
@pytest.mark.parametrize("few_rows_first", [True, False], ids=["few-rows-first", "few-rows-second"])
def test_products_equal_float64_products(settings, kernel, parallel, few_rows_first):
    settings(kernel, FEW_ROWS_MIN_INNER=1, FEW_ROWS_PARALLEL_MIN_WORK=0 if parallel else 1 << 62,
             CPU_CORES=3 if parallel else 1)
    rng = np.random.default_rng(0)
    for rows, cols, k in SHAPES:
        shape_a, shape_b = ((rows, k), (cols, k)) if few_rows_first else ((cols, k), (rows, k))
        # strided operands and output (leading dimensions larger than the rows)
        a = rng.standard_normal((shape_a[0], k + 3), dtype=np.float32)[:, :k]
        b = rng.standard_normal((shape_b[0], k + 5), dtype=np.float32)[:, :k]
        ref = a.astype(np.float64) @ b.T.astype(np.float64)
        start = rng.standard_normal((shape_a[0], shape_b[0] + 2), dtype=np.float32)
        before = lib.seamless_taken()
        c = start.copy()
        sgemm(a, b, c[:, : shape_b[0]], alpha=0.5, beta=2.0)
        assert lib.seamless_taken() == before + 1, "the product was passed on, not computed here"
        tol = 1e-5 * np.sqrt(k) * np.abs(ref).max()
        np.testing.assert_allclose(c[:, : shape_b[0]], 0.5 * ref + 2.0 * start[:, : shape_b[0]], atol=tol, rtol=0)
        assert (c[:, shape_b[0]:] == start[:, shape_b[0]:]).all(), "wrote past the output's columns"
        c = np.full(ref.shape, np.nan, dtype=np.float32)  # beta 0: the output is never read
        sgemm(a, b, c)
        np.testing.assert_allclose(c, ref, atol=tol, rtol=0)


def test_mlx_products_with_a_few_rows_are_taken_and_the_others_passed_on():
    k = tuning.FEW_ROWS_MIN_INNER
    w = mx.random.normal((300, k), key=mx.random.key(0))
    for rows, taken in ((1, False), (2, True), (16, True), (tuning.FEW_ROWS_MAX_ROWS, True),
                        (tuning.FEW_ROWS_MAX_ROWS + 1, False), (200, False)):
        x = mx.random.normal((rows, k), key=mx.random.key(rows))
        before = lib.seamless_taken()
        for y in (x @ w.T, (w @ x.T).T):  # both orientations of a few-row product
            np.testing.assert_allclose(np.array(y), np.array(x).astype(np.float64) @ np.array(w).T.astype(np.float64),
                                       atol=1e-4)
        assert (lib.seamless_taken() - before == 2) == taken, rows
    # a short inner size (a small conv's taps) stays on the BLAS
    x, w = mx.random.normal((16, k - 1)), mx.random.normal((300, k - 1))
    before = lib.seamless_taken()
    mx.eval(x @ w.T)
    assert lib.seamless_taken() == before


def test_the_reported_blas_is_the_one_behind_the_kernel():
    path = blas.bound_library()
    assert path and "_skinny" not in os.path.basename(path) and not blas._is_reference(path)


@pytest.mark.skipif(not blas.many_rows_library(), reason="no many-row BLAS in this process")
def test_inside_a_many_rows_block_only_the_products_passed_on_move():
    main = blas.bound_library()
    x, w = mx.random.normal((8, 256)), mx.random.normal((128, 256))
    with blas.many_rows():
        before = lib.seamless_taken()
        mx.eval(x @ w.T)
        assert lib.seamless_taken() == before + 1
        assert os.path.samefile(blas.bound_library(), blas.many_rows_library())
    assert os.path.samefile(blas.bound_library(), main)


@pytest.mark.parametrize("case", [BEAM_CASES[2], BEAM_CASES[6]], ids=_ids)
@pytest.mark.parametrize("kernel", KERNELS)
def test_beam_search_with_threaded_products_matches_transformers(settings, pair, case, kernel):  # noqa: F811
    settings(kernel, FEW_ROWS_MIN_INNER=1, FEW_ROWS_PARALLEL_MIN_WORK=0, CPU_CORES=3)  # the tiny model's sizes
    before = lib.seamless_taken()
    ref, out = _run_both(pair, **case)
    _assert_same(ref, out)
    assert lib.seamless_taken() > before


def test_switched_off_by_the_environment():
    code = "import seamless_mlx; from seamless_mlx.cpu import blas; print(blas.few_rows_active())"
    env = dict(os.environ, SEAMLESS_MLX_FEW_ROWS="off")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


FORK = r"""
import os
import numpy as np
import seamless_mlx
from seamless_mlx.cpu import blas, tuning

tuning.FEW_ROWS_PARALLEL_MIN_WORK = 0
blas.configure_few_rows()
lib = blas._few_rows_handle()
x, w = np.random.default_rng(0).standard_normal((2, 512, 256), dtype=np.float32)
x = x[:4]


def product():
    c = np.empty((4, 512), np.float32)
    lib.seamless_sgemm(101, 111, 112, 4, 512, 256, 1.0, x.ctypes.data, 256, w.ctypes.data, 256, 0.0, c.ctypes.data, 512)
    return np.allclose(c, x.astype(np.float64) @ w.T, atol=1e-3)


assert product()  # the worker threads are running now
pid = os.fork()
if pid == 0:  # they did not come along: the child's pool must start afresh, not wait for them
    os._exit(0 if product() else 1)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


def test_a_forked_child_computes_its_products():
    out = subprocess.run([sys.executable, "-c", FORK], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "0", out.stderr
