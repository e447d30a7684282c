//! f32 → ggml block encodings, bit for bit as llama.cpp's `llama-quantize` writes them without an
//! importance matrix: `quantize_row_{q8_0,q4_0,q4_1,q5_0}_ref` in ggml's `ggml-quants.c` (round-to-nearest
//! per block of 32, f16 scales rounded to nearest even), plus the plain F32/F16/BF16 encodings.
//!
//! Checked against gguf-py's numpy quantisers (`tests/fixtures/weights/make_weight_fixtures.py`).

use crate::gguf::GgmlType;

const BLOCK: usize = 32;

fn f16_bytes(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_le_bytes()
}

/// The value of largest magnitude in a block, with its sign (`max` in the Q4_0/Q5_0 reference).
fn signed_absmax(block: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in block {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn q8_0(block: &[f32], out: &mut Vec<u8>) {
    let amax = block.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16_bytes(d));
    out.extend(block.iter().map(|&v| (v * id).round() as i8 as u8));
}

fn q4_0(block: &[f32], out: &mut Vec<u8>) {
    let d = signed_absmax(block) / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16_bytes(d));
    // `(int8_t)(x + 8.5f)`: truncation, then capped at 15.
    let code = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    out.extend((0..16).map(|j| code(block[j]) | (code(block[j + 16]) << 4)));
}

fn q4_1(block: &[f32], out: &mut Vec<u8>) {
    let (min, max) = block
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16_bytes(d));
    out.extend_from_slice(&f16_bytes(min));
    let code = |v: f32| (((v - min) * id + 0.5) as i8).min(15) as u8;
    out.extend((0..16).map(|j| code(block[j]) | (code(block[j + 16]) << 4)));
}

fn q5_0(block: &[f32], out: &mut Vec<u8>) {
    let d = signed_absmax(block) / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16_bytes(d));
    let code = |v: f32| ((v * id + 16.5) as i8).min(31) as u32;
    let mut qh = 0u32;
    let mut qs = [0u8; 16];
    for j in 0..16 {
        let (lo, hi) = (code(block[j]), code(block[j + 16]));
        qs[j] = ((lo & 0x0f) | ((hi & 0x0f) << 4)) as u8;
        qh |= ((lo & 0x10) >> 4) << j;
        qh |= ((hi & 0x10) >> 4) << (j + 16);
    }
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend_from_slice(&qs);
}

/// The types [`quantize`] writes.
pub const WRITABLE: [GgmlType; 7] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Bf16,
    GgmlType::Q8_0,
    GgmlType::Q5_0,
    GgmlType::Q4_1,
    GgmlType::Q4_0,
];

/// Encodes `values` (whole blocks of 32 for the block types) as `ty`; `None` for a type not in
/// [`WRITABLE`] or a length that is not whole blocks.
pub fn quantize(ty: GgmlType, values: &[f32]) -> Option<Vec<u8>> {
    let blocks = |bytes: usize, encode: fn(&[f32], &mut Vec<u8>)| {
        if !values.len().is_multiple_of(BLOCK) {
            return None;
        }
        let mut out = Vec::with_capacity(values.len() / BLOCK * bytes);
        values.chunks_exact(BLOCK).for_each(|b| encode(b, &mut out));
        Some(out)
    };
    match ty {
        GgmlType::F32 => Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        GgmlType::F16 => Some(values.iter().flat_map(|&v| f16_bytes(v)).collect()),
        GgmlType::Bf16 => Some(
            values
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
        ),
        GgmlType::Q8_0 => blocks(34, q8_0),
        GgmlType::Q4_0 => blocks(18, q4_0),
        GgmlType::Q4_1 => blocks(20, q4_1),
        GgmlType::Q5_0 => blocks(crate::blocks::Q5_0_BYTES, q5_0),
        _ => None,
    }
}

/// A writable type by its usual lower-case name (`q8_0`, `q4_1`, `f16`, ...).
pub fn writable_by_name(name: &str) -> Option<GgmlType> {
    WRITABLE
        .into_iter()
        .find(|t| t.name().eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::dequantize;

    fn wave(n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|i| scale * ((i as f32 * 0.37).sin() + 0.3 * (i as f32 * 1.91).cos()))
            .collect()
    }

    #[test]
    fn each_block_type_round_trips_within_its_step() {
        let x = wave(256, 2.0);
        for (ty, levels) in [
            (GgmlType::Q8_0, 254.0),
            (GgmlType::Q5_0, 31.0),
            (GgmlType::Q4_1, 15.0),
            (GgmlType::Q4_0, 15.0),
        ] {
            let bytes = quantize(ty, &x).unwrap();
            let back = dequantize(ty, &bytes).unwrap();
            for (block, got) in x.chunks(32).zip(back.chunks(32)) {
                let range = block.iter().fold(0.0f32, |a, v| a.max(v.abs())) * 2.0;
                for (a, b) in block.iter().zip(got) {
                    assert!((a - b).abs() <= range / levels + 1e-6, "{ty:?}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn zero_blocks_and_bad_lengths() {
        for ty in [
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
        ] {
            let back = dequantize(ty, &quantize(ty, &[0.0; 32]).unwrap()).unwrap();
            assert!(back.iter().all(|&v| v == 0.0), "{ty:?}");
            assert!(quantize(ty, &[1.0; 31]).is_none());
        }
        assert!(quantize(GgmlType::Q4K, &[0.0; 256]).is_none());
        assert_eq!(writable_by_name("q4_1"), Some(GgmlType::Q4_1));
        assert_eq!(writable_by_name("BF16"), Some(GgmlType::Bf16));
        assert_eq!(writable_by_name("q4_k"), None);
    }
}
