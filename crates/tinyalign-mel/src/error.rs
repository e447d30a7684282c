//! Errors of the audio frontend. Every error names the input (a file path, or the name the caller gave a
//! byte buffer) so a user with a folder of recordings knows which one to fix.

use std::fmt;

/// An input that could not be turned into audio or features, with the name of that input.
#[derive(Debug)]
pub struct AudioError {
    /// File path or caller-chosen name of the buffer (e.g. `"upload.wav"`).
    pub source_name: String,
    pub kind: AudioErrorKind,
}

impl AudioError {
    pub fn new(source_name: impl Into<String>, kind: AudioErrorKind) -> Self {
        Self {
            source_name: source_name.into(),
            kind,
        }
    }
}

impl fmt::Display for AudioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source_name, self.kind)
    }
}

impl std::error::Error for AudioError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            AudioErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// What is wrong with an input.
#[derive(Debug, thiserror::Error)]
pub enum AudioErrorKind {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("the file is empty (0 bytes)")]
    EmptyFile,
    #[error("not a WAV file: it does not start with a RIFF/WAVE header")]
    NotWav,
    #[error("the WAV header is truncated or malformed: {0}")]
    BadHeader(String),
    #[error(
        "WAV codec {codec} (format tag 0x{format_tag:04x}) is not supported; only PCM and 32-bit float WAV \
         are. Convert it first, e.g. `ffmpeg -i IN -c:a pcm_s16le OUT.wav`"
    )]
    UnsupportedCodec {
        format_tag: u16,
        codec: &'static str,
    },
    #[error("unsupported sample format: {0}")]
    UnsupportedSampleFormat(String),
    #[error(
        "the audio data is truncated: decoding stopped after {decoded} of {declared} samples ({detail})"
    )]
    TruncatedData {
        decoded: usize,
        declared: usize,
        detail: String,
    },
    #[error("the file holds no audio samples")]
    NoSamples,
    #[error("{seconds:.1} s is longer than Whisper's 30 s window; split it first")]
    LongerThanWindow { seconds: f64 },
    #[error("sample {index} (channel {channel}) is {value}, not a finite number")]
    NonFiniteSample {
        index: usize,
        channel: usize,
        value: f32,
    },
    #[error(
        "sample rate {0} Hz is outside the supported range {min}..={max} Hz",
        min = crate::MIN_SAMPLE_RATE,
        max = crate::MAX_SAMPLE_RATE
    )]
    SampleRate(u32),
    #[error("headerless PCM16 input must have an even number of bytes, found {0}")]
    OddRawLength(usize),
    #[error(
        "audio of {samples} samples is shorter than one {hop}-sample hop (10 ms at 16 kHz): no frame to compute",
        hop = crate::HOP_LENGTH
    )]
    TooShort { samples: usize },
}
