"""The speech encoder's second BLAS (seamless_mlx.cpu.blas.many_rows) and the frame split that goes
with it (seamless_mlx.cpu.streams.split_rows).

Which library serves which product is checked in fresh interpreters on this machine's CPU when it
has one (a non-Intel x86 with scipy-openblas32); the choice itself is checked on given CPU
descriptions, and the frame split's parity with transformers on any machine (it is forced on)."""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))

import mlx.core as mx
import numpy as np
import pytest
import torch
from test_speech_encoder import ATOL, features, make_pair, padding_mask
from transformers.models.seamless_m4t_v2.modeling_seamless_m4t_v2 import _compute_new_attention_mask

from seamless_mlx import cpu
from seamless_mlx.cpu import blas, streams, tuning

AMD_ZEN5 = {"vendor": "AuthenticAMD", "flags": frozenset("sse2 avx2 fma avx512f avx512cd avx512bw avx512dq avx512vl".split())}
AMD_ZEN3 = {"vendor": "AuthenticAMD", "flags": frozenset("sse2 avx2 fma".split())}
INTEL = {"vendor": "GenuineIntel", "flags": AMD_ZEN5["flags"]}
ARM = {"vendor": "", "flags": frozenset("fp asimd".split())}


def test_openblas_is_chosen_on_non_intel_x86_only():
    assert blas._prefers_openblas(AMD_ZEN5) and blas._prefers_openblas(AMD_ZEN3)
    assert not blas._prefers_openblas(INTEL)
    assert not blas._prefers_openblas(ARM)


def test_avx512_kernels_only_where_every_subset_they_use_is_there():
    assert blas.openblas_coretype(AMD_ZEN5["flags"]) == "SkylakeX"
    assert blas.openblas_coretype(AMD_ZEN3["flags"]) == ""
    assert blas.openblas_coretype(AMD_ZEN5["flags"] - {"avx512vl"}) == ""


PROBE = r"""
import json, os
import seamless_mlx
import mlx.core as mx
import numpy as np
from seamless_mlx.cpu import blas

a, b = np.random.default_rng(0).standard_normal((2, 300, 256), dtype=np.float32)
x, y = mx.array(a), mx.array(b)
res = {"before": blas.bound_library(), "library": blas.many_rows_library(), "env": os.environ.get("OPENBLAS_CORETYPE")}
with blas.many_rows():
    with blas.many_rows():
        inner = x @ y.T
        mx.eval(inner)
        res["nested"] = blas.bound_library()
    res["inside"] = blas.bound_library()
    res["active"] = blas.many_rows_active()
res["after"] = blas.bound_library()
res["active_after"] = blas.many_rows_active()
res["error"] = float(np.abs(np.array(inner) - a @ b.T).max())
if res["library"]:
    import ctypes
    get = blas._rows["lib"].scipy_openblas_get_corename
    get.restype = ctypes.c_char_p
    res["core"] = get().decode()
    threads = blas._rows["lib"].scipy_openblas_get_num_threads
    with blas.many_rows(threads=2):
        with blas.many_rows(threads=5):  # the outer block's count holds
            res["threads_nested"] = threads()
        res["threads_inside"] = threads()
    res["threads_after"] = threads()
print(json.dumps(res))
"""


def _probe(**env):
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300,
                          env={**{k: v for k, v in os.environ.items() if k != "SEAMLESS_MLX_MANY_ROWS_BLAS"}, **env})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


_HERE = blas._prefers_openblas(blas._cpu_info()) and bool(blas._scipy_openblas()) and sys.platform.startswith("linux")
needs_second_blas = pytest.mark.skipif(not _HERE, reason="a non-Intel x86 CPU with scipy-openblas32 installed")


