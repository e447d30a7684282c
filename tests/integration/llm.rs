//! SmolLM2-135M-Instruct (GGUF, Q4_1) against references made by `tests/fixtures/llm/make_llm_fixtures.py`:
//! Hugging Face `tokenizers` ids and a float64 numpy forward pass in the Hugging Face weight layout.

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::Value;
use tinyalign_llm::{
    Activations, ChatMessage, GenerateOptions, KvCache, LlamaGraph, LlamaModel, LlmError,
    Precision, StopReason, Tokenizer,
};
use tinyalign_weights::gguf::GgufFile;

use crate::common::{cached_model, fixture, ids, last_logits, load_npy, max_abs_diff};

const GGUF: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The quantised model, loaded once for the tests that only read it.
fn native_model() -> Option<&'static LlamaModel> {
    static MODEL: OnceLock<LlamaModel> = OnceLock::new();
    let path = cached_model(GGUF)?;
    Some(
        MODEL
            .get_or_init(|| LlamaModel::load_gguf(&path, Precision::Native).expect("load SmolLM2")),
    )
}

fn chat_fixture() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("llm/chat_prompt.json")).unwrap())
        .unwrap()
}

#[test]
fn tokenizer_matches_hugging_face_tokenizers() {
    let Some(model) = native_model() else { return };
    let cases: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("llm/tokenizer_cases.json")).unwrap(),
    )
    .unwrap();
    for case in cases.as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["ids"]);
        assert_eq!(model.tokenizer.encode(text, true), want, "ids of {text:?}");
        let t = &model.tokenizer;
        let kept: String = text
            .chars()
            .filter(|c| c.to_string().bytes().all(|b| t.byte_has_token(b)))
            .collect();
        assert_eq!(t.decode(&want, false), kept, "decode of {text:?}");
    }
}

