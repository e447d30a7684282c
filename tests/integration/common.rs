//! Shared helpers: fixture paths, npy loading, WAV writing and error measurements.

use std::io::Cursor;
use std::path::PathBuf;

use tinyalign_mel::npy::{NpyArray, from_npy_bytes};

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// A fresh, empty folder under the system's temp dir for one test (`name` unique in the test binary).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tinyalign-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A JSON array of token ids (the LLM fixtures' `prompt_ids`, `ids`, ...).
pub fn ids(value: &serde_json::Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// The LLM's logits at the last position of `prompt`, from a fresh cache.
pub fn last_logits(model: &tinyalign_llm::LlamaModel, prompt: &[u32]) -> Vec<f32> {
    let mut cache = tinyalign_llm::KvCache::new(&model.config, prompt.len());
    let embeds = model.embed_tokens(prompt).unwrap();
    model
        .forward_embeds(&embeds, prompt.len(), &mut cache, false)
        .unwrap()
}

pub fn load_npy(rel: &str) -> NpyArray {
    let path = fixture(rel);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    from_npy_bytes(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Largest absolute difference and where it occurs; panics on a length mismatch.
pub fn max_abs_diff(ours: &[f32], reference: &[f32]) -> (f32, usize) {
    assert_eq!(ours.len(), reference.len(), "length differs");
    ours.iter()
        .zip(reference)
        .enumerate()
        .map(|(i, (a, b))| ((a - b).abs(), i))
        .fold(
            (0.0, 0),
            |best, cur| if cur.0 > best.0 { cur } else { best },
        )
}

/// A WAV file in memory: interleaved samples written with hound.
pub fn wav_bytes<S: hound::Sample + Copy>(spec: hound::WavSpec, interleaved: &[S]) -> Vec<u8> {
    let mut cursor = Cursor::new(Vec::new());
    {
        let mut writer = hound::WavWriter::new(&mut cursor, spec).expect("valid spec");
        for &s in interleaved {
            writer.write_sample(s).expect("in-memory write");
        }
        writer.finalize().expect("in-memory finalize");
    }
    cursor.into_inner()
}

pub fn pcm16_spec(channels: u16, sample_rate: u32) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

/// RMS of a slice.
pub fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// The model cache `cargo xtask fetch` fills: `$TINYALIGN_CACHE`, else `.cache/tinyalign` in the repository.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("TINYALIGN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/tinyalign"))
}

/// A file from the model cache. Missing: a test failure when `TINYALIGN_REQUIRE_MODELS=1` (CI sets it after
/// fetching), otherwise `None` and a notice, so a fresh checkout's `cargo test` still runs everything else.
pub fn cached_model(rel: &str) -> Option<PathBuf> {
    let path = cache_dir().join(rel);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("TINYALIGN_REQUIRE_MODELS").is_ok_and(|v| v == "1") {
        panic!(
            "{} is missing and TINYALIGN_REQUIRE_MODELS=1: run `cargo xtask fetch`",
            path.display()
        );
    }
    eprintln!(
        "SKIPPED: {} is not in the cache (run `cargo xtask fetch`)",
        path.display()
    );
    None
}

/// Whether espeak-ng, flite and festival run here. Missing: a test failure when `TINYALIGN_REQUIRE_MODELS=1` (CI
/// installs them), else the test skips, saying so.
pub fn synthesisers_present() -> bool {
    let missing: Vec<&str> = [
        tinyalign_data::Engine::EspeakNg,
        tinyalign_data::Engine::Flite,
        tinyalign_data::Engine::Festival,
    ]
    .into_iter()
    .filter(|&e| tinyalign_data::check_engine(e).is_err())
    .map(|e| e.program())
    .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("TINYALIGN_REQUIRE_MODELS").is_ok_and(|v| v == "1") {
        panic!(
            "{} missing and TINYALIGN_REQUIRE_MODELS=1: apt-get install espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts",
            missing.join(", ")
        );
    }
    eprintln!("SKIPPED: {} not installed", missing.join(", "));
    false
}
