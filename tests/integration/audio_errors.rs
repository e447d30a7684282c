//! Bad input gets a clear error naming the input and the problem, never a panic.

use proptest::prelude::*;
use tinyalign_mel::{
    AudioErrorKind, Frontend, FrontendConfig, InputFormat, decode_raw_pcm16, decode_wav,
    read_audio_file,
};

use crate::common::{fixture, pcm16_spec, wav_bytes};

fn error_of(bytes: &[u8]) -> (AudioErrorKind, String) {
    let err = decode_wav(bytes, "clip.wav").expect_err("must be refused");
    let message = err.to_string();
    assert!(
        message.starts_with("clip.wav: "),
        "message does not name the input: {message}"
    );
    (err.kind, message)
}

fn valid_wav() -> Vec<u8> {
    wav_bytes(pcm16_spec(1, 16_000), &[100i16; 1600])
}

#[test]
fn empty_file() {
    let (kind, message) = error_of(&[]);
    assert!(matches!(kind, AudioErrorKind::EmptyFile), "{message}");
}

#[test]
fn not_a_wav_file() {
    let (kind, message) = error_of(b"ID3\x03\x00 this is an mp3, honest");
    assert!(matches!(kind, AudioErrorKind::NotWav), "{message}");
}

#[test]
fn truncated_header() {
    let wav = valid_wav();
    for cut in [6, 12, 20, 30, 40] {
        let (kind, message) = error_of(&wav[..cut]);
        assert!(
            matches!(kind, AudioErrorKind::BadHeader(_)),
            "cut at {cut}: {message}"
        );
    }
}

#[test]
fn truncated_data() {
    let wav = valid_wav();
    let (kind, message) = error_of(&wav[..wav.len() - 1001]);
    match kind {
        AudioErrorKind::TruncatedData {
            decoded, declared, ..
        } => {
            assert_eq!(declared, 1600);
            assert!(decoded < declared);
        }
        other => panic!("expected truncated data, got {other:?}: {message}"),
    }
    assert!(message.contains("truncated"), "{message}");
}

#[test]
fn zero_samples() {
    let wav = wav_bytes::<i16>(pcm16_spec(1, 16_000), &[]);
    let (kind, message) = error_of(&wav);
    assert!(matches!(kind, AudioErrorKind::NoSamples), "{message}");
}

#[test]
fn nan_and_inf_float_samples() {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 16_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut samples = vec![0.1f32; 20];
        samples[13] = bad;
        let (kind, message) = error_of(&wav_bytes(spec, &samples));
        match kind {
            AudioErrorKind::NonFiniteSample { index, channel, .. } => {
                assert_eq!((index, channel), (6, 1))
            }
            other => panic!("expected a non-finite sample error, got {other:?}: {message}"),
        }
    }
}

/// A WAV header with an arbitrary codec tag (the data is irrelevant: it must be refused by name).
fn wav_with_format_tag(tag: u16, block_align: u16, bits: u16) -> Vec<u8> {
    let data = [0u8; 64];
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(4 + 8 + 16 + 8 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // channels
    out.extend_from_slice(&8000u32.to_le_bytes()); // rate
    out.extend_from_slice(&(8000 * u32::from(block_align)).to_le_bytes()); // byte rate
    out.extend_from_slice(&block_align.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

#[test]
fn compressed_codecs_are_refused_by_name() {
    for (tag, name) in [
        (0x0007u16, "mu-law"),
        (0x0006, "A-law"),
        (0x0002, "Microsoft ADPCM"),
        (0x0055, "MP3"),
    ] {
        let (kind, message) = error_of(&wav_with_format_tag(tag, 1, 8));
        assert!(
            matches!(kind, AudioErrorKind::UnsupportedCodec { format_tag, .. } if format_tag == tag),
            "{message}"
        );
        assert!(
            message.contains(name) && message.contains("ffmpeg"),
            "{message}"
        );
    }
    // The hand-made header is otherwise valid: as PCM it decodes.
    assert!(decode_wav(&wav_with_format_tag(1, 1, 8), "pcm8.wav").is_ok());
}

#[test]
fn absurd_sample_rates() {
    for rate in [1u32, 999, 384_001, 4_000_000] {
        let (kind, message) = error_of(&wav_bytes(pcm16_spec(1, rate), &[0i16; 100]));
        assert!(
            matches!(kind, AudioErrorKind::SampleRate(r) if r == rate),
            "{message}"
        );
    }
    let err = decode_raw_pcm16(&[0, 0], 0, "x.raw").expect_err("rate 0");
    assert!(matches!(err.kind, AudioErrorKind::SampleRate(0)));
}

#[test]
fn odd_length_raw_pcm() {
    let err = decode_raw_pcm16(&[0, 0, 0], 16_000, "x.raw").expect_err("odd length");
    assert!(matches!(err.kind, AudioErrorKind::OddRawLength(3)), "{err}");
}

#[test]
fn missing_file_names_the_path() {
    let err = read_audio_file(
        std::path::Path::new("/nonexistent/clip.wav"),
        InputFormat::Wav,
    )
    .expect_err("missing");
    assert!(
        err.to_string()
            .starts_with("/nonexistent/clip.wav: cannot read the file"),
        "{err}"
    );
}

#[test]
fn audio_shorter_than_one_hop() {
    let frontend = Frontend::new(FrontendConfig::default());
    let err = frontend
        .audio_to_log_mel(
            &decode_wav(&wav_bytes(pcm16_spec(1, 16_000), &[5i16; 159]), "short.wav")
                .expect("valid"),
            "short.wav",
        )
        .expect_err("too short");
    assert!(
        matches!(err.kind, AudioErrorKind::TooShort { samples: 159 }),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_wav(&bytes, "fuzz.wav");
        let _ = decode_raw_pcm16(&bytes, 16_000, "fuzz.raw");
    }

    #[test]
    fn riff_prefixed_garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut bytes = b"RIFF\xff\xff\xff\x7fWAVEfmt ".to_vec();
        bytes.extend_from_slice(&body);
        let _ = decode_wav(&bytes, "fuzz.wav");
    }

    #[test]
    fn mutated_real_headers_never_panic(
        edits in proptest::collection::vec((0usize..64, any::<u8>()), 1..6),
        cut in 0usize..2000,
    ) {
        let real = std::fs::read(fixture("mel/tt-weasels.wav")).expect("fixture");
        let mut bytes = real[..real.len() - cut].to_vec();
        for (at, value) in edits {
            bytes[at] = value;
        }
        if let Ok(audio) = decode_wav(&bytes, "mutated.wav") {
            // Whatever decodes must be usable downstream without panicking either.
            let frontend = Frontend::new(FrontendConfig::default());
            let _ = frontend.audio_to_log_mel(&audio, "mutated.wav");
        }
    }
}

/// Whisper's window, checked in one place for every caller: 30 s at any rate passes, a sample more does not.
#[test]
fn audio_past_whispers_window_is_refused_by_name() {
    for rate in [8_000u32, 16_000, 44_100] {
        let mut audio = tinyalign_mel::Audio {
            samples: vec![0.0; 30 * rate as usize],
            sample_rate: rate,
            source_channels: 1,
        };
        audio.check_whisper_window("call.wav").expect("30 s fits");
        audio.samples.push(0.0);
        let err = audio.check_whisper_window("call.wav").unwrap_err();
        assert!(matches!(err.kind, AudioErrorKind::LongerThanWindow { .. }));
        let message = err.to_string();
        assert!(
            message.starts_with("call.wav: 30.0 s is longer"),
            "{message}"
        );
    }
}
