//! Minimal `.npy` (NumPy format 1.0/2.0) reading and writing for little-endian `f32` arrays in C order: the
//! exchange format for features (`tinyalign mel`) and for reference fixtures made with numpy.

use std::fmt::Write as _;

/// An `f32` array with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("not a .npy file (bad magic)")]
    BadMagic,
    #[error("truncated .npy file")]
    Truncated,
    #[error("unsupported .npy header: {0}")]
    Header(String),
    #[error("unsupported dtype {0}: only '<f4' and '<f8' are read")]
    Dtype(String),
    #[error("shape {shape:?} needs {expected} values, the file holds {found}")]
    Size {
        shape: Vec<usize>,
        expected: usize,
        found: usize,
    },
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Serialises `data` with `shape` as a version 1.0 `.npy` file of `<f4`.
pub fn to_npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "shape does not match data length"
    );
    let mut dims = String::new();
    for d in shape {
        let _ = write!(dims, "{d}, ");
    }
    if shape.len() > 1 {
        dims.truncate(dims.len() - 2);
    } else if shape.len() == 1 {
        dims.truncate(dims.len() - 1);
    }
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' is padded to a multiple of 64.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Parses a `.npy` of `<f4` or `<f8` (converted to f32), C order.
pub fn from_npy_bytes(bytes: &[u8]) -> Result<NpyArray, NpyError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(NpyError::BadMagic);
    }
    let (header_len, header_start): (usize, usize) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 => {
            let b = bytes.get(8..12).ok_or(NpyError::Truncated)?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        v => return Err(NpyError::Header(format!("version {v}"))),
    };
    let header_end = header_start
        .checked_add(header_len)
        .ok_or(NpyError::Truncated)?;
    let header = bytes
        .get(header_start..header_end)
        .ok_or(NpyError::Truncated)?;
    let header = std::str::from_utf8(header).map_err(|_| NpyError::Header("not UTF-8".into()))?;
    let descr = dict_value(header, "descr").ok_or_else(|| NpyError::Header(header.into()))?;
    let descr = descr
        .trim()
        .strip_prefix('\'')
        .and_then(|s| s.split('\'').next())
        .ok_or_else(|| NpyError::Header(header.into()))?
        .to_string();
    if dict_value(header, "fortran_order").is_some_and(|v| v.trim().starts_with("True")) {
        return Err(NpyError::Header("Fortran order".into()));
    }
    let shape_text = dict_value(header, "shape").ok_or_else(|| NpyError::Header(header.into()))?;
    let inner = shape_text
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| NpyError::Header(header.into()))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| NpyError::Header(header.into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let expected = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| NpyError::Header("shape overflows".into()))?;
    let body = &bytes[header_end..];
    let data: Vec<f32> = match descr.as_str() {
        "<f4" => body
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        "<f8" => body
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        other => return Err(NpyError::Dtype(other.into())),
    };
    if data.len() != expected {
        return Err(NpyError::Size {
            shape,
            expected,
            found: data.len(),
        });
    }
    Ok(NpyArray { shape, data })
}

/// The text after `'key':` in a Python dict literal, up to the next top-level key.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("'{key}':");
    let start = header.find(&pattern)? + pattern.len();
    Some(&header[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_shapes() {
        for shape in [vec![3usize], vec![2, 3], vec![2, 1, 2], vec![0, 4]] {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
            let bytes = to_npy_bytes(&shape, &data);
            assert_eq!((bytes.len() - data.len() * 4) % 64, 0);
            let back = from_npy_bytes(&bytes).expect("round trip");
            assert_eq!(back.shape, shape);
            assert_eq!(back.data, data);
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(from_npy_bytes(b"hello"), Err(NpyError::BadMagic)));
        let mut bytes = to_npy_bytes(&[4], &[1.0, 2.0, 3.0, 4.0]);
        bytes.truncate(bytes.len() - 3);
        assert!(matches!(from_npy_bytes(&bytes), Err(NpyError::Size { .. })));
    }
}
