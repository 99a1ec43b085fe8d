"""Parity with transformers at full size (v2-large shapes, random weights): ``pytest -m slow``.

The tiny checkpoints of the other tests exercise every code path; this one checks that nothing
in them depends on small shapes: 24-layer conformer over 10 s of audio (no chunking at the
default chunk size, positions clipped at 64/8 frames), the stride-8 adaptor, 24-layer text
encoder/decoder with a 256k-entry tied head, the full T2U and the 200-speaker vocoder.

The checkpoint is ``$SEAMLESS_MLX_FULL_CHECKPOINT``, else the benchmark's
``benchmarks/.cache/full-hf`` when present, else one built here (~9 GB of disk, a few minutes).
transformers runs in a subprocess (``python tests/test_full_size.py REF_FOLDER OUT.npz``): the
two full models side by side would need ~18 GB of memory.  MLX loads the transformers folder
directly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
TGT = "fra"
SPEAKER = 7  # of the vocoder's 200


def text_ids():
    """20 ids the tiny tokenizer knows (so the T2U finds characters for them)."""
    return np.random.default_rng(0).integers(4, 200, size=(1, 20))


def text_batch():
    """Four rows of 20, 14, 9 and 17 of those ids, right-padded with the pad id 0, and their mask:
    a padded text-encoder batch and a 4-row search (CPU: packed encoder, many-row BLAS)."""
    ids = np.random.default_rng(1).integers(4, 200, size=(4, 20))
    mask = (np.arange(20)[None, :] < np.array([20, 14, 9, 17])[:, None]).astype(np.int64)
    return ids * mask, mask


def speech():
    """10 s of a tone in noise (the speech-output tests' signal)."""
    from test_speech_output import _audio

    return _audio(1, 10.0)


# What both sides run, by name: (input kind, generate keywords).
CASES = {
    "t2tt_greedy": ("text", {"generate_speech": False, "max_new_tokens": 24}),
    "t2tt_beam": ("text", {"generate_speech": False, "max_new_tokens": 12, "num_beams": 3}),
    "t2tt_batch": ("text_batch", {"generate_speech": False, "max_new_tokens": 16}),
    "s2tt_greedy": ("speech", {"generate_speech": False, "max_new_tokens": 24}),
    "asr_beam": ("speech", {"tgt_lang": "eng", "generate_speech": False, "max_new_tokens": 12, "num_beams": 2}),
    "t2st": ("text", {"speaker_id": SPEAKER, "text_max_new_tokens": 24, "return_intermediate_token_ids": True}),
    "s2st": ("speech", {"speaker_id": 0, "text_max_new_tokens": 24, "return_intermediate_token_ids": True}),
}


def _arrays(out, to_np):
    """The comparable parts of a generate output, as numpy arrays."""
    if not hasattr(out, "sequences"):  # transformers returns a bare tensor for text-only greedy
        return {"sequences": to_np(out)}
    got = {"sequences": to_np(out.sequences)}
    if getattr(out, "unit_sequences", None) is not None:
        got["unit_sequences"] = to_np(out.unit_sequences)
        got["waveform"] = to_np(out.waveform)
        got["waveform_lengths"] = np.atleast_1d(to_np(out.waveform_lengths))
    return got


def reference(folder: str, out_path: str) -> None:
    """transformers' outputs for every case, plus the speech encoder's states, into ``out_path``."""
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count() or 1)
    model = transformers.SeamlessM4Tv2Model.from_pretrained(folder).eval()
    feats = transformers.SeamlessM4TFeatureExtractor()(speech(), sampling_rate=SR, return_tensors="pt")
    ids, mask = text_batch()
    inputs = {"text": {"input_ids": torch.tensor(text_ids())}, "speech": dict(feats),
              "text_batch": {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}}
    result = {}
    with torch.inference_mode():
        enc = model.speech_encoder(feats["input_features"], attention_mask=feats["attention_mask"])
        result["speech_encoder"] = enc.last_hidden_state.numpy()
        for name, (kind, kw) in CASES.items():
            out = model.generate(**inputs[kind], **{"tgt_lang": TGT, **kw})
            result.update({f"{name}/{k}": v for k, v in _arrays(out, lambda t: t.cpu().numpy()).items()})
    np.savez(out_path, **result)


