"""Give MLX's CPU backend on Linux a fast BLAS, whatever was imported first.

The Linux ``mlx-cpu`` wheel ships a *reference* BLAS/LAPACK (``mlx_cpu.libs/libblas-*.so``),
10-50x slower than an optimised one.  ``libmlx.so`` calls ``cblas_sgemm`` and friends through
its PLT, so the library they resolve to can be chosen:

1. before ``mlx.core`` is imported, :func:`preload` loads the fastest library found with
   ``RTLD_GLOBAL``, which then wins symbol resolution: Intel MKL's single dynamic library
   (``pip install 'seamless-mlx[cpu]'``), else the system's OpenBLAS (``apt-get install
   libopenblas0``);
2. when ``mlx.core`` came first (``import mlx.core as mx; import seamless_mlx``), its calls are
   already bound to the reference library (Python loads extensions with ``RTLD_NOW``), and
   :func:`ensure_fast` rebinds them: it loads the fast library and rewrites the GOT slots of
   ``libmlx.so`` that point into the reference BLAS/LAPACK with the fast library's functions.
   The slots are plain words in a data page (made writable for the store where full RELRO
   protects it), each rewritten once, atomically; the dynamic linker does the same on lazy binding.  Where
   that is impossible (not an ELF64 little-endian build), importing seamless_mlx raises with
   the one-line fix instead of running 10-50x slower.

MKL picks its threading layer at its first call.  With GNU OpenMP (``libgomp``, which torch
loads) already in the process it takes its GNU layer, which ran MLX's products several times
slower at times on a loaded machine (benchmarks/README.md); forcing its Intel layer then is worse: MKL's ``omp_*`` calls bind to ``libgomp`` and
products come out doubled.  So the layer is fixed as soon as MKL is loaded: Intel OpenMP when no
``libgomp`` is loaded yet (a torch imported afterwards is fine), else sequential.  A
``MKL_THREADING_LAYER`` set by the user is left to MKL.

Which library is fastest depends on the CPU's vendor and on the product's shape.  MKL runs its
AVX-512 GEMM kernels on Intel CPUs only: on AMD (Zen 4 and 5 have AVX-512) it takes an AVX2 path
whatever ``MKL_ENABLE_INSTRUCTIONS`` says, and OpenBLAS's AVX-512 kernels run a float32 GEMM with
hundreds of rows over twice as fast; for one-row products (decoding) MKL stays the faster one
(benchmarks/README.md).  So on x86 CPUs that are not Intel's, with the ``scipy-openblas32`` wheel
installed, :func:`many_rows` points MLX's ``cblas_sgemm`` at OpenBLAS for the length of a block of
work made of products with more than a few rows (the speech and text encoders, the T2U model, the
vocoder, and a decoder search over a batch or beams: 16-row decode steps ran 1.6x faster) and
back afterwards; one-row decoding stays on MKL.  The speech encoder runs OpenBLAS on one thread
per call and cuts its frames over MLX's CPU streams (:func:`seamless_mlx.cpu.streams.split_rows`);
the others, whose products are too short-lived to cut, ask for one thread per core.  A call already running when the pointer
changes finishes in the library it entered, and both libraries compute the same product, so a swap
is never wrong, only faster or slower.  That build exports every symbol with a ``scipy_`` prefix
(it never wins symbol resolution).  Its runtime CPU detection does not know every new CPU, and
images set ``OPENBLAS_CORETYPE`` for numpy's copy (this machine's says Haswell, AVX2): this copy
serves MLX alone, so it is loaded with the core type of the CPU's flags (SkylakeX where the
AVX-512 subsets are there; ``SEAMLESS_MLX_OPENBLAS_CORETYPE`` overrides), and the environment is
put back right after the load.  ``SEAMLESS_MLX_MANY_ROWS_BLAS=off`` keeps every product on the
main library.

Products with a few rows (2-32: a decoder step over a batch or beams) go to neither library:
a BLAS GEMM packs the weight into its panel layout on every call, which for a few rows costs more
than the arithmetic.  :func:`install_few_rows` puts ``seamless_sgemm`` (``_skinny.c``, built at
install time where there is a C compiler) in MLX's ``cblas_sgemm`` slots; it reads each weight row
once, in place, and hands every other call to the function the slots held (which
:func:`many_rows` then moves between the two libraries).  ``SEAMLESS_MLX_FEW_ROWS=off`` keeps
every product on the BLAS.

``SEAMLESS_MLX_BLAS=off`` disables all of this; ``SEAMLESS_MLX_BLAS=/path/to/lib.so`` forces a
library.  Nothing happens off Linux (macOS has Accelerate).  Standard library only: this module
runs before ``mlx.core`` is imported.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import importlib.machinery
import os
import struct
import sys
import sysconfig
import threading
import warnings
from contextlib import contextmanager

from . import tuning  # standard library only, like this module

loaded = None  # path of the fast BLAS this module loaded, or None
_handle = None  # its ctypes.CDLL
rebound = 0  # GOT slots of libmlx rewritten because mlx.core was imported first

MKL_THREADING = {"INTEL": 0, "SEQUENTIAL": 1, "PGI": 2, "GNU": 3, "TBB": 4}  # mkl_service.h
_REFERENCE_PREFIXES = ("libblas", "libcblas", "liblapack")  # the netlib libraries the wheel bundles
SCIPY_OPENBLAS_PREFIX = "scipy_"  # the scipy-openblas32 wheel's prefix on every exported symbol
# the AVX-512 subsets OpenBLAS's SkylakeX kernels use (/proc/cpuinfo names)
_SKYLAKEX_FLAGS = frozenset(("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"))
_SLOT_RELOCATIONS = {62: (6, 7), 183: (1025, 1026)}  # e_machine -> GLOB_DAT, JUMP_SLOT (x86_64, aarch64)


def _disabled() -> bool:
    return os.environ.get("SEAMLESS_MLX_BLAS", "").strip().lower() in ("off", "0", "none", "false")


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


def _cpu_info() -> dict:
    """``{"vendor": vendor_id, "flags": set}`` of the first CPU in /proc/cpuinfo (empty when
    unreadable, e.g. not Linux)."""
    info = {"vendor": "", "flags": frozenset()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "vendor_id":
                    info["vendor"] = value.strip()
                elif key == "flags":
                    info["flags"] = frozenset(value.split())
                    break
    except OSError:
        pass
    return info


def _prefers_openblas(cpu: dict) -> bool:
    """Whether OpenBLAS beats MKL here: an x86 CPU that is not Intel's (see the module docstring)."""
    return cpu["vendor"] not in ("", "GenuineIntel") and "sse2" in cpu["flags"]


