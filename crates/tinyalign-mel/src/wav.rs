//! Decoding WAV (PCM 8/16/24/32-bit integer, 32-bit float, any channel count and rate) and headerless PCM16
//! into mono `f32` samples in [-1, 1].

use std::io::Cursor;
use std::path::Path;

use crate::error::{AudioError, AudioErrorKind};
use crate::{MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};

/// Mono audio at its original sample rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// Mono samples in [-1, 1] (integer PCM is divided by 2^(bits-1), as Whisper's loader does for 16-bit).
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    /// Channel count of the source before the downmix to mono.
    pub source_channels: u16,
}

impl Audio {
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }

    /// Whisper's one input rule, for every caller: at most its 30 s window (`N_SAMPLES_30S` at 16 kHz).
    /// Longer audio is an error naming `name`, never silently cut.
    pub fn check_whisper_window(&self, name: &str) -> Result<(), AudioError> {
        if self.duration_s() > crate::WINDOW_SECONDS {
            return Err(AudioError::new(
                name,
                AudioErrorKind::LongerThanWindow {
                    seconds: self.duration_s(),
                },
            ));
        }
        Ok(())
    }
}

/// How to interpret an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// RIFF/WAVE with a header (the default).
    Wav,
    /// Headerless little-endian signed 16-bit mono PCM at the given rate (the pocketsphinx `.raw` files).
    RawPcm16 { sample_rate: u32 },
}

/// Reads a file from disk and decodes it as `format`.
pub fn read_audio_file(path: &Path, format: InputFormat) -> Result<Audio, AudioError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| AudioError::new(&name, AudioErrorKind::Io(e)))?;
    match format {
        InputFormat::Wav => decode_wav(&bytes, &name),
        InputFormat::RawPcm16 { sample_rate } => decode_raw_pcm16(&bytes, sample_rate, &name),
    }
}

/// Decodes headerless little-endian PCM16 mono.
pub fn decode_raw_pcm16(
    bytes: &[u8],
    sample_rate: u32,
    source_name: &str,
) -> Result<Audio, AudioError> {
    let fail = |kind| AudioError::new(source_name, kind);
    check_sample_rate(sample_rate).map_err(fail)?;
    if bytes.is_empty() {
        return Err(fail(AudioErrorKind::EmptyFile));
    }
    if !bytes.len().is_multiple_of(2) {
        return Err(fail(AudioErrorKind::OddRawLength(bytes.len())));
    }
    let samples = bytes
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    Ok(Audio {
        samples,
        sample_rate,
        source_channels: 1,
    })
}

/// Decodes a complete WAV file held in memory and downmixes it to mono by averaging the channels.
pub fn decode_wav(bytes: &[u8], source_name: &str) -> Result<Audio, AudioError> {
    let fail = |kind| AudioError::new(source_name, kind);
    if bytes.is_empty() {
        return Err(fail(AudioErrorKind::EmptyFile));
    }
    // hound reports codecs it cannot read only as "unsupported"; naming the codec tells the user what to do.
    check_riff_codec(bytes).map_err(fail)?;

    let mut reader =
        hound::WavReader::new(Cursor::new(bytes)).map_err(|e| fail(header_error(e)))?;
    let spec = reader.spec();
    check_sample_rate(spec.sample_rate).map_err(fail)?;
    if spec.channels == 0 {
        return Err(fail(AudioErrorKind::BadHeader("channel count is 0".into())));
    }
    let channels = usize::from(spec.channels);
    let declared = reader.len() as usize;
    // The declared length comes from the file: never let it size an allocation beyond what the bytes can hold.
    let capacity = declared.min(bytes.len());

    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Int => {
            if !(8..=32).contains(&spec.bits_per_sample) {
                return Err(fail(AudioErrorKind::UnsupportedSampleFormat(format!(
                    "{}-bit integer PCM",
                    spec.bits_per_sample
                ))));
            }
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f64;
            let mut out = Vec::with_capacity(capacity);
            for (i, s) in reader.samples::<i32>().enumerate() {
                let s = s.map_err(|e| fail(data_error(e, i, declared)))?;
                out.push((f64::from(s) * scale) as f32);
            }
            out
        }
        hound::SampleFormat::Float => {
            if spec.bits_per_sample != 32 {
                return Err(fail(AudioErrorKind::UnsupportedSampleFormat(format!(
                    "{}-bit float (only 32-bit float is supported)",
                    spec.bits_per_sample
                ))));
            }
            let mut out = Vec::with_capacity(capacity);
            for (i, s) in reader.samples::<f32>().enumerate() {
                let s = s.map_err(|e| fail(data_error(e, i, declared)))?;
                if !s.is_finite() {
                    return Err(fail(AudioErrorKind::NonFiniteSample {
                        index: i / channels,
                        channel: i % channels,
                        value: s,
                    }));
                }
                out.push(s);
            }
            out
        }
    };
    if !interleaved.len().is_multiple_of(channels) {
        return Err(fail(AudioErrorKind::TruncatedData {
            decoded: interleaved.len(),
            declared,
            detail: format!("the last frame holds fewer than {channels} channels"),
        }));
    }
    if interleaved.is_empty() {
        return Err(fail(AudioErrorKind::NoSamples));
    }
    Ok(Audio {
        samples: downmix(&interleaved, channels),
        sample_rate: spec.sample_rate,
        source_channels: spec.channels,
    })
}

