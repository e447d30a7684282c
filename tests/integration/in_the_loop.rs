//! The LLM-in-the-loop objective on the real SmolLM2: its loss equals a cross-entropy computed independently
//! from the inference model's logits (Q4_1 weights, f32 activations) over the same prompt, and its gradient
//! for the projector outputs agrees with central differences.

use tinyalign_llm::{Activations, LlamaModel, Precision};
use tinyalign_projector::BatchLayout;
use tinyalign_train::LoopContext;

use crate::common::cached_model;

const GGUF: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Mean cross-entropy of `answer` after `prompt` embeddings, from the inference model's logits.
fn reference_loss(llm: &LlamaModel, prompt: &[f32], answer: &[u32]) -> f64 {
    let d = llm.config.hidden_size;
    let mut embeds = prompt.to_vec();
    embeds.extend(llm.embed_tokens(&answer[..answer.len() - 1]).unwrap());
    let n = embeds.len() / d;
    let mut cache = tinyalign_llm::KvCache::new(&llm.config, n);
    let logits = llm.forward_embeds(&embeds, n, &mut cache, true).unwrap();
    let vocab = llm.config.vocab_size;
    let first = prompt.len() / d - 1;
    let mut total = 0.0f64;
    for (j, &token) in answer.iter().enumerate() {
        let row = &logits[(first + j) * vocab..(first + j + 1) * vocab];
        let max = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let lse = max
            + row
                .iter()
                .map(|&v| (v as f64 - max).exp())
                .sum::<f64>()
                .ln();
        total += lse - row[token as usize] as f64;
    }
    total / answer.len() as f64
}

#[test]
fn llm_in_the_loop_loss_matches_the_inference_model_and_its_gradient() {
    let Some(path) = cached_model(GGUF) else {
        return;
    };
    let bytes = std::fs::read(&path).unwrap();
    let file = tinyalign_weights::gguf::GgufFile::parse(&bytes, "SmolLM2").unwrap();
    let mut llm = LlamaModel::from_gguf(&file, Precision::Native).unwrap();
    llm.set_activations(Activations::F32);
    let context = LoopContext::new(&llm, &file).unwrap();
    let d = llm.config.hidden_size;

    // Two utterances of 3 and 2 audio tokens (a batch padded to 3), at the embedding table's scale.
    let layout = BatchLayout {
        lengths: vec![12, 8],
        frames: 12,
        tokens: vec![3, 2],
        max_tokens: 3,
    };
    let out: Vec<f32> = (0..2 * 3 * d)
        .map(|i| 0.14 * ((i as f32 * 0.618).fract() * 2.0 - 1.0) * 1.7)
        .collect();
    let answers: Vec<Vec<u32>> = ["Hello there.", "Go forward ten meters"]
        .iter()
        .map(|t| context.answer_ids(&llm, t))
        .collect();
    let embeds: Vec<Vec<f32>> = answers
        .iter()
        .map(|a| llm.embed_tokens(a).unwrap())
        .collect();
    let answer_refs: Vec<&[u32]> = answers.iter().map(Vec::as_slice).collect();
    let embed_refs: Vec<&[f32]> = embeds.iter().map(Vec::as_slice).collect();
    let dev = tinyalign_nn::cpu();
    let out_tensor = tinyalign_nn::from_vec2(&dev, out.clone(), 6, d);
    let loss_of = |values: Vec<f32>| -> f64 {
        let x = tinyalign_nn::from_vec2(&dev, values, 6, d);
        f64::from(tinyalign_nn::scalar_value(&context.loss(
            x,
            &layout,
            &answer_refs,
            &embed_refs,
        )))
    };
    let ours = loss_of(out.clone());

    let (before, after) = llm.slot_prompt_ids(&tinyalign_llm::SlotPrompt::transcribe());
    let mut expected = 0.0;
    for (i, &t) in layout.tokens.iter().enumerate() {
        let mut prompt = llm.embed_tokens(&before).unwrap();
        prompt.extend_from_slice(&out[i * 3 * d..(i * 3 + t) * d]);
        prompt.extend(llm.embed_tokens(&after).unwrap());
        expected += reference_loss(&llm, &prompt, &answers[i]) / 2.0;
    }
    eprintln!("LLM-in-the-loop loss {ours:.5}, reference {expected:.5}");
    assert!((ours - expected).abs() < 2e-3, "{ours} vs {expected}");
    assert!(ours > 0.5 && ours < 20.0);

    // Gradient: central differences on entries of an audio row used by each utterance, and none for the
    // padding row of the second (row 5 = utterance 1, token 2 ≥ its 2 tokens).
    let grad = tinyalign_nn::gradient(
        context.loss(
            tinyalign_nn::traced(&out_tensor),
            &layout,
            &answer_refs,
            &embed_refs,
        ),
        &out_tensor,
    );
    for index in [7, 2 * d + 100, 4 * d + 3] {
        let eps = 3e-3;
        let mut plus = out.clone();
        plus[index] += eps;
        let mut minus = out.clone();
        minus[index] -= eps;
        let numeric = (loss_of(plus) - loss_of(minus)) / (2.0 * f64::from(eps));
        let analytic = f64::from(grad[index]);
        assert!(
            (numeric - analytic).abs() < 0.05 * analytic.abs().max(0.02),
            "entry {index}: analytic {analytic}, numeric {numeric}"
        );
    }
    assert!(grad[5 * d..6 * d].iter().all(|&g| g == 0.0));
}