#[test]
fn special_tokens_are_text_unless_asked_for() {
    let Some(model) = native_model() else { return };
    let t = &model.tokenizer;
    assert_eq!(t.encode("<|im_end|>", true), [2]);
    let literal = t.encode("<|im_end|>", false);
    assert!(literal.len() > 1 && !literal.contains(&2), "{literal:?}");
    assert_eq!(t.decode(&literal, false), "<|im_end|>");
    assert_eq!(
        t.decode(&[1, 2], true),
        "",
        "skip_special drops control tokens"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Byte-level BPE is lossless: any UTF-8 text (combining marks, emoji, digits, the control characters
    /// the vocabulary has) decodes back.
    #[test]
    fn any_text_round_trips(text in "\\PC{0,40}|[\\x00-\\x7f]{0,40}|\\p{M}{0,8}|[0-9 ]{0,20}") {
        let Some(model) = native_model() else { return Ok(()) };
        let t = &model.tokenizer;
        prop_assume!(text.bytes().all(|b| t.byte_has_token(b)));
        let encoded = t.encode(&text, false);
        prop_assert_eq!(t.decode(&encoded, false), text.clone());
        prop_assert!(encoded.iter().all(|&id| (id as usize) < t.vocab_size()));
    }
}

/// The f32 path sees exactly the reference's weights: logits agree to float32 rounding of a 30-layer pass.
#[test]
fn f32_logits_match_numpy_reference() {
    let Some(path) = cached_model(GGUF) else {
        return;
    };
    let model = LlamaModel::load_gguf(&path, Precision::F32).unwrap();
    let fixture_json = chat_fixture();
    let prompt = ids(&fixture_json["prompt_ids"]);
    let prompt_text = fixture_json["prompt"].as_str().unwrap();
    assert_eq!(model.tokenizer.encode(prompt_text, true), prompt);
    let mut cache = KvCache::new(&model.config, prompt.len());
    let embeds = model.embed_tokens(&prompt).unwrap();
    let all = model
        .forward_embeds(&embeds, prompt.len(), &mut cache, true)
        .unwrap();
    let vocab = model.config.vocab_size;
    let reference = load_npy("llm/chat_prompt.last_logits.npy");
    let (diff, at) = max_abs_diff(&all[(prompt.len() - 1) * vocab..], &reference.data);
    eprintln!("f32 last-position logits: max |Δ| = {diff:.2e} at token {at}");
    assert!(diff < 2e-3, "f32 logits differ by {diff} at token {at}");
    let argmax: Vec<u32> = all
        .chunks_exact(vocab)
        .map(|row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0 as u32
        })
        .collect();
    assert_eq!(
        argmax,
        ids(&fixture_json["argmax_per_position"]),
        "argmax at every position"
    );

    // Greedy generation with the KV cache equals the reference's full recomputation at every step.
    let options = GenerateOptions {
        max_tokens: 12,
        ..Default::default()
    };
    let generation = model.chat(
        &[ChatMessage::new("user", "What is the capital of France?")],
        &options,
        |_| true,
    );
    assert_eq!(generation.unwrap().tokens, ids(&fixture_json["greedy_ids"]));
}

/// Quantised weights with f32 activations: the Q4_1/Q8_0 kernels on the real model, as exact as the f32 path.
#[test]
fn quantised_weights_with_exact_activations_match_numpy_reference() {
    let Some(path) = cached_model(GGUF) else {
        return;
    };
    let mut model = LlamaModel::load_gguf(&path, Precision::Native).unwrap();
    model.set_activations(Activations::F32);
    let logits = last_logits(&model, &ids(&chat_fixture()["prompt_ids"]));
    let (diff, at) = max_abs_diff(&logits, &load_npy("llm/chat_prompt.last_logits.npy").data);
    eprintln!("quantised weights, f32 activations: max |Δ| = {diff:.2e} at token {at}");
    assert!(diff < 2e-3, "logits differ by {diff} at token {at}");
}

/// The default rounds activations to 8 bits per block inside every product (llama.cpp's trade-off); the
/// kernels' own error bound is property-tested in tinyalign-quant. Here: how far the whole model moves, as a
/// distribution (a shift common to all logits changes nothing), and the answer must not change.
#[test]
fn eight_bit_activations_keep_the_distribution_close() {
    let Some(model) = native_model() else { return };
    assert_eq!(model.activations(), Activations::Q8);
    let logits = last_logits(model, &ids(&chat_fixture()["prompt_ids"]));
    let reference = load_npy("llm/chat_prompt.last_logits.npy").data;
    let log_softmax = |l: &[f32]| {
        let max = l.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let log_total = l
            .iter()
            .map(|&v| (f64::from(v) - max).exp())
            .sum::<f64>()
            .ln()
            + max;
        l.iter()
            .map(|&v| f64::from(v) - log_total)
            .collect::<Vec<f64>>()
    };
    let (ours, theirs) = (log_softmax(&logits), log_softmax(&reference));
    let kl: f64 = theirs
        .iter()
        .zip(&ours)
        .map(|(t, o)| t.exp() * (t - o))
        .sum();
    let likely_diff = theirs
        .iter()
        .zip(&ours)
        .filter(|(t, _)| **t > -5.0)
        .fold(0.0f64, |m, (t, o)| m.max((t - o).abs()));
    eprintln!(
        "8-bit activations vs reference: KL {kl:.4} nats, max |Δ log p| over tokens with p > e^-5: {likely_diff:.3}"
    );
    assert!(kl < 0.15, "KL divergence {kl}");
    assert!(
        likely_diff < 1.0,
        "log-probability of a likely token moved by {likely_diff}"
    );
    let top = |l: &[f32]| {
        l.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0
    };
    assert_eq!(top(&logits), top(&reference));
}

#[test]
fn greedy_answer_names_paris() {
    let Some(model) = native_model() else { return };
    let mut streamed = String::new();
    let generation = model
        .chat(
            &[ChatMessage::new("user", "What is the capital of France?")],
            &GenerateOptions {
                max_tokens: 32,
                ..Default::default()
            },
            |piece| {
                streamed.push_str(piece);
                true
            },
        )
        .unwrap();
    assert_eq!(generation.text, "The capital of France is Paris.");
    assert_eq!(streamed, generation.text);
    assert_eq!(generation.stop_reason, StopReason::StopToken);
}

#[test]
fn embeddings_equal_the_table_rows_and_bad_shapes_are_errors() {
    let Some(model) = native_model() else { return };
    let d = model.config.hidden_size;
    let pair = model.embed_tokens(&[5, 7]).unwrap();
    assert_eq!(pair.len(), 2 * d);
    assert_eq!(&pair[d..], &model.embed_tokens(&[7]).unwrap()[..]);
    assert!(matches!(
        model.embed_tokens(&[49_152]),
        Err(LlmError::Shape(_))
    ));
    let mut cache = KvCache::new(&model.config, 4);
    assert!(matches!(
        model.forward_embeds(&[0.0; 10], 1, &mut cache, false),
        Err(LlmError::Shape(_))
    ));
    let five = vec![0.0; 5 * d];
    assert!(matches!(
        model.forward_embeds(&five, 5, &mut cache, false),
        Err(LlmError::ContextFull {
            needed: 5,
            context: 4
        })
    ));
    assert!(cache.is_empty(), "a refused call leaves the cache alone");
}

#[test]
fn generation_stops_at_the_token_budget_and_on_cancel() {
    let Some(model) = native_model() else { return };
    let question = [ChatMessage::new(
        "user",
        "Count from one to fifty in words.",
    )];
    let generation = model
        .chat(
            &question,
            &GenerateOptions {
                max_tokens: 5,
                ..Default::default()
            },
            |_| true,
        )
        .unwrap();
    assert_eq!(
        (generation.tokens.len(), generation.stop_reason),
        (5, StopReason::MaxTokens)
    );
    let mut pieces = 0;
    let cancelled = model
        .chat(&question, &GenerateOptions::default(), |_| {
            pieces += 1;
            pieces < 3
        })
        .unwrap();
    assert_eq!(cancelled.stop_reason, StopReason::Cancelled);
    assert_eq!(cancelled.tokens.len(), 3);
}

/// A minimal GGUF v3 file with string metadata and no tensors.
fn gguf_with_metadata(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.extend((pairs.len() as u64).to_le_bytes());
    for (key, value) in pairs {
        out.extend((key.len() as u64).to_le_bytes());
        out.extend(key.as_bytes());
        out.extend(8u32.to_le_bytes());
        out.extend((value.len() as u64).to_le_bytes());
        out.extend(value.as_bytes());
    }
    out
}

#[test]
fn other_architectures_and_tokenizers_are_refused_by_name() {
    let bytes = gguf_with_metadata(&[
        ("general.architecture", "gemma3"),
        ("tokenizer.ggml.model", "llama"),
    ]);
    let file = GgufFile::parse(&bytes, "gemma.gguf").unwrap();
    let err = LlamaModel::from_gguf(&file, Precision::Native)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gemma3") && err.contains("gemma.gguf"),
        "{err}"
    );
    let err = Tokenizer::from_gguf(&file).unwrap_err().to_string();
    assert!(err.contains("`llama`"), "{err}");
}

