"""seamless-mlx vs transformers on a full-size (v2-large shapes) random-weight checkpoint.

    python benchmarks/run.py                  # everything (about half an hour on 2 cores)
    python benchmarks/run.py --quick          # T2TT and S2TT 10 s only, no memory sections
    python benchmarks/run.py --rows t2tt,s2st-10s --frameworks transformers,mlx-fp32
    python benchmarks/run.py --skip-build     # never build/convert: use benchmarks/.cache as is
    python benchmarks/run.py --device gpu --cache /tmp/bench   # mlx[cuda] vs torch CUDA

1. builds once, in a subprocess, a random checkpoint with ``SeamlessM4Tv2Config()`` shapes and the
   256102-token vocabulary (tests/checkpoints.py; ~9 GB in benchmarks/.cache/full-hf);
2. converts it with seamless_mlx's converter, each in a subprocess: fp32, 8-bit and 4-bit
   (group size 64);
3. times every framework x task in its own process (see benchmarks/_worker.py; importing torch
   next to MLX slows MKL down, so the two never share one) on identical inputs with the output
   length forced (``min_new_tokens = max_new_tokens = 32``): one warm-up call, then best of N;
4. adds the MLX decode step against the memory-bandwidth floor, T2TT under each BLAS, the
   per-phase profile of every row, the time to first audio of streamed T2ST/S2ST
   (benchmarks/first_audio.py), and (``--memory``, on by default) the peak-memory sections.

On a GPU (``--device gpu``: ``mlx[cuda]`` against torch on CUDA) each framework runs all its rows
in one process, the GPU's peak memory replaces the peak RSS, and there are no BLAS or memory
sections.  ``mlx-fp32`` runs with ``MLX_ENABLE_TF32=0`` (full float32 products, as torch's
default); ``mlx-tf32`` is the same folder with MLX's own default, TF32 products on CUDA.

Writes benchmarks/results/<date>.json (after every measurement, so an interrupted run keeps what
it did) and prints markdown tables.  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache"
HF = CACHE / "full-hf"
sys.path.insert(0, str(HERE))
from _worker import ROWS  # noqa: E402  (imports nothing heavy)
import first_audio  # noqa: E402  (imports nothing heavy)
import decode_step  # noqa: E402  (imports nothing heavy)

TOKENS = 32
FRAMEWORKS = ["transformers", "mlx-fp32", "mlx-q8", "mlx-q4"]
GPU_FRAMEWORKS = ["transformers", "mlx-fp32", "mlx-tf32", "mlx-q4"]
QUANT = {"mlx-q8": 8, "mlx-q4": 4}
# framework -> (converted folder it reads, environment of its worker)
FOLDER_OF = {"mlx-tf32": "mlx-fp32"}
ENV_OF = {"mlx-fp32": {"MLX_ENABLE_TF32": "0"}, "mlx-tf32": {"MLX_ENABLE_TF32": "1"}}
# Quantized rows: MLX's CPU quantized matmul kernels are single-threaded and not BLAS-backed, so
# the quantized models are slower than fp32 on Linux (benchmarks/README.md has the measurements);
# only T2TT is timed by default, the speech rows would dominate the run.
QUANT_ROWS = ("t2tt",)
# (repeats, warm-up) per row; warm-up "short" = one 4-token call on <= 5 s of audio
REPEATS = {"s2tt-10s": (2, True), "s2st-10s": (2, True), "s2tt-60s": (1, "short")}
QUANT_REPEATS = (1, "short")
OPENBLAS = "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"
ENCODER_SECONDS = "30,120"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def load_average() -> float:
    return os.getloadavg()[0]


# ----------------------------------------------------------------------------- models
def ensure_models(frameworks, skip_build: bool):
    """``{framework: folder}`` for the frameworks whose checkpoint exists (built/converted here)."""
    folders = {"transformers": HF}
    if not (HF / "config.json").exists():
        if skip_build:
            raise SystemExit(f"--skip-build: {HF} is missing")
        free = os.statvfs(CACHE.parent).f_bavail * os.statvfs(CACHE.parent).f_frsize if CACHE.parent.exists() else 0
        log(f"building the full-size random checkpoint in {HF} (~9 GB; {free / 1e9:.0f} GB free) ...")
        CACHE.mkdir(parents=True, exist_ok=True)
        code = (
            f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); from checkpoints import build_checkpoint; "
            f"build_checkpoint({str(HF)!r}, seed=0, full_size=True, overrides={{'vocab_size': 256102}})"
        )
        subprocess.run([sys.executable, "-c", code], check=True)  # a subprocess: its ~9 GB are freed
    for name in frameworks:
        if not name.startswith("mlx"):
            continue
        fw = FOLDER_OF.get(name, name)
        folder = CACHE / fw
        if fw in folders:
            folders[name] = folder
            continue
        if not (folder / "config.json").exists():
            if skip_build:
                log(f"--skip-build: {folder} is missing, {name} skipped")
                continue
            kw = {"force": True}
            if fw in QUANT:
                kw.update(quantize=True, q_bits=QUANT[fw], q_group_size=64)
            log(f"converting to {folder.name} {kw} ...")
            code = (
                f"import sys; sys.path.insert(0, {str(ROOT)!r}); from seamless_mlx.convert import convert; "
                f"convert({str(HF)!r}, {str(folder)!r}, **{kw!r})"
            )
            p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if p.returncode != 0:
                log(f"conversion to {fw} FAILED, its rows are skipped:\n{p.stderr[-2000:]}")
                continue
        folders[fw] = folders[name] = folder
    return folders


def worker(spec, env=None, timeout=1500, stream_stderr=False):
    """Run one measurement in a fresh process; returns its JSON result or {"error": ...}."""
    cmd = [sys.executable, str(HERE / "_worker.py"), json.dumps(spec)]
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if stream_stderr else subprocess.PIPE, text=True,
                           env={**os.environ, **(env or {})}, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if p.returncode != 0:
        err = p.stderr or ""
        tail = err.strip().splitlines()[-1:] or [f"exit status {p.returncode}"]
        if p.returncode < 0:
            tail = [f"killed by signal {-p.returncode} (out of memory?)"]
        return {"error": tail[0], "stderr": err[-3000:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def weight_bytes(folder: Path, prefixes) -> int:
    """Bytes of the weights under ``prefixes`` in a folder (safetensors headers only)."""
    index_file = folder / "model.safetensors.index.json"
    shards = set(json.loads(index_file.read_text())["weight_map"].values()) if index_file.exists() else {"model.safetensors"}
    total = 0
    for shard in sorted(shards):
        with open(folder / shard, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        for k, v in header.items():
            if k != "__metadata__" and k.startswith(prefixes):
                total += v["data_offsets"][1] - v["data_offsets"][0]
    return total


# ----------------------------------------------------------------------------- formatting
def gb(x):
    return f"{x / 1e9:.2f} GB" if x else "-"


def same_tokens(ref, got) -> str:
    """Greedy token ids of a row against transformers': "yes", or where they part."""
    if ref is None or got is None:
        return "-"
    if ref == got:
        return "yes"
    first = next((i for i, (a, b) in enumerate(zip(ref, got)) if a != b), min(len(ref), len(got)))
    return f"no (from token {first - 2})"  # counted after [decoder start, language]


