//! A bounds-checked little-endian cursor: every length read from a file is checked against the bytes that
//! remain before anything is sliced or allocated.

use crate::error::WeightsErrorKind;

#[derive(Debug)]
pub(crate) struct ByteReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn truncated(&self, what: &str, needed: u64) -> WeightsErrorKind {
        WeightsErrorKind::Truncated {
            what: what.to_string(),
            offset: self.pos,
            needed,
            available: self.remaining(),
        }
    }

    /// The next `n` bytes (`n` from the file: checked before use).
    pub fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], WeightsErrorKind> {
        let n_usize = usize::try_from(n).map_err(|_| self.truncated(what, n))?;
        if n_usize > self.remaining() {
            return Err(self.truncated(what, n));
        }
        let out = &self.bytes[self.pos..self.pos + n_usize];
        self.pos += n_usize;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], WeightsErrorKind> {
        let b = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, WeightsErrorKind> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn u16(&mut self, what: &str) -> Result<u16, WeightsErrorKind> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: &str) -> Result<u32, WeightsErrorKind> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &str) -> Result<u64, WeightsErrorKind> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// UTF-8 text of `len` bytes (a trailing NUL, as CTranslate2 writes, is dropped).
    pub fn string(&mut self, len: u64, what: &str) -> Result<String, WeightsErrorKind> {
        let raw = self.take(len, what)?;
        let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
        String::from_utf8(raw.to_vec())
            .map_err(|_| WeightsErrorKind::Malformed(format!("{what} is not UTF-8")))
    }
}