/// The real file with one tensor's type changed to Q5_K, which has no kernel here.
#[test]
fn unsupported_quantisation_is_refused_by_name() {
    let Some(path) = cached_model(GGUF) else {
        return;
    };
    let mut bytes = std::fs::read(&path).unwrap();
    let name = b"blk.0.attn_q.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    // Tensor info after the name: n_dims u32, n_dims × u64 dims, type u32.
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let type_at = at + 4 + 8 * n_dims;
    bytes[type_at..type_at + 4].copy_from_slice(&13u32.to_le_bytes());
    let err = match GgufFile::parse(&bytes, "patched.gguf") {
        Err(e) => e.to_string(),
        Ok(file) => LlamaModel::from_gguf(&file, Precision::Native)
            .unwrap_err()
            .to_string(),
    };
    assert!(
        err.contains("Q5_K") || err.contains("patched.gguf"),
        "{err}"
    );
    assert!(err.contains("Q5_K"), "the refusal names the type: {err}");
}

/// The differentiable graph (dfdx, f32 weights): same logits as the reference, and gradients for the input
/// embeddings that agree with central differences of its own forward pass.
#[test]
fn differentiable_graph_matches_reference_and_finite_differences() {
    let Some(model) = native_model() else { return };
    let path = cached_model(GGUF).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = GgufFile::parse(&bytes, "SmolLM2").unwrap();
    let graph = LlamaGraph::from_gguf(&file, tinyalign_nn::cpu()).unwrap();
    let dev = graph.device().clone();
    let (d, vocab) = (graph.config.hidden_size, graph.config.vocab_size);

    let prompt = ids(&chat_fixture()["prompt_ids"]);
    let embeds =
        tinyalign_nn::from_vec2(&dev, model.embed_tokens(&prompt).unwrap(), prompt.len(), d);
    let logits = tinyalign_nn::to_vec2(&graph.forward(embeds));
    let reference = load_npy("llm/chat_prompt.last_logits.npy").data;
    let (diff, at) = max_abs_diff(&logits[(prompt.len() - 1) * vocab..], &reference);
    eprintln!("dfdx graph last-position logits: max |Δ| = {diff:.2e} at token {at}");
    assert!(diff < 2e-3, "graph logits differ by {diff} at token {at}");

    // d logit["The"] at the last position / d input embeddings, on a short prompt.
    let short = model
        .tokenizer
        .encode("What is the capital of France?", false);
    let n = short.len();
    let x0 = model.embed_tokens(&short).unwrap();
    let mut pick = vec![0.0; n * vocab];
    let target = model.tokenizer.encode("The", false)[0] as usize;
    pick[(n - 1) * vocab + target] = 1.0;
    let pick = tinyalign_nn::from_vec2(&dev, pick, n, vocab);
    let x = tinyalign_nn::from_vec2(&dev, x0.clone(), n, d);
    let analytic = tinyalign_nn::gradient(
        tinyalign_nn::weighted_sum(graph.forward(tinyalign_nn::traced(&x)), &pick),
        &x,
    );
    assert!(analytic.iter().all(|g| g.is_finite()));
    let value = |xs: Vec<f32>| {
        tinyalign_nn::scalar_value(&tinyalign_nn::weighted_sum(
            graph.forward(tinyalign_nn::from_vec2(&dev, xs, n, d)),
            &pick,
        ))
    };
    // The largest gradient entries at the first and last positions: the causal path and the direct one.
    for position in [0, n - 1] {
        let row = &analytic[position * d..(position + 1) * d];
        let channel = (0..d)
            .max_by(|&a, &b| row[a].abs().total_cmp(&row[b].abs()))
            .unwrap();
        let idx = position * d + channel;
        let eps = 2e-3;
        let (mut plus, mut minus) = (x0.clone(), x0.clone());
        plus[idx] += eps;
        minus[idx] -= eps;
        let numeric = (value(plus) - value(minus)) / (2.0 * eps);
        eprintln!(
            "d logit / d x[{position}, {channel}]: analytic {:.4}, numeric {numeric:.4}",
            analytic[idx]
        );
        assert!(
            (numeric - analytic[idx]).abs() < 0.05 * analytic[idx].abs() + 0.05,
            "position {position}: numeric {numeric} vs analytic {}",
            analytic[idx]
        );
    }
}

