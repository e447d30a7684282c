use super::*;
use proptest::prelude::*;

fn lcg(seed: u64) -> impl FnMut() -> f32 {
    tinyalign_testkit::lcg64_stream(seed, 1.0)
}

/// Random GGUF bytes of a format: scales in [0, 0.1), mins in (−0.1, 0.1), random quants. The f16
/// scales sit where each layout has them (first for the 32-blocks and Q4_K, last for Q6_K).
fn gguf_bytes(format: Format, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let mut rnd = lcg(seed);
    let (block_bytes, elems) = format.gguf_block();
    let mut out = Vec::new();
    for _ in 0..rows * cols / elems {
        match format {
            Format::F32 => out.extend(rnd().to_le_bytes()),
            Format::F16 => out.extend(half::f16::from_f32(rnd()).to_le_bytes()),
            Format::Q6K => {
                out.extend((0..block_bytes - 2).map(|_| (rnd() * 128.0 + 128.0) as u8));
                out.extend(half::f16::from_f32(rnd().abs() * 0.1).to_le_bytes());
            }
            _ => {
                let start = out.len();
                out.extend(half::f16::from_f32(rnd().abs() * 0.1).to_le_bytes());
                if matches!(format, Format::Q4_1 | Format::Q4K) {
                    out.extend(half::f16::from_f32(rnd() * 0.1).to_le_bytes());
                }
                while out.len() < start + block_bytes {
                    out.push((rnd() * 128.0 + 128.0) as u8);
                }
            }
        }
    }
    out
}

fn reference(m: &QMatrix, xs: &[f32], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * m.rows()];
    for r in 0..m.rows() {
        let w = m.row_f32(r);
        for t in 0..n {
            out[t * m.rows() + r] = w
                .iter()
                .zip(&xs[t * m.cols()..])
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
        }
    }
    out
}

const FORMATS: [Format; 8] = [
    Format::F32,
    Format::F16,
    Format::Q8_0,
    Format::Q4_0,
    Format::Q4_1,
    Format::Q5_0,
    Format::Q4K,
    Format::Q6K,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Every kernel against an f64 product of the dequantised weights. The quantised paths also round the
    /// activations to 8 bits per block (each element moves by at most max|x in its block| / 254), and that
    /// error reaches the output through the integer part of each weight only (see `rounded_part`); f32
    /// paths only accumulate rounding.
    #[test]
    fn products_match_f64_reference(fi in 0usize..8, rows in 1usize..40, blocks in 1usize..6, n in 1usize..10, seed: u64) {
        let format = FORMATS[fi];
        let cols = blocks * format.gguf_block().1.max(BLOCK);
        let m = QMatrix::from_gguf_bytes(format, rows, cols, &gguf_bytes(format, rows, cols, seed)).unwrap();
        let mut rnd = lcg(seed ^ 0x5555);
        let xs: Vec<f32> = (0..n * cols).map(|_| rnd() * 3.0).collect();
        let want = reference(&m, &xs, n);
        for product in products() {
            let mut got = vec![0.0; n * rows];
            m.matmul_with(product, &xs, n, &mut got).unwrap();
            for t in 0..n {
                for r in 0..rows {
                    let w = m.row_f32(r);
                    let x = &xs[t * cols..(t + 1) * cols];
                    let magnitude: f64 = w.iter().zip(x).map(|(&a, &b)| f64::from((a * b).abs())).sum();
                    // Rounding x to 8 bits moves each element by at most max|x in its group| / 254 (a
                    // block of 32; the K-quants' super-block of 256).
                    let group = if matches!(format, Format::Q4K | Format::Q6K) { 256 } else { BLOCK };
                    let act_rounding: f64 = rounded_part(&m, r).chunks(BLOCK).enumerate().map(|(i, wb)| {
                        let start = i * BLOCK / group * group;
                        let amax = x[start..start + group].iter().fold(0.0f32, |m, v| m.max(v.abs()));
                        wb.iter().map(|v| f64::from(v.abs())).sum::<f64>() * f64::from(amax) / 254.0
                    }).sum();
                    let rounded = product.activations == Activations::Q8 && !matches!(format, Format::F32 | Format::F16);
                    let bound = if rounded { 1.001 * act_rounding + 1e-5 * magnitude + 1e-5 } else { 1e-5 * magnitude + 1e-6 };
                    let (g, w) = (f64::from(got[t * rows + r]), want[t * rows + r]);
                    prop_assert!((g - w).abs() <= bound, "{product:?} {format:?} row {r} vec {t}: {g} vs {w} (bound {bound})");
                }
            }
        }
    }
}

