"""The speech encoder's speed at v2-large shapes, stage by stage: seamless-mlx (CPU routes) vs
transformers, the per-shape GEMM rates of both, and what host-ISA JIT kernels would change.

    python benchmarks/encoder_speed.py                     # 10 s of audio, 2 conformer layers
    python benchmarks/encoder_speed.py --cpu-time          # one thread, CPU seconds (busy machine)
    python benchmarks/encoder_speed.py --layers 4 --seconds 10,30 --repeats 5

The encoder is built from the config's shapes with random weights (no checkpoint, no full-size
model in memory: each conformer layer costs the same, so ``--layers`` of them are timed and the
whole 24-layer encoder is extrapolated from them).  Each framework runs in its own process
(importing torch next to MLX slows MLX's MKL products, see conv_speed.py); MLX runs twice: as
shipped (its many-row products on :func:`seamless_mlx.cpu.blas.many_rows_library` where the CPU
has one) and with every product on MKL (``SEAMLESS_MLX_MANY_ROWS_BLAS=off``).  Times are the best
of ``--repeats`` after one warm-up, in milliseconds, all stages of a process timed round-robin.
``--cpu-time``: every library on one thread and the process's CPU time instead of the wall clock,
which other jobs on a shared machine hardly disturb (the work, not the parallel speed).

The JIT section times MLX's compiled element-wise kernels (seamless_mlx.cpu.ops) at the encoder's
and the vocoder's shapes, compiled as MLX does (``g++ -O3``, no ``-march``: SSE2) and for the host
(``-march=native``, through a ``g++`` wrapper in a private temporary folder put first on PATH),
each process with its own empty kernel cache (``TMPDIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FRAMES_PER_SECOND = 50  # stacked fbank frames (10 ms hop, stride 2) the conformer sees
HIDDEN, INTERMEDIATE, FEATURES = 1024, 4096, 160
# (name, rows per second of audio, in, out) of the encoder's GEMMs: the adaptor's convs run at 1/8
GEMMS = [
    ("feature projection", 1.0, FEATURES, HIDDEN),
    ("ffn in", 1.0, HIDDEN, INTERMEDIATE),
    ("ffn out", 1.0, INTERMEDIATE, HIDDEN),
    ("attention q/k/v/out", 1.0, HIDDEN, HIDDEN),
    ("conv pointwise 1", 1.0, HIDDEN, 2 * HIDDEN),
    ("adaptor conv (8 taps)", 1 / 8, 8 * HIDDEN, 2 * HIDDEN),
]
STAGES = ("feature_projection", "ffn1", "self_attn", "conv_module", "ffn2", "final_layer_norm",
          "layer", "intermediate_ffn", "adapter", "encoder")


CLOCK = time.perf_counter  # the worker's clock: time.process_time with --cpu-time


def best_ms(fns, repeats):
    """``{name: best milliseconds}`` of each ``fns[name]()``, after one warm-up, timed round-robin
    (each round times every function once) so that a busy machine's slow spells hit all alike."""
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = CLOCK()
            fn()
            best[name] = min(best[name], CLOCK() - t)
    return {name: 1000 * b for name, b in best.items()}


def mlx_worker(layers, frames, repeats):
    sys.path.insert(0, str(ROOT))
    import seamless_mlx  # noqa: F401  (the fast BLAS before mlx.core)
    import mlx.core as mx

    from seamless_mlx import cpu
    from seamless_mlx.config import ModelConfig
    from seamless_mlx.cpu import blas
    from seamless_mlx.speech_encoder import SpeechEncoder

    enc = cpu.accelerate(SpeechEncoder(ModelConfig(speech_encoder_layers=layers)))
    mx.eval(enc.parameters())
    feats = mx.random.normal((1, frames, FEATURES))
    x = mx.random.normal((1, frames, HIDDEN))
    mx.eval(feats, x)
    layer = enc.encoder.layers[0]
    stages = {
        "feature_projection": lambda: enc.feature_projection(feats),
        "ffn1": lambda: layer.ffn1(layer.ffn1_layer_norm(x)),
        "self_attn": lambda: layer.self_attn(layer.self_attn_layer_norm(x), None),
        "conv_module": lambda: layer.conv_module(x, None),
        "ffn2": lambda: layer.ffn2(layer.ffn2_layer_norm(x)),
        "final_layer_norm": lambda: layer.final_layer_norm(x),
        "layer": lambda: layer(x, None, None),
        "intermediate_ffn": lambda: enc.intermediate_ffn(x),
        "adapter": lambda: enc.adapter(x, None),
        "encoder": lambda: enc(feats)[0],
    }

    def scoped(f):  # as the encoder runs them (the whole encoder scopes itself)
        with blas.many_rows():
            mx.eval(f())

    fns = {s: lambda f=f: scoped(f) for s, f in stages.items()}
    for name, per_frame, k, n in GEMMS:
        a = mx.random.normal((max(1, int(frames * per_frame)), k))
        w = mx.random.normal((n, k))
        mx.eval(a, w)
        fns["gemm " + name] = lambda a=a, w=w: scoped(lambda: a @ w.T)
    out = best_ms(fns, repeats)
    gemm = {name: out.pop("gemm " + name) for name, *_ in GEMMS}
    return {"stages": out, "gemm": gemm, "blas": blas.loaded, "many_rows_blas": blas.many_rows_library()}


