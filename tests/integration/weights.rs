//! Weight readers against files written by independent tools (gguf-py, a byte-by-byte CTranslate2 writer;
//! tests/fixtures/weights/make_weight_fixtures.py), exhaustive truncation, fuzzing, and the real packaged
//! models when the cache has them.

use proptest::prelude::*;
use tinyalign_weights::ct2::{Ct2Model, whisper_to_hf};
use tinyalign_weights::gguf::{GgmlType, GgufFile, GgufValue};
use tinyalign_weights::st::{StoreAs, read_safetensors, write_safetensors};
use tinyalign_weights::{Tensor, TensorMap, WeightsErrorKind};

use crate::common::{fixture, max_abs_diff};

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn gguf_metadata_of_every_type() {
    let bytes = read("weights/tiny.gguf");
    let g = GgufFile::parse(&bytes, "tiny.gguf").expect("parses");
    assert_eq!(g.version, 3);
    assert_eq!(g.meta_str("general.architecture"), Some("llama"));
    assert_eq!(g.meta_u64("llama.block_count"), Some(2));
    assert_eq!(g.meta_f64("llama.rope.freq_base"), Some(100000.0));
    assert_eq!(
        g.metadata.get("tokenizer.ggml.add_bos_token"),
        Some(&GgufValue::Bool(false))
    );
    let tokens: Vec<&str> = g.metadata["tokenizer.ggml.tokens"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(GgufValue::as_str)
        .collect();
    assert_eq!(tokens, ["<|endoftext|>", "a", "Ġb", "é"]);
}

#[test]
fn gguf_tensors_dequantise_like_gguf_py() {
    let bytes = read("weights/tiny.gguf");
    let g = GgufFile::parse(&bytes, "tiny.gguf").expect("parses");
    let expected = read_safetensors(&read("weights/tiny.gguf.expected.safetensors"), "expected")
        .expect("reads");
    assert_eq!(g.tensors.len(), expected.len());
    for (name, want) in expected.iter() {
        let got = g.tensor(name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.shape, want.shape, "{name}");
        let (err, at) = max_abs_diff(&got.data, &want.data);
        assert!(err <= 1e-6, "{name}: max abs error {err} at {at}");
    }
    let types: Vec<GgmlType> = g.tensors.iter().map(|t| t.ggml_type).collect();
    for t in [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Bf16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
    ] {
        assert!(types.contains(&t), "fixture lacks {t:?}");
    }
    // Raw blocks stay available for quantised kernels: 2 rows x 64 / 32 blocks x 34 bytes.
    let (info, raw) = g.raw("q8_0.weight").expect("present");
    assert_eq!((info.ggml_type, raw.len()), (GgmlType::Q8_0, 4 * 34));
}

/// A one-tensor GGUF of ggml type `code` (for types with no Python quantiser, the data is just zeros).
fn one_tensor_gguf(code: u32, ne: &[u64], data_len: usize) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    let name = b"blk.0.ffn_down.weight";
    b.extend_from_slice(&(name.len() as u64).to_le_bytes());
    b.extend_from_slice(name);
    b.extend_from_slice(&(ne.len() as u32).to_le_bytes());
    for d in ne {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b.extend_from_slice(&code.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.resize(b.len().next_multiple_of(32) + data_len, 0);
    b
}

#[test]
fn gguf_unsupported_quantisation_is_refused_by_name() {
    // Q5_K (ggml type 13): a K-quant no model here uses, so it has no decoder.
    let bytes = one_tensor_gguf(13, &[256, 2], 2 * 176);
    let g = GgufFile::parse(&bytes, "k.gguf").expect("header parses");
    let err = g
        .tensor("blk.0.ffn_down.weight")
        .expect_err("Q5_K is not readable");
    let msg = err.to_string();
    assert!(
        msg.contains("Q5_K")
            && msg.contains("blk.0.ffn_down.weight")
            && msg.starts_with("k.gguf: "),
        "{msg}"
    );
}

#[test]
fn gguf_tensor_past_the_end_of_file_is_an_error() {
    let bytes = one_tensor_gguf(0, &[4, 4], 60);
    let err = GgufFile::parse(&bytes, "short.gguf").expect_err("64 bytes needed");
    assert!(
        matches!(err.kind, WeightsErrorKind::Truncated { .. }),
        "{err}"
    );
    assert!(GgufFile::parse(&one_tensor_gguf(0, &[4, 4], 64), "ok.gguf").is_ok());
}

#[test]
fn ct2_whisper_maps_to_hugging_face_keys() {
    let bytes = read("weights/tiny-whisper.model.bin");
    let model = Ct2Model::parse(&bytes, "tiny-whisper.model.bin").expect("parses");
    assert_eq!(
        (model.version, model.spec.as_str(), model.revision),
        (6, "WhisperSpec", 3)
    );
    assert_eq!(model.scalar_i64("encoder/num_heads").expect("scalar"), 2);
    // The alias resolves to the embeddings.
    assert_eq!(
        model
            .tensor("decoder/projection/weight")
            .expect("alias")
            .data,
        model
            .tensor("decoder/embeddings/weight")
            .expect("target")
            .data
    );
    let ours = whisper_to_hf(&model).expect("maps");
    let expected =
        read_safetensors(&read("weights/tiny-whisper.hf.safetensors"), "expected").expect("reads");
    let our_keys: Vec<&String> = ours.iter().map(|(k, _)| k).collect();
    let want_keys: Vec<&String> = expected.iter().map(|(k, _)| k).collect();
    assert_eq!(our_keys, want_keys);
    for (name, want) in expected.iter() {
        let got = ours.get(name).expect("same keys");
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn every_truncation_of_every_fixture_is_an_error_not_a_panic() {
    for rel in [
        "weights/tiny.gguf",
        "weights/tiny-whisper.model.bin",
        "weights/tiny-whisper.hf.safetensors",
    ] {
        let bytes = read(rel);
        // Bytes a reader really needs: GGUF writers pad the data section after the last tensor, and a
        // model.bin may end before its optional alias table.
        let needed = if rel.ends_with(".gguf") {
            let g = GgufFile::parse(&bytes, rel).expect("whole file parses");
            g.tensors
                .iter()
                .filter_map(|t| t.byte_range.clone())
                .map(|r| r.end)
                .max()
                .unwrap_or(0)
        } else if rel.ends_with(".bin") {
            bytes.len() - 4 - 2 * 2 - "decoder/projection/weight\0decoder/embeddings/weight\0".len()
        } else {
            bytes.len()
        };
        for cut in 0..needed {
            let part = &bytes[..cut];
            let ok = if rel.ends_with(".gguf") {
                GgufFile::parse(part, rel).is_ok()
            } else if rel.ends_with(".bin") {
                Ct2Model::parse(part, rel).is_ok()
            } else {
                read_safetensors(part, rel).is_ok()
            };
            assert!(!ok, "{rel} cut at {cut} of {} parsed", bytes.len());
        }
    }
}

#[test]
fn safetensors_round_trip_in_f32_and_f16() {
    let mut map = TensorMap::new("mem");
    map.insert(
        "a.weight",
        Tensor::new(vec![2, 3], vec![0.5, -1.0, 2.0, 0.25, 1e-3, 65504.0]),
    );
    map.insert("b", Tensor::new(vec![1], vec![3.0]));
    for store in [StoreAs::F32, StoreAs::F16] {
        let bytes = write_safetensors(&map, store, &[("format", "pt")]).expect("writes");
        let back = read_safetensors(&bytes, "back").expect("reads");
        for (name, t) in map.iter() {
            let got = back.get(name).expect("present");
            assert_eq!(got.shape, t.shape);
            let (err, _) = max_abs_diff(&got.data, &t.data);
            let tol = if store == StoreAs::F32 { 0.0 } else { 1e-3 };
            assert!(err <= tol, "{name} {store:?}: {err}");
        }
    }
}

#[test]
fn shape_checked_lookup_names_tensor_and_shapes() {
    let mut map = TensorMap::new("model.safetensors");
    map.insert(
        "model.encoder.conv1.weight",
        Tensor::new(vec![4, 3, 2], vec![0.0; 24]),
    );
    let err = map
        .get_shaped("model.encoder.conv1.weight", &[4, 3, 3])
        .expect_err("wrong shape");
    assert_eq!(
        err.to_string(),
        "model.safetensors: tensor model.encoder.conv1.weight: expected shape [4, 3, 3], found [4, 3, 2]"
    );
    let err = map.get("missing.weight").expect_err("absent");
    assert_eq!(
        err.to_string(),
        "model.safetensors: tensor missing.weight is missing"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_any_reader(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = GgufFile::parse(&bytes, "fuzz");
        let _ = Ct2Model::parse(&bytes, "fuzz");
        let _ = read_safetensors(&bytes, "fuzz");
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let rel = ["weights/tiny.gguf", "weights/tiny-whisper.model.bin", "weights/tiny-whisper.hf.safetensors"][which];
        let mut bytes = read(rel);
        for (at, value) in edits {
            let i = at.index(bytes.len().min(400));
            bytes[i] = value;
        }
        match which {
            0 => {
                if let Ok(g) = GgufFile::parse(&bytes, rel) {
                    for t in &g.tensors {
                        let _ = g.tensor(&t.name);
                    }
                }
            }
            1 => {
                if let Ok(m) = Ct2Model::parse(&bytes, rel) {
                    let _ = whisper_to_hf(&m);
                }
            }
            _ => {
                let _ = read_safetensors(&bytes, rel);
            }
        }
    }
}

#[test]
fn quantisers_write_the_bytes_gguf_py_writes() {
    let bytes = read("weights/quant_blocks.gguf");
    let g = GgufFile::parse(&bytes, "quant_blocks.gguf").expect("parses");
    let x = g.tensor("x").expect("x").data;
    for (name, ty) in [
        ("q8_0", GgmlType::Q8_0),
        ("q4_0", GgmlType::Q4_0),
        ("q4_1", GgmlType::Q4_1),
        ("q5_0", GgmlType::Q5_0),
    ] {
        let (info, want) = g.raw(name).expect("present");
        assert_eq!(info.ggml_type, ty);
        let got = tinyalign_weights::quantize::quantize(ty, &x).expect("writable");
        assert_eq!(got.len(), want.len(), "{name}");
        let block = ty.block().unwrap().1;
        for (i, (a, b)) in got.chunks(block).zip(want.chunks(block)).enumerate() {
            assert_eq!(a, b, "{name}: block {i} differs from gguf-py's");
        }
    }
}

#[test]
fn a_gguf_py_file_written_back_parses_to_the_same_metadata_and_tensors() {
    let bytes = read("weights/tiny.gguf");
    let g = GgufFile::parse(&bytes, "tiny.gguf").expect("parses");
    let mut builder = tinyalign_weights::gguf_write::GgufBuilder::new();
    for (key, value) in &g.metadata {
        builder.meta(key, value.clone());
    }
    for info in &g.tensors {
        let raw = g.raw(&info.name).unwrap().1.to_vec();
        builder
            .tensor(&info.name, &info.shape, info.ggml_type, raw)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let written = builder.into_bytes();
    let back = GgufFile::parse(&written, "written").expect("parses");
    let mut metadata = back.metadata.clone();
    // The writer always states its alignment (the default, 32); gguf-py leaves it implicit.
    assert_eq!(
        metadata.remove("general.alignment"),
        Some(GgufValue::U32(32))
    );
    assert_eq!(metadata, g.metadata);
    for info in &g.tensors {
        let (a, b) = (g.raw(&info.name).unwrap(), back.raw(&info.name).unwrap());
        assert_eq!(
            (&a.0.shape, a.0.ggml_type, a.1),
            (&b.0.shape, b.0.ggml_type, b.1)
        );
    }
}
