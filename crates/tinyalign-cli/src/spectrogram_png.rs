//! A log-mel spectrogram as a PNG a person can look at: time left to right, low frequencies at the bottom,
//! the 8-decade dynamic range Whisper keeps mapped onto a perceptual dark-to-bright palette.

use anyhow::{Context, Result};
use tinyalign_mel::LogMel;

/// Rows per mel band, so 80 bands make a 240-pixel-high image.
const ROW_SCALE: usize = 3;

/// Anchor colours (dark purple → red → yellow), interpolated linearly; close to matplotlib's "magma".
const PALETTE: [[f32; 3]; 5] = [
    [0.0, 0.0, 4.0],
    [81.0, 18.0, 124.0],
    [183.0, 55.0, 121.0],
    [252.0, 137.0, 97.0],
    [252.0, 253.0, 191.0],
];

pub fn spectrogram_png(mel: &LogMel) -> Result<Vec<u8>> {
    let width = mel.n_frames;
    let height = mel.n_mels * ROW_SCALE;
    // Whisper's scaling keeps values in [max - 2, max] (8 decades of power over 4).
    let max = mel.data.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let min = max - 2.0;
    let mut pixels = Vec::with_capacity(width * height * 3);
    for row in 0..height {
        let band = mel.n_mels - 1 - row / ROW_SCALE;
        for &v in mel.band(band) {
            pixels.extend_from_slice(&colour(((v - min) / (max - min)).clamp(0.0, 1.0)));
        }
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(
            &mut out,
            u32::try_from(width).context("image too wide")?,
            u32::try_from(height).context("image too high")?,
        );
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().context("PNG header")?;
        writer.write_image_data(&pixels).context("PNG data")?;
    }
    Ok(out)
}

fn colour(t: f32) -> [u8; 3] {
    let scaled = t * (PALETTE.len() - 1) as f32;
    let i = (scaled as usize).min(PALETTE.len() - 2);
    let f = scaled - i as f32;
    let mut rgb = [0u8; 3];
    for (c, out) in rgb.iter_mut().enumerate() {
        *out = (PALETTE[i][c] + (PALETTE[i + 1][c] - PALETTE[i][c]) * f).round() as u8;
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_ends_and_image_size() {
        assert_eq!(colour(0.0), [0, 0, 4]);
        assert_eq!(colour(1.0), [252, 253, 191]);
        let mel = LogMel {
            n_mels: 80,
            n_frames: 7,
            data: (0..560).map(|i| i as f32 / 560.0).collect(),
        };
        let bytes = spectrogram_png(&mel).expect("encodes");
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().expect("valid PNG");
        assert_eq!((reader.info().width, reader.info().height), (7, 240));
    }
}
