# Times CTranslate2's float32 Whisper tiny.en encoder on a 30 s window with 2 threads: the baseline of the encoder
# speed goal (within 1.5x of it). Usage: python ctranslate2_encoder.py <cache>/whisper-tiny.en (pip install
# ctranslate2 numpy in a venv; not run by the tests).
import statistics, sys, time
import ctranslate2, numpy as np
model = ctranslate2.models.Whisper(sys.argv[1], device="cpu", compute_type="float32", intra_threads=2, inter_threads=1)
mel = np.random.default_rng(0).standard_normal((1, 80, 3000)).astype(np.float32) * 0.5
features = ctranslate2.StorageView.from_array(mel)
for _ in range(3):
    model.encode(features, to_cpu=True)
times = []
for _ in range(15):
    t = time.perf_counter()
    model.encode(features, to_cpu=True)
    times.append(time.perf_counter() - t)
print(f"ctranslate2 {ctranslate2.__version__} float32 encoder, 30 s window, 2 threads: median {statistics.median(times)*1e3:.0f} ms, min {min(times)*1e3:.0f} ms")
