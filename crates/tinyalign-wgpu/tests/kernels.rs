//! Every WGSL kernel against its plain-Rust reference (`tinyalign_wgpu::reference`) on seeded random
//! inputs of several shapes. Runs on whatever adapter wgpu finds (Mesa's llvmpipe in CI); no adapter is a
//! failure, not a skip.

use proptest::prelude::*;
use tinyalign_llm::RopeStyle;
use tinyalign_weights::gguf::{GgmlType, dequantize};
use tinyalign_wgpu::ops::{self, Activation, AttentionShape, MatmulKernel};
use tinyalign_wgpu::{Gpu, GpuMatrix, reference};

fn gpu() -> &'static Gpu {
    Gpu::shared_blocking().expect("a wgpu adapter (install mesa-vulkan-drivers)")
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    tinyalign_testkit::lcg64(n, seed ^ 0x9E37_79B9_7F4A_7C15, 1.0)
}

/// |got − want| ≤ tol · (1 + |want|) everywhere, naming the first index that fails.
fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: index {i}: GPU {g} vs reference {w} (tolerance {tol})"
        );
    }
}

fn read(t: &tinyalign_wgpu::GpuTensor) -> Vec<f32> {
    gpu().read_blocking(t).expect("readback")
}

fn act_of(code: u8) -> Activation {
    match code % 3 {
        0 => Activation::None,
        1 => Activation::Gelu,
        _ => Activation::Relu,
    }
}

fn apply(act: Activation, x: f32) -> f32 {
    match act {
        Activation::None => x,
        Activation::Gelu => reference::gelu(x),
        Activation::Relu => x.max(0.0),
    }
}

