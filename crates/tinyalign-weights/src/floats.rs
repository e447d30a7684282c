//! Little-endian float arrays (f32, f16, bf16) widened to `f32`: the element types every format here shares.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatKind {
    F32,
    F16,
    Bf16,
}

/// Decodes whole elements of `kind` from `raw` (a trailing partial element is ignored; callers size `raw`).
pub fn le_floats(kind: FloatKind, raw: &[u8]) -> Vec<f32> {
    match kind {
        FloatKind::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        FloatKind::F16 => raw
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        FloatKind::Bf16 => raw
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    }
}
