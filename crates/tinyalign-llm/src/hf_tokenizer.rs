//! A Hugging Face `tokenizer.json` (+ `tokenizer_config.json`) as the GGUF tokenizer metadata llama.cpp's
//! `convert_hf_to_gguf.py` writes for it: tokens by id with their types, merges as `"a b"` strings, the
//! pre-tokenizer's GGUF name, bos/eos ids and the chat template.
//!
//! Only the byte-level BPE layouts implemented by [`crate::Tokenizer`] are accepted, recognised from the
//! normalizer and pre-tokenizer themselves rather than from the model's name.

use std::path::Path;

use serde_json::Value;

use crate::LlmError;

/// llama.cpp `llama_token_type`: what `convert_hf_to_gguf.py` assigns to each id.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

/// Qwen2's split pattern as its tokenizer.json writes it (also in `tokenizer.rs`, minus the look-ahead).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

#[derive(Debug)]
pub(crate) struct TokenizerMeta {
    pub tokens: Vec<String>,
    pub types: Vec<i32>,
    pub merges: Vec<String>,
    /// GGUF `tokenizer.ggml.pre`.
    pub pre: &'static str,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: Option<bool>,
    pub chat_template: Option<String>,
}

pub(crate) fn read_json(path: &Path) -> Result<Value, LlmError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LlmError::Io(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| LlmError::Model(format!("{}: {e}", path.display())))
}

/// Which GGUF pre-tokenizer a tokenizer.json's normalizer and pre-tokenizer amount to.
fn pre_tokenizer_name(doc: &Value) -> Option<&'static str> {
    let pre = &doc["pre_tokenizer"];
    let steps: Vec<&Value> = match pre["type"].as_str() {
        Some("Sequence") => pre["pretokenizers"].as_array()?.iter().collect(),
        _ => vec![pre],
    };
    let byte_level = |v: &Value, regex: bool| {
        v["type"] == "ByteLevel"
            && v["add_prefix_space"] == false
            && v["use_regex"].as_bool().unwrap_or(true) == regex
    };
    let normalizer = doc["normalizer"]["type"].as_str();
    match steps[..] {
        [digits, bl]
            if digits["type"] == "Digits"
                && digits["individual_digits"] == true
                && byte_level(bl, true)
                && normalizer.is_none() =>
        {
            Some("smollm")
        }
        [split, bl]
            if split["type"] == "Split"
                && split["pattern"]["Regex"] == QWEN2_SPLIT
                && split["behavior"] == "Isolated"
                && split["invert"] != true
                && byte_level(bl, false)
                && normalizer == Some("NFC") =>
        {
            Some("qwen2")
        }
        _ => None,
    }
}

/// A special-token entry of tokenizer_config.json: a string, or an object with `content`.
fn token_string(v: &Value) -> Option<&str> {
    v.as_str().or_else(|| v["content"].as_str())
}

