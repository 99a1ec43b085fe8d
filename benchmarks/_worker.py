"""One benchmark measurement in a fresh process (started by ``benchmarks/run.py``).

    python benchmarks/_worker.py '<json spec>'     # prints one JSON line (the result) last

A process runs exactly one framework: importing torch next to MLX makes MLX's MKL matmuls several
times slower (benchmarks/README.md), so an MLX worker must never import torch or transformers (it checks, and says so in its
result).  Modes (``spec["mode"]``):

``task``        load a task class, build the inputs, run ``generate`` with the output length forced
                (warm-up, then best of N); optionally the per-token decode time, the memory
                bandwidth probe and a per-phase profile.
``encoder``     speech-encoder forward only on N seconds of audio: time, peak RSS, and for MLX
                ``mx.get_peak_memory()`` after ``mx.reset_peak_memory()``.
``bandwidth``   the memory-bandwidth probes alone.

``spec["device"] == "gpu"`` runs on the GPU (MLX's default device with ``mlx[cuda]``, torch's
``cuda``), with a device synchronisation closing every timed call and the peak GPU memory instead
of the peak RSS that matters; ``spec["rows"]`` (a list of task specs, one per row) runs several
rows in one process, one after the other, and prints ``{row: result}``: on a GPU each process would
otherwise pay its start, CUDA context and kernel compilation again.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TGT = "fra"
SR = 16000

# row: (task class suffix, input kind, seconds of input audio)
ROWS = {
    "t2tt": ("TextToText", "text", 0),
    "s2tt-10s": ("SpeechToText", "speech", 10),
    "s2tt-60s": ("SpeechToText", "speech", 60),
    "t2st": ("TextToSpeech", "text", 0),
    "s2st-10s": ("SpeechToSpeech", "speech", 10),
}


def peak_rss() -> int:
    """Peak resident memory of this process in bytes (``VmHWM``).

    Not ``ru_maxrss``: Linux keeps ``ru_maxrss`` across ``fork``/``execve``, so a worker started
    from a big parent would report the parent's peak instead of its own.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def current_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# ----------------------------------------------------------------------------- inputs
def source_ids():
    """A 20-token source sentence (ids the tiny test tokenizer knows, so T2U finds their text)."""
    import numpy as np

    return np.random.default_rng(0).integers(4, 200, size=(1, 20))


def waveform(seconds: float):
    """Synthetic 16 kHz speech-like signal: an amplitude-modulated 200 Hz tone plus noise."""
    import numpy as np

    rng = np.random.default_rng(0)
    t = np.arange(int(SR * seconds)) / SR
    audio = 0.3 * np.sin(2 * np.pi * 200 * t) * (1 + np.sin(2 * np.pi * 2 * t)) + 0.05 * rng.standard_normal(t.size)
    return audio.astype(np.float32)


def length_kwargs(speech_out: bool, tokens: int):
    """Force exactly ``tokens`` new text tokens.  Speech tasks get the ``text_`` prefix (both
    libraries route it to text generation only; an unprefixed key would also reach the T2U)."""
    prefix = "text_" if speech_out else ""
    return {f"{prefix}max_new_tokens": tokens, f"{prefix}min_new_tokens": tokens}


def best_of(fn, repeats: int, warmup):
    """``warmup``: True (one call), False, or a callable run once first (a cheaper warm-up)."""
    if warmup is True:
        fn()
    elif callable(warmup):
        warmup()
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), times, out


# ----------------------------------------------------------------------------- MLX
def _mlx_import():
    import seamless_mlx as sm  # first: preloads the fast BLAS before mlx.core

    import mlx.core as mx
    from seamless_mlx.cpu import blas as _blas

    return sm, mx, _blas


def on_gpu(spec) -> bool:
    """``BENCH_GPU_AS_CPU=1`` runs a GPU spec on the CPU: a dry run of the harness without a GPU."""
    return spec.get("device", "cpu") == "gpu" and not os.environ.get("BENCH_GPU_AS_CPU")


