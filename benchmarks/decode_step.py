"""The text decoder's one-token step, eager against compiled, and a quarter-size model against
transformers on every task.

    python benchmarks/decode_step.py --folder benchmarks/.cache/throughput-quarter-mlx
    flock /work/bench/full.lock python benchmarks/decode_step.py --folder /work/bench/mlx-fp32
    python benchmarks/decode_step.py --quarter-tasks      # T2TT, S2TT, T2ST, S2ST vs transformers

Step section: for each route (``plain``: the plain MLX modules, what Metal and CUDA run; ``cpu``: the
CPU twins swapped in) and each kind of step (``eager``: the decoder called op by op;
``compiled``: :meth:`TextDecoder.fixed_step` + LM head under ``mx.compile``), the median wall time
of a one-token step (greedy: the step, argmax, ``mx.eval``) after a 2-token prefix and 16 cached
positions, and the number of graph nodes (primitives) one step puts in front of ``mx.eval``.
The kinds alternate round by round inside one process (A/B), so a machine busy with other work
skews both alike.

Quarter section: ``benchmarks/throughput.py``'s ``--size quarter`` shapes (v2-large's vocabulary
and heads; 512 wide, 6 + 6 text layers, 6 conformer layers; T2U 512 wide, vocoder at full size),
built and converted once in ``benchmarks/.cache/decode-quarter-*``; each framework x task in its own process through
``benchmarks/_worker.py``, as ``run.py`` times the full-size rows.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache"
QUARTER_ROWS = ("t2tt", "s2tt-10s", "t2st", "s2st-10s")
KINDS = ("eager", "compiled")


def count_nodes(*outputs) -> int:
    """Primitives in the unevaluated graph behind ``outputs`` (what ``mx.eval`` will run)."""
    import mlx.core as mx

    dot = io.StringIO()
    mx.export_to_dot(dot, *outputs)
    return dot.getvalue().count("shape=rectangle")


def step_rows(folder: str, routes=("plain", "cpu"), rounds: int = 5, steps: int = 8, device: str = "cpu") -> list:
    """``[{route, kind, step_ms, nodes, ...}]`` for the T2TT model in ``folder`` (see the module docstring)."""
    import seamless_mlx as sm  # first: preloads the fast BLAS before mlx.core

    import mlx.core as mx
    import numpy as np
    from seamless_mlx import cpu
    from seamless_mlx.text import DecoderSteps

    mx.set_default_device(mx.gpu if device == "gpu" else mx.cpu)
    model = sm.SeamlessM4Tv2ForTextToText.from_pretrained(folder, cpu_routes=False)
    gen = model.generation_config
    src = mx.array(np.random.default_rng(0).integers(4, 200, size=(1, 20)))
    memory, mask = model.encode_text(src)
    mx.eval(memory)
    prefix = mx.array([[gen.decoder_start_token_id, next(iter(gen.text_decoder_lang_to_code_id.values()))]])
    filler = mx.array(np.full((1, 16), 5, dtype=np.int32))

    def run(kind):
        """Per-step seconds and the node count of one step."""
        step = DecoderSteps(model.text_decoder, model.shared, memory, mask, compiled=kind == "compiled")
        logits, _ = step(prefix)
        logits, _ = step(filler)
        tok = mx.argmax(logits, axis=-1)[:, None]
        mx.eval(tok)
        times, nodes = [], None
        for _ in range(steps):
            t = time.perf_counter()
            logits, h = step(tok)
            if nodes is None:
                nodes = count_nodes(logits, h, *(a for kv, _ in step.cache for a in kv.state))
            tok = mx.argmax(logits, axis=-1)[:, None]
            mx.eval(tok, *(a for kv, _ in step.cache for a in kv.state))
            times.append(time.perf_counter() - t)
        return times[1:], nodes  # the first compiled step may trace

    rows = []
    for route in routes:
        cpu.accelerate(model) if route == "cpu" else cpu.plain(model)
        first = {}
        for kind in KINDS:
            model.text_decoder.__dict__.pop("_compiled_steps", None)  # the first compiled step traces
            t0 = time.perf_counter()
            step = DecoderSteps(model.text_decoder, model.shared, memory, mask, compiled=kind == "compiled")
            step(prefix)
            mx.eval(step(prefix[:, :1])[0])
            first[kind] = time.perf_counter() - t0
            run(kind)  # warm-up: compiles kernels, fuses the CPU twins' q/k/v
        times = {k: [] for k in KINDS}
        nodes = {}
        for _ in range(rounds):
            for kind in KINDS:
                t, nodes[kind] = run(kind)
                times[kind] += t
        for kind in KINDS:
            rows.append({"route": route, "kind": kind, "step_ms": statistics.median(times[kind]) * 1e3,
                         "nodes": nodes[kind], "steps_timed": len(times[kind]),
                         "first_call_ms": first[kind] * 1e3,
                         "used": (kind == "compiled") == model.text_decoder.compile_steps})
    weights = sum(v.nbytes for k, v in _flat(model.parameters()) if k.startswith(("text_decoder.", "shared.")))
    for r in rows:
        r.update(folder=str(folder), device=device, decoder_and_head_bytes=weights,
                 load_average=os.getloadavg()[0])
    return rows


def _flat(tree):
    from mlx.utils import tree_flatten

    return tree_flatten(tree)


def step_rows_subprocess(folder, device: str = "cpu", routes: str = "plain,cpu", timeout: int = 900) -> list:
    """:func:`step_rows` in a fresh process."""
    cmd = [sys.executable, __file__, "--folder", str(folder), "--device", device, "--routes", routes, "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "MLX_ENABLE_TF32": "0"})
    if p.returncode != 0:
        return [{"folder": str(folder), "error": (p.stderr.strip().splitlines() or ["failed"])[-1]}]
    return json.loads(p.stdout.strip().splitlines()[-1])


def quarter_folders():
    """``(transformers folder, converted MLX folder)`` of the quarter-size checkpoint, built and
    converted once, each in a subprocess (their memory is freed)."""
    sys.path.insert(0, str(HERE))
    from throughput import QUARTER

    hf, mlx = CACHE / "decode-quarter-hf", CACHE / "decode-quarter-mlx"
    # the T2U's variance predictors read decoder states: their width follows the model's
    overrides = dict(QUARTER, t2u_variance_predictor_embed_dim=QUARTER["hidden_size"])
    if not (hf / "config.json").exists():
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); "
                        f"from checkpoints import build_checkpoint; "
                        f"build_checkpoint({str(hf)!r}, seed=0, full_size=True, overrides={overrides!r})"], check=True)
    if not (mlx / "config.json").exists():
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
                        f"from seamless_mlx.convert import convert; convert({str(hf)!r}, {str(mlx)!r})"], check=True)
    return hf, mlx


def quarter_task_rows(worker, repeats: int = 3, tokens: int = 32, device: str = "cpu") -> dict:
    """``{row: {framework: result}}`` for the quarter-size model; ``worker(spec)`` runs one
    ``benchmarks/_worker.py`` spec in its own process (``run.worker``).  Row-major order: the two
    frameworks of a row run back to back."""
    hf, mlx = quarter_folders()
    out = {}
    for row in QUARTER_ROWS:
        out[row] = {}
        for fw, folder in (("transformers", hf), ("mlx-fp32", mlx)):
            spec = {"mode": "task", "device": device, "framework": "transformers" if fw == "transformers" else "mlx",
                    "folder": str(folder), "row": row, "tokens": tokens, "repeats": repeats, "warmup": True,
                    "profile": False}
            out[row][fw] = worker(spec, env={"MLX_ENABLE_TF32": "0"} if fw != "transformers" else None)
    return out


def fmt_steps(rows) -> str:
    lines = ["| model | route | step | step ms | graph nodes per step | compiled / eager time | prefix + first step ms (trace) |",
             "|---|---|---|---:|---:|---:|---:|"]
    by = {(r.get("folder"), r.get("route"), r.get("kind")): r for r in rows}
    for r in rows:
        if "error" in r:
            lines.append(f"| {Path(r['folder']).name} | failed: {r['error'][:90]} | | | | | |")
            continue
        eager = by.get((r["folder"], r["route"], "eager"))
        ratio = f"{r['step_ms'] / eager['step_ms']:.2f}x" if r["kind"] == "compiled" and eager else "-"
        used = " (used)" if r["used"] else ""
        lines.append(f"| {Path(r['folder']).name} ({r['decoder_and_head_bytes'] / 1e9:.2f} GB decoder + head) | "
                     f"{r['route']} | {r['kind']}{used} | {r['step_ms']:.2f} | {r['nodes']} | {ratio} | "
                     f"{r['first_call_ms']:.0f} |")
    return "\n".join(lines)


def fmt_quarter(res) -> str:
    lines = ["| task | transformers s | mlx-fp32 s | **transformers / mlx** | same tokens |", "|---|---:|---:|---:|---|"]
    for row, fws in res.items():
        t, m = fws.get("transformers", {}), fws.get("mlx-fp32", {})
        if "seconds" not in t or "seconds" not in m:
            err = t.get("error") or m.get("error") or "no result"
            lines.append(f"| {row} | failed: {err[:90]} | | | |")
            continue
        same = "yes" if t.get("tokens_out") == m.get("tokens_out") else "no"
        lines.append(f"| {row} | {t['seconds']:.2f} | {m['seconds']:.2f} | **{t['seconds'] / m['seconds']:.2f}x** | {same} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", help="converted MLX folder for the step section")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--routes", default="plain,cpu")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print the step rows as one JSON line")
    p.add_argument("--quarter-tasks", action="store_true", help="the quarter-size task rows vs transformers")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    if args.folder:
        rows = step_rows(args.folder, tuple(args.routes.split(",")), rounds=args.rounds, device=args.device)
        print(json.dumps(rows) if args.json else fmt_steps(rows), flush=True)
    if args.quarter_tasks:
        sys.path.insert(0, str(HERE))
        from run import worker

        print(fmt_quarter(quarter_task_rows(worker, repeats=args.repeats, device=args.device)))


if __name__ == "__main__":
    main()