/// The part of row `r`'s weights that multiplies the 8-bit-rounded activations. Q8_0 is `d·q` whole;
/// the Q4 kernels split `w = d·q + offset` (q the unsigned nibble, offset `−8d` or the block minimum) and
/// take the offset times the block's exact Σx, so the rounding error is weighted by `d·q`, up to 15d
/// where |w| is at most 8d. (A bound from |w| failed about once in a few thousand random cases.)
fn rounded_part(m: &QMatrix, r: usize) -> Vec<f32> {
    let nb = m.cols / BLOCK;
    let nibbles_times_scale = |scales: &[f32], nibbles: &[[u8; 16]]| -> Vec<f32> {
        (r * nb..(r + 1) * nb)
            .flat_map(|b| {
                let d = scales[b];
                let lo: Vec<f32> = nibbles[b].iter().map(|&q| d * f32::from(q & 15)).collect();
                let hi: Vec<f32> = nibbles[b].iter().map(|&q| d * f32::from(q >> 4)).collect();
                lo.into_iter().chain(hi)
            })
            .collect()
    };
    match &m.storage {
        Storage::Q4K { supers, nibbles } => {
            let scales: Vec<f32> = supers.iter().flat_map(|s| s.run_scales()).collect();
            nibbles_times_scale(&scales, nibbles)
        }
        // Q6_K's −32 meets the exact sums: the rounding is weighted by d·sc·q, q ∈ [0, 64).
        Storage::Q6K {
            supers,
            nibbles,
            high,
        } => (r * nb..(r + 1) * nb)
            .flat_map(|b| {
                let scales = supers[b / 8].group_scales();
                let group = 2 * (b % 8);
                q6k_values(&nibbles[b], &high[b])
                    .into_iter()
                    .enumerate()
                    .map(move |(j, q)| scales[group + j / 16] * f32::from(q))
            })
            .collect(),
        // Q5_0 takes its −16 offset with the rounded values' sums, so the whole weight meets them.
        Storage::F32(_) | Storage::Q8_0 { .. } | Storage::Q5_0 { .. } => m.row_f32(r),
        Storage::Q4_0 { scales, nibbles }
        | Storage::Q4_1 {
            scales, nibbles, ..
        } => nibbles_times_scale(scales, nibbles),
    }
}

fn products() -> Vec<Product> {
    Kernel::available()
        .into_iter()
        .flat_map(|kernel| {
            [Activations::F32, Activations::Q8].map(|activations| Product {
                kernel,
                activations,
            })
        })
        .collect()
}

/// The SIMD kernels compute the same sums as the portable ones, so they agree to float rounding.
#[test]
fn simd_matches_portable_closely() {
    for format in FORMATS {
        let (rows, cols) = (67, 768);
        let m = QMatrix::from_gguf_bytes(format, rows, cols, &gguf_bytes(format, rows, cols, 7))
            .unwrap();
        let mut rnd = lcg(99);
        let xs: Vec<f32> = (0..2 * cols).map(|_| rnd()).collect();
        for product in products() {
            let mut portable = vec![0.0; 2 * rows];
            let reference = Product {
                kernel: Kernel::Portable,
                ..product
            };
            m.matmul_with(reference, &xs, 2, &mut portable).unwrap();
            let mut got = vec![0.0; 2 * rows];
            m.matmul_with(product, &xs, 2, &mut got).unwrap();
            for (g, p) in got.iter().zip(&portable) {
                assert!(
                    (g - p).abs() <= 1e-4 * (1.0 + p.abs()),
                    "{product:?} {format:?}: {g} vs {p}"
                );
            }
        }
    }
}

/// A product of many vectors (a prompt; four at a time through the multi-vector kernels, for the K-quants a
/// last two or three as a padded group of four, the rest one by one) gives each vector exactly what a
/// product of it alone gives. 131 vectors of 8 blocks are past the 1024 blocks from which the activations are prepared
/// on the pool (`Acts`), one vector is not; 2, 6 and 129 leave the other remainders.
#[test]
fn many_vectors_equal_one_at_a_time_bit_for_bit() {
    for n in [131, 2, 6, 129] {
        many_vectors_equal_one_at_a_time(n);
    }
}

