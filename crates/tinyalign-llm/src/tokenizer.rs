//! Byte-level BPE (GPT-2 style) as SmolLM2 and Qwen2.5 use it, built from GGUF metadata
//! (`tokenizer.ggml.{tokens,token_type,merges}`, model `gpt2`, pre-tokenizer `smollm` or `qwen2`).
//!
//! Pipeline, identical to the Hugging Face `tokenizer.json` of each model:
//! 1. control / user-defined tokens written literally in the text (`<|im_start|>`) become their ids;
//! 2. `smollm`: every Unicode digit is cut out as its own piece, then the GPT-2 pattern splits the rest into
//!    words; `qwen2`: the text is normalised to NFC, then Qwen2's pattern (single digits, a non-letter
//!    prefix allowed before a word, newline runs apart) splits it;
//! 3. each word's UTF-8 bytes are mapped to printable characters (GPT-2 `bytes_to_unicode`) and merged by
//!    merge rank, lowest first.

use std::collections::HashMap;
use std::sync::Mutex;

use regex::Regex;
use tinyalign_weights::gguf::{GgufFile, GgufValue};

use crate::LlmError;

/// GGUF `token_type` values (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// GPT-2's word pattern without its `\s+(?!\S)` look-ahead, which the `regex` crate lacks; [`split_words`]
/// restores it by giving back the last whitespace character of a run that precedes a non-space.
const WORD_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";

/// Qwen2's pattern (its tokenizer.json `Split`, llama.cpp's `LLAMA_VOCAB_PRE_TYPE_QWEN2`), with the same
/// `\s+(?!\S)` treatment as [`WORD_PATTERN`].
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+";

/// How text is cut into words before BPE (GGUF `tokenizer.ggml.pre`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// SmolLM2 and the StarCoder family: digits one by one, then GPT-2's pattern.
    DigitsThenGpt2,
    /// Qwen2: NFC, then Qwen2's pattern.
    Qwen2,
}

impl PreTokenizer {
    fn from_gguf_name(name: &str) -> Option<Self> {
        match name {
            "smollm" | "starcoder" | "refact" | "codeshell" => Some(Self::DigitsThenGpt2),
            "qwen2" => Some(Self::Qwen2),
            _ => None,
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            Self::DigitsThenGpt2 => WORD_PATTERN,
            Self::Qwen2 => QWEN2_PATTERN,
        }
    }
}

pub struct Tokenizer {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
    merge_ranks: HashMap<(String, String), u32>,
    /// Tokens matched literally in text before any splitting, longest first.
    specials: Vec<(String, u32)>,
    special_ids: Vec<bool>,
    byte_to_char: [char; 256],
    char_to_byte: HashMap<char, u8>,
    pre: PreTokenizer,
    words: Regex,
    cache: Mutex<HashMap<String, Vec<u32>>>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tokenizer({} tokens, {} merges)",
            self.tokens.len(),
            self.merge_ranks.len()
        )
    }
}

fn strings(file: &GgufFile, key: &str) -> Result<Vec<String>, LlmError> {
    let array = file
        .metadata
        .get(key)
        .and_then(GgufValue::as_array)
        .ok_or_else(|| {
            LlmError::Tokenizer(format!("{}: metadata `{key}` is missing", file.source_name))
        })?;
    array
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            LlmError::Tokenizer(format!("{}: `{key}` holds non-strings", file.source_name))
        })
}

/// GPT-2's reversible map from bytes to printable characters: printable Latin-1 maps to itself, the rest to
/// U+0100 upwards in byte order.
fn bytes_to_unicode() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        map[b as usize] = if printable {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(next - 1).expect("U+0100..U+0143 are chars")
        };
    }
    map
}

impl Tokenizer {
    pub fn from_gguf(file: &GgufFile) -> Result<Self, LlmError> {
        let model = file.meta_str("tokenizer.ggml.model").unwrap_or("(missing)");
        if model != "gpt2" {
            return Err(LlmError::Unsupported(format!(
                "{}: tokenizer model `{model}` (only byte-level BPE, `gpt2`, is implemented)",
                file.source_name
            )));
        }
        let pre_name = file.meta_str("tokenizer.ggml.pre").unwrap_or("default");
        let pre = PreTokenizer::from_gguf_name(pre_name).ok_or_else(|| {
            LlmError::Unsupported(format!(
                "{}: pre-tokenizer `{pre_name}` (implemented: qwen2, smollm and the others that split digits \
                 singly before the GPT-2 pattern)",
                file.source_name
            ))
        })?;
        let tokens = strings(file, "tokenizer.ggml.tokens")?;
        let merges = strings(file, "tokenizer.ggml.merges")?;
        let types: Vec<i64> = match file
            .metadata
            .get("tokenizer.ggml.token_type")
            .and_then(GgufValue::as_array)
        {
            Some(values) => values
                .iter()
                .map(|v| v.as_u64().map_or(1, |t| t as i64))
                .collect(),
            None => vec![1; tokens.len()],
        };
        let id = |key: &str| {
            file.meta_u64(key)
                .map(|v| v as u32)
                .filter(|&v| (v as usize) < types.len())
        };
        let (bos, eos) = (
            id("tokenizer.ggml.bos_token_id"),
            id("tokenizer.ggml.eos_token_id"),
        );
        Self::new(tokens, &merges, &types, bos, eos, pre)
    }

