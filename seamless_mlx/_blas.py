"""Pick the fastest BLAS for MLX's CPU backend on Linux, before ``mlx.core`` is imported.

The Linux ``mlx-cpu`` wheel ships a *reference* BLAS: fp32 GEMM ran at ~2.5 GFLOP/s and
matrix-vector products at ~1.4 GB/s on our 2-core x86_64 machines, about 50x slower than torch.
MLX resolves its ``cblas_*``/LAPACK symbols dynamically, so a faster library loaded with
``RTLD_GLOBAL`` first takes their place:

1. Intel MKL's single dynamic library (``pip install 'seamless-mlx[cpu]'``; GEMM ~150 GFLOP/s,
   mat-vec at memory bandwidth);
2. the system's OpenBLAS (``apt-get install libopenblas0``).

``SEAMLESS_MLX_BLAS=off`` disables this; ``SEAMLESS_MLX_BLAS=/path/to/lib.so`` forces a library.
Nothing happens on macOS (Accelerate).  When ``mlx.core`` was imported before us its BLAS symbols
are already bound (Python loads extensions with ``RTLD_NOW``; a library loaded later is not
used), so then we only warn, with the two ways out: import seamless_mlx first, or ``LD_PRELOAD``.
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
too_late = None  # a fast BLAS we could have loaded, had mlx.core not been imported first


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


def _fast_blas_mapped() -> bool:
    """Whether MKL or an OpenBLAS with plain ``cblas_*`` names is in this process already (say,
    through ``LD_PRELOAD``).  numpy's ``libscipy_openblas`` has prefixed names and does not count."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return False
    return "libmkl_rt" in maps or "/libopenblas" in maps


def preload() -> None:
    global loaded, missing, too_late
    if not sys.platform.startswith("linux"):
        return
    if os.environ.get("SEAMLESS_MLX_BLAS", "").strip().lower() in ("off", "0", "none", "false"):
        return
    if "mlx.core" in sys.modules:
        if not _fast_blas_mapped():
            too_late = next((p for p in _candidates() if os.path.exists(p)), None)
            missing = too_late is None  # nothing to load either: the install hint
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
    global missing, too_late
    if on_cpu and too_late:
        path, too_late = too_late, None
        warnings.warn(
            "seamless-mlx: mlx.core was imported before seamless_mlx, so MLX is bound to its reference "
            "BLAS and CPU inference will be ~50x slower. Import seamless_mlx before mlx, or start "
            f"Python with LD_PRELOAD={path}",
            RuntimeWarning,
            stacklevel=2,
        )
    if not missing or not on_cpu:
        return
    missing = False
    warnings.warn(
        "seamless-mlx: only MLX's reference BLAS was found; CPU inference will be ~50x slower. "
        "Install Intel MKL with `pip install 'seamless-mlx[cpu]'` (or `apt-get install libopenblas0`).",
        RuntimeWarning,
        stacklevel=2,
    )
