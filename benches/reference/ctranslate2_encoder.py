# Times CTranslate2's float32 Whisper tiny.en encoder on a 30 s window with 2 threads: the baseline of the encoder
# speed goal (within 1.5x of it). Usage: python ctranslate2_encoder.py <cache>/whisper-tiny.en (pip install
# ctranslate2 numpy in a venv; not run by the tests). The measurement is peers.py's, which `cargo xtask bench`
# runs with fewer repeats.
import sys

from peers import encoder

out = encoder(sys.argv[1], 2, warmups=3, repeats=15)
print(f"{out['tool']} encoder, 30 s window, 2 threads: median {out['seconds']*1e3:.0f} ms, min {out['min_seconds']*1e3:.0f} ms")
