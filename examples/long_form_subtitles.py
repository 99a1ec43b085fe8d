"""Subtitles for a long recording: cut at pauses into <= 15 s pieces, transcribe or translate each.

    python examples/long_form_subtitles.py lecture.flac --lang eng -o lecture.srt
    python examples/long_form_subtitles.py lecture.flac --lang eng --tgt-lang fra -o lecture.fr.vtt
"""

import argparse

from seamless_mlx.api import transcribe, translate

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("audio")
p.add_argument("--model", default="facebook/seamless-m4t-v2-large", help="converted/transformers folder or hub id")
p.add_argument("--lang", required=True, help="language spoken in the recording")
p.add_argument("--tgt-lang", default=None, help="subtitle language (default: --lang, i.e. a transcript)")
p.add_argument("-o", "--output", default="subtitles.srt", help=".srt, .vtt, .json or .txt")
p.add_argument("--max-segment-s", type=float, default=15.0)
p.add_argument("--max-new-tokens", type=int, default=None)
p.add_argument("--preset", choices=("transformers", "seamless"), default="transformers")
args = p.parse_args()

kw = dict(model=args.model, max_segment_s=args.max_segment_s, max_new_tokens=args.max_new_tokens,
          preset=args.preset, progress=True)
if args.tgt_lang and args.tgt_lang != args.lang:
    result = translate(args.audio, tgt_lang=args.tgt_lang, **kw)
else:
    result = transcribe(args.audio, lang=args.lang, **kw)
result.save(args.output)
for s in result.segments:
    print(f"[{s.start:7.2f} - {s.end:7.2f}] {s.text}")
print(f"wrote {args.output} ({len(result.segments)} segments)")