/// Random blocks of a block type for a `rows × cols` matrix, with valid f16 scales (K-quant scales and
/// quants are any bytes).
fn random_blocks(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let (per_block, bytes) = ty.block().expect("a block type");
    let blocks = rows * cols / per_block;
    let noise = values(blocks * bytes, seed);
    let byte = |v: f32| (v.abs() * 255.0) as u8;
    let f16 = |x: f32| half::f16::from_f32(x).to_le_bytes();
    let mut raw = Vec::with_capacity(blocks * bytes);
    for b in 0..blocks {
        let r = &noise[b * bytes..(b + 1) * bytes];
        match ty {
            GgmlType::Q8_0 => {
                raw.extend(f16(0.01 + r[0].abs() * 0.02));
                raw.extend(r[2..34].iter().map(|v| ((v * 127.0) as i8) as u8));
            }
            GgmlType::Q4_1 => {
                raw.extend(f16(0.01 + r[0].abs() * 0.1));
                raw.extend(f16(r[1] * 0.5));
                raw.extend(r[4..20].iter().map(|&v| byte(v)));
            }
            GgmlType::Q5_0 => {
                raw.extend(f16(0.01 + r[0].abs() * 0.05));
                raw.extend(r[2..22].iter().map(|&v| byte(v)));
            }
            GgmlType::Q4K => {
                raw.extend(f16(0.001 + r[0].abs() * 0.01));
                raw.extend(f16(r[1].abs() * 0.01));
                raw.extend(r[4..144].iter().map(|&v| byte(v)));
            }
            GgmlType::Q6K => {
                raw.extend(r[0..208].iter().map(|&v| byte(v)));
                raw.extend(f16(0.0005 + r[208].abs() * 0.001));
            }
            _ => unreachable!(),
        }
    }
    raw
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn linear_f32_matches_reference(
        m in 1usize..70, k in 1usize..100, n in 1usize..130, bias in any::<bool>(), act in 0u8..3, seed in any::<u64>()
    ) {
        let g = gpu();
        let (x, w, b) = (values(m * k, seed), values(n * k, seed + 1), values(n, seed + 2));
        let act = act_of(act);
        let want: Vec<f32> = reference::linear(&x, &w, bias.then_some(&b[..]), m, k, n)
            .into_iter()
            .map(|v| apply(act, v))
            .collect();
        let (xt, wt) = (g.upload(&x, m, k).unwrap(), GpuMatrix::from_f32(g, n, k, &w).unwrap());
        let bt = bias.then(|| g.upload(&b, 1, n).unwrap());
        for kernel in [MatmulKernel::Tiled, MatmulKernel::Vector, MatmulKernel::Rows8, MatmulKernel::Rows8x4] {
            if (kernel == MatmulKernel::Vector && m > 4) || (kernel == MatmulKernel::Rows8x4 && k % 4 != 0) {
                prop_assert!(ops::linear_with(g, &xt, &wt, bt.as_ref(), act, kernel).is_err());
                continue;
            }
            let out = ops::linear_with(g, &xt, &wt, bt.as_ref(), act, kernel).unwrap();
            assert_close(&read(&out), &want, 1e-4, &format!("{kernel:?} linear {m}×{k}·({n}×{k})ᵀ {act:?}"));
        }
    }

    #[test]
    fn linear_and_gather_on_quantised_blocks_match_dequantisation(
        m in 1usize..9, blocks in 1usize..3, n in 1usize..40, format in 0usize..5, band_rows in 1usize..4,
        seed in any::<u64>()
    ) {
        let g = gpu();
        let ty = [GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q4K, GgmlType::Q6K][format];
        let (per_block, _) = ty.block().unwrap();
        // K-quants come in super-blocks of 256.
        let k = blocks * per_block.max(32);
        let raw = random_blocks(ty, n, k, seed);
        // The reference weights come from tinyalign-weights' dequantiser (itself checked against gguf-py's),
        // not from the GPU repacking.
        let w = dequantize(ty, &raw).unwrap();
        let whole = GpuMatrix::from_blocks(g, ty, n, k, &raw).unwrap();
        // The same matrix in bands of a few rows each: what a table over the binding limit becomes.
        let banded = GpuMatrix::from_blocks_in_bands(g, ty, n, k, &raw, (k * band_rows) as u64).unwrap();
        prop_assert!(n <= 2 * band_rows || banded.bands() > 1, "{n} rows in {} bands", banded.bands());
        let x = values(m * k, seed + 1);
        let xt = g.upload(&x, m, k).unwrap();
        let b = values(n, seed + 2);
        let bt = g.upload(&b, 1, n).unwrap();
        let want = reference::linear(&x, &w, Some(&b[..]), m, k, n);
        for kernel in [MatmulKernel::Tiled, MatmulKernel::Vector, MatmulKernel::Rows8, MatmulKernel::Rows8x4] {
            if kernel == MatmulKernel::Vector && m > 4 {
                continue;
            }
            for (matrix, how) in [(&whole, "whole"), (&banded, "banded")] {
                let out = ops::linear_with(g, &xt, matrix, Some(&bt), Activation::None, kernel).unwrap();
                assert_close(&read(&out), &want, 1e-4, &format!("{kernel:?} {ty:?} {how} linear m={m}"));
            }
        }
        let ids: Vec<u32> = (0..m).map(|i| ((seed as usize + i * 7) % n) as u32).collect();
        for (matrix, how) in [(&whole, "whole"), (&banded, "banded")] {
            let rows = ops::gather(g, matrix, &ids).unwrap();
            assert_close(&read(&rows), &reference::gather(&w, k, &ids), 1e-6, &format!("{ty:?} {how} gather"));
        }
    }

    #[test]
    fn norms_and_softmax_match_reference(rows in 1usize..5, cols in 1usize..700, seed in any::<u64>()) {
        let g = gpu();
        let x: Vec<f32> = values(rows * cols, seed).iter().map(|v| v * 3.0 + 0.5).collect();
        let (w, b) = (values(cols, seed + 1), values(cols, seed + 2));
        let xt = g.upload(&x, rows, cols).unwrap();
        let (wt, bt) = (g.upload(&w, 1, cols).unwrap(), g.upload(&b, 1, cols).unwrap());
        let ln = ops::layer_norm(g, &xt, &wt, &bt, 1e-5).unwrap();
        assert_close(&read(&ln), &reference::layer_norm(&x, &w, &b, 1e-5), 1e-4, "layer_norm");
        let rms = ops::rms_norm(g, &xt, &wt, 1e-5, 0.25).unwrap();
        assert_close(&read(&rms), &reference::rms_norm(&x, &w, 1e-5, 0.25), 1e-4, "rms_norm");
        let sm = ops::softmax(g, &xt).unwrap();
        assert_close(&read(&sm), &reference::softmax(&x, cols), 1e-5, "softmax");
    }

    #[test]
    fn elementwise_ops_match_reference(rows in 1usize..6, cols in 1usize..300, seed in any::<u64>()) {
        let g = gpu();
        let a: Vec<f32> = values(rows * cols, seed).iter().map(|v| v * 6.0).collect();
        let b = values(rows * cols, seed + 1);
        let (at, bt) = (g.upload(&a, rows, cols).unwrap(), g.upload(&b, rows, cols).unwrap());
        for act in [Activation::Gelu, Activation::Relu] {
            let want: Vec<f32> = a.iter().map(|&v| apply(act, v)).collect();
            assert_close(&read(&ops::activation(g, &at, act)), &want, 1e-5, &format!("{act:?}"));
        }
        let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert_close(&read(&ops::add(g, &at, &bt).unwrap()), &sum, 1e-6, "add");
        // A single row broadcasts; a longer table contributes its first rows.
        let row = g.upload(&b[..cols], 1, cols).unwrap();
        let broadcast: Vec<f32> = a.iter().enumerate().map(|(i, x)| x + b[i % cols]).collect();
        assert_close(&read(&ops::add(g, &at, &row).unwrap()), &broadcast, 1e-6, "add (row)");
        let longer = g.upload(&[b.clone(), b.clone()].concat(), 2 * rows, cols).unwrap();
        assert_close(&read(&ops::add(g, &at, &longer).unwrap()), &sum, 1e-6, "add (prefix)");
        let swiglu: Vec<f32> = a.iter().zip(&b).map(|(&x, &y)| reference::silu(x) * y).collect();
        assert_close(&read(&ops::silu_mul(g, &at, &bt).unwrap()), &swiglu, 1e-5, "silu_mul");
    }

    #[test]
    fn im2col_convolution_matches_reference(
        frames in 1usize..24, c_in in 1usize..10, c_out in 1usize..10, stride in 1usize..3, seed in any::<u64>()
    ) {
        let g = gpu();
        let (x, w, b) = (values(frames * c_in, seed), values(c_out * c_in * 3, seed + 1), values(c_out, seed + 2));
        let cols = ops::im2col(g, &g.upload(&x, frames, c_in).unwrap(), 3, stride, 1).unwrap();
        let out = ops::linear(
            g,
            &cols,
            &GpuMatrix::from_f32(g, c_out, c_in * 3, &w).unwrap(),
            Some(&g.upload(&b, 1, c_out).unwrap()),
            Activation::None,
        )
        .unwrap();
        assert_close(&read(&out), &reference::conv1d(&x, &w, &b, c_in, 3, stride, 1), 1e-4, "conv1d");
    }

    #[test]
    fn attention_matches_reference(
        heads_log in 0u32..3, group_log in 0u32..2, head_dim in prop::sample::select(vec![4usize, 8, 64]),
        n in 1usize..6, keys in 1usize..40, causal in any::<bool>(), seed in any::<u64>()
    ) {
        let g = gpu();
        let kv_heads = 1usize << heads_log;
        let heads = kv_heads << group_log;
        let (d, kvd) = (heads * head_dim, kv_heads * head_dim);
        // Causal: the n queries are the last n positions of `valid` keys; otherwise some keys are padding.
        let valid = if causal { keys.max(n) } else { (keys * 3).div_ceil(4).max(1) };
        let rows = keys.max(valid);
        let causal_start = causal.then(|| valid - n);
        let (q, k, v) = (values(n * d, seed), values(rows * kvd, seed + 1), values(rows * kvd, seed + 2));
        let out = ops::attention(
            g,
            &g.upload(&q, n, d).unwrap(),
            &g.upload(&k, rows, kvd).unwrap(),
            &g.upload(&v, rows, kvd).unwrap(),
            AttentionShape { heads, kv_heads, head_dim, valid_keys: valid, causal_start },
        )
        .unwrap();
        let want = reference::attention(&q, &k, &v, heads, kv_heads, head_dim, valid, causal_start);
        assert_close(&read(&out), &want, 1e-5, &format!("attention heads {heads}/{kv_heads} causal {causal}"));
    }

    #[test]
    fn rope_matches_reference(
        rows in 1usize..5, heads in 1usize..4, half in 1usize..33, start in 0usize..300, big_theta in any::<bool>(),
        half_split in any::<bool>(), seed in any::<u64>()
    ) {
        let g = gpu();
        let head_dim = half * 2;
        let theta = if big_theta { 100_000.0 } else { 10_000.0 };
        let x = values(rows * heads * head_dim, seed);
        let xt = g.upload(&x, rows, heads * head_dim).unwrap();
        let table = g.upload(&ops::rope_table(start + rows, head_dim, theta), start + rows, head_dim).unwrap();
        let style = if half_split { RopeStyle::HalfSplit } else { RopeStyle::AdjacentPairs };
        ops::rope(g, &xt, &table, head_dim, start, style).unwrap();
        let want = reference::rope(&x, heads * head_dim, head_dim, start, theta, half_split);
        assert_close(&read(&xt), &want, 1e-4, &format!("rope {style:?}"));
    }

    #[test]
    fn adaptive_pool_matches_projector_bins(rows in 1usize..30, cols in 1usize..40, tokens in 1usize..12, seed in any::<u64>()) {
        let g = gpu();
        let valid = 1 + (seed as usize % rows);
        let h = values(rows * cols, seed);
        let out = ops::adaptive_pool(g, &g.upload(&h, rows, cols).unwrap(), valid, tokens).unwrap();
        assert_close(&read(&out), &reference::adaptive_pool(&h, cols, valid, tokens), 1e-5, "adaptive_pool");
    }
}

