"""Pick the fastest BLAS for MLX's CPU backend on Linux, before ``mlx.core`` is imported.

The Linux ``mlx-cpu`` wheel ships a *reference* BLAS: fp32 GEMM ran at ~2.5 GFLOP/s and
matrix-vector products at ~1.4 GB/s on our 2-core x86_64 machines, about 50x slower than torch.
MLX resolves its ``cblas_*``/LAPACK symbols dynamically, so a faster library loaded with
``RTLD_GLOBAL`` first takes their place:

1. Intel MKL's single dynamic library (``pip install 'seamless-mlx[cpu]'``; GEMM ~150 GFLOP/s,
   mat-vec at memory bandwidth);
2. the system's OpenBLAS (``apt-get install libopenblas0``).

``SEAMLESS_MLX_BLAS=off`` disables this; ``SEAMLESS_MLX_BLAS=/path/to/lib.so`` forces a library.
Nothing happens on macOS (Accelerate) or when ``mlx.core`` was imported before us.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
import sysconfig
import warnings

loaded = None  # path of the BLAS we loaded, or None
missing = False  # looked for one and found none


def _candidates():
    forced = os.environ.get("SEAMLESS_MLX_BLAS", "").strip()
    if forced and forced.lower() not in ("auto", "on", "1"):
        return [forced]
    roots = {sys.prefix, sys.base_prefix, sysconfig.get_config_var("LIBDIR") or ""}
    mkl = []
    for root in roots:
        if root:
            mkl += sorted(glob.glob(os.path.join(root, "lib", "libmkl_rt.so*")))
    openblas = []
    for pattern in (
        "/usr/lib/x86_64-linux-gnu/libopenblas.so*",
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so*",
        "/usr/lib/aarch64-linux-gnu/libopenblas.so*",
        "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so*",
        "/usr/lib64/libopenblas.so*",
    ):
        openblas += sorted(glob.glob(pattern))
    return mkl + openblas


def preload() -> None:
    global loaded, missing
    if not sys.platform.startswith("linux") or "mlx.core" in sys.modules:
        return
    if os.environ.get("SEAMLESS_MLX_BLAS", "").strip().lower() in ("off", "0", "none", "false"):
        return
    for path in _candidates():
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        loaded = path
        return
    missing = True


def warn_if_missing(on_cpu: bool) -> None:
    """Once ``mlx.core`` is imported: warn when the CPU runs the models on the reference BLAS (not
    where a GPU backend, CUDA's, is the default device: its CPU BLAS hardly matters)."""
    global missing
    if not missing or not on_cpu:
        return
    missing = False
    warnings.warn(
        "seamless-mlx: only MLX's reference BLAS was found; CPU inference will be ~50x slower. "
        "Install Intel MKL with `pip install 'seamless-mlx[cpu]'` (or `apt-get install libopenblas0`).",
        RuntimeWarning,
        stacklevel=2,
    )