@needs_second_blas
def test_inside_the_block_gemms_run_on_openblas_and_on_mkl_again_after():
    res = _probe(OPENBLAS_CORETYPE="Haswell")
    assert res["library"] and os.path.samefile(res["inside"], res["library"])
    assert os.path.samefile(res["nested"], res["library"])
    assert os.path.samefile(res["after"], res["before"]) and not os.path.samefile(res["after"], res["library"])
    assert res["active"] and not res["active_after"]
    assert res["error"] < 1e-3  # entries up to ~60
    # the library is loaded with the CPU's core type, and the environment is left as it was
    assert res["core"] == (blas.openblas_coretype(blas._cpu_info()["flags"]) or res["core"])
    assert res["env"] == "Haswell"
    # the vocoder's block asks for one thread per core; every other block runs on one thread
    assert (res["threads_inside"], res["threads_nested"], res["threads_after"]) == (2, 2, 1)


@needs_second_blas
def test_switched_off_every_product_stays_on_the_main_blas():
    res = _probe(SEAMLESS_MLX_MANY_ROWS_BLAS="off")
    assert res["library"] == ""
    assert os.path.samefile(res["inside"], res["before"])
    assert not res["active"]


@pytest.fixture
def split_everywhere(monkeypatch):
    """The frame split forced on (whatever the machine's BLAS), down to a few frames per stream."""
    monkeypatch.setattr(blas, "many_rows_active", lambda: True)
    monkeypatch.setattr(tuning, "ROW_SPLIT_MIN_FRAMES", 4)
    monkeypatch.setattr(tuning, "CPU_CORES", max(2, tuning.CPU_CORES))


def test_split_rows_cuts_the_frames_over_streams(split_everywhere):
    x = mx.random.normal((2, 40, 8))
    seen = []

    def fn(part, other):
        seen.append((part.shape[1], other.shape[1]))
        return part * 2 + other

    other = mx.random.normal((2, 40, 1))
    out = streams.split_rows(fn, x, other)
    assert len(seen) == streams.cpu_stream_count() and sum(n for n, _ in seen) == 40
    assert all(a == b for a, b in seen)
    assert mx.allclose(out, x * 2 + other).item()


@pytest.mark.parametrize("lengths", [[47], [50, 31]], ids=["one", "padded_batch"])
def test_encoder_with_its_frames_split_matches_transformers(split_everywhere, lengths):
    hf, model, _ = make_pair()
    cpu.accelerate(model)
    try:
        feats, mask = features(len(lengths), max(lengths), seed=4), padding_mask(lengths)
        with torch.no_grad():
            ref = hf(input_features=feats, attention_mask=mask).last_hidden_state
        ref_mask = _compute_new_attention_mask(ref, hf._compute_sub_sample_lengths_from_attention_mask(mask)).numpy()
        out, _ = model(mx.array(feats.numpy()), mx.array(mask.numpy()))
        out, ref = np.array(out), ref.numpy()
        for b in range(len(lengths)):  # valid frames only: padded ones are undefined in both
            valid = ref_mask[b].astype(bool)
            np.testing.assert_allclose(out[b][valid], ref[b][valid], atol=ATOL, rtol=0)
    finally:
        cpu.plain(model)


# --- searches and the all-token blocks (text encoder, T2U) on the many-row library ------------------


# in this process: the library is there and not switched off (SEAMLESS_MLX_MANY_ROWS_BLAS=off)
switches_here = pytest.mark.skipif(not blas.many_rows_library(), reason="no many-row BLAS in this process")


@pytest.fixture(scope="module")
def t2tt(tiny_checkpoint):
    import seamless_mlx as sm
    from checkpoints import load_hf

    model = sm.SeamlessM4Tv2ForTextToText.from_pretrained(tiny_checkpoint)
    return cpu.accelerate(model), load_hf(tiny_checkpoint)[1]


def decodes_on_many_rows(rows: int) -> bool:
    """Whether a search over ``rows`` rows switches to the many-row library: from a few rows on,
    unless the few-row kernel takes its products (then the BLAS sees only per-head attention
    products, which the main library runs faster)."""
    few_rows_kernel = blas.few_rows_active() and rows <= tuning.FEW_ROWS_MAX_ROWS
    return rows >= tuning.MANY_ROWS_MIN_ROWS and bool(blas.many_rows_library()) and not few_rows_kernel