def mlx_device(mx, spec) -> str:
    """Set the default device the spec asks for; its name."""
    if on_gpu(spec):
        mx.set_default_device(mx.gpu)
        try:
            return str(mx.device_info().get("device_name", "gpu"))
        except Exception:  # older MLX
            return "gpu"
    mx.set_default_device(mx.cpu)
    return "cpu"


def mlx_task(spec):
    sm, mx, _blas = _mlx_import()
    from seamless_mlx import SeamlessM4TFeatureExtractor

    device_name = mlx_device(mx, spec)
    row, tokens = spec["row"], spec["tokens"]
    suffix, kind, seconds = ROWS[row]
    speech_out = suffix.endswith("Speech")
    cls = getattr(sm, spec.get("cls") or f"SeamlessM4Tv2For{suffix}")
    res = {"blas": _blas.loaded or "reference", "class": cls.__name__, "device_name": device_name,
           "tf32": os.environ.get("MLX_ENABLE_TF32", "1 (MLX default)")}
    t = time.perf_counter()
    model = cls.from_pretrained(spec["folder"])
    res["load_s"] = time.perf_counter() - t
    res["rss_after_load"] = current_rss()
    res["weights_bytes"] = mx.get_active_memory()

    def inputs_for(secs):
        if kind == "text":
            return {"input_ids": mx.array(source_ids())}
        t = time.perf_counter()
        f = SeamlessM4TFeatureExtractor()(waveform(secs), sampling_rate=SR, return_tensors="mlx")
        mx.eval(f["input_features"])
        res.setdefault("features_s", time.perf_counter() - t)
        return {"input_features": f["input_features"], "attention_mask": f["attention_mask"]}

    inputs = inputs_for(seconds)
    extra = {} if spec.get("cls") in (None, f"SeamlessM4Tv2For{suffix}") else {"generate_speech": speech_out}

    ids_kw = {"return_intermediate_token_ids": True} if speech_out else {}  # to check the text length

    def run(n=tokens, inp=inputs):
        out = model.generate(**inp, tgt_lang=TGT, **extra, **ids_kw, **length_kwargs(speech_out, n))
        mx.eval(out[0])
        return out

    warm = spec.get("warmup", True)
    if warm == "short":  # a cheap call through the same code (loads kernels, pages, BLAS threads)
        short_in = inputs_for(min(seconds, 5)) if kind == "speech" else inputs
        warm = lambda: run(4, short_in)  # noqa: E731
    mx.reset_peak_memory()
    res["seconds"], res["times"], out = best_of(run, spec["repeats"], warm)
    res["mx_peak_bytes"] = mx.get_peak_memory()
    if on_gpu(spec):
        res["peak_device_bytes"] = res["mx_peak_bytes"]
    if speech_out:
        res["audio_out_s"] = int(out.waveform_lengths[0].item()) / SR
    res["new_tokens"] = int(out.sequences.shape[1]) - 2  # minus [decoder start, language]
    res["tokens_out"] = out.sequences[0].tolist()  # compared with transformers' by run.py
    res["peak_rss"] = peak_rss()

    if spec.get("profile"):
        res["profile"] = mlx_profile(sm, mx, model, inputs, speech_out, tokens)
    if spec.get("step"):
        res.update(mlx_step(mx, model, inputs, tokens, runs=spec.get("step_runs", 2)))
    if spec.get("bandwidth"):
        res.update(gpu_bandwidth_probes(mx) if on_gpu(spec) else bandwidth_probes(mx))
    res["torch_imported"] = "torch" in sys.modules
    return res


