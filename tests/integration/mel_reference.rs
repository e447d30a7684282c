//! tinyalign-mel against Whisper's filterbank and a numpy port of `whisper.audio.log_mel_spectrogram`
//! (fixtures and the script that made them: tests/fixtures/mel/).

use tinyalign_mel::{
    Frontend, FrontendConfig, InputFormat, MelBands, MelFilterbank, N_FREQS, read_audio_file,
    to_16k,
};

use crate::common::{fixture, load_npy, max_abs_diff};

/// Target from the issue: Whisper-scaled log-mel values within 1e-4 of the reference.
const LOG_MEL_TOL: f32 = 1e-4;
const FILTERBANK_TOL: f32 = 1e-6;

fn check_filterbank(bands: MelBands, rel: &str) {
    let reference = load_npy(rel);
    assert_eq!(reference.shape, vec![bands.count(), N_FREQS]);
    let ours = MelFilterbank::new(bands).to_dense();
    let (err, at) = max_abs_diff(&ours, &reference.data);
    eprintln!("{rel}: max abs error {err:e}");
    assert!(
        err <= FILTERBANK_TOL,
        "{rel}: max abs error {err:e} at band {}, bin {}",
        at / N_FREQS,
        at % N_FREQS
    );
}

#[test]
fn filterbank_80_matches_whisper_mel_filters() {
    check_filterbank(MelBands::Mel80, "mel/mel_80.npy");
}

#[test]
fn filterbank_128_matches_whisper_mel_filters() {
    check_filterbank(MelBands::Mel128, "mel/mel_128.npy");
}

fn check_log_mel(input: &str, format: InputFormat, reference: &str, config: FrontendConfig) {
    let frontend = Frontend::new(config);
    let ours = frontend
        .file_to_log_mel(&fixture(input), format)
        .unwrap_or_else(|e| panic!("{e}"));
    let reference = load_npy(reference);
    assert_eq!(ours.shape().to_vec(), reference.shape, "{input}: shape");
    let (err, at) = max_abs_diff(&ours.data, &reference.data);
    eprintln!("{input}: log-mel max abs error {err:e}");
    assert!(
        err <= LOG_MEL_TOL,
        "{input}: log-mel max abs error {err:e} at mel {}, frame {}",
        at / ours.n_frames,
        at % ours.n_frames
    );
}

#[test]
fn log_mel_of_headerless_pcm16_matches_reference() {
    check_log_mel(
        "mel/goforward.raw",
        InputFormat::RawPcm16 {
            sample_rate: 16_000,
        },
        "mel/goforward.logmel.npy",
        FrontendConfig::default(),
    );
}

#[test]
fn log_mel_of_16k_wav_matches_reference() {
    check_log_mel(
        "mel/librivox-0880.wav",
        InputFormat::Wav,
        "mel/librivox-0880.logmel.npy",
        FrontendConfig::default(),
    );
}

#[test]
fn log_mel_of_8k_telephone_wav_matches_reference_after_our_resampler() {
    check_log_mel(
        "mel/tt-weasels.wav",
        InputFormat::Wav,
        "mel/tt-weasels.logmel.npy",
        FrontendConfig::default(),
    );
}

#[test]
fn log_mel_of_22050_float_wav_matches_reference_after_our_resampler() {
    check_log_mel(
        "mel/synth22050.wav",
        InputFormat::Wav,
        "mel/synth22050.logmel.npy",
        FrontendConfig::default(),
    );
}

#[test]
fn log_mel_padded_to_30s_matches_reference() {
    let meta: String =
        std::fs::read_to_string(fixture("mel/tt-weasels.pad30.json")).expect("fixture");
    let field = |name: &str| -> f64 {
        let start = meta.find(&format!("\"{name}\":")).expect("field") + name.len() + 3;
        let rest = &meta[start..];
        let end = rest.find([',', '\n', '}']).expect("end of value");
        rest[..end].trim().parse().expect("number")
    };
    let (n_frames, head_frames, tail_value) = (
        field("n_frames") as usize,
        field("head_frames") as usize,
        field("tail_value") as f32,
    );
    let frontend = Frontend::new(FrontendConfig {
        bands: MelBands::Mel80,
        pad_to_30s: true,
    });
    let ours = frontend
        .file_to_log_mel(&fixture("mel/tt-weasels.wav"), InputFormat::Wav)
        .expect("decodes");
    assert_eq!(ours.shape(), [80, n_frames]);
    assert_eq!(n_frames, tinyalign_mel::N_FRAMES_30S);
    let head = load_npy("mel/tt-weasels.pad30.head.npy");
    assert_eq!(head.shape, vec![80, head_frames]);
    let mut worst = 0.0f32;
    for mel in 0..80 {
        let band = ours.band(mel);
        let (err, _) = max_abs_diff(
            &band[..head_frames],
            &head.data[mel * head_frames..(mel + 1) * head_frames],
        );
        worst = worst.max(err);
        for (t, v) in band[head_frames..].iter().enumerate() {
            assert!(
                (v - tail_value).abs() <= LOG_MEL_TOL,
                "mel {mel} frame {}: {v} vs floor {tail_value}",
                t + head_frames
            );
        }
    }
    eprintln!("pad30: head max abs error {worst:e}");
    assert!(worst <= LOG_MEL_TOL, "pad30 head max abs error {worst:e}");
}

#[test]
fn resampled_audio_feeds_the_same_features_as_the_reference_resample() {
    // The log-mel tests above include our resampler; this one isolates the log-mel stage by feeding the
    // reference's own resampled signal.
    let x16 = load_npy("mel/tt-weasels.resampled16k.npy");
    let frontend = Frontend::new(FrontendConfig::default());
    let ours = frontend
        .samples_to_log_mel(&x16.data, "resampled")
        .expect("long enough");
    let reference = load_npy("mel/tt-weasels.logmel.npy");
    let (err, _) = max_abs_diff(&ours.data, &reference.data);
    assert!(err <= LOG_MEL_TOL, "max abs error {err:e}");
    // And the decoded 8 kHz file really is what the reference resampled.
    let audio = read_audio_file(&fixture("mel/tt-weasels.wav"), InputFormat::Wav).expect("decodes");
    assert_eq!(audio.sample_rate, 8000);
    assert_eq!(
        to_16k(&audio, "tt-weasels").expect("resamples").len(),
        x16.data.len()
    );
}
