"""Check that two seamless-mlx trees compute bit-identical outputs on the CPU.

The CPU speed work (``seamless_mlx.cpu``) must run the same operations as the code it was moved out
of.  This script dumps encoder states, decoder logits, T2U logits, units and waveforms from the tree
on ``PYTHONPATH`` and compares two such dumps with ``np.array_equal`` (waveforms within
``WAVEFORM_ATOL``, see there):

    python benchmarks/cpu_equivalence.py build /tmp/eq                       # checkpoints (needs torch)
    PYTHONPATH=/old/tree python benchmarks/cpu_equivalence.py dump /tmp/eq /tmp/eq/old
    PYTHONPATH=$PWD      python benchmarks/cpu_equivalence.py dump /tmp/eq /tmp/eq/new
    python benchmarks/cpu_equivalence.py compare /tmp/eq/old /tmp/eq/new

Two checkpoints: the tests' tiny one and a mid-size one (hidden 256, 4 layers).  Each is run with
the default tuning and with every size threshold lowered (``--small``-style overrides below), so
that blocked attention, head and row splits over streams, split mat-vecs and column blocks all run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

MID = dict(
    hidden_size=256,
    encoder_layers=4,
    decoder_layers=4,
    encoder_ffn_dim=1024,
    decoder_ffn_dim=1024,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    speech_encoder_layers=4,
    speech_encoder_attention_heads=4,
    speech_encoder_intermediate_size=1024,
    t2u_encoder_layers=2,
    t2u_decoder_layers=2,
    t2u_encoder_ffn_dim=512,
    t2u_decoder_ffn_dim=512,
    t2u_variance_predictor_embed_dim=256,
    t2u_variance_predictor_hidden_dim=64,
    speech_encoder_chunk_size=40,
    left_max_position_embeddings=16,
    right_max_position_embeddings=4,
    adaptor_kernel_size=8,
    adaptor_stride=8,
)

# Every size threshold of the CPU routes, lowered so that small inputs take the split/blocked paths.
# Names are those of ``seamless_mlx.cpu.tuning``; the pre-``cpu/`` tree kept them in ``layers`` and
# ``speech_encoder``, where they are set too.
SMALL = dict(
    ATTENTION_SLICE_BYTES=0,
    ATTENTION_BLOCK_BYTES=2 * 60 * 4 * 7,
    FFN_BLOCK_BYTES=2 * 64 * 4 * 9,
    HEAD_PARALLEL_MIN_ELEMENTS=0,
    ELEMENTWISE_SPLIT_MIN=1 << 12,
    SPLIT_MATVEC_MIN_BYTES=0,
    TRANSPOSED_PRODUCT_MAX_ROWS=4,
    WIDE_PRODUCT_COLUMNS=16,
    COLUMN_BLOCK=24,
)


def _audio(seed, seconds):
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * (150 + 50 * seed) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def build(root: Path):
    sys.path.insert(0, str(HERE.parent / "tests"))
    from checkpoints import TINY, build_checkpoint

    build_checkpoint(root / "tiny", seed=0)
    build_checkpoint(root / "mid", seed=1, overrides={**TINY, **MID})


def _set_thresholds(values: dict) -> dict:
    """Set the thresholds wherever the tree keeps them; returns the previous values."""
    import importlib

    previous = {}
    for name in ("seamless_mlx.cpu.tuning", "seamless_mlx.layers", "seamless_mlx.speech_encoder"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for key, value in values.get(name, values).items():
            if hasattr(module, key):
                previous.setdefault(name, {})[key] = getattr(module, key)
                setattr(module, key, value)
    return previous


def _outputs(folder: Path, seconds) -> dict:
    import mlx.core as mx

    import seamless_mlx as sm
    from seamless_mlx import t2u
    from seamless_mlx.processor import SeamlessM4TProcessor

    try:
        from seamless_mlx.features import SeamlessM4TFeatureExtractor
    except ImportError:  # the tree before the feature extractor moved out of audio.py
        from seamless_mlx.audio import SeamlessM4TFeatureExtractor

    out = {}
    model = sm.SeamlessM4Tv2Model.from_pretrained(folder)
    proc = SeamlessM4TProcessor.from_pretrained(folder)
    gen = model.generation_config
    f = SeamlessM4TFeatureExtractor()([_audio(0, seconds[0]), _audio(1, seconds[1])], sampling_rate=16000,
                                     return_tensors="np")
    feats, fmask = mx.array(f["input_features"]), mx.array(f["attention_mask"])
    speech, speech_mask = model.encode_speech(feats, fmask)
    out["speech_states"], out["speech_mask"] = speech, speech_mask
    enc = proc(text=["Hello world, how are you today?", "Bonjour !"], src_lang="eng", return_tensors="np",
               padding=True)
    ids, mask = mx.array(enc["input_ids"]), mx.array(enc["attention_mask"])
    text, _ = model.encode_text(ids, mask)
    out["text_states"] = text

    # decoder: a two-token prefix, then single tokens (the decoding step's shapes), logits and states
    decoder = model.text_decoder
    forced = [[gen.decoder_start_token_id, gen.text_decoder_lang_to_code_id["fra"]]] * 2
    for name, memory, memory_mask in (("speech", speech, speech_mask), ("text", text, mask)):
        cache = decoder.make_cache(memory)
        tokens = mx.array(forced)
        states, logits = [], []
        for step in range(6):
            h = decoder(tokens, model.shared, cache, memory_mask)
            lg = model.lm_logits(h[:, -1, :])
            states.append(h)
            logits.append(lg)
            tokens = mx.array([[10 + step], [20 + step]])
        out[f"{name}_decoder_logits"] = mx.stack(logits, axis=1)
        out[f"{name}_decoder_states"] = mx.concatenate(states, axis=1)

    # T2U and vocoder on those states (as if the text had been generated)
    seq = np.concatenate([np.array(forced), np.array([[10 + s for s in range(6)], [20 + s for s in range(6)]])], 1)
    seq[1, -2:] = [gen.eos_token_id, gen.pad_token_id]
    char_ids, counts = t2u.char_inputs(seq, gen, pad_token_id=gen.pad_token_id, eos_token_id=gen.eos_token_id)
    t2u_mask = t2u.t2u_attention_mask(seq, gen.pad_token_id)
    states = out["text_decoder_states"][:, : seq.shape[1] - 1]
    logits, pad_mask = model.t2u_model(states, mx.array(char_ids), mx.array(counts), mx.array(t2u_mask))
    out["t2u_logits"], out["t2u_padding_mask"] = logits, pad_mask
    units = t2u.units_for_vocoder(t2u.select_units(logits), pad_mask, model.config)
    wave, lengths = model.vocoder(units, 1, mx.array([0, 1]))
    out["vocoder_waveform"], out["vocoder_lengths"] = wave, lengths

    # whole tasks
    kw = dict(input_features=feats, attention_mask=fmask, tgt_lang="fra", return_intermediate_token_ids=True,
              max_new_tokens=8)
    s2st = model.generate(**kw, speaker_id=1)
    for k in ("sequences", "unit_sequences", "waveform", "waveform_lengths"):
        out[f"s2st_{k}"] = getattr(s2st, k)
    t2st = model.generate(input_ids=ids, attention_mask=mask, tgt_lang="deu", num_beams=2, max_new_tokens=8,
                          return_intermediate_token_ids=True)
    for k in ("sequences", "unit_sequences", "waveform", "waveform_lengths"):
        out[f"t2st_beam_{k}"] = getattr(t2st, k)
    mx.eval(out)
    return {k: np.array(v) for k, v in out.items()}


def dump(root: Path, target: Path):
    import seamless_mlx  # noqa: F401  (picks the BLAS before mlx.core)
    from seamless_mlx.convert import convert

    target.mkdir(parents=True, exist_ok=True)
    seconds = {"tiny": (1.3, 0.7), "mid": (6.0, 3.5)}
    for name, secs in seconds.items():
        quantized = convert(root / name, target / f"{name}-q8", quantize=True, q_bits=8,
                            q_group_size=32 if name == "tiny" else 64)
        for label, folder in (("", root / name), ("q8-", quantized)):
            results = _outputs(folder, secs)
            np.savez(target / f"{label}{name}-default.npz", **results)
        previous = _set_thresholds(SMALL)
        np.savez(target / f"{name}-small.npz", **_outputs(root / name, secs))
        _set_thresholds(previous)


# Waveforms may differ by rounding between trees whose CPU vocoder sums its products in another
# order (the residual blocks padded once, the residual starting the accumulator); anything else
# must stay bit-identical.
WAVEFORM_ATOL = 1e-5


def _rounding_only(key: str, x: np.ndarray, y: np.ndarray) -> bool:
    return key.endswith("waveform") and x.shape == y.shape and np.abs(x - y).max() <= WAVEFORM_ATOL


def compare(a: Path, b: Path) -> int:
    bad = close = 0
    report = {}
    for fa in sorted(a.glob("*.npz")):
        fb = b / fa.name
        da, db = np.load(fa), np.load(fb)
        assert sorted(da.files) == sorted(db.files), fa.name
        for k in da.files:
            same = da[k].shape == db[k].shape and np.array_equal(da[k], db[k])
            if same:
                report[f"{fa.stem}:{k}"] = "identical"
            elif _rounding_only(k, da[k], db[k]):
                report[f"{fa.stem}:{k}"] = f"within {WAVEFORM_ATOL} (max abs {np.abs(da[k] - db[k]).max():.1e})"
                close += 1
            else:
                diff = np.abs(da[k] - db[k]).max() if da[k].shape == db[k].shape else f"shapes {da[k].shape} {db[k].shape}"
                report[f"{fa.stem}:{k}"] = f"DIFFERENT (max abs {diff})"
                bad += 1
    print(json.dumps(report, indent=1))
    print(f"{len(report) - bad - close} of {len(report)} arrays bit-identical, {close} waveforms within {WAVEFORM_ATOL}")
    return 1 if bad else 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build").add_argument("root", type=Path)
    d = sub.add_parser("dump")
    d.add_argument("root", type=Path)
    d.add_argument("target", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = p.parse_args()
    if args.cmd == "build":
        build(args.root)
    elif args.cmd == "dump":
        dump(args.root, args.target)
    else:
        sys.exit(compare(args.a, args.b))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