def jit_worker(repeats):
    """CPU milliseconds of the compiled element-wise kernels at the encoder's and vocoder's shapes."""
    sys.path.insert(0, str(ROOT))
    import seamless_mlx  # noqa: F401
    import mlx.core as mx
    import mlx.nn as nn

    from seamless_mlx.cpu import ops

    ffn, half = mx.random.normal((500, 4096)), mx.random.normal((500, 1024))
    scores = mx.random.normal((8, 500, 500))
    row_max = scores.max(axis=-1, keepdims=True)
    voc = mx.random.normal((1, 8000, 512))
    mx.eval(ffn, half, scores, row_max, voc)
    fns = {
        "SiLU 500 x 4096 (FFN, 2 a layer)": lambda: ops.silu(ffn),
        "GLU 500 x 1024 (conv module)": lambda: ops.glu_halves(half, half),
        "SiLU 500 x 1024 (conv module)": lambda: ops.silu(half),
        "softmax numerator 8 x 500 x 500 (2 a layer)": lambda: ops.softmax_numerator(scores, row_max),
        "leaky ReLU 8000 x 512 (vocoder)": lambda: nn.leaky_relu(voc, 0.1),
    }
    return best_ms({k: lambda f=f: mx.eval(f()) for k, f in fns.items()}, repeats)