def openblas_coretype(flags) -> str:
    """The ``OPENBLAS_CORETYPE`` for a CPU with these /proc/cpuinfo ``flags``: ``SkylakeX`` (its
    AVX-512 kernels) when every AVX-512 subset they use is there, else ``""`` (OpenBLAS's own
    detection)."""
    return "SkylakeX" if _SKYLAKEX_FLAGS <= set(flags) else ""


def _scipy_openblas() -> list:
    """``[path]`` of the scipy-openblas32 wheel's library when installed, else ``[]`` (found
    without importing the package)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("scipy_openblas32")
    except (ImportError, ValueError):
        return []
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "lib", "libscipy_openblas.so")
        if os.path.isfile(path):
            return [path]
    return []


def _symbol_prefix(path: str) -> str:
    return SCIPY_OPENBLAS_PREFIX if os.path.basename(path).startswith("libscipy_openblas") else ""


def _open(path: str):
    """``ctypes.CDLL`` of ``path``; scipy-openblas32's copy, which serves MLX alone, is loaded with
    this CPU's core type (see the module docstring)."""
    coretype = ""
    if _symbol_prefix(path):
        coretype = os.environ.get("SEAMLESS_MLX_OPENBLAS_CORETYPE", "").strip() or openblas_coretype(_cpu_info()["flags"])
    if not coretype:
        return ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    # read by OpenBLAS's load-time constructor; put back afterwards so that child processes (and
    # other OpenBLAS copies, such as numpy's) see the environment they were given
    before = os.environ.get("OPENBLAS_CORETYPE")
    os.environ["OPENBLAS_CORETYPE"] = coretype
    try:
        return ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    finally:
        if before is None:
            del os.environ["OPENBLAS_CORETYPE"]
        else:
            os.environ["OPENBLAS_CORETYPE"] = before


