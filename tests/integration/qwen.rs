//! Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M: Q5_0, Q4_K, Q6_K and Q8_0 blocks) against references made by
//! `tests/fixtures/llm/make_qwen_fixtures.py`: Hugging Face `tokenizers` ids with Qwen2's pre-tokenizer,
//! gguf-py's dequantisation of real blocks, and a float64 numpy forward in the Hugging Face Qwen2 layout.

use std::sync::OnceLock;

use serde_json::Value;
use tinyalign_llm::{
    Activations, Architecture, ChatMessage, GenerateOptions, LlamaModel, Precision,
    QWEN_SYSTEM_PROMPT, StopReason,
};
use tinyalign_quant::{Format, QMatrix};
use tinyalign_weights::gguf::GgmlType;

use crate::common::{cached_model, fixture, ids, last_logits, load_npy, max_abs_diff};

const GGUF: &str = "qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";

fn native_model() -> Option<&'static LlamaModel> {
    static MODEL: OnceLock<LlamaModel> = OnceLock::new();
    let path = cached_model(GGUF)?;
    Some(MODEL.get_or_init(|| LlamaModel::load_gguf(&path, Precision::Native).expect("load Qwen")))
}

fn json(rel: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(rel)).unwrap()).unwrap()
}

/// Real Q5_0 / Q4_K / Q6_K blocks: our dequantiser and the kernels' repacked storage both give gguf-py's
/// values exactly (the same f32 operations in the same order), and an f32 product over them matches an
/// f64 one.
#[test]
fn new_block_formats_match_gguf_py() {
    for case in json("weights/gguf_blocks.json").as_array().unwrap() {
        let kind = case["type"].as_str().unwrap();
        let hex = case["raw_hex"].as_str().unwrap();
        let raw: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let want: Vec<f32> = case["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let (ggml, format) = match kind {
            "Q5_0" => (GgmlType::Q5_0, Format::Q5_0),
            "Q4_K" => (GgmlType::Q4K, Format::Q4K),
            "Q6_K" => (GgmlType::Q6K, Format::Q6K),
            other => panic!("unexpected block type {other}"),
        };
        let ours = tinyalign_weights::gguf::dequantize(ggml, &raw).unwrap();
        assert_eq!(ours, want, "{kind}: dequantised values");
        let m = QMatrix::from_gguf_bytes(format, 1, want.len(), &raw).unwrap();
        assert_eq!(m.row_f32(0), want, "{kind}: repacked storage");
        let x: Vec<f32> = (0..want.len())
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let exact: f64 = want
            .iter()
            .zip(&x)
            .map(|(&w, &v)| f64::from(w) * f64::from(v))
            .sum();
        let magnitude: f64 = want
            .iter()
            .zip(&x)
            .map(|(&w, &v)| f64::from((w * v).abs()))
            .sum();
        let mut y = [0.0f32];
        m.matmul_with(
            tinyalign_quant::Product {
                activations: Activations::F32,
                ..Default::default()
            },
            &x,
            1,
            &mut y,
        )
        .unwrap();
        assert!(
            (f64::from(y[0]) - exact).abs() <= 1e-5 * magnitude,
            "{kind}: product {} vs {exact}",
            y[0]
        );
    }
}

#[test]
fn reads_the_qwen2_architecture_from_metadata() {
    let Some(model) = native_model() else { return };
    let c = &model.config;
    assert_eq!(c.architecture, Architecture::Qwen2);
    assert_eq!(
        (
            c.hidden_size,
            c.num_hidden_layers,
            c.num_attention_heads,
            c.num_key_value_heads
        ),
        (896, 24, 14, 2)
    );
    assert_eq!(
        (c.head_dim, c.vocab_size, c.intermediate_size),
        (64, 151_936, 4864)
    );
    assert_eq!(c.rope_theta, 1e6);
    assert!((c.rms_norm_eps - 1e-6).abs() < 1e-9);
    assert!(!c.tie_word_embeddings);
    assert_eq!(model.system_prompt.as_deref(), Some(QWEN_SYSTEM_PROMPT));
}