    pub fn new(
        tokens: Vec<String>,
        merges: &[String],
        types: &[i64],
        bos_id: Option<u32>,
        eos_id: Option<u32>,
        pre: PreTokenizer,
    ) -> Result<Self, LlmError> {
        if tokens.is_empty() || types.len() != tokens.len() {
            return Err(LlmError::Tokenizer(format!(
                "{} tokens but {} token types",
                tokens.len(),
                types.len()
            )));
        }
        let ids: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let mut merge_ranks = HashMap::with_capacity(merges.len());
        for (rank, merge) in merges.iter().enumerate() {
            let (a, b) = merge.split_once(' ').ok_or_else(|| {
                LlmError::Tokenizer(format!("merge {rank} `{merge}` is not two symbols"))
            })?;
            merge_ranks
                .entry((a.to_owned(), b.to_owned()))
                .or_insert(rank as u32);
        }
        let special_ids: Vec<bool> = types
            .iter()
            .map(|&t| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
            .collect();
        let mut specials: Vec<(String, u32)> = tokens
            .iter()
            .enumerate()
            .filter(|(i, t)| special_ids[*i] && !t.is_empty())
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let byte_to_char = bytes_to_unicode();
        let char_to_byte = byte_to_char
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        Ok(Self {
            tokens,
            ids,
            merge_ranks,
            specials,
            special_ids,
            byte_to_char,
            char_to_byte,
            pre,
            words: Regex::new(pre.pattern()).expect("static pattern"),
            cache: Mutex::new(HashMap::new()),
            bos_id,
            eos_id,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// Whether byte `b` has a token of its own (otherwise [`Self::encode`] drops it).
    pub fn byte_has_token(&self, b: u8) -> bool {
        self.ids
            .contains_key(&self.byte_to_char[b as usize].to_string())
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.get(id as usize).copied().unwrap_or(false)
    }

    /// Token ids of `text`. With `parse_special`, control tokens written in the text (`<|im_end|>`) become
    /// their ids; without it they are ordinary text (what user-supplied strings should get).
    ///
    /// SmolLM2's vocabulary lacks 21 of the 256 byte symbols (most ASCII control characters and bytes that
    /// never occur in UTF-8); like the Hugging Face tokenizer, such bytes are dropped. [`Self::byte_has_token`]
    /// tells which.
    pub fn encode(&self, text: &str, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let next_special = if parse_special {
                self.find_special(rest)
            } else {
                None
            };
            let (plain, special) = match next_special {
                Some((at, len, id)) => (&rest[..at], Some((len, id))),
                None => (rest, None),
            };
            self.encode_plain(plain, &mut out);
            match special {
                Some((len, id)) => {
                    out.push(id);
                    rest = &rest[plain.len() + len..];
                }
                None => break,
            }
        }
        out
    }

    /// Earliest special token in `text` (longest at that position): (byte offset, byte length, id).
    fn find_special(&self, text: &str) -> Option<(usize, usize, u32)> {
        let mut best: Option<(usize, usize, u32)> = None;
        for (token, id) in &self.specials {
            if let Some(at) = text.find(token.as_str())
                && best.is_none_or(|(b, len, _)| at < b || (at == b && token.len() > len))
            {
                best = Some((at, token.len(), *id));
            }
        }
        best
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        if self.pre == PreTokenizer::Qwen2 {
            use unicode_normalization::UnicodeNormalization;
            let normalised: String = text.nfc().collect();
            self.encode_words(&normalised, out);
            return;
        }
        let mut piece_start = 0;
        for (i, c) in text.char_indices() {
            if c.is_numeric() {
                self.encode_words(&text[piece_start..i], out);
                self.encode_word(&text[i..i + c.len_utf8()], out);
                piece_start = i + c.len_utf8();
            }
        }
        self.encode_words(&text[piece_start..], out);
    }

    fn encode_words(&self, piece: &str, out: &mut Vec<u32>) {
        for word in split_words(&self.words, piece, self.pre) {
            self.encode_word(word, out);
        }
    }

    fn encode_word(&self, word: &str, out: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        if let Some(ids) = self.cache.lock().ok().and_then(|c| c.get(word).cloned()) {
            out.extend(ids);
            return;
        }
        let mut symbols: Vec<String> = word
            .bytes()
            .map(|b| self.byte_to_char[b as usize].to_string())
            .collect();
        // Merge the lowest-ranked adjacent pair, leftmost first, until no pair has a rank.
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, pair)| {
                    self.merge_ranks
                        .get(&(pair[0].clone(), pair[1].clone()))
                        .map(|&r| (r, i))
                })
                .min();
            let Some((_, i)) = best else { break };
            let right = symbols.remove(i + 1);
            symbols[i].push_str(&right);
        }
        let mut ids = Vec::with_capacity(symbols.len());
        for symbol in &symbols {
            match self.ids.get(symbol) {
                Some(&id) => ids.push(id),
                // Every single byte character is in a byte-level vocabulary; fall back to bytes regardless.
                None => ids.extend(
                    symbol
                        .chars()
                        .filter_map(|c| self.ids.get(&c.to_string()).copied()),
                ),
            }
        }
        if let Ok(mut cache) = self.cache.lock()
            && cache.len() < 100_000
        {
            cache.insert(word.to_owned(), ids.clone());
        }
        out.extend(ids);
    }