def _drop_stale_openmp_registration() -> None:
    """Intel's OpenMP (MKL starts it) registers itself in ``/dev/shm/__KMP_REGISTERED_LIB_<pid>_<uid>``
    (``/tmp`` without /dev/shm) and dies of SIGBUS when that file exists empty: the leftover of a
    process that had this process id and was killed between creating and sizing it (each killed
    process leaves its file; pids come round again).  Until this process starts OpenMP no live
    process can own the name made of its id, so an empty one is removed."""
    name = f"__KMP_REGISTERED_LIB_{os.getpid()}_{os.getuid()}"
    for folder in ("/dev/shm", "/tmp"):
        path = os.path.join(folder, name)
        try:
            if os.lstat(path).st_size == 0:
                os.unlink(path)
        except OSError:
            pass


def _load_fast():
    """Load the first candidate library with ``RTLD_GLOBAL``; return its handle or None."""
    global loaded, _handle
    _drop_stale_openmp_registration()
    for path in _candidates():
        try:
            lib = _open(path)
        except OSError:
            continue
        loaded, _handle = path, lib
        _pin_mkl_threading(lib)
        return lib
    return None


def _pin_mkl_threading(lib) -> None:
    """Fix MKL's threading layer now, before anything else can load an OpenMP runtime: Intel's
    OpenMP, or no threads when GNU OpenMP (torch's ``libgomp``) is in the process already (see
    the module docstring).  ``MKL_THREADING_LAYER`` set by the user is left to MKL."""
    if not hasattr(lib, "MKL_Set_Threading_Layer"):
        return
    if not os.environ.get("MKL_THREADING_LAYER"):
        gnu_openmp = any(os.path.basename(path).startswith("libgomp") for path, _ in _loaded_objects())
        lib.MKL_Set_Threading_Layer(MKL_THREADING["SEQUENTIAL" if gnu_openmp else "INTEL"])
    lib.MKL_Get_Max_Threads()  # loads the layer (and its OpenMP) now, not at the first product


def preload() -> None:
    """Before ``mlx.core`` is imported: load the fastest BLAS found so that MLX binds to it."""
    if sys.platform.startswith("linux") and not _disabled() and "mlx.core" not in sys.modules:
        _load_fast()


# --- rebinding after the fact ------------------------------------------------------------------


class _DlInfo(ctypes.Structure):
    _fields_ = [("fname", ctypes.c_char_p), ("fbase", ctypes.c_void_p),
                ("sname", ctypes.c_char_p), ("saddr", ctypes.c_void_p)]


class _PhdrInfo(ctypes.Structure):
    _fields_ = [("addr", ctypes.c_size_t), ("name", ctypes.c_char_p)]  # the leading fields suffice


_libc = None


def _c():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
        _libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return _libc


def _owner(address: int) -> str:
    """Path of the loaded object that holds ``address`` ('' when none does)."""
    info = _DlInfo()
    if address and _c().dladdr(ctypes.c_void_p(address), ctypes.byref(info)) and info.fname:
        return os.fsdecode(info.fname)
    return ""


def _loaded_objects():
    """``[(path, load bias)]`` of every object loaded in the process."""
    found = []
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(_PhdrInfo), ctypes.c_size_t, ctypes.c_void_p)

    def visit(info, _size, _data):
        if info.contents.name:
            found.append((os.fsdecode(info.contents.name), info.contents.addr))
        return 0

    _c().dl_iterate_phdr(callback_type(visit), None)
    return found


def _mlx_objects():
    """``[(path, load bias)]`` of the shared objects of the imported ``mlx`` package."""
    core = getattr(sys.modules.get("mlx.core"), "__file__", None)
    if not core:
        return []
    root = os.path.dirname(os.path.realpath(core)) + os.sep
    return [(p, bias) for p, bias in _loaded_objects() if os.path.realpath(p).startswith(root)]