/// Averages interleaved channels: `(frames * channels)` → `(frames)`.
pub fn downmix(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels == 1 {
        return interleaved.to_vec();
    }
    let inv = 1.0 / channels as f32;
    interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() * inv)
        .collect()
}

pub(crate) fn check_sample_rate(rate: u32) -> Result<(), AudioErrorKind> {
    if (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
        Ok(())
    } else {
        Err(AudioErrorKind::SampleRate(rate))
    }
}

fn header_error(e: hound::Error) -> AudioErrorKind {
    match e {
        // The bytes are already in memory, so a read error can only mean the header runs past the end.
        hound::Error::IoError(io) => {
            AudioErrorKind::BadHeader(format!("the file ends inside the header ({io})"))
        }
        hound::Error::FormatError("no RIFF tag found")
        | hound::Error::FormatError("no WAVE tag found") => AudioErrorKind::NotWav,
        hound::Error::FormatError(msg) => AudioErrorKind::BadHeader(msg.to_string()),
        hound::Error::Unsupported => {
            AudioErrorKind::UnsupportedSampleFormat("a WAV layout hound cannot read".into())
        }
        other => AudioErrorKind::BadHeader(other.to_string()),
    }
}

fn data_error(e: hound::Error, decoded: usize, declared: usize) -> AudioErrorKind {
    let detail = match &e {
        hound::Error::IoError(_) => "the file ends before the data chunk does".to_string(),
        other => other.to_string(),
    };
    AudioErrorKind::TruncatedData {
        decoded,
        declared,
        detail,
    }
}

/// Walks the RIFF chunks up to `fmt ` and refuses compressed codecs by name. Anything structurally odd is
/// left to hound, which reports it.
fn check_riff_codec(bytes: &[u8]) -> Result<(), AudioErrorKind> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return if bytes.len() >= 4 && &bytes[0..4] == b"RIFF" && bytes.len() < 12 {
            Err(AudioErrorKind::BadHeader(
                "the file ends inside the RIFF header".into(),
            ))
        } else {
            Err(AudioErrorKind::NotWav)
        };
    }
    let mut pos = 12usize;
    while let Some(header) = bytes.get(pos..pos + 8) {
        let id = &header[0..4];
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let body = pos + 8;
        if id == b"fmt " {
            let Some(tag_bytes) = bytes.get(body..body + 2) else {
                return Ok(());
            };
            let mut tag = u16::from_le_bytes([tag_bytes[0], tag_bytes[1]]);
            const EXTENSIBLE: u16 = 0xFFFE;
            if tag == EXTENSIBLE {
                // WAVE_FORMAT_EXTENSIBLE: the real codec is the first two bytes of the sub-format GUID.
                match bytes.get(body + 24..body + 26) {
                    Some(sub) if size >= 26 => tag = u16::from_le_bytes([sub[0], sub[1]]),
                    _ => return Ok(()),
                }
            }
            return match tag {
                1 | 3 => Ok(()),
                other => Err(AudioErrorKind::UnsupportedCodec {
                    format_tag: other,
                    codec: codec_name(other),
                }),
            };
        }
        // Chunks are padded to an even size.
        pos = match body
            .checked_add(size)
            .and_then(|end| end.checked_add(size % 2))
        {
            Some(next) => next,
            None => return Ok(()),
        };
    }
    Ok(())
}

fn codec_name(tag: u16) -> &'static str {
    match tag {
        0x0002 => "Microsoft ADPCM",
        0x0006 => "A-law",
        0x0007 => "mu-law",
        0x0011 => "IMA ADPCM",
        0x0031 => "GSM 6.10",
        0x0050 => "MPEG audio",
        0x0055 => "MP3",
        0x0161..=0x0163 => "Windows Media Audio",
        0x00FF | 0x1610 => "AAC",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downmix_averages_channels() {
        assert_eq!(downmix(&[1.0, 0.0, 0.5, 0.5], 2), vec![0.5, 0.5]);
        assert_eq!(downmix(&[0.25, -0.25], 1), vec![0.25, -0.25]);
    }

    #[test]
    fn raw_pcm16_scales_like_whisper() {
        let bytes = [0x00, 0x80, 0xff, 0x7f, 0x00, 0x00];
        let audio = decode_raw_pcm16(&bytes, 16_000, "x.raw").expect("valid raw");
        assert_eq!(audio.samples, vec![-1.0, 32767.0 / 32768.0, 0.0]);
    }
}
