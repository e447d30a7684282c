"""The tools users would pick instead of tinyalign, timed on the same inputs, for `cargo xtask bench`.

Run only by the bench (never by tests), in the venv the bench's README recipe makes:
    python3 -m venv <cache>/venv-peers
    <cache>/venv-peers/bin/pip install faster-whisper==1.2.1 ctranslate2==4.8.5 llama-cpp-python==0.3.36
(llama-cpp-python builds llama.cpp from its sdist: about 10 minutes on 2 cores.)

llama.cpp's own C++ benchmark, from the llama.cpp source vendored in the same sdist (another ~10 minutes),
where the bench looks for it (<cache>/llama.cpp-src/build/bin/llama-bench):
    <cache>/venv-peers/bin/pip install cmake==4.1.3 ninja==1.13.0
    cd <cache>/llama.cpp-src && <cache>/venv-peers/bin/pip download --no-deps \
        --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d . && tar xzf llama_cpp_python-0.3.36.tar.gz
    <cache>/venv-peers/bin/cmake -S llama_cpp_python-0.3.36/vendor/llama.cpp -B build -G Ninja \
        -DCMAKE_MAKE_PROGRAM=<cache>/venv-peers/bin/ninja -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON
    <cache>/venv-peers/bin/cmake --build build --target llama-bench -j
(Both builds are native: -march=native, so llama.cpp uses every SIMD extension the CPU has, AVX-512 and VNNI
included, where tinyalign's quantised kernels stop at AVX2; its f32 gemm takes AVX-512.) On a Xeon with AMX whose OS or hypervisor does not enable
the AMX state, the native build dies in `tinygemm_kernel_amx` (SIGILL; the bench reports the signal). Build
both without AMX and with the ISA spelled out instead, as on the Sapphire Rapids-class VM of the README's
second table: give the pip install `CMAKE_ARGS="$ISA"` and the llama-bench cmake `$ISA`, with
    ISA="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
         -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON"

Each command prints one JSON line; model loading is left out of every time, as tinyalign's rows leave it out.
    peers.py transcribe WHISPER_CT2_DIR WAV THREADS   faster-whisper, greedy, no timestamps (beam 1)
    peers.py encoder WHISPER_CT2_DIR THREADS          CTranslate2 float32 encoder on a 30 s window
    peers.py llm GGUF PROMPT MAX_TOKENS THREADS       llama.cpp through llama-cpp-python, greedy, chat template
"""
import json
import statistics
import sys
import time


def transcribe(model_dir, wav, threads):
    from faster_whisper import WhisperModel

    model = WhisperModel(model_dir, device="cpu", compute_type="float32", cpu_threads=threads)
    options = dict(beam_size=1, without_timestamps=True, condition_on_previous_text=False, vad_filter=False)
    segments, _ = model.transcribe(wav, **options)
    list(segments)  # warm-up
    times, text = [], ""
    for _ in range(3):
        t = time.perf_counter()
        segments, _ = model.transcribe(wav, **options)
        text = " ".join(s.text.strip() for s in segments)
        times.append(time.perf_counter() - t)
    import faster_whisper

    return {"tool": f"faster-whisper {faster_whisper.__version__} float32", "seconds": statistics.median(times), "text": text}


def encoder(model_dir, threads, warmups=2, repeats=7):
    import ctranslate2
    import numpy as np

    model = ctranslate2.models.Whisper(model_dir, device="cpu", compute_type="float32", intra_threads=threads, inter_threads=1)
    mel = np.random.default_rng(0).standard_normal((1, 80, 3000)).astype(np.float32) * 0.5
    features = ctranslate2.StorageView.from_array(mel)
    for _ in range(warmups):
        model.encode(features, to_cpu=True)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.encode(features, to_cpu=True)
        times.append(time.perf_counter() - t)
    return {"tool": f"CTranslate2 {ctranslate2.__version__} float32", "seconds": statistics.median(times), "min_seconds": min(times)}


def llm(gguf, prompt, max_tokens, threads):
    import llama_cpp

    model = llama_cpp.Llama(model_path=gguf, n_ctx=1024, n_threads=threads, n_batch=512, verbose=False)
    messages = [{"role": "user", "content": prompt}]
    warm = model.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0)
    prompt_tokens = warm["usage"]["prompt_tokens"]  # the templated prompt, as tinyalign's --stats counts it
    model.reset()  # else the timed call reuses the warm-up's KV cache for the whole prompt
    t = time.perf_counter()
    first, count = None, 0
    for chunk in model.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True):
        if chunk["choices"][0]["delta"].get("content"):
            count += 1
            if first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    decode = (count - 1) / (end - first) if first and count > 1 else None
    return {
        "tool": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}",
        "prompt_tokens": prompt_tokens,
        # The first streamed piece comes after the prompt and one decoding step: prefill's rate, slightly low.
        "prefill_tokens_per_s": prompt_tokens / (first - t) if first else None,
        "generated_tokens": count,
        "decode_tokens_per_s": decode,
    }


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "transcribe":
        out = transcribe(args[0], args[1], int(args[2]))
    elif command == "encoder":
        out = encoder(args[0], int(args[1]))
    elif command == "llm":
        out = llm(args[0], args[1], int(args[2]), int(args[3]))
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