@functools.lru_cache(maxsize=None)
def _got_slots(path):
    """``{symbol: [slot offsets]}`` for the pointer-sized import slots (GLOB_DAT, JUMP_SLOT) of a
    little-endian ELF64 shared object; ``None`` for any other file."""
    with open(path, "rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return None
        kinds = _SLOT_RELOCATIONS.get(struct.unpack_from("<H", head, 18)[0])
        if kinds is None:
            return None
        shoff = struct.unpack_from("<Q", head, 40)[0]
        shentsize, shnum = struct.unpack_from("<HH", head, 58)
        f.seek(shoff)
        raw = f.read(shentsize * shnum)
        # (sh_type, sh_offset, sh_size, sh_link) of each section header
        sections = [struct.unpack_from("<4xI16xQQI", raw, i * shentsize) for i in range(shnum)]

        def body(section):
            f.seek(section[1])
            return f.read(section[2])

        slots = {}
        for section in sections:
            kind, link = section[0], section[3]
            if kind != 4 or link >= shnum or sections[link][0] != 11:  # SHT_RELA against SHT_DYNSYM
                continue
            dynsym = sections[link]
            symbols, names, relocations = body(dynsym), body(sections[dynsym[3]]), body(section)
            for at in range(0, len(relocations) - 23, 24):
                offset, info = struct.unpack_from("<QQ", relocations, at)
                if info & 0xFFFFFFFF not in kinds:
                    continue
                start = struct.unpack_from("<I", symbols, (info >> 32) * 24)[0]
                name = names[start:names.index(b"\0", start)].decode("ascii", "replace")
                slots.setdefault(name, []).append(offset)
        return slots


def _write_word(address: int, value: int) -> None:
    """Store one pointer at ``address``, lifting a read-only (full RELRO) page's protection for
    the store and putting it back after."""
    word = ctypes.c_size_t.from_address(address)
    if _writable(address):
        word.value = value
        return
    page = os.sysconf("SC_PAGE_SIZE")
    base = address - address % page
    libc = _c()
    if libc.mprotect(base, page, 3) != 0:  # PROT_READ | PROT_WRITE
        raise OSError(ctypes.get_errno(), "mprotect failed on MLX's GOT")
    word.value = value
    libc.mprotect(base, page, 1)  # PROT_READ


def _writable(address: int) -> bool:
    with open("/proc/self/maps") as f:
        for line in f:
            span, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in span.split("-"))
            if lo <= address < hi:
                return "w" in perms
    return False


def bound_library(symbol: str = "cblas_sgemm") -> str:
    """Path of the library MLX's ``symbol`` calls go to now ('' when unknown): how tests and
    :func:`ensure_fast` see which BLAS MLX runs on."""
    for path, bias in _mlx_objects():
        slots = _got_slots(path) or {}
        for offset in slots.get(symbol, []):
            target = ctypes.c_size_t.from_address(bias + offset).value
            if symbol == "cblas_sgemm" and _few["installed"] and target == _few["entry"]:
                target = _few["lib"].seamless_get_next() or 0  # what the calls it does not take go to
            return _owner(target)
    return ""


def _is_reference(path: str) -> bool:
    return os.path.basename(path).startswith(_REFERENCE_PREFIXES)


def rebind(lib) -> int:
    """Point every slot of MLX's shared objects that is bound to the reference BLAS/LAPACK at the
    same function of ``lib`` (a loaded ``ctypes.CDLL``, its symbols maybe prefixed: see
    :data:`SCIPY_OPENBLAS_PREFIX`); return how many slots were rewritten."""
    prefix = _symbol_prefix(getattr(lib, "_name", "") or "")
    count = 0
    for path, bias in _mlx_objects():
        for name, offsets in (_got_slots(path) or {}).items():
            for offset in offsets:
                slot = bias + offset
                if not _is_reference(_owner(ctypes.c_size_t.from_address(slot).value)):
                    continue
                try:
                    target = ctypes.cast(getattr(lib, prefix + name), ctypes.c_void_p).value
                except AttributeError:  # not in the fast library: keep the reference one
                    continue
                _write_word(slot, target)
                count += 1
    return count


def ensure_fast(on_cpu: bool) -> None:
    """Once ``mlx.core`` is imported: make sure MLX's CPU BLAS is the fast one.

    When MLX is still bound to its reference BLAS (``mlx.core`` was imported before this package),
    rebind its BLAS/LAPACK calls to the fast library (see the module docstring); if that fails
    and the CPU is the default device, raise ``ImportError`` with the fix.  When no fast library
    is installed at all, warn with the install hint (only on the CPU: with a GPU as the default
    device the CPU BLAS hardly matters).
    """
    global rebound
    if not sys.platform.startswith("linux") or _disabled() or not _is_reference(bound_library()):
        return  # not Linux, switched off, or fast already (preloaded in time, LD_PRELOAD)
    lib = _handle if loaded else _load_fast()
    if lib is None:
        if on_cpu:
            _warn_missing()
        return
    try:
        rebound = rebind(lib)
    except OSError:
        rebound = 0
    if on_cpu and _is_reference(bound_library()):
        raise ImportError(
            f"seamless-mlx: MLX's CPU BLAS could not be switched to {loaded} (CPU inference would be ~50x "
            f"slower). Import seamless_mlx before mlx.core, or start Python with LD_PRELOAD={loaded}"
        )