@switches_here
def test_decoding_switches_from_a_few_rows_on_and_switches_back(t2tt):
    model, _ = t2tt
    main = blas.bound_library()
    for rows in (1, tuning.MANY_ROWS_MIN_ROWS - 1, tuning.MANY_ROWS_MIN_ROWS, 48):
        switched = decodes_on_many_rows(rows)
        with model.text_decoder.decoding(rows):
            assert blas.many_rows_active() is switched, rows
            assert os.path.samefile(blas.bound_library(), blas.many_rows_library() if switched else main)
        assert not blas.many_rows_active() and os.path.samefile(blas.bound_library(), main)
    cpu.plain(model)
    try:  # the plain decoder (what Metal and CUDA run) never switches anything
        with model.text_decoder.decoding(48):
            assert not blas.many_rows_active()
    finally:
        cpu.accelerate(model)


def _record_searches(monkeypatch, model):
    """``[(rows the search announced, [switch state at each step])]`` of the searches run after the call."""
    from seamless_mlx import text

    seen = []
    announce = model.text_decoder.decoding
    step = text.DecoderSteps.__call__

    def decoding(rows):
        seen.append((rows, []))
        return announce(rows)

    def recording_step(self, tokens, rows=None):
        seen[-1][1].append(blas.many_rows_active())
        return step(self, tokens, rows)

    monkeypatch.setattr(model.text_decoder, "decoding", decoding)
    monkeypatch.setattr(text.DecoderSteps, "__call__", recording_step)
    return seen


@pytest.mark.parametrize("texts, kw, rows", [
    (1, {}, 1),
    (5, {}, 5),
    (2, {"num_beams": 3}, 6),
    (1, {"num_beams": 2, "num_return_sequences": 2}, 2),
], ids=["one", "batch", "beams", "beams-one"])
def test_every_search_announces_its_rows_and_runs_inside(t2tt, monkeypatch, texts, kw, rows):
    model, proc = t2tt
    seen = _record_searches(monkeypatch, model)
    enc = proc(text=["Hello there, friend.", "Bonjour", "A longer sentence, with commas.", "Hi", "42"][:texts],
               src_lang="eng", return_tensors="np", padding=True)
    out = model.generate(input_ids=mx.array(enc["input_ids"]), attention_mask=mx.array(enc["attention_mask"]),
                         tgt_lang="fra", max_new_tokens=6, **kw)
    assert len(seen) == 1 and seen[0][0] == rows
    steps = seen[0][1]
    assert len(steps) >= 6
    switched = decodes_on_many_rows(rows)
    assert all(s is switched for s in steps)
    assert not blas.many_rows_active()
    assert out.sequences.shape[0] == texts * kw.get("num_return_sequences", 1)


@switches_here
def test_text_encoder_and_t2u_run_on_the_many_row_library(t2tt, monkeypatch, tiny_checkpoint):
    """The all-token blocks evaluate inside the switch (one thread per core) and give what the
    main library gives."""
    import seamless_mlx as sm

    states = []
    model, proc = t2tt
    inner = type(model.text_encoder.layers[0].ffn).__call__

    def layer(self, *a, **k):
        states.append(blas.many_rows_active())
        return inner(self, *a, **k)

    monkeypatch.setattr(type(model.text_encoder.layers[0].ffn), "__call__", layer)
    enc = proc(text=["Hello there, friend.", "Bonjour"], src_lang="eng", return_tensors="np", padding=True)
    ids, mask = mx.array(enc["input_ids"]), mx.array(enc["attention_mask"])
    switched, _ = model.encode_text(ids, mask)
    assert states and all(states)
    monkeypatch.setattr(tuning, "MANY_ROWS_MIN_ROWS", 10**9)
    states.clear()
    main, _ = model.encode_text(ids, mask)
    assert states and not any(states)
    valid = np.array(mask).astype(bool)
    np.testing.assert_allclose(np.array(switched)[valid], np.array(main)[valid], atol=1e-5)

    t2st = cpu.accelerate(sm.SeamlessM4Tv2ForTextToSpeech.from_pretrained(tiny_checkpoint))
    t2u_inner = type(t2st.t2u_model.model.encoder).__call__
    t2u_states = []

    def t2u_encoder(self, *a, **k):
        t2u_states.append(blas.many_rows_active())
        return t2u_inner(self, *a, **k)

    monkeypatch.setattr(type(t2st.t2u_model.model.encoder), "__call__", t2u_encoder)
    monkeypatch.setattr(tuning, "MANY_ROWS_MIN_ROWS", 4)
    t2st.generate(input_ids=ids[:1], attention_mask=mask[:1], tgt_lang="fra", max_new_tokens=6)
    assert t2u_states == [True]


