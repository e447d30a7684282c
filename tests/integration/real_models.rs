//! The weight readers on the real packaged models (from the cache `cargo xtask fetch` fills).

use tinyalign_weights::ct2::{Ct2Model, whisper_to_hf};
use tinyalign_weights::gguf::{GgmlType, GgufFile, GgufValue};
use tinyalign_weights::read_file;
use tinyalign_weights::st::read_safetensors;

use crate::common::cached_model;

#[test]
fn whisper_tiny_en_converts_to_hugging_face_layout() {
    let Some(path) = cached_model("whisper-tiny.en/model.bin") else {
        return;
    };
    let bytes = read_file(&path).expect("readable");
    let model = Ct2Model::parse(&bytes, "model.bin").expect("parses");
    assert_eq!((model.version, model.spec.as_str()), (6, "WhisperSpec"));
    assert_eq!(model.scalar_i64("encoder/num_heads").expect("scalar"), 6);
    let hf = whisper_to_hf(&model).expect("maps");
    let (d, vocab) = (384, 51_864);
    for (name, shape) in [
        ("model.encoder.conv1.weight", vec![d, 80, 3]),
        ("model.encoder.conv2.weight", vec![d, d, 3]),
        ("model.encoder.embed_positions.weight", vec![1500, d]),
        ("model.encoder.layers.3.self_attn.k_proj.weight", vec![d, d]),
        ("model.encoder.layers.3.fc1.weight", vec![4 * d, d]),
        ("model.decoder.embed_tokens.weight", vec![vocab, d]),
        ("model.decoder.embed_positions.weight", vec![448, d]),
        ("model.decoder.layers.3.encoder_attn.v_proj.bias", vec![d]),
    ] {
        hf.get_shaped(name, &shape)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(!hf.contains("model.encoder.layers.0.self_attn.k_proj.bias"));
    assert!(
        !hf.contains("model.encoder.layers.4.fc1.weight"),
        "tiny.en has 4 encoder layers"
    );
    // Every stored float goes somewhere, except the 4 + 8 zero k-bias slices of the fused projections.
    let stored: usize = model
        .variables
        .values()
        .filter(|v| !v.shape.is_empty())
        .map(|v| v.shape.iter().product::<usize>())
        .sum();
    assert_eq!(hf.numel(), stored - 12 * d);
    assert_eq!(
        (hf.numel() as f64 / 1e5).round() / 10.0,
        37.8,
        "MODELS.md: ~37.8 M parameters"
    );
    // The fused bias CTranslate2 stores for k really is zero, so dropping it loses nothing.
    let qkv_bias = model
        .tensor("encoder/layer_0/self_attention/linear_0/bias")
        .expect("bias");
    assert!(qkv_bias.data[d..2 * d].iter().all(|&b| b == 0.0));

    // `cargo xtask fetch` also wrote the canonical file: it must hold exactly these values.
    if let Some(st_path) = cached_model("whisper-tiny.en/hf/model.safetensors") {
        let st = read_safetensors(&read_file(&st_path).expect("readable"), "model.safetensors")
            .expect("parses");
        assert_eq!(st.len(), hf.len());
        for (name, t) in hf.iter() {
            assert_eq!(st.get(name).expect("same keys"), t, "{name}");
        }
    }
}

#[test]
fn smollm2_gguf_metadata_and_tensors() {
    let Some(path) = cached_model("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let bytes = read_file(&path).expect("readable");
    assert_eq!(bytes.len(), 98_362_432);
    let g = GgufFile::parse(&bytes, "SmolLM2-135M-Instruct.Q4_1.gguf").expect("parses");
    assert_eq!(g.meta_str("general.architecture"), Some("llama"));
    for (key, value) in [
        ("llama.block_count", 30),
        ("llama.embedding_length", 576),
        ("llama.attention.head_count", 9),
        ("llama.attention.head_count_kv", 3),
        ("llama.feed_forward_length", 1536),
        ("tokenizer.ggml.bos_token_id", 1),
        ("tokenizer.ggml.eos_token_id", 2),
    ] {
        assert_eq!(g.meta_u64(key), Some(value), "{key}");
    }
    assert_eq!(g.meta_f64("llama.rope.freq_base"), Some(100_000.0));
    assert_eq!(g.meta_str("tokenizer.ggml.model"), Some("gpt2"));
    assert_eq!(g.meta_str("tokenizer.ggml.pre"), Some("smollm"));
    let len = |key: &str| {
        g.metadata
            .get(key)
            .and_then(GgufValue::as_array)
            .map(<[GgufValue]>::len)
    };
    assert_eq!(len("tokenizer.ggml.tokens"), Some(49_152));
    assert_eq!(len("tokenizer.ggml.merges"), Some(48_900));
    assert!(
        g.info("output.weight").is_err(),
        "tied embeddings: no output.weight"
    );

    let embed = g.tensor("token_embd.weight").expect("Q8_0 dequantises");
    assert_eq!(
        g.info("token_embd.weight").expect("present").ggml_type,
        GgmlType::Q8_0
    );
    assert_eq!(embed.shape, vec![49_152, 576]);
    assert!(embed.data.iter().all(|v| v.is_finite()));
    let q = g.tensor("blk.0.attn_q.weight").expect("Q4_1 dequantises");
    assert_eq!(
        g.info("blk.0.attn_q.weight").expect("present").ggml_type,
        GgmlType::Q4_1
    );
    assert_eq!(q.shape, vec![576, 576]);
    let k = g.tensor("blk.0.attn_k.weight").expect("dequantises");
    assert_eq!(k.shape, vec![192, 576], "3 KV heads x 64");
    let norm = g.tensor("output_norm.weight").expect("F32");
    assert_eq!(norm.shape, vec![576]);
    // Trained weights, not zeros or garbage: row RMS of the embeddings sits in a sane band.
    let rms: f32 =
        (embed.data[..576 * 100].iter().map(|v| v * v).sum::<f32>() / (576.0 * 100.0)).sqrt();
    assert!((0.01..1.0).contains(&rms), "embedding rms {rms}");
}