fn many_vectors_equal_one_at_a_time(n: usize) {
    let (rows, cols) = (37, 256);
    for format in FORMATS {
        let m = QMatrix::from_gguf_bytes(format, rows, cols, &gguf_bytes(format, rows, cols, 3))
            .unwrap();
        let mut rnd = lcg(5);
        let xs: Vec<f32> = (0..n * cols).map(|_| rnd() * 2.0).collect();
        for product in products() {
            let mut all = vec![0.0; n * rows];
            m.matmul_with(product, &xs, n, &mut all).unwrap();
            for (t, x) in xs.chunks_exact(cols).enumerate() {
                let mut one = vec![0.0; rows];
                m.matmul_with(product, x, 1, &mut one).unwrap();
                let got = &all[t * rows..(t + 1) * rows];
                assert!(
                    got.iter()
                        .zip(&one)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{product:?} {format:?} vector {t}: {got:?} vs {one:?}"
                );
            }
        }
    }
}

/// A group of products of one vector (every format, so activation forms differ within the group, and row
/// counts that leave short last tasks) equals each matrix's own product bit for bit; so does a group of
/// several vectors (run one product after another). A wrong-sized output is an error, not a panic.
#[test]
fn grouped_products_equal_separate_ones_bit_for_bit() {
    let cols = 256;
    let matrices: Vec<QMatrix> = FORMATS
        .iter()
        .enumerate()
        .map(|(i, &format)| {
            let rows = 19 + 23 * i;
            let raw = gguf_bytes(format, rows, cols, 40 + i as u64);
            QMatrix::from_gguf_bytes(format, rows, cols, &raw).unwrap()
        })
        .collect();
    let mut rnd = lcg(9);
    for n in [1, 6] {
        let xs: Vec<f32> = (0..n * cols).map(|_| rnd() * 2.0).collect();
        for product in products() {
            let mut grouped: Vec<Vec<f32>> = matrices
                .iter()
                .map(|m| vec![f32::NAN; n * m.rows()])
                .collect();
            let mut pairs: Vec<(&QMatrix, &mut [f32])> = matrices
                .iter()
                .zip(grouped.iter_mut())
                .map(|(m, out)| (m, out.as_mut_slice()))
                .collect();
            QMatrix::matmul_group(product, &xs, n, &mut pairs).unwrap();
            for (m, got) in matrices.iter().zip(&grouped) {
                let mut alone = vec![0.0; n * m.rows()];
                m.matmul_with(product, &xs, n, &mut alone).unwrap();
                assert!(
                    got.iter()
                        .zip(&alone)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{product:?} {m:?}, {n} vectors: {got:?} vs {alone:?}"
                );
            }
        }
    }
    let mut short = vec![0.0; matrices[1].rows() - 1];
    let mut fine = vec![0.0; matrices[0].rows()];
    let x = vec![0.5; cols];
    assert!(matches!(
        QMatrix::matmul_group(
            Product::default(),
            &x,
            1,
            &mut [(&matrices[0], &mut fine), (&matrices[1], &mut short)]
        ),
        Err(QuantError::Shape(_))
    ));
}

#[test]
fn dequantisation_matches_ggml_formulas() {
    // One Q4_1 block: d = 0.5, m = −1, nibbles (lo, hi) = (j mod 16, 15 − j mod 16).
    let mut raw = half::f16::from_f32(0.5).to_le_bytes().to_vec();
    raw.extend(half::f16::from_f32(-1.0).to_le_bytes());
    raw.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let m = QMatrix::from_gguf_bytes(Format::Q4_1, 1, 32, &raw).unwrap();
    let row = m.row_f32(0);
    for j in 0..16 {
        assert_eq!(row[j], 0.5 * j as f32 - 1.0);
        assert_eq!(row[16 + j], 0.5 * (15 - j) as f32 - 1.0);
    }
}

/// A matrix with no columns (a GGUF may declare one) gives zeros, not a panic, in every product form.
#[test]
fn zero_column_products_are_zeros() {
    for format in FORMATS {
        let m = QMatrix::from_gguf_bytes(format, 3, 0, &[]).unwrap();
        for product in products() {
            let mut out = vec![1.0; 5 * 3];
            m.matmul_with(product, &[], 5, &mut out).unwrap();
            assert!(out.iter().all(|&v| v == 0.0), "{format:?} {product:?}");
        }
    }
}

