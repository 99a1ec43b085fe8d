"""Random-weight SeamlessM4T-v2 checkpoints built with transformers, for parity tests and benchmarks.

Nothing here is mocked: a real ``SeamlessM4Tv2Model`` is built from a config, re-initialised so that
its outputs depend on its inputs, and saved with ``save_pretrained`` together with a real (tiny,
freshly trained) sentencepiece tokenizer, the feature extractor and a generation config holding the
language maps.

Why the re-initialisation: with transformers' default init (std 0.02 everywhere) the scaled token
embedding dominates the residual stream, so greedy output barely depends on the source and a parity
test proves little.  Linear layers get std 1/sqrt(fan_in); norms get non-trivial gains.

Speech output needs care on a random model: the T2U LM-head rows of control units 0 (bos) and 3 (unk)
are zeroed (a trained model never emits them; transformers would index the vocoder below 0), and
both duration predictors get a positive bias so that the model "speaks" a few frames per token.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

LANGS = ["eng", "fra", "deu", "spa", "rus", "cmn", "arb", "hin"]
SPEECH_LANGS = ["eng", "fra", "deu", "spa"]

CORPUS = [
    "Hello world, how are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "Bonjour tout le monde ! Comment allez-vous ?",
    "Je voudrais un café, s'il vous plaît.",
    "Guten Morgen, wie geht es dir? Schön, dich zu sehen.",
    "¿Dónde está la biblioteca? Está cerca del río.",
    "Привет, мир! Как у тебя дела?",
    "你好，世界。今天天气很好。",
    "مرحبا بالعالم، كيف حالك؟",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "Numbers 1234 567 89, and symbols: @#%&*()[]{}.",
    "It's a well-known fact that translation is hard; isn't it?",
    "Machine translation with speech and text, in many languages.",
    "Les chats aiment dormir au soleil pendant l'après-midi.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
]

TINY = dict(
    hidden_size=32,
    encoder_layers=2,
    decoder_layers=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    max_position_embeddings=256,
    speech_encoder_layers=2,
    speech_encoder_attention_heads=4,
    speech_encoder_intermediate_size=64,
    feature_projection_input_dim=160,
    adaptor_kernel_size=4,
    adaptor_stride=2,
    num_adapter_layers=1,
    conv_depthwise_kernel_size=5,
    left_max_position_embeddings=4,
    right_max_position_embeddings=2,
    speech_encoder_chunk_size=6,
    speech_encoder_left_chunk_num=1,
    t2u_vocab_size=40,
    t2u_encoder_layers=2,
    t2u_decoder_layers=2,
    t2u_encoder_ffn_dim=64,
    t2u_decoder_ffn_dim=64,
    t2u_encoder_attention_heads=4,
    t2u_decoder_attention_heads=4,
    t2u_max_position_embeddings=512,
    t2u_variance_predictor_embed_dim=32,
    t2u_variance_predictor_hidden_dim=16,
    t2u_variance_predictor_kernel_size=3,
    upsample_initial_channel=32,
    upsample_rates=[4, 2, 2],
    upsample_kernel_sizes=[8, 4, 4],
    resblock_kernel_sizes=[3, 5],
    resblock_dilation_sizes=[[1, 3], [1, 2]],
    unit_hifi_gan_vocab_size=36,
    unit_embed_dim=16,
    lang_embed_dim=4,
    spkr_embed_dim=4,
    vocoder_num_spkrs=3,
    variance_predictor_kernel_size=3,
    vocoder_offset=4,
)


def train_spm(folder: Path, vocab_size: int = 240) -> Path:
    """Train a tiny unigram sentencepiece model (byte fallback off, like NLLB's)."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(CORPUS * 4), encoding="utf-8")
    prefix = folder / "spm"
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    corpus.unlink()
    return prefix.with_suffix(".model")


def build_tokenizer(work: Path, langs=LANGS):
    from transformers import SeamlessM4TTokenizer

    spm_path = train_spm(work / "spm")
    tok = SeamlessM4TTokenizer(
        str(spm_path), additional_special_tokens=[f"__{l}__" for l in langs], src_lang="eng", tgt_lang="fra"
    )
    return tok


def reinit_(model, seed: int, dur_bias: float = 0.8):
    """Re-initialise so that outputs depend on inputs (see module docstring)."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 1.0 / math.sqrt(m.in_features), generator=g)
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.1, generator=g)
            elif isinstance(m, nn.LayerNorm) and name.startswith("text_"):
                # Measured: with gains near 1 the sinusoidal positions' near-constant cos half
                # dominates and every source decodes to the same repeated token; N(0, 1) gains
                # give varied, input-dependent text.
                m.weight.normal_(0.0, 1.0, generator=g)
                m.bias.normal_(0.0, 0.1, generator=g)
            elif isinstance(m, nn.LayerNorm):
                m.weight.copy_(1.0 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.normal_(0.0, 0.1, generator=g)
            elif isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)) and name.startswith("vocoder.hifi_gan"):
                # transformers' init (std 0.02, zero bias) shrinks the signal to ~0 layer by layer;
                # unit-gain convs keep the waveform O(1) so that tanh and leaky ReLU matter.
                fan_in = m.weight.shape[1 if isinstance(m, nn.Conv1d) else 0] * m.weight.shape[2]
                m.weight.normal_(0.0, 1.5 / math.sqrt(fan_in), generator=g)
                m.bias.normal_(0.0, 0.1, generator=g)
            elif isinstance(m, nn.Embedding) and "distance_embedding" in name:
                m.weight.normal_(0.0, 0.5, generator=g)
            elif isinstance(m, nn.Embedding) and name.startswith("vocoder"):
                m.weight.normal_(0.0, 1.0, generator=g)
            elif isinstance(m, nn.Embedding):
                # The model scales by sqrt(d); 0.3/sqrt(d) keeps the token's own embedding from
                # dominating the residual stream (measured: at 1/sqrt(d) four different sources
                # gave the same repeated token).
                m.weight.normal_(0.0, 0.3 / math.sqrt(m.embedding_dim), generator=g)
        if hasattr(model, "t2u_model"):
            head = model.t2u_model.lm_head.weight
            head[0].zero_()
            head[3].zero_()
            proj = model.t2u_model.model.decoder.duration_predictor.proj
            proj.weight.mul_(0.3)
            proj.bias.fill_(dur_bias)
        if hasattr(model, "vocoder"):
            # durations of 1-3 frames: the model speaks, and test waveforms stay short
            model.vocoder.dur_predictor.proj.weight.mul_(0.3)
            model.vocoder.dur_predictor.proj.bias.fill_(dur_bias)


def build_checkpoint(
    path,
    seed: int = 0,
    overrides: dict | None = None,
    langs=LANGS,
    speech_langs=SPEECH_LANGS,
    full_size: bool = False,
    max_new_tokens: int = 24,
    eos_logit_offset: float = 0.0,
):
    """Write a random-weight HF checkpoint folder at ``path`` and return ``(path, hf_model, processor)``.

    ``full_size=True`` keeps ``SeamlessM4Tv2Config()`` defaults (v2-large shapes) apart from the
    vocabulary, which follows the tiny tokenizer unless ``overrides`` says otherwise.

    ``eos_logit_offset`` raises the text decoder's EOS logit by about that much at every step (the
    EOS row of the tied LM head gains the direction of the final norm's bias), so that, unlike with
    the plain random weights, sources end at different steps: with 2.0 some stop after one to three
    tokens while others run to ``max_new_tokens``.
    """
    import torch
    from transformers import (
        GenerationConfig,
        SeamlessM4TFeatureExtractor,
        SeamlessM4TProcessor,
        SeamlessM4Tv2Config,
        SeamlessM4Tv2Model,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(path / "_work", langs)
    vocab = len(tok)
    kw = {} if full_size else dict(TINY)
    kw["vocab_size"] = vocab
    kw["vocoder_num_langs"] = len(speech_langs)
    kw.update(overrides or {})
    config = SeamlessM4Tv2Config(**kw)

    torch.manual_seed(seed)
    model = SeamlessM4Tv2Model(config).eval()
    reinit_(model, seed)
    if eos_logit_offset:
        with torch.no_grad():
            bias = model.text_decoder.layer_norm.bias
            model.shared.weight[config.eos_token_id] += eos_logit_offset * bias / bias.norm() ** 2

    # Character table for the T2U model: every character of every piece, ids after pad/unk.
    id_to_text = {str(i): tok.convert_ids_to_tokens(i) for i in range(vocab)}
    chars = sorted({c for piece in id_to_text.values() for c in piece})
    char_to_id = {"<pad>": 0, "<unk>": 1}
    for c in chars:
        char_to_id.setdefault(c, len(char_to_id))
    if len(char_to_id) > config.char_vocab_size:
        raise ValueError("char vocabulary larger than char_vocab_size")

    gen = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        max_new_tokens=max_new_tokens,
    )
    gen._from_model_config = False  # else transformers rebuilds it on load and drops the maps
    gen.text_decoder_lang_to_code_id = {l: tok.convert_tokens_to_ids(f"__{l}__") for l in langs}
    gen.t2u_lang_code_to_id = {l: i + 4 for i, l in enumerate(speech_langs)}
    gen.vocoder_lang_code_to_id = {l: i for i, l in enumerate(speech_langs)}
    gen.id_to_text = id_to_text
    gen.char_to_id = char_to_id
    model.generation_config = gen

    model.save_pretrained(path)
    gen.save_pretrained(path)
    fe = SeamlessM4TFeatureExtractor()
    processor = SeamlessM4TProcessor(feature_extractor=fe, tokenizer=tok)
    processor.save_pretrained(path)
    import shutil

    shutil.rmtree(path / "_work", ignore_errors=True)
    return path, model, processor


def load_hf(path):
    """Load the saved checkpoint back with transformers (fp32, eval mode)."""
    from transformers import AutoProcessor, SeamlessM4Tv2Model

    model = SeamlessM4Tv2Model.from_pretrained(path).eval()
    return model, AutoProcessor.from_pretrained(path)


# ---------------------------------------------------------------------------- package internals
# The few seamless_mlx internals that tests reach past the public API, imported here only, so that
# a rename inside the package is followed in one line.  (Imported lazily: benchmarks build
# checkpoints in processes that never load MLX.)


def char_inputs(sequences, generation_config):
    """seamless_mlx's T2U character inputs: ``(char ids [B, C], char counts [B, L-1])``."""
    from seamless_mlx.t2u import char_inputs as ours

    return ours(sequences, generation_config)


if __name__ == "__main__":  # pragma: no cover - manual use
    import sys

    out = build_checkpoint(sys.argv[1] if len(sys.argv) > 1 else "/tmp/tiny-seamless")
    print(out[0], sorted(os.listdir(out[0])))