#[test]
fn tokenizer_matches_hugging_face_tokenizers() {
    let Some(model) = native_model() else { return };
    let t = &model.tokenizer;
    for case in json("llm/qwen_tokenizer_cases.json").as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(t.encode(text, true), ids(&case["ids"]), "ids of {text:?}");
    }
    assert_eq!(
        t.encode("<|im_start|><|im_end|><|endoftext|>", true),
        [151_644, 151_645, 151_643]
    );
    assert_eq!(t.eos_id, Some(151_645));
}

/// Quantised weights held exactly (the repacking changes no value) with f32 activations: the whole
/// 24-layer pass agrees with numpy's float64 one on the chat prompt's last logits.
#[test]
fn logits_match_numpy_reference() {
    let Some(path) = cached_model(GGUF) else {
        return;
    };
    let mut model = LlamaModel::load_gguf(&path, Precision::Native).unwrap();
    model.set_activations(Activations::F32);
    let fixture_json = json("llm/qwen_chat_prompt.json");
    let prompt = ids(&fixture_json["prompt_ids"]);
    assert_eq!(
        model
            .tokenizer
            .encode(fixture_json["prompt"].as_str().unwrap(), true),
        prompt
    );
    let logits = last_logits(&model, &prompt);
    let (diff, at) = max_abs_diff(
        &logits,
        &load_npy("llm/qwen_chat_prompt.last_logits.npy").data,
    );
    eprintln!("Qwen last-position logits, f32 activations: max |Δ| = {diff:.2e} at token {at}");
    assert!(diff < 1e-3, "logits differ by {diff} at token {at}");
}

/// With the default 8-bit activations, the Paris prompt gets the reference's greedy answer (llama.cpp
/// answers the same).
#[test]
fn greedy_answer_names_paris() {
    let Some(model) = native_model() else { return };
    let fixture_json = json("llm/qwen_chat_prompt.json");
    let generation = model
        .chat(
            &[ChatMessage::new("user", "What is the capital of France?")],
            &GenerateOptions {
                max_tokens: 16,
                ..Default::default()
            },
            |_| true,
        )
        .unwrap();
    assert_eq!(generation.text, "The capital of France is Paris.");
    assert_eq!(generation.tokens, ids(&fixture_json["greedy_ids"]));
    assert_eq!(generation.stop_reason, StopReason::StopToken);
}

/// The differentiable graph (LLM-in-the-loop training) over Qwen2's biases and half-split RoPE (its Q/K
/// rows interleaved at load so the graph's adjacent-pair rotation computes it): last-position logits
/// against the float64 numpy forward, and the gradient to the input embeddings finite.
#[test]
fn differentiable_graph_matches_numpy_reference() {
    let Some(model) = native_model() else {
        return;
    };
    let path = cached_model(GGUF).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = tinyalign_weights::gguf::GgufFile::parse(&bytes, "qwen.gguf").unwrap();
    let graph = tinyalign_llm::LlamaGraph::from_gguf(&file, tinyalign_nn::cpu()).unwrap();
    let dev = graph.device().clone();
    let (d, vocab) = (graph.config.hidden_size, graph.config.vocab_size);
    let prompt = ids(&json("llm/qwen_chat_prompt.json")["prompt_ids"]);
    let n = prompt.len();
    let x = tinyalign_nn::from_vec2(&dev, model.embed_tokens(&prompt).unwrap(), n, d);
    let logits = tinyalign_nn::to_vec2(&graph.forward(x.clone()));
    let (diff, at) = max_abs_diff(
        &logits[(n - 1) * vocab..],
        &load_npy("llm/qwen_chat_prompt.last_logits.npy").data,
    );
    eprintln!("Qwen dfdx graph last-position logits: max |Δ| = {diff:.2e} at token {at}");
    assert!(diff < 1e-3, "graph logits differ by {diff} at token {at}");
    let mut pick = vec![0.0; n * vocab];
    pick[(n - 1) * vocab + at] = 1.0;
    let pick = tinyalign_nn::from_vec2(&dev, pick, n, vocab);
    let gradient = tinyalign_nn::gradient(
        tinyalign_nn::weighted_sum(graph.forward(tinyalign_nn::traced(&x)), &pick),
        &x,
    );
    assert!(gradient.iter().all(|g| g.is_finite()) && gradient.iter().any(|g| *g != 0.0));
}