#[test]
fn bad_sizes_are_errors() {
    assert!(matches!(
        QMatrix::from_gguf_bytes(Format::Q8_0, 2, 32, &[0; 67]),
        Err(QuantError::Size {
            expected: 68,
            got: 67,
            ..
        })
    ));
    assert!(matches!(
        QMatrix::from_gguf_bytes(Format::Q4_1, 1, 48, &[0; 30]),
        Err(QuantError::RowLength { .. })
    ));
    let m = QMatrix::from_f32(2, 3, vec![0.0; 6]).unwrap();
    assert!(matches!(
        m.matvec(&[0.0; 2], &mut [0.0; 2]),
        Err(QuantError::Shape(_))
    ));
}

/// Q5_0 as held dequantises as `tinyalign_weights::blocks::q5_0_block` (the GGUF
/// reader's decoder, checked bit-equal to gguf-py) does, bit for bit.
#[test]
fn q5_0_storage_matches_the_gguf_decoder() {
    let (rows, cols) = (3, 96);
    let raw = gguf_bytes(Format::Q5_0, rows, cols, 11);
    let m = QMatrix::from_gguf_bytes(Format::Q5_0, rows, cols, &raw).unwrap();
    let want: Vec<f32> = raw
        .chunks_exact(tinyalign_weights::blocks::Q5_0_BYTES)
        .flat_map(|block| {
            let (d, q) = tinyalign_weights::blocks::q5_0_block(block);
            q.map(|v| d * f32::from(v))
        })
        .collect();
    let got: Vec<f32> = (0..rows).flat_map(|r| m.row_f32(r)).collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.to_bits(), w.to_bits(), "{g} vs {w}");
    }
    assert_eq!(m.format(), Format::Q5_0);
    // f32 d, 4 bytes of high bits, 16 of nibbles per block of 32: 6 bits per weight (the file's 5.5).
    assert_eq!(m.weight_bytes(), rows * cols / 32 * 24);
}

/// The K-quants as held dequantise as the GGUF reader's decoders do, bit for bit: Q4_K in 4.75 bits per
/// weight, Q6_K in 6.625, with every one of its 64 values through the nibble and bit-pair packing.
#[test]
fn k_quant_storage_matches_the_gguf_decoder() {
    use tinyalign_weights::gguf::GgmlType;
    let (rows, cols) = (3, 512);
    for (format, ty, bytes_per_256) in [
        (Format::Q4K, GgmlType::Q4K, 24 + 128),
        (Format::Q6K, GgmlType::Q6K, 20 + 8 * 24),
    ] {
        let raw = gguf_bytes(format, rows, cols, 13);
        let m = QMatrix::from_gguf_bytes(format, rows, cols, &raw).unwrap();
        let want = tinyalign_weights::gguf::dequantize(ty, &raw).unwrap();
        let got: Vec<f32> = (0..rows).flat_map(|r| m.row_f32(r)).collect();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.to_bits(), w.to_bits(), "{format:?}: {g} vs {w}");
        }
        assert_eq!(m.format(), format);
        assert_eq!(m.weight_bytes(), rows * cols / 256 * bytes_per_256);
        if let Storage::Q6K { nibbles, high, .. } = &m.storage {
            let mut seen = [false; 64];
            for (n, h) in nibbles.iter().zip(high) {
                for q in q6k_values(n, h) {
                    seen[usize::from(q)] = true;
                }
            }
            assert!(seen.iter().all(|&s| s), "not every 6-bit value was packed");
        }
    }
}

/// Q5_0's unsigned kernels (q times x̂, then 16·Σx̂ off each lane) give what the same values held as Q8_0
/// blocks (d, q − 16) give, bit for bit: one vector, and a prompt's four at a time with a remainder;
/// rows of 160 values (one band of unpacked rows per task) and of 32,768 (bands of 8 rows).
#[test]
fn q5_0_products_equal_the_q8_0_held_ones_bit_for_bit() {
    for cols in [160, 32768] {
        q5_0_products_equal_the_q8_0_held_ones(21, cols);
    }
}

