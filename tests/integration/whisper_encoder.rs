//! Whisper tiny.en's encoder on the real weights against an independent numpy port of openai-whisper's
//! `AudioEncoder` (tests/fixtures/whisper/make_encoder_fixtures.py).

use tinyalign_mel::{Frontend, FrontendConfig, InputFormat, LogMel, MelBands};
use tinyalign_whisper::{WhisperEncoder, WhisperError, load_encoder_dir};

use crate::common::{cached_model, fixture, load_npy, max_abs_diff};

/// From the issue: fp16 weights, f32 arithmetic in both implementations.
const ENCODER_TOL: f32 = 2e-3;

fn encoder() -> Option<WhisperEncoder> {
    let dir = cached_model("whisper-tiny.en/hf/model.safetensors")?;
    let dir = dir.parent().expect("hf folder");
    Some(load_encoder_dir(dir).unwrap_or_else(|e| panic!("{e}")))
}

fn mel_from_npy(rel: &str) -> LogMel {
    let a = load_npy(rel);
    LogMel {
        n_mels: a.shape[0],
        n_frames: a.shape[1],
        data: a.data,
    }
}

fn check(ours: &[f32], reference_rel: &str, what: &str) {
    let reference = load_npy(reference_rel);
    let (err, at) = max_abs_diff(ours, &reference.data);
    eprintln!("{what}: encoder max abs error {err:e} (tolerance {ENCODER_TOL:e})");
    assert!(
        err <= ENCODER_TOL,
        "{what}: max abs error {err} at row {}, col {}",
        at / 384,
        at % 384
    );
}

#[test]
fn encoder_matches_reference_at_natural_length() {
    let Some(enc) = encoder() else { return };
    let out = enc
        .forward(&mel_from_npy("mel/tt-weasels.logmel.npy"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((out.frames, out.width), (148, 384));
    check(
        &out.data,
        "whisper/tt-weasels.encoder.npy",
        "natural length",
    );
}

#[test]
fn encoder_matches_reference_on_30s_padded_input_and_from_the_wav() {
    let Some(enc) = encoder() else { return };
    let frontend = Frontend::new(FrontendConfig {
        bands: MelBands::Mel80,
        pad_to_30s: true,
    });
    // Our own frontend from the WAV file: the whole native chain, not just the encoder.
    let mel = frontend
        .file_to_log_mel(&fixture("mel/tt-weasels.wav"), InputFormat::Wav)
        .expect("decodes");
    let out = enc.forward(&mel).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((out.frames, out.width), (1500, 384));
    let head = load_npy("whisper/tt-weasels.pad30.encoder.head.npy");
    let rows = head.shape[0];
    check(
        &out.data[..rows * 384],
        "whisper/tt-weasels.pad30.encoder.head.npy",
        "30 s padded",
    );
}

#[test]
fn encoder_refuses_wrong_inputs() {
    let Some(enc) = encoder() else { return };
    let mel = |n_mels, n_frames| LogMel {
        n_mels,
        n_frames,
        data: vec![0.0; n_mels * n_frames],
    };
    assert!(matches!(
        enc.forward(&mel(128, 100)),
        Err(WhisperError::MelBands {
            expected: 80,
            found: 128
        })
    ));
    let err = enc.forward(&mel(80, 3001)).expect_err("too long");
    assert!(
        err.to_string().contains("3001") && err.to_string().contains("30 s"),
        "{err}"
    );
    let one = enc.forward(&mel(80, 1)).expect("one frame is enough");
    assert_eq!((one.frames, one.width), (1, 384));
    assert_eq!(enc.output_frames(295), 148);
}