def mlx_profile(sm, mx, model, inputs, speech_out, tokens):
    """Phase times of one generate call, with a sync (``mx.eval``) between phases."""
    from seamless_mlx import generate as G
    from seamless_mlx import t2u as t2u_mod

    gen = model.generation_config
    prof = {}
    t0 = time.perf_counter()
    memory, mask = model.encode(inputs.get("input_ids"), inputs.get("input_features"), inputs.get("attention_mask"))
    mx.eval(memory)
    t1 = time.perf_counter()
    prof["encode_s"] = t1 - t0
    prefix = mx.array([[gen.decoder_start_token_id, gen.text_decoder_lang_to_code_id[TGT]]], dtype=mx.int32)
    opts = G.GenerateOptions.resolve(gen, {"max_new_tokens": tokens, "min_new_tokens": tokens})
    text_out = G.decode_text(model, memory, mask, prefix, opts, collect_hidden=speech_out)
    mx.eval(text_out.sequences, *([text_out.decoder_hidden_states] if speech_out else []))
    t2 = time.perf_counter()
    prof["text_decode_s"] = t2 - t1
    # the decode loop once more with a single new token: prefill + first step
    one_opts = G.GenerateOptions.resolve(gen, {"max_new_tokens": 1, "min_new_tokens": 1})
    one = G.decode_text(model, memory, mask, prefix, one_opts)
    mx.eval(one.sequences)
    prof["first_token_s"] = time.perf_counter() - t2
    prof["per_token_s"] = (prof["text_decode_s"] - prof["first_token_s"]) / max(tokens - 1, 1)
    if not speech_out:
        return prof
    seq = text_out.sequences
    seq_np = __import__("numpy").array(seq)
    t3 = time.perf_counter()
    char_ids, char_counts = t2u_mod.char_inputs(seq_np, gen, pad_token_id=gen.pad_token_id, eos_token_id=gen.eos_token_id)
    t2u_mask = t2u_mod.t2u_attention_mask(seq_np, gen.pad_token_id)
    logits, padding_mask = model.t2u_model(
        text_out.decoder_hidden_states, mx.array(char_ids), mx.array(char_counts), mx.array(t2u_mask)
    )
    units = t2u_mod.select_units(logits)
    voc_units = t2u_mod.units_for_vocoder(units, padding_mask, model.config)
    mx.eval(voc_units)
    t4 = time.perf_counter()
    prof["t2u_s"] = t4 - t3
    prof["units"] = int(voc_units.shape[1])
    wav, lengths = model.vocoder(voc_units, mx.array([0]), mx.array([gen.vocoder_lang_code_to_id[TGT]]))
    mx.eval(wav, lengths)
    prof["vocoder_s"] = time.perf_counter() - t4
    prof["total_s"] = time.perf_counter() - t0
    return prof