fn q5_0_products_equal_the_q8_0_held_ones(rows: usize, cols: usize) {
    let raw = gguf_bytes(Format::Q5_0, rows, cols, 17);
    let q5 = QMatrix::from_gguf_bytes(Format::Q5_0, rows, cols, &raw).unwrap();
    let as_q8: Vec<u8> = raw
        .chunks_exact(tinyalign_weights::blocks::Q5_0_BYTES)
        .flat_map(|block| {
            let (_, q) = tinyalign_weights::blocks::q5_0_block(block);
            block[0..2].iter().copied().chain(q.map(|v| v as u8))
        })
        .collect();
    let q8 = QMatrix::from_gguf_bytes(Format::Q8_0, rows, cols, &as_q8).unwrap();
    let mut rnd = lcg(23);
    for n in [1, 7] {
        let xs: Vec<f32> = (0..n * cols).map(|_| rnd() * 4.0).collect();
        for product in products() {
            let (mut a, mut b) = (vec![0.0; n * rows], vec![0.0; n * rows]);
            q5.matmul_with(product, &xs, n, &mut a).unwrap();
            q8.matmul_with(product, &xs, n, &mut b).unwrap();
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{product:?} {cols} columns, n = {n}: {a:?} vs {b:?}"
            );
        }
    }
}

/// The VNNI kernels (one VPDPBUSD from the activations' lane corrections where AVX2 takes four
/// instructions) give the AVX2 kernels' results bit for bit with 8-bit activations: every format, one
/// vector and a prompt's four at a time with a remainder, and Q8_0 weights at the ends of their range
/// (−128 and 127) against activations at ±max.
#[test]
fn vnni_equals_avx2_bit_for_bit() {
    if !Kernel::available().contains(&Kernel::Avx2Vnni) {
        eprintln!("this CPU has no AVX2 with VNNI: nothing to compare");
        return;
    }
    let product = |kernel| Product {
        kernel,
        activations: Activations::Q8,
    };
    let (rows, cols) = (29, 512);
    let mut extreme = Vec::new();
    for r in 0..rows * cols / 32 {
        extreme.extend(half::f16::from_f32(0.01 * (1 + r % 7) as f32).to_le_bytes());
        extreme.extend((0..32).map(|j| if (j + r) % 3 == 0 { 0x80u8 } else { 0x7f }));
    }
    let mut matrices = vec![QMatrix::from_gguf_bytes(Format::Q8_0, rows, cols, &extreme).unwrap()];
    for format in FORMATS {
        let raw = gguf_bytes(format, rows, cols, 31);
        matrices.push(QMatrix::from_gguf_bytes(format, rows, cols, &raw).unwrap());
    }
    let mut rnd = lcg(37);
    for m in &matrices {
        for n in [1, 6] {
            let mut xs: Vec<f32> = (0..n * cols).map(|_| rnd() * 3.0).collect();
            // Blocks whose every value is ±max round to ±127 throughout.
            xs[..32].iter_mut().enumerate().for_each(|(j, v)| {
                *v = if j % 2 == 0 { 5.0 } else { -5.0 };
            });
            let (mut avx2, mut vnni) = (vec![0.0; n * rows], vec![0.0; n * rows]);
            m.matmul_with(product(Kernel::Avx2), &xs, n, &mut avx2)
                .unwrap();
            m.matmul_with(product(Kernel::Avx2Vnni), &xs, n, &mut vnni)
                .unwrap();
            assert!(
                avx2.iter()
                    .zip(&vnni)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{:?} n = {n}: {avx2:?} vs {vnni:?}",
                m.format()
            );
        }
    }
}

/// The activations' rounding against `f32::round`: every float of magnitude 1/8 to 512 (the products see
/// |x / d| ≤ 127; every half-integer there), and every 97th float from 0 to 2²³ (below 1/8 both give 0;
/// from 2²³ on every float is an integer).
#[test]
fn rounding_equals_round_half_away() {
    use crate::acts::round_half_away;
    let check = |bits: u32| {
        let x = f32::from_bits(bits);
        for x in [x, -x] {
            assert_eq!(round_half_away(x), x.round() as i32, "{x:e} ({bits:#x})");
        }
    };
    (0.125f32.to_bits()..=512f32.to_bits()).for_each(check);
    (0..=((1u32 << 23) as f32).to_bits())
        .step_by(97)
        .for_each(check);
}