def torch_worker(layers, frames, repeats):
    import torch
    from transformers import SeamlessM4Tv2Config
    from transformers.models.seamless_m4t_v2.modeling_seamless_m4t_v2 import SeamlessM4Tv2SpeechEncoder

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    enc = SeamlessM4Tv2SpeechEncoder(SeamlessM4Tv2Config(speech_encoder_layers=layers)).eval()
    feats = torch.randn(1, frames, FEATURES)
    x = torch.randn(1, frames, HIDDEN)
    mask = torch.ones(1, frames, dtype=torch.long)
    layer = enc.encoder.layers[0]
    # the chunk mask transformers builds for every call ([B, 1, T, T] additive)
    chunk_mask = enc.encoder._apply_chunk_attention(torch.zeros(1, 1, frames, frames), x)
    stages = {
        "feature_projection": lambda: enc.feature_projection(feats),
        "ffn1": lambda: layer.ffn1(layer.ffn1_layer_norm(x)),
        "self_attn": lambda: layer.self_attn(layer.self_attn_layer_norm(x), attention_mask=chunk_mask),
        "conv_module": lambda: layer.conv_module(x),
        "ffn2": lambda: layer.ffn2(layer.ffn2_layer_norm(x)),
        "final_layer_norm": lambda: layer.final_layer_norm(x),
        "layer": lambda: layer(x, attention_mask=chunk_mask),
        "intermediate_ffn": lambda: enc.intermediate_ffn(x),
        "adapter": lambda: enc.adapter(x, mask),
        "encoder": lambda: enc(input_features=feats, attention_mask=mask),
    }
    fns = dict(stages)
    for name, per_frame, k, n in GEMMS:
        a, w = torch.randn(max(1, int(frames * per_frame)), k), torch.randn(n, k)
        fns["gemm " + name] = lambda a=a, w=w: torch.nn.functional.linear(a, w)
    with torch.inference_mode():
        out = best_ms(fns, repeats)
    gemm = {name: out.pop("gemm " + name) for name, *_ in GEMMS}
    return {"stages": out, "gemm": gemm}


ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def run_worker(framework, layers, frames, repeats, env_extra=None, cpu_time=False, host_isa=False):
    """One measurement in a fresh process with its own empty kernel cache; returns its JSON."""
    with tempfile.TemporaryDirectory(prefix="encoder-speed-") as tmp:  # private (0700)
        env = {**os.environ, "TMPDIR": tmp, "PYTHONPATH": str(ROOT), **(env_extra or {})}
        if cpu_time:
            env.update(ONE_THREAD, ENCODER_SPEED_CPU_TIME="1")
        if host_isa:
            env["PATH"] = _host_isa_compiler(tmp) + os.pathsep + env["PATH"]
        r = subprocess.run([sys.executable, __file__, "--worker", framework, str(layers), str(frames), str(repeats)],
                           capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode != 0:
        tail = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
        return {"error": tail}
    return json.loads(r.stdout.strip().splitlines()[-1])


def _host_isa_compiler(private: str) -> str:
    """A folder inside ``private`` holding a ``g++`` that runs the real one (absolute path, looked
    up now) with ``-march=native``; MLX finds its compiler on PATH."""
    real = shutil.which("g++")
    if not real or not os.path.isabs(real):
        raise RuntimeError("no g++ on PATH: MLX cannot compile its CPU kernels here either")
    folder = os.path.join(private, "bin")
    os.mkdir(folder, 0o700)
    wrapper = os.path.join(folder, "g++")
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec {shlex.quote(real)} -march=native "$@"\n')
    os.chmod(wrapper, 0o700)
    return folder


def jit_rows(repeats=15):
    """``{"as shipped (SSE2)": {kernel: ms}, "-march=native": {kernel: ms}}`` (CPU ms, one thread:
    MLX runs each kernel on one)."""
    return {name: run_worker("jit", 0, 0, repeats, cpu_time=True, host_isa=host)
            for name, host in (("as shipped (SSE2)", False), ("-march=native", True))}


def rows(seconds=(10,), layers=2, repeats=3, full_layers=24, cpu_time=False):
    """Per audio length: ``{"seconds", "frames", "layers", "mlx-mkl", "mlx", "transformers", ...}``
    (each a worker's result), plus the whole encoder extrapolated to ``full_layers`` layers."""
    out = []
    for s in seconds:
        frames = int(s * FRAMES_PER_SECOND)
        row = {"seconds": s, "frames": frames, "layers": layers, "load_average": os.getloadavg()[0]}
        row["cpu_time"] = cpu_time
        row["mlx-mkl"] = run_worker("mlx", layers, frames, repeats, {"SEAMLESS_MLX_MANY_ROWS_BLAS": "off"}, cpu_time)
        row["mlx"] = run_worker("mlx", layers, frames, repeats, None, cpu_time)
        row["transformers"] = run_worker("transformers", layers, frames, repeats, None, cpu_time)
        for fw in FRAMEWORKS:
            st = row[fw].get("stages")
            if st:
                st["encoder (24 layers, extrapolated)"] = st["encoder"] + (full_layers - layers) * st["layer"]
        out.append(row)
    return out


FRAMEWORKS = ("mlx-mkl", "mlx", "transformers")


def table(rows_):
    """Markdown: stages and GEMMs, ms and speed-up over transformers."""
    lines = []
    for row in rows_:
        fws = FRAMEWORKS
        if any("error" in row[f] for f in fws):
            lines.append(f"{row['seconds']} s: " + "; ".join(f"{f}: {row[f]['error']}" for f in fws if "error" in row[f]))
            continue
        clock = "CPU ms, one thread" if row["cpu_time"] else "wall ms"
        lines += ["", f"{row['seconds']} s of audio ({row['frames']} frames), {row['layers']} layers timed, {clock}, "
                  f"load average {row['load_average']:.2f}; many-row BLAS: {row['mlx']['many_rows_blas'] or 'none'}", "",
                  "| stage | mlx, all on MKL | mlx | transformers | transformers / mlx |",
                  "|---|---|---|---|---|"]
        for name in row["transformers"]["stages"]:
            a, b, t = (row[f]["stages"][name] for f in fws)
            lines.append(f"| {name} | {a:.1f} | {b:.1f} | {t:.1f} | {t / b:.2f}x |")
        lines += ["", "| GEMM (rows x in -> out) | mlx on MKL (GFLOP/s) | mlx (GFLOP/s) | torch (GFLOP/s) |",
                  "|---|---|---|---|"]
        for name, per_frame, k, n in GEMMS:
            m = max(1, int(row["frames"] * per_frame))
            flop = 2 * m * k * n / 1e6  # per ms -> GFLOP/s
            rates = " | ".join(f"{flop / row[f]['gemm'][name]:.0f}" for f in fws)
            lines.append(f"| {name} ({m} x {k} -> {n}) | {rates} |")
    return "\n".join(lines)


def jit_table(res):
    names = ("as shipped (SSE2)", "-march=native")
    if any("error" in res[n] for n in names):
        return "JIT kernels: " + "; ".join(f"{n}: {res[n]['error']}" for n in names if "error" in res[n])
    lines = ["| kernel (CPU ms, one thread) | as shipped (SSE2) | -march=native |", "|---|---|---|"]
    for k in res[names[0]]:
        lines.append(f"| {k} | {res[names[0]][k]:.2f} | {res[names[1]][k]:.2f} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", default="10")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cpu-time", action="store_true", help="one thread, CPU time (for a busy machine)")
    p.add_argument("--no-jit", action="store_true", help="skip the JIT kernel section")
    p.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        fw, layers, frames, repeats = args.worker[0], *map(int, args.worker[1:])
        if os.environ.get("ENCODER_SPEED_CPU_TIME") == "1":
            global CLOCK
            CLOCK = time.process_time
        if fw == "jit":
            print(json.dumps(jit_worker(repeats)))
        else:
            print(json.dumps((mlx_worker if fw == "mlx" else torch_worker)(layers, frames, repeats)))
        return
    res = {"encoder": rows([float(s) for s in args.seconds.split(",")], args.layers, args.repeats, cpu_time=args.cpu_time)}
    print(table(res["encoder"]))
    if not args.no_jit:
        res["jit"] = jit_rows()
        print("\n" + jit_table(res["jit"]))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "encoder_speed.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