pub(crate) fn read(
    dir: &Path,
    vocab_size: usize,
    config: &Value,
) -> Result<TokenizerMeta, LlmError> {
    let path = dir.join("tokenizer.json");
    let doc = read_json(&path)?;
    let name = path.display();
    let model = &doc["model"];
    if model["type"] != "BPE" || model["byte_fallback"] == true {
        return Err(LlmError::Unsupported(format!(
            "{name}: tokenizer model `{}`{} (only byte-level BPE is implemented)",
            model["type"].as_str().unwrap_or("(missing)"),
            if model["byte_fallback"] == true {
                " with byte fallback"
            } else {
                ""
            }
        )));
    }
    let pre = pre_tokenizer_name(&doc).ok_or_else(|| {
        LlmError::Unsupported(format!(
            "{name}: normalizer {} with pre-tokenizer {} (implemented: SmolLM2's digits + byte-level, \
             Qwen2's NFC + split pattern + byte-level)",
            doc["normalizer"], doc["pre_tokenizer"]
        ))
    })?;
    let bad = |what: String| LlmError::Tokenizer(format!("{name}: {what}"));
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| bad("`model.vocab` is not an object".into()))?;
    let mut entries: Vec<(usize, String, i32)> = Vec::with_capacity(vocab.len());
    for (token, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| bad(format!("vocabulary id of `{token}` is not a number")))?;
        entries.push((id as usize, token.clone(), NORMAL));
    }
    for added in doc["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(content)) = (added["id"].as_u64(), added["content"].as_str()) else {
            return Err(bad(format!("added token {added} lacks `id` or `content`")));
        };
        let ty = if added["special"] == true {
            CONTROL
        } else {
            USER_DEFINED
        };
        entries.push((id as usize, content.to_string(), ty));
    }
    let needed = entries.iter().map(|e| e.0 + 1).max().unwrap_or(0);
    if needed > vocab_size {
        return Err(bad(format!(
            "token id {} is past config.json's vocab_size {vocab_size}",
            needed - 1
        )));
    }
    // Ids no token uses (Qwen2.5 pads its embedding table to a multiple of 128) get llama.cpp's names.
    let mut tokens: Vec<Option<String>> = vec![None; vocab_size];
    let mut types = vec![UNUSED; vocab_size];
    for (id, token, ty) in entries {
        match &tokens[id] {
            Some(existing) if *existing != token => {
                return Err(bad(format!("id {id} is both `{existing}` and `{token}`")));
            }
            // An added token also listed in the vocabulary (SmolLM2) keeps its added type.
            Some(_) if ty == NORMAL => {}
            _ => {
                tokens[id] = Some(token);
                types[id] = ty;
            }
        }
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.unwrap_or_else(|| format!("[PAD{i}]")))
        .collect();
    let merges = model["merges"]
        .as_array()
        .ok_or_else(|| bad("`model.merges` is not a list".into()))?
        .iter()
        .enumerate()
        .map(|(rank, m)| match m {
            Value::String(s) => Ok(s.clone()),
            // tokenizers ≥ 0.20 writes each merge as a pair.
            Value::Array(pair) => match &pair[..] {
                [Value::String(a), Value::String(b)] => Ok(format!("{a} {b}")),
                _ => Err(bad(format!("merge {rank} is not a pair of strings"))),
            },
            _ => Err(bad(format!("merge {rank} is neither a string nor a pair"))),
        })
        .collect::<Result<Vec<_>, _>>()?;

    let config_path = dir.join("tokenizer_config.json");
    let tokenizer_config = if config_path.exists() {
        read_json(&config_path)?
    } else {
        Value::Null
    };
    let id_of = |key: &str| -> Option<u32> {
        let wanted = token_string(&tokenizer_config[key])?;
        tokens.iter().position(|t| t == wanted).map(|i| i as u32)
    };
    // tokenizer_config's token strings first, then config.json's ids (llama.cpp's SpecialVocab order).
    let config_id = |key: &str| -> Option<u32> {
        let v = &config[key];
        v.as_u64()
            .or_else(|| v.as_array().and_then(|a| a.first()).and_then(Value::as_u64))
            .map(|id| id as u32)
            .filter(|&id| (id as usize) < vocab_size)
    };
    let bos = id_of("bos_token").or_else(|| config_id("bos_token_id"));
    let eos = id_of("eos_token").or_else(|| config_id("eos_token_id"));
    let jinja = dir.join("chat_template.jinja");
    let chat_template = if jinja.exists() {
        Some(
            std::fs::read_to_string(&jinja)
                .map_err(|e| LlmError::Io(format!("{}: {e}", jinja.display())))?,
        )
    } else {
        match &tokenizer_config["chat_template"] {
            Value::String(s) => Some(s.clone()),
            // A list of named templates: the default one.
            Value::Array(named) => named
                .iter()
                .find(|t| t["name"] == "default")
                .or(named.first())
                .and_then(|t| t["template"].as_str())
                .map(str::to_owned),
            _ => None,
        }
    };
    Ok(TokenizerMeta {
        tokens,
        types,
        merges,
        pre,
        bos,
        eos,
        add_bos: tokenizer_config["add_bos_token"].as_bool(),
        chat_template,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pre_tokenizers_are_recognised_by_their_steps() {
        let smollm = json!({"normalizer": null, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]}});
        assert_eq!(pre_tokenizer_name(&smollm), Some("smollm"));
        let qwen = json!({"normalizer": {"type": "NFC"}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]}});
        assert_eq!(pre_tokenizer_name(&qwen), Some("qwen2"));
        // GPT-2's own (no digit split) and a Qwen2 layout without NFC are different tokenizers.
        let gpt2 = json!({"normalizer": null, "pre_tokenizer":
            {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}});
        assert_eq!(pre_tokenizer_name(&gpt2), None);
        let mut no_nfc = qwen.clone();
        no_nfc["normalizer"] = Value::Null;
        assert_eq!(pre_tokenizer_name(&no_nfc), None);
    }
}