/// A stop text ends the answer where it first appears, cut before it, and only what precedes it streams.
#[test]
fn stop_strings_cut_the_answer() {
    let Some(model) = native_model() else { return };
    let mut streamed = String::new();
    let generation = model
        .chat(
            &[ChatMessage::new("user", "What is the capital of France?")],
            &GenerateOptions {
                max_tokens: 32,
                stop_strings: vec!["Paris".into()],
                ..Default::default()
            },
            |piece| {
                streamed.push_str(piece);
                true
            },
        )
        .unwrap();
    assert_eq!(generation.text, "The capital of France is ");
    assert_eq!(streamed, generation.text);
    assert_eq!(generation.stop_reason, StopReason::StopText);
}

/// The token readout of a token's own embedding is that token, whatever the vector's scale (cosine).
#[test]
fn token_readout_finds_each_rows_own_token() {
    let Some(model) = native_model() else { return };
    let ids = model
        .tokenizer
        .encode("Set a timer for ten minutes, please.", false);
    let embeds = model.embed_tokens(&ids).unwrap();
    assert_eq!(model.nearest_tokens(&embeds, ids.len()).unwrap(), ids);
    let scaled: Vec<f32> = embeds.iter().map(|v| v * 3.5).collect();
    assert_eq!(model.nearest_tokens(&scaled, ids.len()).unwrap(), ids);
    assert!(matches!(
        model.nearest_tokens(&embeds[1..], ids.len()),
        Err(LlmError::Shape(_))
    ));
}

/// The transcribe prompt's worked examples are whole ChatML exchanges: the ids around the slot, with the
/// slot filled by a sentence's own tokens, are the tokens of the conversation `chatml_prompt` writes (an
/// independent rendering of the template) followed by the answer's opening quotation.
#[test]
fn few_shot_transcribe_prompt_is_the_chatml_conversation() {
    let Some(model) = native_model() else { return };
    let prompt = tinyalign_llm::SlotPrompt::transcribe();
    assert_eq!(prompt.examples.len(), 2);
    let (before, after) = model.slot_prompt_ids(&prompt);
    let said = "Will it snow in Oslo tomorrow?";
    let mut ids = before;
    ids.extend(model.tokenizer.encode(said, false));
    ids.extend(after);
    let instruction = prompt.instruction.as_deref().unwrap();
    let mut messages = Vec::new();
    for (example, answer) in &prompt.examples {
        messages.push(ChatMessage::new(
            "user",
            &format!("{instruction}\n{example}"),
        ));
        messages.push(ChatMessage::new("assistant", answer));
    }
    messages.push(ChatMessage::new("user", &format!("{instruction}\n{said}")));
    let text = tinyalign_llm::chatml_prompt(&messages, model.system_prompt.as_deref())
        + prompt.answer_prefix.as_deref().unwrap();
    assert_eq!(model.tokenizer.decode(&ids, false), text);
    assert!(
        prompt.examples[0]
            .1
            .starts_with(tinyalign_llm::TRANSCRIBE_ANSWER_PREFIX)
            && prompt.examples[0].1.ends_with('"')
    );
}
