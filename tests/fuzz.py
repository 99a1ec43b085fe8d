"""Random configurations and generation settings against transformers (a manual tool, not a test).

    python tests/fuzz.py configs 0 1 2 ...      # one random model config per seed, all five tasks
    python tests/fuzz.py generation 0 40        # seed, trials: random beam/penalty/n-gram settings
    SEAMLESS_MLX_ROUTES=generic python tests/fuzz.py configs 0 1 2   # the routes Metal/CUDA take

Each seed builds a random-weight checkpoint with a config drawn from the ranges below (heads, layer
counts, adaptor kernel/stride/layers or none, chunking, position clipping or none, activations,
embedding scale, T2U and vocoder shapes, speakers), then compares with transformers the text and
speech encoders' outputs and the T2U logits (atol 1e-4, scaled by the largest value), and greedy
and beam text, units and waveforms, batched.  ``tests/test_configs.py`` keeps two such
configs in the suite; run this after touching the model code.  On 2026-11-27: 50 configs on the
CPU routes, 10 on the generic ones and 52 generation settings, no mismatch once the T2U
activation was fixed (with the old ReLU-or-GELU T2U and ``gelu_new``, the state comparison flags
it while every token and unit still matches).
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.dirname(__file__))

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from checkpoints import build_checkpoint, load_hf  # noqa: E402
from test_configs import t2u_logits  # noqa: E402
from test_speech_output import _audio, _check, _speech_inputs, _text_inputs  # noqa: E402

import seamless_mlx as sm  # noqa: E402

TEXTS = ["Hello world, how are you?", "Bonjour tout le monde ! Comment allez-vous ?", "Der schnelle braune Fuchs."]


def random_config(r: random.Random) -> dict:
    hidden = r.choice([1, 2, 4]) * r.choice([8, 16])

    def heads():
        return r.choice([h for h in (1, 2, 4, 8) if hidden % h == 0])

    cfg = dict(
        hidden_size=hidden,
        encoder_layers=r.randint(1, 3), decoder_layers=r.randint(1, 3),
        encoder_ffn_dim=r.choice([16, 48, 64]), decoder_ffn_dim=r.choice([16, 40, 64]),
        encoder_attention_heads=heads(), decoder_attention_heads=heads(),
        speech_encoder_layers=r.randint(1, 3), speech_encoder_attention_heads=heads(),
        speech_encoder_intermediate_size=r.choice([24, 64]),
        adaptor_kernel_size=r.choice([2, 3, 4, 5, 8]), adaptor_stride=r.choice([1, 2, 3, 4, 8]),
        num_adapter_layers=r.choice([1, 1, 2]), add_adapter=r.random() < 0.85,
        conv_depthwise_kernel_size=r.choice([3, 5, 7, 31]),
        left_max_position_embeddings=r.choice([1, 3, 8, 64]), right_max_position_embeddings=r.choice([0, 1, 2, 8]),
        speech_encoder_chunk_size=r.choice([3, 7, 16, 20000]), speech_encoder_left_chunk_num=r.choice([-1, 0, 1, 2, 128]),
        position_embeddings_type=r.choice(["relative_key", "relative_key", None]),
        activation_function=r.choice(["relu", "gelu", "gelu_new", "relu"]),
        speech_encoder_hidden_act=r.choice(["swish", "swish", "gelu", "relu", "quick_gelu"]),
        scale_embedding=r.random() < 0.7, layer_norm_eps=r.choice([1e-5, 1e-6]),
        t2u_encoder_layers=r.randint(1, 2), t2u_decoder_layers=r.randint(1, 2),
        t2u_encoder_attention_heads=heads(), t2u_decoder_attention_heads=heads(),
        t2u_encoder_ffn_dim=r.choice([16, 64]), t2u_decoder_ffn_dim=r.choice([16, 64]),
        t2u_variance_predictor_embed_dim=hidden, t2u_variance_predictor_hidden_dim=r.choice([8, 16]),
        t2u_variance_predictor_kernel_size=r.choice([3, 5]), variance_predictor_kernel_size=r.choice([3, 5]),
        upsample_initial_channel=r.choice([16, 32]), vocoder_num_spkrs=r.choice([1, 2, 5]),
        unit_embed_dim=r.choice([8, 16]), lang_embed_dim=r.choice([2, 4]), spkr_embed_dim=r.choice([2, 4]),
    )
    cfg.update(r.choice([
        dict(upsample_rates=[4, 2, 2], upsample_kernel_sizes=[8, 4, 4], resblock_kernel_sizes=[3, 5],
             resblock_dilation_sizes=[[1, 3], [1, 2]]),
        dict(upsample_rates=[5, 4], upsample_kernel_sizes=[11, 8], resblock_kernel_sizes=[3, 7, 11],
             resblock_dilation_sizes=[[1, 3, 5]] * 3),
        dict(upsample_rates=[2, 3], upsample_kernel_sizes=[4, 7], resblock_kernel_sizes=[3],
             resblock_dilation_sizes=[[1, 2, 4]]),
    ]))
    return cfg


def _sequences(out):
    out = out[0] if isinstance(out, tuple) else getattr(out, "sequences", out)
    return np.array(out).tolist()


def compare(hf, model, hf_in, ours_in, kw, speech: bool) -> str | None:
    """None when both agree, else what differs."""
    with torch.no_grad():
        ref = hf.generate(**hf_in, **kw)
    try:
        ours = model.generate(**ours_in, **kw)
    except Exception:
        return "ours raised:\n" + traceback.format_exc(limit=4)
    try:
        if speech:
            _check(ours, ref)
        else:
            assert _sequences(ours) == _sequences(ref), f"ours {_sequences(ours)}\n  ref  {_sequences(ref)}"
    except AssertionError as e:
        return f"mismatch: {e}"
    return None


def compare_states(hf, model, text, speech, cfg, atol: float = 1e-4) -> list:
    """Encoder outputs and T2U logits, not only what survives an argmax (a T2U activation bug once
    left every unit id right and its logits 7e-4 off)."""
    problems = []

    def close(name, ours, ref, keep):
        err = float(np.abs(np.array(ours)[keep] - ref[keep]).max())
        if err > atol * max(1.0, float(np.abs(ref[keep]).max())):
            problems.append(f"{name}: max abs diff {err:.2e}")

    (hf_text, ours_text), (hf_speech, ours_speech) = text, speech
    with torch.no_grad():
        ref_text = hf.text_encoder(**hf_text).last_hidden_state.numpy()
        ref_speech = hf.speech_encoder(**hf_speech)[0].numpy()
    ours, _ = model.encode(ours_text["input_ids"], None, ours_text["attention_mask"])
    close("text encoder", ours, ref_text, hf_text["attention_mask"].numpy().astype(bool))
    ours, mask = model.encode(None, ours_speech["input_features"], ours_speech["attention_mask"])
    keep = np.ones(ref_speech.shape[:2], bool) if mask is None else np.array(mask).astype(bool)
    if ours.shape != ref_speech.shape:
        problems.append(f"speech encoder: shape {ours.shape} vs {ref_speech.shape}")
    else:
        close("speech encoder", ours, ref_speech, keep)
    ours, ref, _, keep = t2u_logits(hf, model, cfg["hidden_size"])
    close("t2u logits", ours, ref, keep)
    return problems


def fuzz_config(seed: int) -> tuple[dict, list]:
    r = random.Random(seed)
    cfg = random_config(r)
    with tempfile.TemporaryDirectory() as tmp:
        path, _, _ = build_checkpoint(os.path.join(tmp, "hf"), seed=seed, overrides=cfg)
        hf, proc = load_hf(path)
        model = sm.SeamlessM4Tv2Model.from_pretrained(path)
    text = _text_inputs((hf, proc), TEXTS[:2])
    speech = _speech_inputs([_audio(seed % 7, 1.3), _audio(seed % 7 + 1, 0.7)])
    tgt = r.choice(["fra", "deu", "spa"])
    cases = {
        "t2tt": (text, dict(tgt_lang=tgt, generate_speech=False, max_new_tokens=12), False),
        "t2tt-beam": (text, dict(tgt_lang=tgt, generate_speech=False, max_new_tokens=12, num_beams=3), False),
        "s2tt": (speech, dict(tgt_lang=tgt, generate_speech=False, max_new_tokens=12), False),
        "asr-beam": (speech, dict(tgt_lang="eng", generate_speech=False, max_new_tokens=10, num_beams=2), False),
        "t2st": (text, dict(tgt_lang=tgt, return_intermediate_token_ids=True, max_new_tokens=8,
                            speaker_id=cfg["vocoder_num_spkrs"] - 1), True),
        "s2st": (speech, dict(tgt_lang=tgt, return_intermediate_token_ids=True, max_new_tokens=8), True),
    }
    problems = compare_states(hf, model, text, speech, cfg)
    for name, ((hf_in, ours_in), kw, is_speech) in cases.items():
        diff = compare(hf, model, hf_in, ours_in, kw, is_speech)
        if diff:
            problems.append(f"{name}: {diff}")
    return cfg, problems


def fuzz_generation(seed: int, trials: int) -> int:
    path = os.path.join(tempfile.gettempdir(), "seamless-mlx-fuzz-gen")
    if not os.path.exists(os.path.join(path, "config.json")):
        build_checkpoint(path, seed=3)
    hf, proc = load_hf(path)
    model = sm.SeamlessM4Tv2Model.from_pretrained(path)
    r, bad = random.Random(seed), 0
    for trial in range(trials):
        beams = r.choice([1, 2, 3, 4])
        kw = dict(tgt_lang=r.choice(["fra", "deu", "rus", "eng"]), generate_speech=False,
                  max_new_tokens=r.choice([5, 12, 20]))
        if beams > 1:
            kw.update(num_beams=beams, length_penalty=r.choice([1.0, 0.5, 2.0, -1.0]),
                      early_stopping=r.choice([False, True, "never"]), num_return_sequences=r.randint(1, beams))
        if r.random() < 0.4:
            kw["repetition_penalty"] = r.choice([1.2, 1.5, 0.8])
        if r.random() < 0.4:
            kw["no_repeat_ngram_size"] = r.choice([1, 2, 3])
        if r.random() < 0.3:
            kw["min_new_tokens"] = r.choice([2, 4, 8])
        diff = compare(hf, model, *_text_inputs((hf, proc), r.sample(TEXTS, r.randint(1, 3))), kw, False)
        bad += diff is not None
        print(f"trial {trial} {kw}: {diff or 'ok'}", flush=True)
    return bad


def main(argv) -> int:
    if len(argv) < 1 or argv[0] not in ("configs", "generation"):
        print(__doc__)
        return 2
    if argv[0] == "generation":
        seed, trials = (int(a) for a in (argv[1:] + ["0", "40"])[:2])
        bad = fuzz_generation(seed, trials)
        print(f"{bad} of {trials} settings differ")
        return int(bad > 0)
    failed = 0
    for seed in [int(a) for a in argv[1:]] or range(5):
        cfg, problems = fuzz_config(seed)
        failed += bool(problems)
        print(f"seed {seed}: {'ok' if not problems else 'MISMATCH'} {json.dumps(cfg)}", flush=True)
        for p in problems:
            print("   ", p, flush=True)
    return int(failed > 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
