//! Whisper's token ↔ text mapping from CTranslate2's `vocabulary.txt`: line `n` is token `n`, spelled in
//! GPT-2's byte-to-unicode alphabet (every byte has a printable stand-in character). Decoding maps those
//! characters back to bytes and reads the bytes as UTF-8.

use std::collections::HashMap;
use std::path::Path;

use crate::WhisperError;

/// Vocabulary size from which a Whisper model is multilingual (`Tokenizer.multilingual` upstream).
const MULTILINGUAL_VOCAB: usize = 51_865;

/// Special token ids, found by their text so English-only and multilingual vocabularies both work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialTokens {
    pub eot: usize,
    pub sot: usize,
    pub no_timestamps: usize,
    /// `<|en|>` and `<|transcribe|>`: multilingual models only.
    pub english: Option<usize>,
    pub transcribe: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct WhisperTokenizer {
    tokens: Vec<String>,
    specials: SpecialTokens,
    byte_of_char: HashMap<char, u8>,
}

impl WhisperTokenizer {
    pub fn from_file(path: &Path) -> Result<Self, WhisperError> {
        let text = std::fs::read_to_string(path).map_err(|e| WhisperError::Config {
            path: path.display().to_string(),
            message: format!("cannot read the vocabulary: {e}"),
        })?;
        Self::from_lines(
            text.lines().map(str::to_string).collect(),
            &path.display().to_string(),
        )
    }

    pub fn from_lines(tokens: Vec<String>, source: &str) -> Result<Self, WhisperError> {
        let find = |t: &str| tokens.iter().position(|x| x == t);
        let missing = |t: &str| WhisperError::Config {
            path: source.to_string(),
            message: format!("vocabulary has no {t} token"),
        };
        let specials = SpecialTokens {
            eot: find("<|endoftext|>").ok_or_else(|| missing("<|endoftext|>"))?,
            sot: find("<|startoftranscript|>").ok_or_else(|| missing("<|startoftranscript|>"))?,
            no_timestamps: find("<|notimestamps|>").ok_or_else(|| missing("<|notimestamps|>"))?,
            // English-only vocabularies (51864 tokens) list language and task tokens too, but their models were
            // trained with `<|startoftranscript|>` alone; only multilingual ones (51865+) take them.
            english: find("<|en|>").filter(|_| tokens.len() >= MULTILINGUAL_VOCAB),
            transcribe: find("<|transcribe|>").filter(|_| tokens.len() >= MULTILINGUAL_VOCAB),
        };
        let byte_of_char = bytes_to_unicode()
            .into_iter()
            .map(|(b, c)| (c, b))
            .collect();
        Ok(Self {
            tokens,
            specials,
            byte_of_char,
        })
    }

    pub fn specials(&self) -> SpecialTokens {
        self.specials
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The prompt that starts an English transcription without timestamps.
    pub fn transcribe_prompt(&self) -> Vec<usize> {
        let s = self.specials;
        let mut prompt = vec![s.sot];
        if let (Some(en), Some(tr)) = (s.english, s.transcribe) {
            prompt.extend([en, tr]);
        }
        prompt.push(s.no_timestamps);
        prompt
    }

    /// Text of ordinary tokens (ids below `<|endoftext|>`); special tokens are skipped.
    pub fn decode(&self, ids: &[usize]) -> String {
        let mut bytes = Vec::new();
        for &id in ids.iter().filter(|&&id| id < self.specials.eot) {
            for c in self.tokens[id].chars() {
                if let Some(&b) = self.byte_of_char.get(&c) {
                    bytes.push(b);
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// GPT-2's reversible byte → printable character table: printable Latin-1 bytes stand for themselves, the
/// other 68 bytes take the characters from U+0100 on, in byte order.
fn bytes_to_unicode() -> Vec<(u8, char)> {
    let printable = |b: u8| {
        (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    let mut next = 256u32;
    (0..=255u8)
        .map(|b| {
            if printable(b) {
                (b, char::from(b))
            } else {
                let c = char::from_u32(next).expect("U+0100.. are valid chars");
                next += 1;
                (b, c)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection_with_gpt2_space() {
        let table = bytes_to_unicode();
        let chars: std::collections::HashSet<char> = table.iter().map(|(_, c)| *c).collect();
        assert_eq!(chars.len(), 256);
        assert_eq!(table[b' ' as usize].1, 'Ġ');
        assert_eq!(table[b'\n' as usize].1, 'Ċ');
    }

    #[test]
    fn decodes_byte_level_tokens() {
        let mut lines: Vec<String> = ["He", "llo", "Ġw", "orld", "Ġ", "Ã©"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        lines.extend(
            ["<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"].map(String::from),
        );
        let tok = WhisperTokenizer::from_lines(lines, "test").expect("valid");
        assert_eq!(tok.decode(&[0, 1, 2, 3, 6]), "Hello world");
        assert_eq!(tok.decode(&[4, 5]), " é");
        assert_eq!(tok.transcribe_prompt(), vec![7, 8]);
    }
}