def mlx_step(mx, model, inputs, tokens, runs=2):
    """Per-token decode time: the median of the intervals between consecutive steps of the decode
    loop (``runs`` calls of ``tokens`` tokens; the loop hands out step t once it is computed, with
    step t+1 already queued, so in steady state one interval is one step); plus the split of one
    step into decoder layers and LM head, and the bytes a step reads."""
    import numpy as np
    from mlx.utils import tree_flatten

    from seamless_mlx import generate as G

    gen = model.generation_config
    memory, mask = model.encode(inputs.get("input_ids"), inputs.get("input_features"), inputs.get("attention_mask"))
    mx.eval(memory)
    prefix = mx.array([[gen.decoder_start_token_id, gen.text_decoder_lang_to_code_id[TGT]]], dtype=mx.int32)

    intervals = []
    for _ in range(runs):
        last = None
        opts = G.GenerateOptions.resolve(gen, {"max_new_tokens": tokens, "min_new_tokens": tokens})
        for _step in G.decode_steps(model, memory, mask, prefix, opts):
            now = time.perf_counter()
            if last is not None:
                intervals.append(now - last)
            last = now
    res = {"step_s": float(np.median(intervals)), "step_intervals": len(intervals)}

    # one step split: decoder layers (KV cache of 16 tokens) vs the LM head
    dec_mod = model.text_decoder
    cache = dec_mod.make_cache(memory)
    mx.eval(dec_mod(mx.array(np.full((1, 16), 5, dtype=np.int32)), model.shared, cache, mask))
    tok = mx.array([[7]], dtype=mx.int32)
    h = dec_mod(tok, model.shared, cache, mask)
    mx.eval(h)
    n, t = 4 if runs == 1 else 8, time.perf_counter()
    for _ in range(n):
        h = dec_mod(tok, model.shared, cache, mask)
        mx.eval(h)
    res["step_layers_s"] = (time.perf_counter() - t) / n
    last = h[:, -1, :]
    mx.eval(model.lm_logits(last))
    t = time.perf_counter()
    for _ in range(n):
        mx.eval(mx.argmax(model.lm_logits(last), axis=-1))
    res["step_lm_head_s"] = (time.perf_counter() - t) / n

    params = dict(tree_flatten(model.parameters()))
    dec_bytes = sum(v.nbytes for k, v in params.items() if k.startswith("text_decoder."))
    shared_bytes = sum(v.nbytes for k, v in params.items() if k.startswith("shared."))
    cross_kv = sum(
        v.nbytes
        for k, v in params.items()
        if k.startswith("text_decoder.") and (".cross_attention.k_proj" in k or ".cross_attention.v_proj" in k)
    )
    res["decoder_bytes"] = dec_bytes
    res["shared_bytes"] = shared_bytes
    res["step_bytes"] = dec_bytes + shared_bytes  # text_decoder + shared (the tied LM head)
    res["step_bytes_no_cross_kv"] = dec_bytes + shared_bytes - cross_kv  # cross K/V are cached once
    return res


def bandwidth_probes(mx=None):
    """Memory bandwidth, three ways, each the best of 5: a 1 GiB fp32 matrix-vector product in MLX
    (reads the matrix once, like a decode step; MKL runs a mat-vec on one core), the same product
    split by rows over one CPU stream per core (what all cores can read), and a 1 GiB numpy copy
    (bytes read + written, one core)."""
    import numpy as np

    res = {}
    if mx is not None:
        n_streams = os.cpu_count() or 1
        w = mx.random.normal((1 << 14, 1 << 14))
        x = mx.random.normal((1, 1 << 14))
        mx.eval(w, x)
        streams = [mx.new_stream(mx.cpu) for _ in range(n_streams)]
        rows = w.shape[0] // n_streams

        def split():
            outs = []
            for i, st in enumerate(streams):
                with mx.stream(st):
                    outs.append(x @ w[i * rows : (i + 1) * rows].T)
            return mx.concatenate(outs, axis=1)

        for name, fn in (("bandwidth_matvec_Bps", lambda: x @ w.T), ("bandwidth_matvec_split_Bps", split)):
            res[name] = w.nbytes / _best_eval_s(mx, fn)
        del w, x
    a = np.ones(1 << 28, dtype=np.float32)
    b = np.empty_like(a)
    np.copyto(b, a)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    res["bandwidth_copy_Bps"] = 2 * a.nbytes / best  # bytes read + bytes written
    return res


def gpu_bandwidth_probes(mx):
    """GPU memory bandwidth in MLX, each the best of 5: a 1 GiB fp32 matrix-vector product (what a
    decode step does) and a 1 GiB copy (bytes read + written)."""
    res = {}
    w = mx.random.normal((1 << 14, 1 << 14))
    x = mx.random.normal((1, 1 << 14))
    mx.eval(w, x)
    res["bandwidth_matvec_Bps"] = w.nbytes / _best_eval_s(mx, lambda: x @ w.T)
    res["bandwidth_copy_Bps"] = 2 * w.nbytes / _best_eval_s(mx, lambda: w + 1.0)
    return res


def _best_eval_s(mx, fn, runs: int = 5) -> float:
    """Best wall time of ``mx.eval(fn())`` over ``runs`` calls after one warm-up."""
    mx.eval(fn())
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        mx.eval(fn())
        best = min(best, time.perf_counter() - t)
    return best