#[test]
fn shape_mismatches_are_errors_not_gpu_faults() {
    let g = gpu();
    let x = g.upload(&values(6, 1), 2, 3).unwrap();
    let w = GpuMatrix::from_f32(g, 4, 5, &values(20, 2)).unwrap();
    let err = ops::linear(g, &x, &w, None, Activation::None).unwrap_err();
    assert!(err.to_string().contains("2×3"), "{err}");
    let err = ops::gather(g, &w, &[4]).unwrap_err();
    assert!(err.to_string().contains("id 4"), "{err}");
    assert!(g.upload(&values(5, 3), 2, 3).is_err());
    let err = GpuMatrix::from_blocks(g, GgmlType::Q8_0, 2, 32, &[0; 33]).unwrap_err();
    assert!(err.to_string().contains("33 bytes"), "{err}");
    let q = g.upload(&values(8, 4), 1, 8).unwrap();
    let shape = AttentionShape {
        heads: 2,
        kv_heads: 2,
        head_dim: 4,
        valid_keys: 3,
        causal_start: None,
    };
    assert!(
        ops::attention(g, &q, &q, &q, shape).is_err(),
        "3 valid keys in 1 row"
    );
}

#[test]
fn erf_reference_is_right() {
    // Known values (Abramowitz & Stegun table 7.1).
    for (x, want) in [
        (0.5, 0.520_499_877_8),
        (1.0, 0.842_700_792_9),
        (2.0, 0.995_322_265_0),
    ] {
        assert!((reference::erf(x) - want).abs() < 1e-9, "erf({x})");
        assert!((reference::erf(-x) + want).abs() < 1e-9, "erf(-{x})");
    }
}
