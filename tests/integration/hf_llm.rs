//! LLMs from Hugging Face folders against the GGUF path on the same model. The folders are written here
//! from the cached GGUFs: the small files from `tests/fixtures/llm/hf/*` (made by `make_hf_fixtures.py`
//! with Hugging Face `tokenizers`), the vocabulary and merges from the GGUF, and `model.safetensors` from
//! the GGUF's tensors under Hugging Face names with SmolLM2's Q/K rows un-permuted (the inverse of
//! llama.cpp's `permute`, written below independently of the loader's).

use std::path::{Path, PathBuf};

use serde_json::Value;
use tinyalign_llm::{LlamaModel, Precision, read_llm_bytes};
use tinyalign_weights::gguf::{GgmlType, GgufFile, GgufValue};
use tinyalign_weights::gguf_write::GgufBuilder;
use tinyalign_weights::st::{StoreAs, write_safetensors};
use tinyalign_weights::{Tensor, TensorMap};

use crate::common::{cached_model, fixture, ids, last_logits, load_npy, max_abs_diff, temp_dir};

const SMOLLM2: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
const QWEN: &str = "qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Hugging Face's name for a GGUF tensor, spelled out per part.
fn hf_key(gguf: &str) -> String {
    let fixed = [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output.weight", "lm_head.weight"),
        ("output_norm.weight", "model.norm.weight"),
    ];
    if let Some((_, hf)) = fixed.iter().find(|(g, _)| *g == gguf) {
        return hf.to_string();
    }
    let parts: Vec<&str> = gguf.split('.').collect();
    let module = match parts[2] {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        other => panic!("unexpected tensor part {other}"),
    };
    format!("model.layers.{}.{module}.{}", parts[1], parts[3])
}

/// Rows of llama.cpp's permuted Q/K back in Hugging Face order: the GGUF holds head rows as
/// (hd/2, 2) pairs, Hugging Face as (2, hd/2) halves.
fn unpermute(t: &Tensor, heads: usize) -> Tensor {
    let (rows, cols) = (t.shape[0], t.shape[1]);
    let hd = rows / heads;
    let mut data = vec![0.0; t.data.len()];
    for h in 0..heads {
        for i in 0..hd / 2 {
            for half in 0..2 {
                let gguf_row = h * hd + 2 * i + half;
                let hf_row = h * hd + half * (hd / 2) + i;
                data[hf_row * cols..(hf_row + 1) * cols]
                    .copy_from_slice(&t.data[gguf_row * cols..(gguf_row + 1) * cols]);
            }
        }
    }
    Tensor::new(t.shape.clone(), data)
}

fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// Writes a Hugging Face folder for the GGUF at `gguf_path` from `tests/fixtures/llm/hf/<skeleton>`, keeping
/// the first `layers` blocks (all when `None`).
fn write_folder(
    gguf_path: &Path,
    skeleton: &str,
    out: &Path,
    store: StoreAs,
    layers: Option<usize>,
) {
    let bytes = std::fs::read(gguf_path).unwrap();
    let g = GgufFile::parse(&bytes, "gguf").unwrap();
    let src = fixture(&format!("llm/hf/{skeleton}"));
    let mut config = json(&src.join("config.json"));
    let llama = config["model_type"] == "llama";
    if let Some(n) = layers {
        config["num_hidden_layers"] = n.into();
    }
    std::fs::write(out.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(
        src.join("tokenizer_config.json"),
        out.join("tokenizer_config.json"),
    )
    .unwrap();

    let mut tokenizer = json(&src.join("tokenizer.skeleton.json"));
    let with_added = tokenizer["x-test-vocab-includes-added"] == true;
    tokenizer
        .as_object_mut()
        .unwrap()
        .remove("x-test-vocab-includes-added");
    let strings = |key: &str| -> Vec<String> {
        g.metadata[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let types: Vec<u64> = g.metadata["tokenizer.ggml.token_type"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let vocab: serde_json::Map<String, Value> = strings("tokenizer.ggml.tokens")
        .into_iter()
        .enumerate()
        .filter(|(i, _)| types[*i] == 1 || (with_added && types[*i] != 5))
        .map(|(i, t)| (t, Value::from(i)))
        .collect();
    tokenizer["model"]["vocab"] = vocab.into();
    // SmolLM2's published file has merges as "a b" strings; tokenizers ≥ 0.20 writes pairs (Qwen here).
    tokenizer["model"]["merges"] = strings("tokenizer.ggml.merges")
        .into_iter()
        .map(|m| match llama {
            true => Value::from(m),
            false => {
                let (a, b) = m.split_once(' ').unwrap();
                serde_json::json!([a, b])
            }
        })
        .collect();
    std::fs::write(out.join("tokenizer.json"), tokenizer.to_string()).unwrap();

    let heads = |key: &str| config[key].as_u64().unwrap() as usize;
    let mut tensors = TensorMap::new("hf");
    for info in &g.tensors {
        if let (Some(layer), Some(kept)) = (layer_of(&info.name), layers)
            && layer >= kept
        {
            continue;
        }
        let t = g.tensor(&info.name).unwrap();
        let t = match (llama, info.name.rsplit('.').nth(1)) {
            (true, Some("attn_q")) => unpermute(&t, heads("num_attention_heads")),
            (true, Some("attn_k")) => unpermute(&t, heads("num_key_value_heads")),
            _ => t,
        };
        tensors.insert(hf_key(&info.name), t);
    }
    let st = write_safetensors(&tensors, store, &[("format", "pt")]).unwrap();
    std::fs::write(out.join("model.safetensors"), st).unwrap();
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0
}

fn assert_tokenizer_matches(model: &LlamaModel, cases: &str) {
    for case in json(&fixture(cases)).as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            model.tokenizer.encode(text, true),
            ids(&case["ids"]),
            "{text:?}"
        );
    }
}

/// SmolLM2 in F32: exactly the GGUF path's dequantised weights, so the same logits as the GGUF model and,
/// like it, within 2e-3 of the float64 numpy reference in the Hugging Face layout.
#[test]
fn smollm2_folder_is_the_gguf_model() {
    let Some(gguf) = cached_model(SMOLLM2) else {
        return;
    };
    let dir = temp_dir("smollm2");
    write_folder(&gguf, "smollm2", &dir, StoreAs::F32, None);
    let hf = LlamaModel::load_gguf(&dir, Precision::F32).unwrap();
    let reference = LlamaModel::load_gguf(&gguf, Precision::F32).unwrap();
    assert_eq!(hf.config, reference.config);
    assert_eq!(hf.chat_template, reference.chat_template);
    assert_eq!(hf.system_prompt, reference.system_prompt);
    assert_eq!(hf.tokenizer.eos_id, reference.tokenizer.eos_id);
    assert_tokenizer_matches(&hf, "llm/tokenizer_cases.json");

    let chat = json(&fixture("llm/chat_prompt.json"));
    let prompt = ids(&chat["prompt_ids"]);
    let (ours, theirs) = (last_logits(&hf, &prompt), last_logits(&reference, &prompt));
    let (diff, at) = max_abs_diff(&ours, &theirs);
    assert!(diff <= 1e-5, "folder vs GGUF: {diff} at {at}");
    let (diff, at) = max_abs_diff(&ours, &load_npy("llm/chat_prompt.last_logits.npy").data);
    assert!(diff < 2e-3, "folder vs numpy: {diff} at {at}");

    // Quantised at load: Q8_0 re-encodes the GGUF's own Q8_0 embedding block for block, Q4_1 its Q4_1
    // matrices; the answer's first token stays the reference's.
    let at_q8 = PathBuf::from(format!("{}@q8_0", dir.display()));
    let (bytes, original_bytes) = (
        read_llm_bytes(&at_q8).unwrap(),
        std::fs::read(&gguf).unwrap(),
    );
    let (requantised, original) = (
        GgufFile::parse(&bytes, "q8_0").unwrap(),
        GgufFile::parse(&original_bytes, "gguf").unwrap(),
    );
    let embed = |g: &GgufFile| {
        g.raw("token_embd.weight")
            .map(|(i, r)| (i.ggml_type, r.to_vec()))
    };
    assert_eq!(embed(&requantised).unwrap(), embed(&original).unwrap());
    let q4 = read_llm_bytes(&PathBuf::from(format!("{}@q4_1", dir.display()))).unwrap();
    let q4 = GgufFile::parse(&q4, "q4_1").unwrap();
    let (a, b) = (
        q4.raw("blk.0.ffn_up.weight").unwrap(),
        original.raw("blk.0.ffn_up.weight").unwrap(),
    );
    assert_eq!(
        (a.0.ggml_type, b.0.ggml_type),
        (GgmlType::Q4_1, GgmlType::Q4_1)
    );
    let same =
        a.1.chunks(20)
            .zip(b.1.chunks(20))
            .filter(|(x, y)| x == y)
            .count();
    let blocks = b.1.len() / 20;
    assert!(
        same * 1000 >= blocks * 999,
        "{same} of {blocks} Q4_1 blocks re-encode identically"
    );
    let quantised = LlamaModel::load_gguf(&at_q8, Precision::Native).unwrap();
    let logits = last_logits(&quantised, &prompt);
    let (diff, at) = max_abs_diff(&logits, &theirs);
    let (best, chosen) = (theirs[argmax(&theirs)], theirs[argmax(&logits)]);
    eprintln!(
        "{}: max |Δ| = {diff:.3} at {at}; top-1 {chosen:.3} vs best {best:.3}",
        at_q8.display()
    );
    // Measured 0.78 and a near-tie (25.24 vs 25.33) swapped: Q8_0 weights with 8-bit activations may
    // reorder tokens within a quarter logit of the best, not more.
    assert!(diff < 1.5, "Q8_0 logits differ by {diff} at {at}");
    assert!(
        best - chosen < 0.25,
        "Q8_0 chose a token {} logits below the best",
        best - chosen
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Qwen2.5 (biases, half-split RoPE, untied head, a vocabulary padded past its tokens, merges as pairs) in
/// BF16, two blocks: the same two blocks re-encoded as BF16 in a GGUF give the same logits.
#[test]
fn qwen_folder_in_bf16_is_the_gguf_model() {
    let Some(gguf) = cached_model(QWEN) else {
        return;
    };
    let layers = 2;
    let dir = temp_dir("qwen");
    write_folder(&gguf, "qwen2.5", &dir, StoreAs::Bf16, Some(layers));
    let bytes = std::fs::read(&gguf).unwrap();
    let g = GgufFile::parse(&bytes, "gguf").unwrap();
    let mut builder = GgufBuilder::new();
    for (key, value) in &g.metadata {
        builder.meta(key, value.clone());
    }
    builder.meta("qwen2.block_count", GgufValue::U32(layers as u32));
    for info in g
        .tensors
        .iter()
        .filter(|t| layer_of(&t.name).is_none_or(|l| l < layers))
    {
        let values = g.tensor(&info.name).unwrap().data;
        let bf16 = tinyalign_weights::quantize::quantize(GgmlType::Bf16, &values).unwrap();
        builder
            .tensor(&info.name, &info.shape, GgmlType::Bf16, bf16)
            .unwrap();
    }
    let truncated = builder.into_bytes();
    let reference = LlamaModel::from_gguf(
        &GgufFile::parse(&truncated, "2 blocks").unwrap(),
        Precision::F32,
    )
    .unwrap();
    let hf = LlamaModel::load_gguf(&dir, Precision::F32).unwrap();
    assert_eq!(hf.config, reference.config);
    assert_eq!(hf.chat_template, reference.chat_template);
    assert_eq!(hf.tokenizer.eos_id, reference.tokenizer.eos_id);
    assert_tokenizer_matches(&hf, "llm/qwen_tokenizer_cases.json");
    let prompt = hf.tokenizer.encode(
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n",
        true,
    );
    let (diff, at) = max_abs_diff(
        &last_logits(&hf, &prompt),
        &last_logits(&reference, &prompt),
    );
    assert!(diff <= 1e-5, "folder vs GGUF: {diff} at {at}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A one-block Llama folder with seeded weights, written from scratch: what the bad-input cases edit.
fn tiny_folder(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    let (vocab, d, ff) = (32usize, 64usize, 64usize);
    let config = serde_json::json!({
        "model_type": "llama", "hidden_act": "silu", "vocab_size": vocab, "hidden_size": d,
        "intermediate_size": ff, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1, "max_position_embeddings": 64, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "tie_word_embeddings": true, "rope_scaling": null,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut tokenizer = json(&fixture("llm/hf/smollm2/tokenizer.skeleton.json"));
    tokenizer
        .as_object_mut()
        .unwrap()
        .remove("x-test-vocab-includes-added");
    let mut words: serde_json::Map<String, Value> = serde_json::Map::new();
    for (i, t) in ["a", "b", "ab", "Ġ", "Ġab"].into_iter().enumerate() {
        words.insert(t.into(), Value::from(17 + i));
    }
    tokenizer["model"]["vocab"] = words.into();
    tokenizer["model"]["merges"] = serde_json::json!(["a b", "Ġ ab"]);
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    let mut seed = 1u32;
    let mut tensor = |shape: Vec<usize>| {
        let n = shape.iter().product();
        let data = (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect();
        Tensor::new(shape, data)
    };
    let mut t = TensorMap::new("tiny");
    t.insert("model.embed_tokens.weight", tensor(vec![vocab, d]));
    t.insert("model.norm.weight", tensor(vec![d]));
    let l = "model.layers.0";
    t.insert(format!("{l}.input_layernorm.weight"), tensor(vec![d]));
    t.insert(
        format!("{l}.post_attention_layernorm.weight"),
        tensor(vec![d]),
    );
    t.insert(format!("{l}.self_attn.q_proj.weight"), tensor(vec![d, d]));
    t.insert(
        format!("{l}.self_attn.k_proj.weight"),
        tensor(vec![d / 2, d]),
    );
    t.insert(
        format!("{l}.self_attn.v_proj.weight"),
        tensor(vec![d / 2, d]),
    );
    t.insert(format!("{l}.self_attn.o_proj.weight"), tensor(vec![d, d]));
    t.insert(format!("{l}.mlp.gate_proj.weight"), tensor(vec![ff, d]));
    t.insert(format!("{l}.mlp.up_proj.weight"), tensor(vec![ff, d]));
    t.insert(format!("{l}.mlp.down_proj.weight"), tensor(vec![d, ff]));
    let st = write_safetensors(&t, StoreAs::F16, &[]).unwrap();
    std::fs::write(dir.join("model.safetensors"), st).unwrap();
    dir
}

fn load_error(path: &Path) -> String {
    LlamaModel::load_gguf(path, Precision::Native)
        .unwrap_err()
        .to_string()
}

#[test]
fn a_small_folder_loads_and_bad_folders_name_what_is_wrong() {
    let dir = tiny_folder("tiny");
    let model = LlamaModel::load_gguf(&dir, Precision::Native).unwrap();
    assert_eq!(model.tokenizer.encode("ab ab", false), [19, 21]);
    // F16 matrices stay F16; asked for, they become Q8_0.
    let bytes = read_llm_bytes(&dir).unwrap();
    let g = GgufFile::parse(&bytes, "f16").unwrap();
    assert_eq!(
        g.info("blk.0.ffn_up.weight").unwrap().ggml_type,
        GgmlType::F16
    );
    assert_eq!(
        g.info("blk.0.attn_norm.weight").unwrap().ggml_type,
        GgmlType::F32
    );
    let bytes = read_llm_bytes(&PathBuf::from(format!("{}@q8_0", dir.display()))).unwrap();
    let g = GgufFile::parse(&bytes, "q8_0").unwrap();
    assert_eq!(
        g.info("blk.0.ffn_up.weight").unwrap().ggml_type,
        GgmlType::Q8_0
    );
    // The same weights in two shards with an index, in another folder, load to the same bytes: the
    // identity a projector records depends on the contents only.
    let single = read_llm_bytes(&dir).unwrap();
    let all = tinyalign_weights::st::read_safetensors(
        &std::fs::read(dir.join("model.safetensors")).unwrap(),
        "single",
    )
    .unwrap();
    let mut index = serde_json::Map::new();
    let mut shards = [TensorMap::new("1"), TensorMap::new("2")];
    for (name, tensor) in all.iter() {
        let shard = usize::from(name.starts_with("model.layers."));
        let file = format!("model-0000{}-of-00002.safetensors", shard + 1);
        index.insert(name.clone(), file.into());
        shards[shard].insert(name.clone(), tensor.clone());
    }
    let sharded = temp_dir("tiny-sharded");
    for (i, shard) in shards.iter().enumerate() {
        let bytes = write_safetensors(shard, StoreAs::F16, &[]).unwrap();
        let file = sharded.join(format!("model-0000{}-of-00002.safetensors", i + 1));
        std::fs::write(file, bytes).unwrap();
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": index });
    std::fs::write(
        sharded.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(dir.join(file), sharded.join(file)).unwrap();
    }
    assert!(
        read_llm_bytes(&sharded).unwrap() == single,
        "sharded and single-file folders differ"
    );
    std::fs::remove_dir_all(&sharded).unwrap();

    let err = load_error(&PathBuf::from(format!("{}@q3_k", dir.display())));
    assert!(err.contains("q3_k") && err.contains("q8_0"), "{err}");

    let edit_config = |key: &str, value: Value| {
        let mut config = json(&dir.join("config.json"));
        let original = config[key].clone();
        config[key] = value;
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let err = load_error(&dir);
        config[key] = original;
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        err
    };
    let err = edit_config("model_type", "gemma2".into());
    assert!(
        err.contains("config.json") && err.contains("gemma2"),
        "{err}"
    );
    let err = edit_config("rope_scaling", serde_json::json!({"rope_type": "llama3"}));
    assert!(err.contains("rope_scaling"), "{err}");
    let err = edit_config("intermediate_size", 128.into());
    assert!(
        err.contains("model.safetensors") && err.contains("mlp.gate_proj"),
        "{err}"
    );
    let err = edit_config("num_hidden_layers", 2.into());
    assert!(
        err.contains("model.layers.1.input_layernorm.weight"),
        "{err}"
    );
    let err = edit_config("num_hidden_layers", 1_000_000_000_000u64.into());
    assert!(err.contains("num_hidden_layers"), "{err}");
    let err = edit_config("vocab_size", 8.into());
    assert!(
        err.contains("model.embed_tokens.weight") && err.contains("[8, 64]"),
        "{err}"
    );
    // An absurd vocabulary is refused by the table's shape before anything is allocated for it.
    let err = edit_config("vocab_size", 1_000_000_000_000u64.into());
    assert!(err.contains("model.embed_tokens.weight"), "{err}");
    let err = edit_config("num_attention_heads", 0.into());
    assert!(
        err.contains("config.json") && err.contains("heads"),
        "{err}"
    );
    let err = edit_config("num_key_value_heads", 3.into());
    assert!(err.contains("key/value heads"), "{err}");

    std::fs::rename(dir.join("tokenizer.json"), dir.join("moved.json")).unwrap();
    assert!(load_error(&dir).contains("tokenizer.json"));
    std::fs::rename(dir.join("moved.json"), dir.join("tokenizer.json")).unwrap();
    std::fs::write(dir.join("model.safetensors"), b"not safetensors").unwrap();
    assert!(load_error(&dir).contains("model.safetensors"));
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    assert!(load_error(&dir).contains("model.safetensors.index.json"));
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        r#"{"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
    assert!(load_error(&dir).contains("model-00002-of-00002.safetensors"));
    std::fs::remove_dir_all(&dir).unwrap();
}