def mlx_encoder(spec):
    sm, mx, _blas = _mlx_import()
    import gc

    from seamless_mlx import SeamlessM4TFeatureExtractor

    model = sm.SeamlessM4Tv2ForSpeechToText.from_pretrained(spec["folder"])
    # keep only the speech encoder, as the transformers worker does
    for name in ("text_decoder", "shared"):
        model.pop(name, None)
    gc.collect()
    mx.clear_cache()
    res = {"rss_after_load": current_rss(), "weights_bytes": mx.get_active_memory(), "peak_reset": reset_peak_rss()}
    f = SeamlessM4TFeatureExtractor()(waveform(spec["seconds"]), sampling_rate=SR, return_tensors="mlx")
    mx.eval(f["input_features"])
    res["frames"] = int(f["input_features"].shape[1])
    mx.reset_peak_memory()
    t = time.perf_counter()
    h, _ = model.encode_speech(f["input_features"], f["attention_mask"])
    mx.eval(h)
    res["seconds"] = time.perf_counter() - t
    res["mx_peak_bytes"] = mx.get_peak_memory()
    res["peak_rss"] = peak_rss()
    return res


# ----------------------------------------------------------------------------- transformers
def _torch_import():
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count())
    return torch, transformers


def hf_task(spec):
    torch, transformers = _torch_import()
    gpu = on_gpu(spec)
    device = torch.device("cuda" if gpu else "cpu")

    def sync():
        if gpu:
            torch.cuda.synchronize()

    row, tokens = spec["row"], spec["tokens"]
    suffix, kind, seconds = ROWS[row]
    speech_out = suffix.endswith("Speech")
    cls = getattr(transformers, spec.get("cls") or f"SeamlessM4Tv2For{suffix}")
    res = {"class": cls.__name__, "torch": torch.__version__, "threads": torch.get_num_threads(),
           "device_name": torch.cuda.get_device_name() if gpu else "cpu"}
    t = time.perf_counter()
    model = cls.from_pretrained(spec["folder"]).eval().to(device)
    sync()
    res["load_s"] = time.perf_counter() - t
    res["rss_after_load"] = current_rss()  # transformers memory-maps the weights: pages come in when used
    res["weights_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
    fe = transformers.SeamlessM4TFeatureExtractor()

    def inputs_for(secs):
        if kind == "text":
            return {"input_ids": torch.tensor(source_ids(), device=device)}
        t = time.perf_counter()
        f = fe(waveform(secs), sampling_rate=SR, return_tensors="pt")
        res.setdefault("features_s", time.perf_counter() - t)
        return {"input_features": f["input_features"].to(device), "attention_mask": f["attention_mask"].to(device)}

    inputs = inputs_for(seconds)
    extra = {} if spec.get("cls") in (None, f"SeamlessM4Tv2For{suffix}") else {"generate_speech": speech_out}

    ids_kw = {"return_intermediate_token_ids": True} if speech_out else {}  # to check the text length

    def run(n=tokens, inp=inputs):
        with torch.inference_mode():
            out = model.generate(**inp, tgt_lang=TGT, **extra, **ids_kw, **length_kwargs(speech_out, n))
        sync()
        return out

    warm = spec.get("warmup", True)
    if warm == "short":
        short_in = inputs_for(min(seconds, 5)) if kind == "speech" else inputs
        warm = lambda: run(4, short_in)  # noqa: E731
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    res["seconds"], res["times"], out = best_of(run, spec["repeats"], warm)
    if gpu:
        res["peak_device_bytes"] = torch.cuda.max_memory_allocated()
    res["peak_rss"] = peak_rss()
    if spec.get("profile"):
        # hooks cost time (and a device sync each on a GPU): only on one extra, untimed call
        with hf_hooks(model, sync) as prof:
            run()
        res["profile"] = prof.summary()
    if speech_out:
        res["audio_out_s"] = int(out.waveform_lengths.reshape(-1)[0].cpu()) / SR
    seq = out.sequences if hasattr(out, "sequences") else out  # a tensor for the text tasks
    res["new_tokens"] = int(seq.shape[-1]) - 2
    res["tokens_out"] = seq.reshape(-1, seq.shape[-1])[0].cpu().tolist()
    return res


class _Hooks:
    """Wall time per sub-module call (torch runs eagerly on the CPU, so forward hooks time it; on a
    GPU each hook synchronises first).  A context manager: the hooks are removed on exit, so that
    the calls timed for the main table never carry them."""

    def __init__(self, sync=lambda: None):
        self.times, self._t, self.sync, self._handles = {}, {}, sync, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []

    def add(self, name, module):
        def pre(mod, args):
            self.sync()
            self._t[name] = time.perf_counter()

        def post(mod, args, out):
            self.sync()
            self.times.setdefault(name, []).append(time.perf_counter() - self._t[name])

        self._handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def summary(self):
        out = {}
        for k, v in self.times.items():
            out[f"{k}_s"] = sum(v)
            out[f"{k}_calls"] = len(v)
        dec, head = self.times.get("text_decoder", []), self.times.get("lm_head", [])
        if len(dec) > len(head):  # speech tasks: one more decoder pass over the whole text for the T2U
            out["text_decoder_extra_pass_s"] = dec[-1]
        return out


def hf_hooks(model, sync=lambda: None):
    h = _Hooks(sync)
    for name in ("text_encoder", "speech_encoder", "text_decoder", "lm_head", "t2u_model", "vocoder"):
        mod = getattr(model, name, None)
        if mod is not None:
            h.add(name, mod)
    return h


def hf_encoder(spec):
    torch, transformers = _torch_import()
    model = transformers.SeamlessM4Tv2ForSpeechToText.from_pretrained(spec["folder"]).eval()
    # keep only the speech encoder: the text decoder and embeddings would add ~3 GB of RSS
    enc = model.speech_encoder
    del model
    import gc

    gc.collect()
    with torch.inference_mode():  # page the memory-mapped weights in, so growth is activations only
        for p in enc.parameters():
            p.sum()
    res = {"rss_after_load": current_rss(), "weights_bytes": sum(p.numel() * p.element_size() for p in enc.parameters()),
           "peak_reset": reset_peak_rss()}
    f = transformers.SeamlessM4TFeatureExtractor()(waveform(spec["seconds"]), sampling_rate=SR, return_tensors="pt")
    res["frames"] = int(f["input_features"].shape[1])
    t = time.perf_counter()
    with torch.inference_mode():
        enc(input_features=f["input_features"], attention_mask=f["attention_mask"])
    res["seconds"] = time.perf_counter() - t
    res["peak_rss"] = peak_rss()
    return res


# ----------------------------------------------------------------------------- entry
def main():
    spec = json.loads(sys.argv[1])
    sys.path.insert(0, str(ROOT))
    mode, fw = spec["mode"], spec.get("framework", "mlx")
    task = mlx_task if fw == "mlx" else hf_task
    if mode == "bandwidth":
        res = bandwidth_probes(_mlx_import()[1])
    elif mode == "encoder":
        res = (mlx_encoder if fw == "mlx" else hf_encoder)(spec)
    elif mode == "task" and "rows" in spec:
        import gc

        res = {}
        for row_spec in spec["rows"]:
            row = row_spec["row"]
            try:
                res[row] = task(row_spec)
            except Exception as e:  # one failed row must not lose the others
                res[row] = {"error": f"{type(e).__name__}: {e}"}
            gc.collect()
            if fw == "mlx":
                sys.modules["mlx.core"].clear_cache()
            elif on_gpu(spec):
                sys.modules["torch"].cuda.empty_cache()
            print(json.dumps({"row_done": row, **{k: v for k, v in res[row].items() if k in ("seconds", "error")}}),
                  file=sys.stderr, flush=True)
    elif mode == "task":
        res = task(spec)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