def _warn_missing() -> None:
    warnings.warn(
        "seamless-mlx: only MLX's reference BLAS was found; CPU inference will be ~50x slower. "
        "Install Intel MKL with `pip install 'seamless-mlx[cpu]'` (or `apt-get install libopenblas0`).",
        RuntimeWarning,
        stacklevel=3,
    )


# --- few-row products: _skinny.c behind MLX's cblas_sgemm --------------------------------------

_few = {"lib": None, "looked": False, "installed": False, "entry": 0, "slots": None}


def _few_rows_handle():
    """ctypes handle of the compiled few-row library (``seamless_mlx/cpu/_skinny*.so``), or None
    when it was not built (no C compiler at install time), off Linux, or switched off."""
    if not _few["looked"]:
        _few["looked"] = True
        off = os.environ.get("SEAMLESS_MLX_FEW_ROWS", "").strip().lower() in ("off", "0", "none", "false")
        if sys.platform.startswith("linux") and not off and not _disabled():
            here = os.path.dirname(os.path.abspath(__file__))
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                path = os.path.join(here, "_skinny" + suffix)
                if not os.path.isfile(path):
                    continue
                try:
                    lib = ctypes.CDLL(path)
                except OSError:
                    continue
                lib.seamless_sgemm.argtypes = [ctypes.c_int] * 6 + [
                    ctypes.c_float, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                    ctypes.c_float, ctypes.c_void_p, ctypes.c_int]  # cblas_sgemm's
                lib.seamless_taken.restype = ctypes.c_long
                lib.seamless_set_next.argtypes = [ctypes.c_void_p]
                lib.seamless_get_next.restype = ctypes.c_void_p
                lib.seamless_set_kernel.argtypes = [ctypes.c_char_p]
                lib.seamless_configure.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_int]
                _few["lib"] = lib
                _few["entry"] = ctypes.cast(lib.seamless_sgemm, ctypes.c_void_p).value
                break
    return _few["lib"]


def _sgemm_slots() -> list:
    """Addresses of the ``cblas_sgemm`` import slots of MLX's objects (they stay where loaded;
    none before ``mlx.core`` is imported, so an empty list is not kept)."""
    if not _few["slots"]:
        _few["slots"] = [bias + offset for path, bias in _mlx_objects()
                         for offset in (_got_slots(path) or {}).get("cblas_sgemm", [])]
    return _few["slots"]


def _sgemm_targets():
    """Where MLX's float32 GEMMs go now, in the form :func:`_point_sgemm` takes back."""
    if _few["installed"]:
        return _few["lib"].seamless_get_next()
    return [ctypes.c_size_t.from_address(slot).value for slot in _sgemm_slots()]


def _point_sgemm(target) -> None:
    """Send MLX's float32 GEMMs to ``target``, a function's address or what :func:`_sgemm_targets`
    returned.  With the few-row library in the slots, only the calls it passes on move."""
    if _few["installed"]:
        _few["lib"].seamless_set_next(target)
        return
    slots = _sgemm_slots()
    for slot, value in zip(slots, target if isinstance(target, list) else [target] * len(slots)):
        _write_word(slot, value)


def install_few_rows() -> bool:
    """Once ``mlx.core`` is imported and bound to its BLAS: point MLX's ``cblas_sgemm`` at the
    few-row library, which takes products with a few rows (a decoder step over a batch or beams)
    and passes every other call to the function the slots held.  Returns whether it is in place.

    A BLAS GEMM packs its weight operand into panels on every call, so a product of a few rows
    reads and writes the weight twice over for little arithmetic; the library's kernel reads each
    weight row once, in place (``_skinny.c``).  ``SEAMLESS_MLX_FEW_ROWS=off`` keeps every product
    on the BLAS."""
    lib = _few_rows_handle()
    if lib is None:
        return False
    with _rows_lock:
        if _few["installed"] or _rows["depth"]:
            return _few["installed"]
        slots = _sgemm_slots()
        if not slots:
            return False
        current = {ctypes.c_size_t.from_address(slot).value for slot in slots}
        if len(current) != 1 or not lib.seamless_set_kernel(b"auto"):
            return False
        configure_few_rows()
        lib.seamless_set_next(current.pop())
        for slot in slots:
            _write_word(slot, _few["entry"])
        _few["installed"] = True
    return True


