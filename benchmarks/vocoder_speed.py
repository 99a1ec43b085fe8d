"""The CPU vocoder (CodeHiFiGAN at v2-large's vocoder config) vs transformers' on 5, 30 and 90 s of audio.

    python benchmarks/vocoder_speed.py                       # 5, 30, 90 s; 3 alternating rounds
    python benchmarks/vocoder_speed.py --seconds 5,30 --repeats 2 --no-profile

Builds only the vocoder (``SeamlessM4Tv2CodeHifiGan`` with the config of ``--config``, by default
``SeamlessM4Tv2Config()``'s shapes, which are v2-large's), random weights re-initialised as the tests do
(``tests/checkpoints.reinit_``: unit-gain convs, so that the waveform is O(1); transformers' init
shrinks it to ~0, where any two vocoders agree), and the
duration predictor's projection set so that every unit lasts ``DURATION`` frames: ``N`` seconds of
audio are exactly ``N * 16000 / 320 / DURATION`` units.  seamless-mlx gets the same weights through
its converter's ``sanitize`` and runs on the CPU route (``seamless_mlx.cpu.accelerate``).

Each framework runs in its own worker process (torch next to MLX in one process changes MKL's
threading layer, see benchmarks/README.md); the parent alternates them call by call, checks that
the waveforms and lengths agree (``ATOL`` on the waveform, exact lengths), and reports the best
time of each (and the least CPU time, which a loaded machine disturbs less: a process waiting
for a core is not charged; one spinning in its thread pool is).  The profile times each HiFi-GAN
stage on its own (conv_pre, each upsampler, each group of residual blocks, conv_post), evaluated
stage by stage, with the GFLOP/s each achieves; the cuts are the plain forward's, so a fusion
across a cut (the CPU twin divides a stage's sum inside the next leaky ReLU) shows in the whole
call only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SAMPLE_RATE = 16000
DURATION = 2  # frames per unit, forced through the duration predictor
ATOL = 1e-4  # on the waveform (tanh output, |w| <= 1), float32 on both sides
SECONDS = (5, 30, 90)
SEED = 0


# ---------------------------------------------------------------- FLOPs (multiply-adds count 2)


def stage_flops(cfg: dict, frames: int, batch: int = 1):
    """``[(stage name, FLOPs)]`` of the HiFi-GAN on ``frames`` input frames, in forward order."""
    in_dim = cfg["unit_embed_dim"] + cfg["lang_embed_dim"] + cfg["spkr_embed_dim"]
    ch = cfg["upsample_initial_channel"]
    out = [("conv_pre", 2 * batch * frames * in_dim * ch * 7)]
    t = frames
    for i, (r, k) in enumerate(zip(cfg["upsample_rates"], cfg["upsample_kernel_sizes"])):
        c_in, c_out = ch // 2**i, ch // 2 ** (i + 1)
        out.append((f"upsample{i}", 2 * batch * t * c_in * c_out * k))
        t *= r
        taps = sum(k * len(d) * 2 for k, d in zip(cfg["resblock_kernel_sizes"], cfg["resblock_dilation_sizes"]))
        out.append((f"resblocks{i}", 2 * batch * t * c_out * c_out * taps))
    out.append(("conv_post", 2 * batch * t * (ch // 2 ** len(cfg["upsample_rates"])) * 7))
    return out


def units_for(seconds: float, cfg: dict) -> int:
    hop = math.prod(cfg["upsample_rates"])
    return max(1, round(seconds * SAMPLE_RATE / hop / DURATION))


def unit_ids(n: int, cfg: dict, batch: int = 1) -> np.ndarray:
    rng = np.random.default_rng(n)
    pad = cfg["t2u_pad_token_id"]
    ids = rng.integers(0, cfg["unit_hifi_gan_vocab_size"] - 1, (batch, n))
    return ids + (ids >= pad)  # never the pad id


# ---------------------------------------------------------------- workers


def build_torch(cfg_path: str, weights_out: str):
    import torch
    from transformers import SeamlessM4Tv2Config
    from transformers.models.seamless_m4t_v2.modeling_seamless_m4t_v2 import SeamlessM4Tv2CodeHifiGan

    sys.path.insert(0, str(ROOT / "tests"))
    from checkpoints import reinit_  # the tests' unit-gain re-initialisation

    cfg = SeamlessM4Tv2Config.from_json_file(cfg_path) if cfg_path else SeamlessM4Tv2Config()
    torch.manual_seed(SEED)
    voc = SeamlessM4Tv2CodeHifiGan(cfg).eval()
    holder = torch.nn.Module()  # reinit_ recognises the vocoder by its attribute name
    holder.vocoder = voc
    reinit_(holder, SEED)
    with torch.no_grad():
        proj = voc.dur_predictor.proj
        proj.weight.zero_()
        proj.bias.fill_(math.log(DURATION + 1))  # round(expm1(log(d + 1))) == d
    if weights_out:
        np.savez(weights_out, **{k: v.detach().numpy() for k, v in voc.state_dict().items()})
    return voc, cfg.to_dict()


def torch_worker(args):
    import torch

    voc, cfg = build_torch(args.config, args.weights)
    hifi = voc.hifi_gan
    F = torch.nn.functional

    n = hifi.num_kernels
    stages = [("conv_pre", hifi.conv_pre)]
    for i in range(hifi.num_upsamples):
        stages.append((f"upsample{i}", lambda x, i=i: hifi.upsampler[i](F.leaky_relu(x, hifi.leaky_relu_slope))))
        stages.append((f"resblocks{i}", lambda x, i=i: sum(hifi.resblocks[i * n + j](x) for j in range(n)) / n))
    stages.append(("conv_post", lambda x: torch.tanh(hifi.conv_post(F.leaky_relu(x))).squeeze(1)))

    def features(ids):
        # CodeHifiGan's forward up to the HiFi-GAN, for the profile's input
        ids = torch.from_numpy(ids)
        hidden = voc.unit_embedding(ids).transpose(1, 2)
        spkr = voc.speaker_embedding(torch.tensor([[1]])).transpose(1, 2)
        lang = voc.language_embedding(torch.tensor([[2]])).transpose(1, 2)
        log_dur = voc.dur_predictor(hidden.transpose(1, 2))
        dur = torch.clamp(torch.round(torch.expm1(log_dur)).long(), min=1)
        hidden = torch.repeat_interleave(hidden, dur.view(-1), dim=2)
        spkr = spkr.repeat(1, 1, hidden.shape[-1])
        lang = lang.repeat(1, 1, hidden.shape[-1])
        return torch.cat([lang, hidden, spkr], dim=1)

    with torch.inference_mode():
        serve(lambda ids: call_torch(voc, ids), features, stages, lambda y: None)


def call_torch(voc, ids):
    import torch

    wave, lengths = voc(
        input_ids=torch.from_numpy(ids), speaker_id=torch.tensor([[1]] * len(ids)), lang_id=torch.tensor([[2]] * len(ids))
    )
    return wave.numpy(), lengths.reshape(-1).numpy()


def mlx_worker(args):
    import seamless_mlx  # noqa: F401  (the fast BLAS, before mlx.core)
    import mlx.core as mx
    import mlx.nn as nn

    from seamless_mlx import cpu
    from seamless_mlx.config import ModelConfig
    from seamless_mlx.vocoder import CodeHifiGan, sanitize

    with open(args.config_json) as f:
        cfg = json.load(f)
    voc = CodeHifiGan(ModelConfig.from_dict(cfg))
    weights = {k: mx.array(v) for k, v in np.load(args.weights).items()}
    voc.load_weights(list(sanitize(weights).items()), strict=True)
    mx.eval(voc.parameters())
    if args.route == "cpu":
        cpu.accelerate(voc)
    hifi = voc.hifi_gan

    def call(ids):
        wave, lengths = voc(mx.array(ids), 1, 2)
        mx.eval(wave, lengths)
        return np.array(wave), np.array(lengths)

    def group(i, x):
        n = hifi.num_kernels
        blocks = hifi.resblocks[i * n : (i + 1) * n]
        acc = blocks[0](x)
        for block in blocks[1:]:
            acc = acc + block(mx.depends(x, acc))
        return acc / n

    stages = [("conv_pre", hifi.conv_pre)]
    for i, up in enumerate(hifi.upsampler):
        stages.append((f"upsample{i}", lambda x, up=up: up(nn.leaky_relu(x, hifi.slope))))
        stages.append((f"resblocks{i}", lambda x, i=i: group(i, x)))
    stages.append(("conv_post", lambda x: mx.tanh(hifi.conv_post(nn.leaky_relu(x, 0.01)))[..., 0]))

    def features(ids):
        ids = mx.array(ids)
        units = voc.unit_embedding(ids)
        frames, _ = voc.expand(units, voc.durations(units))
        t = frames.shape[1]
        spkr = mx.broadcast_to(voc.speaker_embedding(mx.array([1]))[:, None], (1, t, cfg["spkr_embed_dim"]))
        lang = mx.broadcast_to(voc.language_embedding(mx.array([2]))[:, None], (1, t, cfg["lang_embed_dim"]))
        x = mx.concatenate([lang, frames, spkr], axis=-1)
        mx.eval(x)
        return x

    serve(call, features, stages, mx.eval)


def serve(call, features, stages, sync):
    """The worker loop: one JSON command per stdin line, one JSON answer per stdout line."""
    out = sys.stdout
    sys.stdout = sys.stderr  # library chatter must not corrupt the protocol
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "call":
            ids = np.load(cmd["ids"])
            start, cpu_start = time.perf_counter(), time.process_time()
            wave, lengths = call(ids)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
            if cmd.get("save"):
                np.save(cmd["save"], wave)
                np.save(cmd["save"] + ".len.npy", lengths)
            answer = {"s": seconds, "cpu_s": cpu_seconds}
        elif cmd["op"] == "profile":
            x = features(np.load(cmd["ids"]))
            answer = {"stages": []}
            for name, fn in stages:
                best = math.inf
                for _ in range(cmd["repeats"]):
                    start = time.perf_counter()
                    y = fn(x)
                    sync(y)
                    best = min(best, time.perf_counter() - start)
                answer["stages"].append([name, best])
                x = y
        else:
            break
        out.write(json.dumps(answer) + "\n")
        out.flush()


class Worker:
    def __init__(self, kind, extra, env=None):
        cmd = [sys.executable, __file__, "--worker", kind, *extra]
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited with {self.proc.wait()}")
        return json.loads(line)

    def close(self):
        try:
            self.proc.stdin.close()
        finally:
            self.proc.wait()


# ---------------------------------------------------------------- the measurement


def run(seconds=SECONDS, repeats=3, profile=True, config=None, route="cpu", log=print):
    """Time both vocoders on each length, alternating call by call; returns a list of row dicts
    (``seconds``, ``frames``, ``torch_s``, ``mlx_s``, ``speedup``, ``max_abs_diff``, ``gflop``,
    and with ``profile`` a ``stages`` list of ``(name, gflop, torch_s, mlx_s)``)."""
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, "vocoder.npz")
        cfg_json = os.path.join(tmp, "config.json")
        torch_w = Worker("torch", ["--weights", weights] + (["--config", config] if config else []))
        try:
            # the torch worker has built and saved the weights once it answers its first command
            ids0 = os.path.join(tmp, "ids0.npy")
            np.save(ids0, np.array([[5, 6]]))
            torch_w.ask(op="call", ids=ids0)
            cfg = _config_dict(config)
            with open(cfg_json, "w") as f:
                json.dump(cfg, f)
            mlx_w = Worker("mlx", ["--weights", weights, "--config-json", cfg_json, "--route", route])
            try:
                return _measure(cfg, seconds, repeats, profile, tmp, torch_w, mlx_w, log)
            finally:
                mlx_w.close()
        finally:
            torch_w.close()


def _config_dict(config):
    from transformers import SeamlessM4Tv2Config

    cfg = SeamlessM4Tv2Config.from_json_file(config) if config else SeamlessM4Tv2Config()
    return cfg.to_dict()


def _measure(cfg, seconds, repeats, profile, tmp, torch_w, mlx_w, log):
    rows = []
    workers = {"torch": torch_w, "mlx": mlx_w}
    for sec in seconds:
        n = units_for(sec, cfg)
        ids = os.path.join(tmp, f"ids{sec}.npy")
        np.save(ids, unit_ids(n, cfg))
        saved = {k: os.path.join(tmp, f"{k}{sec}.npy") for k in workers}
        for k, w in workers.items():  # warm-up (MLX compiles its fused kernels) + the outputs
            w.ask(op="call", ids=ids, save=saved[k])
        wave = {k: np.load(v) for k, v in saved.items()}
        lengths = {k: np.load(v + ".len.npy") for k, v in saved.items()}
        if not np.array_equal(lengths["torch"], lengths["mlx"]) or wave["torch"].shape != wave["mlx"].shape:
            raise AssertionError(f"{sec} s: lengths {lengths} / shapes differ")
        diff = float(np.abs(wave["torch"] - wave["mlx"]).max())
        if not diff <= ATOL:
            raise AssertionError(f"{sec} s: waveforms differ by {diff} > atol {ATOL}")
        times = {k: [] for k in workers}
        cpu_times = {k: [] for k in workers}
        for r in range(repeats):
            order = list(workers) if r % 2 == 0 else list(workers)[::-1]
            for k in order:
                answer = workers[k].ask(op="call", ids=ids)
                times[k].append(answer["s"])
                cpu_times[k].append(answer["cpu_s"])
        frames = n * DURATION
        row = dict(
            seconds=sec,
            samples=int(wave["mlx"].shape[1]),
            frames=frames,
            torch_s=min(times["torch"]),
            mlx_s=min(times["mlx"]),
            torch_all=times["torch"],
            mlx_all=times["mlx"],
            torch_cpu_s=min(cpu_times["torch"]),
            mlx_cpu_s=min(cpu_times["mlx"]),
            max_abs_diff=diff,
            gflop=sum(f for _, f in stage_flops(cfg, frames)) / 1e9,
            load=os.getloadavg()[0],
        )
        row["speedup"] = row["torch_s"] / row["mlx_s"]
        log(
            f"{sec:>4g} s audio ({frames} frames): torch {row['torch_s']:.3f} s, mlx {row['mlx_s']:.3f} s, "
            f"{row['speedup']:.2f}x (CPU time torch {row['torch_cpu_s']:.2f} s, mlx {row['mlx_cpu_s']:.2f} s), "
            f"max |diff| {diff:.1e}, load {row['load']:.1f}"
        )
        if profile:
            prof = {k: dict(workers[k].ask(op="profile", ids=ids, repeats=max(1, repeats))["stages"]) for k in workers}
            row["stages"] = [
                (name, f / 1e9, prof["torch"][name], prof["mlx"][name]) for name, f in stage_flops(cfg, frames)
            ]
            for name, g, ts, ms in row["stages"]:
                log(
                    f"      {name:11s} {g:7.2f} GFLOP  torch {ts * 1e3:8.1f} ms {g / ts:6.1f} GFLOP/s"
                    f"  mlx {ms * 1e3:8.1f} ms {g / ms:6.1f} GFLOP/s  {ts / ms:5.2f}x"
                )
        rows.append(row)
    return rows


def markdown(rows) -> str:
    """The rows as markdown tables (speed, then the per-stage profile when present)."""
    out = [
        "| audio | frames | GFLOP | transformers s | seamless-mlx s | speed-up | CPU s transformers / seamless-mlx | max abs diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['seconds']:g} s | {r['frames']} | {r['gflop']:.0f} | {r['torch_s']:.3f} | {r['mlx_s']:.3f} "
            f"| {r['speedup']:.2f}x | {r['torch_cpu_s']:.2f} / {r['mlx_cpu_s']:.2f} | {r['max_abs_diff']:.1e} |"
        )
    for r in rows:
        if "stages" not in r:
            continue
        out += [
            "",
            f"{r['seconds']:g} s of audio, stage by stage (best of the profile's calls):",
            "",
            "| stage | GFLOP | transformers ms | GFLOP/s | seamless-mlx ms | GFLOP/s | speed-up |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, g, ts, ms in r["stages"]:
            out.append(f"| {name} | {g:.2f} | {ts * 1e3:.1f} | {g / ts:.1f} | {ms * 1e3:.1f} | {g / ms:.1f} | {ts / ms:.2f}x |")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", default=",".join(map(str, SECONDS)), help="comma list of audio lengths (s)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per framework and length (best kept)")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--config", default=None, help="a config.json (default: SeamlessM4Tv2Config(), v2-large)")
    p.add_argument("--route", choices=("cpu", "plain"), default="cpu")
    p.add_argument("--json", default=None, help="write the rows here too")
    p.add_argument("--worker", choices=("torch", "mlx"), help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--config-json", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker == "torch":
        return torch_worker(args)
    if args.worker == "mlx":
        return mlx_worker(args)
    seconds = [float(s) if "." in s else int(s) for s in args.seconds.split(",")]
    rows = run(seconds, args.repeats, not args.no_profile, args.config, args.route)
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