@pytest.fixture(scope="module")
def full_checkpoint(tmp_path_factory):
    forced = os.environ.get("SEAMLESS_MLX_FULL_CHECKPOINT")
    if forced:
        return Path(forced)
    cached = ROOT / "benchmarks" / ".cache" / "full-hf"
    if (cached / "config.json").exists():
        return cached
    path = tmp_path_factory.mktemp("full") / "hf"
    subprocess.run(
        [sys.executable, "-c", "import sys; from checkpoints import build_checkpoint as b; b(sys.argv[1], full_size=True)", str(path)],
        cwd=Path(__file__).parent,
        check=True,
    )
    return path


@pytest.fixture(scope="module")
def reference_outputs(full_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.npz"
    subprocess.run([sys.executable, __file__, str(full_checkpoint), str(out)], check=True)
    return dict(np.load(out))


def ours(folder) -> dict:
    """The same as :func:`reference`, from seamless_mlx (loading the transformers folder)."""
    import seamless_mlx as sm  # first: it picks MLX's CPU BLAS
    import mlx.core as mx
    from seamless_mlx import SeamlessM4TFeatureExtractor

    model = sm.SeamlessM4Tv2Model.from_pretrained(folder)
    feats = SeamlessM4TFeatureExtractor()(speech(), sampling_rate=SR, return_tensors="mlx")
    speech_in = {"input_features": feats["input_features"], "attention_mask": feats["attention_mask"]}
    ids, mask = text_batch()
    inputs = {"text": {"input_ids": mx.array(text_ids())}, "speech": speech_in,
              "text_batch": {"input_ids": mx.array(ids), "attention_mask": mx.array(mask)}}
    states, _ = model.encode_speech(**speech_in)
    result = {"speech_encoder": np.array(states)}
    for name, (kind, kw) in CASES.items():
        out = model.generate(**inputs[kind], **{"tgt_lang": TGT, **kw})
        result.update({f"{name}/{k}": v for k, v in _arrays(out, np.array).items()})
    return result


@pytest.fixture(scope="module")
def mlx_outputs(full_checkpoint, reference_outputs):  # after the reference: one full model in memory at a time
    return ours(full_checkpoint)


pytestmark = pytest.mark.slow


def test_speech_encoder_states(reference_outputs, mlx_outputs):
    ref, ours = reference_outputs["speech_encoder"], mlx_outputs["speech_encoder"]
    assert ours.shape == ref.shape == (1, 63, 1024)  # 10 s -> 500 frames -> stride-8 adaptor
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)  # measured 4.9e-6


@pytest.mark.parametrize("case", list(CASES))
def test_tokens_units_and_waveform(case, reference_outputs, mlx_outputs):
    ref = {k.split("/", 1)[1]: v for k, v in reference_outputs.items() if k.startswith(case + "/")}
    ours = {k.split("/", 1)[1]: v for k, v in mlx_outputs.items() if k.startswith(case + "/")}
    assert ours["sequences"].tolist() == ref["sequences"].tolist()
    if "unit_sequences" not in ref:
        return
    assert ours["unit_sequences"].tolist() == ref["unit_sequences"].tolist()
    assert ours["waveform_lengths"].tolist() == ref["waveform_lengths"].tolist()
    n = int(ref["waveform_lengths"][0])
    assert n > 0
    np.testing.assert_allclose(ours["waveform"][0, :n], ref["waveform"][0, :n], atol=5e-4, rtol=0)  # measured 7.5e-5


if __name__ == "__main__":
    reference(sys.argv[1], sys.argv[2])