def test_padded_text_batch_is_encoded_packed_as_transformers_encodes_it(t2tt, tiny_hf, monkeypatch):
    """The CPU text encoder runs a padded batch's row-wise work on its real tokens only: their
    states match transformers' (and the unpacked encoder's), padded positions are zeros."""
    from seamless_mlx.cpu import blocks

    model, proc = t2tt
    hf, hf_proc = tiny_hf
    texts = ["A rather long sentence, to make the others pad: one two three four five six.", "Hi", "Bonjour !"]
    enc = hf_proc(text=texts, src_lang="eng", return_tensors="pt", padding=True)
    valid = enc["attention_mask"].numpy().astype(bool)
    assert valid.mean() < tuning.PACK_MAX_FILL
    with torch.no_grad():
        ref = hf.text_encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state.numpy()
    ids, mask = mx.array(enc["input_ids"].numpy()), mx.array(enc["attention_mask"].numpy())
    calls = []
    packed_attention = blocks._packed_attention
    monkeypatch.setattr(blocks, "_packed_attention", lambda *a: calls.append(1) or packed_attention(*a))
    packed = np.array(model.encode_text(ids, mask)[0])
    assert len(calls) == len(model.text_encoder.layers)
    monkeypatch.setattr(tuning, "PACK_MAX_FILL", 0.0)
    unpacked = np.array(model.encode_text(ids, mask)[0])
    assert len(calls) == len(model.text_encoder.layers)  # not packed this time
    np.testing.assert_allclose(packed[valid], ref[valid], atol=1e-4)
    np.testing.assert_allclose(packed[valid], unpacked[valid], atol=1e-5)
    assert not packed[~valid].any()


def test_quantized_text_encoder_packs_as_it_encodes_unpacked(tiny_checkpoint, monkeypatch):
    """Quantized projections cannot be fused: the packed path runs them one by one."""
    import seamless_mlx as sm
    from checkpoints import load_hf
    from seamless_mlx.quantize import quantize_model

    model = sm.SeamlessM4Tv2ForTextToText.from_pretrained(tiny_checkpoint)
    quantize_model(model, 8, 32)
    cpu.accelerate(model)
    proc = load_hf(tiny_checkpoint)[1]
    enc = proc(text=["One sentence that is clearly the longest of the three here.", "Hi", "Oui"],
               src_lang="eng", return_tensors="np", padding=True)
    ids, mask = mx.array(enc["input_ids"]), mx.array(enc["attention_mask"])
    valid = enc["attention_mask"].astype(bool)
    assert valid.mean() < tuning.PACK_MAX_FILL
    assert model.text_encoder.layers[0].self_attn.fuse_qkv() is None
    packed = np.array(model.encode_text(ids, mask)[0])
    monkeypatch.setattr(tuning, "PACK_MAX_FILL", 0.0)
    unpacked = np.array(model.encode_text(ids, mask)[0])
    np.testing.assert_allclose(packed[valid], unpacked[valid], atol=1e-5)
    assert not packed[~valid].any()