def configure_few_rows(kernel: str = "") -> bool:
    """Apply ``tuning.FEW_ROWS_MAX_ROWS`` (calls with 2..that many rows are taken; 0: none),
    ``tuning.FEW_ROWS_MIN_INNER`` (and an inner size of at least that),
    ``tuning.FEW_ROWS_PARALLEL_MIN_WORK`` and ``tuning.CPU_CORES`` (threads per product) to the
    few-row library, and pick its ``kernel`` when given: ``"auto"``, ``"avx512"``, ``"avx2"``,
    ``"baseline"``, ``"wide-avx2"`` (the AVX-512 kernel's logic built for AVX2, for tests) or
    ``"off"``.  Returns False when there is no library or this CPU lacks that kernel."""
    lib = _few_rows_handle()
    if lib is None:
        return False
    if kernel and not lib.seamless_set_kernel(kernel.encode()):
        return False
    return bool(lib.seamless_configure(int(tuning.FEW_ROWS_MAX_ROWS), int(tuning.FEW_ROWS_MIN_INNER),
                                       int(tuning.FEW_ROWS_PARALLEL_MIN_WORK), max(1, int(tuning.CPU_CORES))))


def few_rows_active() -> bool:
    """Whether MLX's few-row float32 products run on the few-row library."""
    return _few["installed"]


# --- a second library for many-row products (see the module docstring) -------------------------

_rows = {"lib": None, "looked": False, "depth": 0, "saved": []}
_rows_lock = threading.Lock()


def many_rows_library() -> str:
    """Path of the library :func:`many_rows` switches MLX's ``cblas_sgemm`` to ('' when none:
    an Intel or non-x86 CPU, scipy-openblas32 not installed, switched off, or not Linux)."""
    lib = _rows_handle()
    return getattr(lib, "_name", "") if lib is not None else ""


def _rows_handle():
    with _rows_lock:
        if not _rows["looked"]:
            _rows["looked"] = True
            off = os.environ.get("SEAMLESS_MLX_MANY_ROWS_BLAS", "").strip().lower() in ("off", "0", "none", "false")
            if sys.platform.startswith("linux") and not off and not _disabled() and _prefers_openblas(_cpu_info()):
                for path in _scipy_openblas():
                    try:
                        lib = _open(path)
                    except OSError:
                        continue
                    _rows["lib"] = lib
        return _rows["lib"]


def many_rows_active() -> bool:
    """Whether a :func:`many_rows` block is running: products then run on one BLAS thread each,
    so a caller splits large ones over CPU streams itself."""
    return _rows["depth"] > 0


@contextmanager
def many_rows(threads: int = 1):
    """Within this block MLX's float32 GEMMs run on :func:`many_rows_library`, on ``threads``
    threads per call (nothing changes when there is none).  Evaluate the block's products inside
    it: MLX computes lazily.  Nested and concurrent blocks keep the switch, and the first block's
    thread count, until the last one ends.

    One thread is the default because a caller can cut its work over MLX's CPU streams instead:
    OpenBLAS's own threads meet at barriers, and on a busy machine one late thread stalls the
    others (several times slower than one thread, benchmarks/README.md)."""
    lib = _rows_handle()
    if lib is None:
        yield
        return
    with _rows_lock:
        if _rows["depth"] == 0:
            lib.scipy_openblas_set_num_threads(max(1, int(threads)))
            if "target" not in _rows:
                _rows["target"] = ctypes.cast(getattr(lib, SCIPY_OPENBLAS_PREFIX + "cblas_sgemm"), ctypes.c_void_p).value
            _rows["saved"] = _sgemm_targets()
            _point_sgemm(_rows["target"])
        _rows["depth"] += 1
    try:
        yield
    finally:
        with _rows_lock:
            _rows["depth"] -= 1
            if _rows["depth"] == 0:
                _point_sgemm(_rows["saved"])
                _rows["saved"] = []
                lib.scipy_openblas_set_num_threads(1)
