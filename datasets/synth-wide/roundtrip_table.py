"""Per-voice table of Whisper tiny.en's round trip on a `synth-wide` build (issue 18).

Input: a manifest tagged by `tinyalign data check MANIFEST --per-speaker N --out CHECKED`, whose checked
utterances carry `whisper-wer=W` (W rounded to 0.01 by the CLI). Output (stdout): Markdown with the whole
set, each accent and engine, and every voice: utterances checked, reference words, word-weighted WER
(W x words summed over the voice's utterances, over its words), utterances above 50%.

    python3 datasets/synth-wide/roundtrip_table.py CHECKED > datasets/synth-wide/whisper-roundtrip.md
"""

import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    voices = defaultdict(lambda: {"n": 0, "words": 0, "errors": 0.0, "flagged": 0})
    meta = {}
    for line in open(path, encoding="utf-8"):
        u = json.loads(line)
        tags = u.get("tags", [])
        wer = [float(t.split("=", 1)[1]) for t in tags if t.startswith("whisper-wer=")]
        if not wer:
            continue
        words = len(u["text"].split())
        v = voices[u["speaker"]]
        v["n"] += 1
        v["words"] += words
        v["errors"] += wer[0] * words
        v["flagged"] += wer[0] > 0.5
        engine = "flite" if "flite" in tags else "espeak-ng"
        voice = next((t.split("=", 1)[1] for t in tags if t.startswith("voice=")), "?")
        accent = voice.split("+")[0] if engine == "espeak-ng" else "flite"
        meta[u["speaker"]] = (u["split"], engine, accent, voice)

    def row(name, members):
        n = sum(voices[m]["n"] for m in members)
        words = sum(voices[m]["words"] for m in members)
        errors = sum(voices[m]["errors"] for m in members)
        flagged = sum(voices[m]["flagged"] for m in members)
        return f"| {name} | {len(members)} | {n} | {words} | {100 * errors / max(words, 1):.1f}% | {flagged} |"

    print("# Whisper tiny.en's round trip on `synth-wide`, voice by voice\n")
    print(
        "Made by `roundtrip_table.py` from the manifest `tinyalign data check MANIFEST --per-speaker N` "
        f"tagged ({path.split('/')[-1]}). WER is word-weighted over each group's checked utterances "
        "(each tagged to 0.01); \"above 50%\" counts utterances. Sorted worst first.\n"
    )
    print("| group | voices | utterances | words | WER | above 50% |")
    print("|---|---|---|---|---|---|")
    print(row("all", list(voices)))
    groups = defaultdict(list)
    for name, (split, engine, accent, _) in meta.items():
        groups[f"split `{split}`"].append(name)
        groups[f"accent `{accent}`"].append(name)
    for key in sorted(groups):
        print(row(key, groups[key]))
    print("\n| voice | split | espeak-ng variant or flite voice | utterances | words | WER | above 50% |")
    print("|---|---|---|---|---|---|---|")
    for name in sorted(voices, key=lambda m: (-voices[m]["errors"] / max(voices[m]["words"], 1), m)):
        v, (split, _, _, voice) = voices[name], meta[name]
        print(
            f"| {name} | {split} | {voice} | {v['n']} | {v['words']} | "
            f"{100 * v['errors'] / max(v['words'], 1):.1f}% | {v['flagged']} |"
        )


if __name__ == "__main__":
    main(sys.argv[1])