    /// The raw bytes a token stands for (special tokens: their text; unknown ids: nothing).
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let Some(token) = self.tokens.get(id as usize) else {
            return Vec::new();
        };
        if self.is_special(id) {
            return token.as_bytes().to_vec();
        }
        token
            .chars()
            .flat_map(|c| match self.char_to_byte.get(&c) {
                Some(&b) => vec![b],
                None => c.to_string().into_bytes(),
            })
            .collect()
    }

    /// Text of `ids`; `skip_special` drops control tokens. Invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .filter(|&&id| !(skip_special && self.is_special(id)))
            .flat_map(|&id| self.token_bytes(id))
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Word split of `text`, with the `\s+(?!\S)` rule: a whitespace run followed by a non-space keeps its
/// last character for the next word (so " world" stays one word after "hello "). A whitespace match that
/// holds a line break came from Qwen2's `\s*[\r\n]+`, which has no such rule.
fn split_words<'t>(words: &Regex, text: &'t str, pre: PreTokenizer) -> Vec<&'t str> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let Some(m) = words.find_at(text, at) else {
            break;
        };
        let (start, mut end) = (m.start(), m.end());
        let matched = &text[start..end];
        if end < text.len()
            && matched.chars().all(char::is_whitespace)
            && !(pre == PreTokenizer::Qwen2 && matched.contains(['\r', '\n']))
            && matched.chars().count() > 1
        {
            end -= matched.chars().next_back().map_or(0, char::len_utf8);
        }
        out.push(&text[start..end]);
        at = end;
    }
    out
}

/// Incremental decoder for streaming: holds back bytes of an unfinished UTF-8 character.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// Text that became complete with `id` (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> String {
        if tokenizer.is_special(id) {
            return String::new();
        }
        self.pending.extend(tokenizer.token_bytes(id));
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            // An incomplete character at the end waits; invalid bytes in the middle are replaced.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        let text = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
        self.pending.drain(..valid);
        text
    }

    /// Whatever is left (an unfinished character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_is_a_bijection_onto_printable_chars() {
        let map = bytes_to_unicode();
        let unique: std::collections::HashSet<char> = map.iter().copied().collect();
        assert_eq!(unique.len(), 256);
        assert_eq!(map[b' ' as usize], 'Ġ');
        assert_eq!(map[b'\n' as usize], 'Ċ');
        assert_eq!(map[b'a' as usize], 'a');
    }

    #[test]
    fn words_follow_the_gpt2_pattern() {
        let re = Regex::new(WORD_PATTERN).unwrap();
        assert_eq!(
            split_words(&re, "Hello  world's  ", PreTokenizer::DigitsThenGpt2),
            ["Hello", " ", " world", "'s", "  "]
        );
        assert_eq!(
            split_words(&re, "a\n\nb ?!", PreTokenizer::DigitsThenGpt2),
            ["a", "\n", "\n", "b", " ?!"]
        );
    }

    #[test]
    fn qwen2_words_keep_newline_runs_and_prefixes() {
        let re = Regex::new(QWEN2_PATTERN).unwrap();
        let pre = PreTokenizer::Qwen2;
        // `\s*[\r\n]+` keeps "\n\n" whole; a non-letter may lead a word; digits go one by one.
        assert_eq!(
            split_words(&re, "a\n\nb (x) 42", pre),
            ["a", "\n\n", "b", " (", "x", ")", " ", "4", "2"]
        );
        assert_eq!(split_words(&re, "IT'S  ok", pre), ["IT", "'S", " ", " ok"]);
    }
}