def fmt_main(results, tokens, gpu=False):
    peak_key = "peak_device_bytes" if gpu else "peak_rss"
    lines = [
        f"| task | framework | seconds | runs | new tokens | tokens/s | audio in / out | x real time | "
        f"{'peak GPU memory' if gpu else 'peak RSS'} | transformers / this | same tokens as transformers |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row, fws in results.items():
        base = fws.get("transformers", {}).get("seconds")
        ref = fws.get("transformers", {}).get("tokens_out")
        audio_in = ROWS[row][2]
        for fw, r in fws.items():
            if "error" in r:
                lines.append(f"| {row} | {fw} | failed: {r['error'][:80]} | | | | | | | | |")
                continue
            out_s = r.get("audio_out_s")
            audio = f"{audio_in or '-'} s / {out_s:.2f} s" if out_s is not None else (f"{audio_in} s / -" if audio_in else "-")
            xrt = out_s / r["seconds"] if out_s else (audio_in / r["seconds"] if audio_in else None)
            xrt_s = "-" if xrt is None else f"{xrt:.2f} ({'out' if out_s else 'in'})"
            ratio = f"**{base / r['seconds']:.2f}x**" if base and fw != "transformers" else "-"
            lines.append(
                f"| {row} | {fw} | {r['seconds']:.2f} | {len(r['times'])} | {r['new_tokens']} | "
                f"{r['new_tokens'] / r['seconds']:.1f} | {audio} | {xrt_s} | {gb(r.get(peak_key))} | {ratio} | "
                f"{same_tokens(ref, r.get('tokens_out')) if fw != 'transformers' else '-'} |"
            )
    return "\n".join(lines)


def fmt_profile(results):
    lines = [
        "| task | framework | encode s | text decode s | per token ms | T2U s (transformers: incl. its extra decoder pass) | vocoder s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row, fws in results.items():
        for fw, r in fws.items():
            p = r.get("profile")
            if not p:
                continue
            if fw == "transformers":
                enc = p.get("text_encoder_s", p.get("speech_encoder_s", 0))
                extra = p.get("text_decoder_extra_pass_s", 0)
                dec = p.get("text_decoder_s", 0) - extra + p.get("lm_head_s", 0)
                per = f"{dec / max(p.get('lm_head_calls', 1), 1) * 1e3:.0f}"
                t2u = None if "t2u_model_s" not in p else p["t2u_model_s"] + extra
                voc = p.get("vocoder_s")
            else:
                enc, dec, per = p["encode_s"], p["text_decode_s"], f"{p['per_token_s'] * 1e3:.0f}"
                t2u, voc = p.get("t2u_s"), p.get("vocoder_s")
            f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
            lines.append(f"| {row} | {fw} | {enc:.2f} | {dec:.2f} | {per} | {f(t2u)} | {f(voc)} |")
    return "\n".join(lines)


def fmt_step(results, gpu=False):
    t2 = results.get("t2tt", {})
    probe = t2.get("mlx-fp32", {})
    if "bandwidth_matvec_Bps" not in probe:
        return ""
    bw1, bw2 = probe["bandwidth_matvec_Bps"], probe.get("bandwidth_matvec_split_Bps", 0)
    if gpu:
        return fmt_step_gpu(t2, bw1, probe["bandwidth_copy_Bps"])
    lines = [
        f"Bandwidth: {bw1 / 1e9:.1f} GB/s for one 1 GiB fp32 mat-vec (MKL runs it on one core), "
        f"{bw2 / 1e9:.1f} GB/s with its rows split over one CPU stream per core, "
        f"{probe['bandwidth_copy_Bps'] / 1e9:.1f} GB/s for a numpy copy (read + write). " + FLOOR_NOTE,
        "",
        "| model | decode step ms | decoder layers + LM head ms | weights read per token | floor ms, 1 core | "
        "floor ms, all cores | **step / floor** (all cores) |",
        "|---|---|---|---|---|---|---|",
    ]

    def floors(r, b, b_all):
        if not bw2:
            return f"{b / bw1 * 1e3:.0f} ({b_all / bw1 * 1e3:.0f}) | - | - |"
        return (f"{b / bw1 * 1e3:.0f} ({b_all / bw1 * 1e3:.0f}) | {b / bw2 * 1e3:.0f} ({b_all / bw2 * 1e3:.0f}) | "
                f"**{r['step_s'] / (b / bw2):.2f}x** ({r['step_s'] / (b_all / bw2):.2f}x) |")

    return "\n".join(lines + _step_rows(t2, ("mlx-fp32", "mlx-q8", "mlx-q4"), ".0f", floors))


# The floor counts the weights one decode step must read: the decoder and the tied LM head, less the
# cross-attention K/V projections, which the KV cache applies once per source, not once per token.
FLOOR_NOTE = ("Floor = bytes a decode step reads (`text_decoder` + `shared`, the tied LM head, without the "
              "cross-attention K/V projections, which run once per source) / bandwidth; in brackets the same "
              "with those projections counted.")


def _step_rows(t2, frameworks, ms, floors):
    """Decode-step table rows: step, its split, bytes read per token, then ``floors(result, bytes
    read per token, bytes with the cross K/V)``'s cells; ``ms`` formats milliseconds."""
    rows = []
    for fw in frameworks:
        r = t2.get(fw, {})
        if "step_s" not in r:
            continue
        b_all, b = r["step_bytes"], r["step_bytes_no_cross_kv"]
        rows.append(
            f"| {fw} | {r['step_s'] * 1e3:{ms}} | {r['step_layers_s'] * 1e3:{ms}} + {r['step_lm_head_s'] * 1e3:{ms}} | "
            f"{b / 1e9:.2f} GB ({b_all / 1e9:.2f}) | " + floors(r, b, b_all)
        )
    return rows


def fmt_step_gpu(t2, bw, copy_bw):
    lines = [
        f"Bandwidth (MLX on the GPU): {bw / 1e9:.0f} GB/s for a 1 GiB fp32 mat-vec, {copy_bw / 1e9:.0f} GB/s "
        "for a 1 GiB copy (read + write). " + FLOOR_NOTE.replace("/ bandwidth", "/ mat-vec bandwidth"),
        "",
        "| model | decode step ms | decoder layers + LM head ms | weights read per token | floor ms | **step / floor** |",
        "|---|---|---|---|---|---|",
    ]

    def floors(r, b, b_all):
        return f"{b / bw * 1e3:.2f} ({b_all / bw * 1e3:.2f}) | **{r['step_s'] / (b / bw):.1f}x** ({r['step_s'] / (b_all / bw):.1f}x) |"

    return "\n".join(lines + _step_rows(t2, ("mlx-fp32", "mlx-tf32", "mlx-q8", "mlx-q4"), ".1f", floors))


def fmt_blas(blas):
    lines = ["| BLAS | library | T2TT seconds (8 tokens) | ms per token (end to end) |", "|---|---|---|---|"]
    for name, r in blas.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error'][:80]} | | |")
            continue
        lines.append(f"| {name} | {os.path.basename(r['blas'])} | {r['seconds']:.2f} | {r['seconds'] / r['new_tokens'] * 1e3:.0f} |")
    return "\n".join(lines)


def fmt_encoder(rows):
    lines = [
        "| framework | audio | frames | encoder seconds | encoder weights | MLX peak array memory | peak RSS | RSS growth over the loaded encoder |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['framework']} | {r['audio_s']} s | failed: {r['error'][:90]} | | | | | |")
            continue
        mxp = f"{gb(r['mx_peak_bytes'])} ({gb(r['mx_peak_bytes'] - r['weights_bytes'])} over the weights)" if "mx_peak_bytes" in r else "-"
        lines.append(
            f"| {r['framework']} | {r['audio_s']} s | {r['frames']} | {r['seconds']:.1f} | {gb(r['weights_bytes'])} | {mxp} | "
            f"{gb(r['peak_rss'])} | {gb(r['peak_rss'] - r['rss_after_load'])} |"
        )
    return "\n".join(lines)


def fmt_classes(rows):
    lines = ["| framework | task | class | seconds (1 call, cold) | weights loaded | RSS after load | peak RSS |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['framework']} | {r['row']} | {r['cls']} | failed: {r['error'][:80]} | | | |")
            continue
        lines.append(
            f"| {r['framework']} | {r['row']} | {r['class']} | {r['seconds']:.1f} | {gb(r.get('weights_bytes'))} | "
            f"{gb(r['rss_after_load'])} | {gb(r['peak_rss'])} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def main():
    global CACHE, HF
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="T2TT and S2TT 10 s only; no memory sections")
    p.add_argument("--rows", default=None, help=f"comma list of {', '.join(ROWS)} (default: all)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="gpu: mlx[cuda] against torch CUDA (default frameworks %s; quantized rows t2tt,s2st-10s)"
                   % ",".join(GPU_FRAMEWORKS))
    p.add_argument("--cache", default=None, help=f"checkpoint folder (default {CACHE})")
    p.add_argument("--frameworks", default=None,
                   help=f"comma list of {', '.join(dict.fromkeys(FRAMEWORKS + GPU_FRAMEWORKS))} (default "
                   f"{','.join(FRAMEWORKS)}; on a GPU {','.join(GPU_FRAMEWORKS)})")
    p.add_argument("--quant-rows", default=None, help="rows timed for mlx-q8/mlx-q4 (default %s)" % ",".join(QUANT_ROWS))
    p.add_argument("--repeats", type=int, default=3, help="timed calls per row after the warm-up (best kept)")
    p.add_argument("--tokens", type=int, default=TOKENS, help="forced number of new text tokens")
    p.add_argument("--skip-build", action="store_true", help="do not build or convert checkpoints")
    p.add_argument("--no-profile", action="store_true", help="skip the per-phase profiles")
    p.add_argument("--no-blas", action="store_true", help="skip the BLAS comparison")
    p.add_argument("--no-decode-step", action="store_true",
                   help="skip the decode-step section (eager vs compiled step; quarter-size model vs transformers)")
    p.add_argument("--order", choices=("frameworks", "rows"), default="frameworks",
                   help="frameworks: each framework through all rows (its files stay in the page cache); "
                   "rows: each row through all frameworks back to back (less exposed to the machine "
                   "speeding up or slowing down during the run)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--memory", dest="memory", action="store_true", default=None, help="peak-memory sections (default on)")
    g.add_argument("--no-memory", dest="memory", action="store_false")
    p.add_argument("--memory-only", action="store_true", help="only the peak-memory sections")
    p.add_argument("--encoder-seconds", default=ENCODER_SECONDS, help="audio lengths for the encoder memory section")
    p.add_argument("--class-frameworks", default="mlx-fp32,transformers",
                   help="frameworks for the task class vs SeamlessM4Tv2Model memory section")
    p.add_argument("--hugepages", action="store_true",
                   help="run every worker, transformers' too, with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (transparent "
                        "huge pages for malloc'd memory; Linux, glibc >= 2.35)")
    p.add_argument("--no-encoder-speed", action="store_true",
                   help="skip the speech encoder's stage-by-stage speed section (benchmarks/encoder_speed.py)")
    p.add_argument("--batch", action="store_true",
                   help="also issue 21's batch measurements (full size): throughput.py (T2TT/S2TT at batch 1, 4, 16, "
                   "the 200-line document at 8 new tokens a line) and batch_step.py (products at 1-16 rows, decode step)")
    p.add_argument("--vocoder-seconds", default="5,30,90",
                   help="the CPU vocoder alone vs transformers' on these audio lengths (benchmarks/vocoder_speed.py); 'none' skips it")
    p.add_argument("--out", default=None, help="results JSON (default benchmarks/results/<date>.json)")
    p.add_argument("--no-first-audio", action="store_true",
                   help="skip the time to first audio of streamed T2ST/S2ST (benchmarks/first_audio.py)")
    p.add_argument("--baseline", default=None,
                   help="results JSON of an earlier run (same rows and checkpoint): its measurements are "
                   "reported with this run's, e.g. transformers' seconds for the ratios of frameworks timed now")
    args = p.parse_args()
    gpu = args.device == "gpu"
    if args.hugepages:  # inherited by every worker (see worker()); this process allocates little
        tunables = os.environ.get("GLIBC_TUNABLES", "")
        os.environ["GLIBC_TUNABLES"] = f"{tunables}:glibc.malloc.hugetlb=1" if tunables else "glibc.malloc.hugetlb=1"
    if args.cache:
        CACHE = Path(args.cache).resolve()
        HF = CACHE / "full-hf"
    if args.frameworks is None:
        args.frameworks = ",".join(GPU_FRAMEWORKS if gpu else FRAMEWORKS)
    if args.quant_rows is None:
        args.quant_rows = "t2tt,s2st-10s" if gpu else ",".join(QUANT_ROWS)
    if gpu:
        args.no_blas = True
        if args.memory is None:
            args.memory = False

    rows = ["t2tt", "s2tt-10s"] if args.quick else (args.rows.split(",") if args.rows else list(ROWS))
    for r in rows:
        if r not in ROWS:
            raise SystemExit(f"unknown row {r!r}; rows: {', '.join(ROWS)}")
    if args.memory_only:
        rows = []
    memory = args.memory if args.memory is not None else not args.quick
    memory = memory or args.memory_only
    frameworks = args.frameworks.split(",")
    for fw in frameworks:
        if fw not in FRAMEWORKS + GPU_FRAMEWORKS:
            raise SystemExit(f"unknown framework {fw!r}; frameworks: {', '.join(dict.fromkeys(FRAMEWORKS + GPU_FRAMEWORKS))}")
    quant_rows = set(args.quant_rows.split(",")) if args.quant_rows else set()
    started = time.time()
    log(f"load average {load_average():.2f} (other work on the machine skews the timings, transformers' most)")
    folders = ensure_models(frameworks + (["mlx-fp32"] if memory else []), args.skip_build)
    frameworks = [fw for fw in frameworks if fw in folders]

    results = {row: {} for row in rows}
    if args.baseline:
        earlier = json.loads(Path(args.baseline).read_text())["results"]
        for row in rows:
            results[row].update({fw: r for fw, r in earlier.get(row, {}).items() if fw not in frameworks})
    loads = []
    out = Path(args.out) if args.out else HERE / "results" / f"{datetime.date.today().isoformat()}{'-gpu' if gpu else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def save_partial():
        out.write_text(json.dumps({"partial": True, "device": args.device, "results": results}, indent=2))

    def timed(fw, row):
        return fw not in QUANT or row in quant_rows

    def task_spec(fw, row):
        """The worker spec of one framework x row (on a GPU: every row ``--repeats`` calls after a
        full warm-up call)."""
        if gpu:
            reps, warm = args.repeats, True
        else:
            reps, warm = QUANT_REPEATS if fw in QUANT else REPEATS.get(row, (args.repeats, True))
            reps = min(reps, args.repeats)
        return {
            "mode": "task",
            "device": args.device,
            "framework": "transformers" if fw == "transformers" else "mlx",
            "folder": str(folders[fw]),
            "row": row,
            "tokens": args.tokens,
            "repeats": reps,
            "warmup": warm,
            "profile": not args.no_profile and fw not in QUANT,
            "step": row == "t2tt" and fw != "transformers",
            "step_runs": 2 if gpu or fw not in QUANT else 1,
            "bandwidth": row == "t2tt" and fw == "mlx-fp32",
        }

    def log_result(fw, row, r, digits, tail):
        """Log one row's result; False when it failed."""
        if "error" in r:
            log(f"{row:9s} {fw:13s} FAILED: {r['error']}")
            return False
        log(f"{row:9s} {fw:13s} {r['seconds']:.{digits}f} s (runs {', '.join(f'{x:.{digits}f}' for x in r['times'])}), "
            f"{r['new_tokens']} tokens, {tail(r)}")
        return True

    if gpu:  # one process per framework, all its rows: see _worker.py
        for fw in frameworks:
            specs = [task_spec(fw, row) for row in rows if timed(fw, row)]
            if not specs:
                continue
            log(f"{fw:13s} on the GPU: {', '.join(sp['row'] for sp in specs)} ...")
            t = time.time()
            r = worker({"mode": "task", "device": "gpu", "framework": specs[0]["framework"], "rows": specs},
                       env=ENV_OF.get(fw), stream_stderr=True)
            for sp in specs:
                row = sp["row"]
                results[row][fw] = r if "error" in r else r.get(row, {"error": "no result"})
                log_result(fw, row, results[row][fw], 3,
                           lambda rr: f"peak GPU memory {rr.get('peak_device_bytes', 0) / 1e9:.2f} GB")
            log(f"{fw} done in {time.time() - t:.0f} s")
            save_partial()
    else:
        # framework-major order (default): a framework's files stay in the page cache from one row to
        # the next; row-major: the frameworks of one row run minutes apart, not a quarter of an hour
        if args.order == "rows":
            pairs = [(fw, row) for row in rows for fw in frameworks]
        else:
            pairs = [(fw, row) for fw in frameworks for row in rows]
        for fw, row in pairs:
            if not timed(fw, row):
                continue
            spec = task_spec(fw, row)
            reps = spec["repeats"]
            log(f"{row:9s} {fw:13s} ({reps} run{'s' if reps > 1 else ''}) ...")
            t = time.time()
            r = worker(spec, env=ENV_OF.get(fw))
            loads.append(load_average())
            results[row][fw] = r
            save_partial()
            log_result(fw, row, r, 2, lambda rr: f"peak RSS {rr['peak_rss'] / 1e9:.2f} GB, worker "
                       f"{time.time() - t:.0f} s, load average {loads[-1]:.2f}")
    order = {fw: i for i, fw in enumerate(dict.fromkeys(FRAMEWORKS + GPU_FRAMEWORKS))}
    results = {row: dict(sorted(fws.items(), key=lambda kv: order.get(kv[0], 99))) for row, fws in results.items()}

    blas = {}
    if rows and not args.no_blas and "mlx-fp32" in folders:
        libs = {"reference (SEAMLESS_MLX_BLAS=off)": "off", "MKL (default)": None}
        if Path(OPENBLAS).exists():
            libs["OpenBLAS"] = OPENBLAS
        for name, value in libs.items():
            log(f"t2tt mlx-fp32, {name}, 8 tokens ...")
            spec = {"mode": "task", "framework": "mlx", "folder": str(folders["mlx-fp32"]), "row": "t2tt",
                    "tokens": 8, "repeats": 1, "warmup": "short"}
            r = worker(spec, env={"SEAMLESS_MLX_BLAS": value} if value else None)
            blas[name] = r
            log(f"  {r.get('seconds', float('nan')):.2f} s with {r.get('blas', r.get('error'))}")

    audio_rows = []
    if not args.no_first_audio and not gpu and not args.quick and "mlx-fp32" in folders:
        log("time to first audio, streamed t2st and s2st-10s (mlx-fp32) ...")
        audio_rows = first_audio.run(folders["mlx-fp32"], args.tokens)
        log(first_audio.fmt(audio_rows))
    decode = {}
    if rows and not args.no_decode_step and "mlx-fp32" in folders:
        log("decode step, eager vs compiled: v2-large and quarter size ...")
        routes = "plain" if gpu else "plain,cpu"
        quarter = decode_step.quarter_folders()[1]
        decode["steps"] = [r for f in (folders["mlx-fp32"], quarter)
                           for r in decode_step.step_rows_subprocess(f, args.device, routes)]
        log("quarter-size model vs transformers: " + ", ".join(decode_step.QUARTER_ROWS) + " ...")
        decode["quarter"] = decode_step.quarter_task_rows(worker, repeats=min(args.repeats, 2), tokens=args.tokens,
                                                          device=args.device)

    voc_rows = []
    if not gpu and args.vocoder_seconds != "none" and not args.memory_only:
        import vocoder_speed

        log("vocoder alone (CodeHiFiGAN, v2-large config) ...")
        voc_rows = vocoder_speed.run([float(s) for s in args.vocoder_seconds.split(",")], args.repeats, log=log)
    enc_rows, class_rows = [], []
    if memory:
        for fw in ("mlx", "transformers"):
            for secs in [int(float(x)) if float(x).is_integer() else float(x) for x in args.encoder_seconds.split(",")]:
                folder = folders["mlx-fp32"] if fw == "mlx" else HF
                if fw == "transformers" and secs > 60:
                    # Shaw relative positions: a [T, T, 64] fp32 table per layer, T = 50 frames/s
                    need = 2.6e9 + (50 * secs) ** 2 * (64 * 4 + 3 * 16 * 4) + 2e9
                    if mem_available() < need:
                        enc_rows.append({"framework": fw, "audio_s": secs,
                                         "error": f"skipped: needs ~{need / 1e9:.0f} GB, {mem_available() / 1e9:.0f} GB available"})
                        log(enc_rows[-1]["error"])
                        continue
                log(f"speech encoder {fw} {secs} s ...")
                r = worker({"mode": "encoder", "framework": fw, "folder": str(folder), "seconds": secs})
                enc_rows.append({"framework": fw, "audio_s": secs, **r})
                log(f"  {r.get('seconds', 0):.1f} s, peak RSS {r.get('peak_rss', 0) / 1e9:.2f} GB {r.get('error', '')}")
        for fw in [f for f in args.class_frameworks.split(",") if f in folders]:
            for row in ("t2tt", "s2tt-10s"):
                for cls in (f"SeamlessM4Tv2For{ROWS[row][0]}", "SeamlessM4Tv2Model"):
                    log(f"memory: {fw} {row} {cls} ...")
                    spec = {"mode": "task", "framework": "transformers" if fw == "transformers" else "mlx",
                            "folder": str(folders[fw]), "row": row, "tokens": args.tokens, "repeats": 1,
                            "warmup": False, "cls": cls}
                    r = worker(spec)
                    class_rows.append({"framework": fw, "row": row, "cls": cls, **r})
                    log(f"  peak RSS {r.get('peak_rss', 0) / 1e9:.2f} GB {r.get('error', '')}")

    encoder_speed = None
    if not (gpu or args.quick or args.memory_only or args.no_encoder_speed):
        import encoder_speed as es

        log("speech encoder stage by stage (random weights, 2 layers) ...")
        encoder_speed = {"encoder": es.rows(), "jit": es.jit_rows()}
    batch_report = []
    if args.batch and "mlx-fp32" in folders:  # own processes; their tables are appended to the report
        for cmd in (["throughput.py", "--size", "full", "--batches", "1,4,16", "--sentences", "16", "--clips", "16",
                     "--document-tokens", "8"], ["batch_step.py", "--gemm", "--step", str(folders["mlx-fp32"])]):
            log(f"{' '.join(cmd)} ...")
            r = subprocess.run([sys.executable, str(HERE / cmd[0]), *cmd[1:]], capture_output=True, text=True,
                               env=dict(os.environ, PYTHONPATH=str(ROOT)))
            batch_report += ["", f"### `{' '.join(cmd[:1] + cmd[1:-1] if cmd[0] == 'batch_step.py' else cmd)}`", "",
                             r.stdout.strip() if r.returncode == 0 else f"failed: {r.stderr.strip()[-500:]}"]

    import importlib.metadata as md

    names = {r.get("device_name") for fws in results.values() for r in fws.values() if r.get("device_name")}
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": args.device,
        "device_names": sorted(names),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, {platform.platform()}",
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "mlx": md.version("mlx"),
        "torch": md.version("torch"),
        "transformers": md.version("transformers"),
        "tokens": args.tokens,
        "order": args.order,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "checkpoint": "random weights, SeamlessM4Tv2Config() shapes, vocab 256102",
        "git": _git_state(),
        "task_weights": {row: weight_bytes(HF, _prefixes(row)) for row in rows},
        "load_average_after_rows": loads,
        "minutes": round((time.time() - started) / 60, 1),
    }
    raw = {"meta": meta, "results": results, "blas": blas, "encoder_memory": enc_rows, "class_memory": class_rows,
           "first_audio": audio_rows, "encoder_speed": encoder_speed, "decode_step": decode, "vocoder": voc_rows}
    out.write_text(json.dumps(raw, indent=2))  # before formatting: a formatting bug loses nothing
    title = f"GPU: {', '.join(n for n in sorted(names) if n != 'cpu')}" if gpu else "CPU"
    report = [f"## seamless-mlx vs transformers ({title})", "", fmt_main(results, args.tokens, gpu)]
    if any(r.get("profile") for fws in results.values() for r in fws.values()):
        report += ["", "### Where the time goes (one call, phases)", "", fmt_profile(results)]
    step = fmt_step(results, gpu)
    if step:
        report += ["", "### MLX decode step vs the memory-bandwidth floor (T2TT)", "", step]
    if gpu:
        report += ["", "mlx-fp32: `MLX_ENABLE_TF32=0` (full float32 products, like torch's default); mlx-tf32: MLX's "
                   "default on CUDA (TF32 products). transformers: float32, torch's defaults."]
    if decode:
        report += ["", "### Decode step: eager vs compiled (T2TT, one token, KV cache of 18)", "",
                   decode_step.fmt_steps(decode["steps"]), "", "### Quarter-size model vs transformers", "",
                   decode_step.fmt_quarter(decode["quarter"])]
    if blas:
        report += ["", "### MLX T2TT by BLAS library", "", fmt_blas(blas)]
    if audio_rows:
        report += ["", "### Time to first audio (streamed speech, mlx-fp32)", "", first_audio.fmt(audio_rows)]
    if voc_rows:
        report += ["", "### The vocoder alone on the CPU (benchmarks/vocoder_speed.py)", "", vocoder_speed.markdown(voc_rows)]
    if enc_rows:
        report += ["", "### Speech encoder peak memory (v2-large shapes)", "", fmt_encoder(enc_rows)]
    if encoder_speed:
        report += ["", "### Speech encoder stage by stage (v2-large shapes, random weights)", es.table(encoder_speed["encoder"]),
                   "", "JIT-compiled element-wise kernels:", "", es.jit_table(encoder_speed["jit"])]
    if class_rows:
        report += ["", "### Peak RSS: task class vs SeamlessM4Tv2Model (load + one 32-token call)", "",
                   "transformers memory-maps the safetensors: its RSS counts only the weight pages a run touched.", "",
                   fmt_classes(class_rows)]
    report += batch_report
    report += ["", f"{meta['date']}, {meta['machine']}, {meta['cpu']}, Python {meta['python']}, mlx {meta['mlx']}, "
               f"torch {meta['torch']}, transformers {meta['transformers']}; code {meta['git']}; "
               f"{meta['minutes']} minutes, {'row' if meta['order'] == 'rows' else 'framework'}-major order"
               + (f", GLIBC_TUNABLES={meta['glibc_tunables']}" if meta.get("glibc_tunables") else "")]
    text = "\n".join(report)
    print("\n" + text, flush=True)
    out.write_text(json.dumps({**raw, "markdown": text}, indent=2))
    log(f"wrote {out}")


def _prefixes(row):
    return {
        "TextToText": ("shared.", "text_encoder.", "text_decoder."),
        "SpeechToText": ("shared.", "speech_encoder.", "text_decoder."),
        "TextToSpeech": ("shared.", "text_encoder.", "text_decoder.", "t2u_model.", "vocoder."),
        "SpeechToSpeech": ("shared.", "speech_encoder.", "text_decoder.", "t2u_model.", "vocoder."),
    }[ROWS[row][0]]


def _git_state():
    """Commit of the code measured, and whether seamless_mlx/ had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "seamless_mlx"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return head + (" + uncommitted seamless_mlx changes" if dirty else "")
    except OSError:
        return "unknown"


def _cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
