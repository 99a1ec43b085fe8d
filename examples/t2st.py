"""Text-to-speech translation with the transformers-style API: text in, translated speech out.

    python examples/t2st.py --text "Hello, how are you?" --src-lang eng --tgt-lang spa --output hola.wav
"""

import argparse

from seamless_mlx import SeamlessM4TProcessor, SeamlessM4Tv2ForTextToSpeech
from seamless_mlx.audio import save_wav
from seamless_mlx.loading import resolve

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--model", default="facebook/seamless-m4t-v2-large", help="converted/transformers folder or hub id")
p.add_argument("--text", default="Hello, my dog is cute.")
p.add_argument("--src-lang", default="eng")
p.add_argument("--tgt-lang", default="spa", help="must have speech output (see `seamless-mlx languages`)")
p.add_argument("--speaker-id", type=int, default=0)
p.add_argument("--max-new-tokens", type=int, default=256)
p.add_argument("--output", default="t2st.wav")
args = p.parse_args()

folder = resolve(args.model)
processor = SeamlessM4TProcessor.from_pretrained(folder)
model = SeamlessM4Tv2ForTextToSpeech.from_pretrained(folder)  # no speech-encoder weights loaded

inputs = processor(text=args.text, src_lang=args.src_lang, return_tensors="mlx")
out = model.generate(
    **inputs, tgt_lang=args.tgt_lang, speaker_id=args.speaker_id,
    return_intermediate_token_ids=True, max_new_tokens=args.max_new_tokens,
)
n = int(out.waveform_lengths[0].item())
save_wav(args.output, out.waveform[0, :n], sampling_rate=16000)
print(processor.decode(out.sequences[0].tolist(), skip_special_tokens=True))
print(f"wrote {args.output}: {n / 16000:.2f} s")
