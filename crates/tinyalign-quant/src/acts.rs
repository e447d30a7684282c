//! The activation side of a product: the f32 values with their exact per-block sums (Q4 minimum terms
//! need Σx per block), and optionally their 8-bit rounding, ggml's Q8_1 idea: scale d = max|x| / 127,
//! q = round(x / d).

use crate::BLOCK;

/// `x.round() as i32` (halves away from zero, as ggml's `roundf`) for |x| ≤ 2²³ without the libm call that
/// `round` compiles to on baseline x86-64: adding the largest float below ½ with x's sign, then truncating
/// (one vector add and convert). ½ itself would be wrong at 0.49999997 (0.49999997 + ½ rounds up to 1);
/// the largest float below it is exact there and at every half-integer (tests.rs checks every float the
/// products can see).
#[inline(always)]
pub(crate) fn round_half_away(x: f32) -> i32 {
    const BELOW_HALF: f32 = 0.499_999_97;
    (x + BELOW_HALF.copysign(x)) as i32
}

/// Blocks per activation set from which [`Acts::new`] splits its per-block work over rayon's pool (a
/// prompt's dozens of vectors; a decoding step's one vector of ~28–152 blocks stays on its thread, where
/// handing it to the pool would cost more than the work).
#[cfg(feature = "parallel")]
const PARALLEL_BLOCKS: usize = 1024;

/// How a product's activations are prepared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Form {
    /// Rounded to 8 bits (else only the per-block sums are made).
    pub quantize: bool,
    /// The weight offset c of the lane corrections to make (0: none; see `Acts::corrections`).
    pub correction: i32,
    /// Elements sharing one 8-bit scale: a block of 32, or a K-quant super-block of 256, whose kernels sum
    /// its eight blocks in integers (ggml's Q8_K). The scale is stored per block of 32 either way.
    pub group: usize,
}

/// Per block of `xs`: its sum, and when quantising, its 8-bit rounding (scale, values as bytes, lane
/// corrections; empty runs otherwise).
type Prepared = (Vec<f32>, (Vec<f32>, (Vec<[u8; 32]>, Vec<[i32; 8]>)));

fn prepare_blocks(xs: &[f32], form: Form) -> Prepared {
    let sum = |block: &[f32]| -> f32 { block.iter().sum() };
    let amax = |values: &[f32]| values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    // Block b's scale is its group's max|x| / 127. Groups wider than a block take theirs from the blocks'
    // maxima, found once, not by rescanning the group for each of its blocks (8× the compares). `cols` is a
    // multiple of the group, so no group spans two vectors.
    let per_group = form.group.max(BLOCK) / BLOCK;
    let group_scales: Vec<f32> = if form.quantize && per_group > 1 {
        let block_max: Vec<f32> = xs.chunks_exact(BLOCK).map(amax).collect();
        block_max
            .chunks(per_group)
            .map(|m| m.iter().fold(0.0f32, |a, &b| a.max(b)) / 127.0)
            .collect()
    } else {
        Vec::new()
    };
    let prepare = |(b, block): (usize, &[f32])| {
        // `group_scales` is empty for groups of one block.
        let d = match group_scales.get(b / per_group) {
            Some(&d) => d,
            None => amax(block) / 127.0,
        };
        let (quants, corrections) = round_block(block, d, form.correction);
        (sum(block), (d, (quants, corrections)))
    };
    #[cfg(feature = "parallel")]
    if xs.len() / BLOCK >= PARALLEL_BLOCKS {
        use rayon::prelude::*;
        let blocks = xs.par_chunks_exact(BLOCK).with_min_len(PARALLEL_BLOCKS / 4);
        return if form.quantize {
            blocks.enumerate().map(prepare).unzip()
        } else {
            (blocks.map(sum).collect(), Default::default())
        };
    }
    let blocks = xs.chunks_exact(BLOCK);
    if form.quantize {
        blocks.enumerate().map(prepare).unzip()
    } else {
        (blocks.map(sum).collect(), Default::default())
    }
}

/// One block's 8-bit rounding with scale `d`: q = round(x / d) as bytes, and the lane corrections −c · Σ of
/// each run of 4 (zeros when `correction` is 0).
fn round_block(block: &[f32], d: f32, correction: i32) -> ([u8; 32], [i32; 8]) {
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    let mut q = [0u8; 32];
    for (slot, &v) in q.iter_mut().zip(block) {
        *slot = (round_half_away(v * inv) as i8) as u8;
    }
    let corrections = if correction == 0 {
        [0; 8]
    } else {
        std::array::from_fn(|lane| {
            -correction
                * q[4 * lane..4 * lane + 4]
                    .iter()
                    .map(|&v| i32::from(v as i8))
                    .sum::<i32>()
        })
    };
    (q, corrections)
}

/// Which of `n` vectors is member k of four-vector group q: past the last, the last again.
fn member(n: usize, q: usize, k: usize) -> usize {
    (4 * q + k).min(n.saturating_sub(1))
}

/// `n` vectors of `cols` values each, prepared block by block.
#[derive(Debug)]
pub(crate) struct Acts<'a> {
    values: &'a [f32],
    cols: usize,
    /// Vectors.
    n: usize,
    /// Four-vector groups the kernels take (`quads`).
    quads: usize,
    sums: Vec<f32>,
    /// The exact sum of each 16 values, for groups wider than a block (Q6_K's scale per 16).
    half_sums: Vec<f32>,
    /// Present when the product rounds activations to 8 bits.
    scales: Vec<f32>,
    /// For kernels that multiply weights offset to unsigned bytes: −c × the sum of each run of 4 rounded
    /// values (elements 4i..4i+4 in lane i), c the offset. Q5_0's q = w + 16 (c = 16, every SIMD kernel);
    /// the VNNI kernels' Q8 bytes w + 128 (c = 128). A kernel adds these to the lanes of Σ q·x̂ (VPDPBUSD
    /// starts from them), which leaves each lane exactly Σ w·x̂ over its 4 elements: the signed product's.
    corrections: Vec<[i32; 8]>,
    quants: Vec<[u8; 32]>,
    /// Vectors 4q..4q+4 of the 8-bit rounding interleaved block by block (`quad_scales[q·nb + b][k]` is
    /// vector 4q+k's scale of block b), so a four-vector kernel reads one run of scales and quants instead
    /// of four: fewer pointers live in registers, and the four scale products are one vector multiply.
    quad_scales: Vec<[f32; 4]>,
    quad_quants: Vec<[[u8; 32]; 4]>,
    quad_corrections: Vec<[[i32; 8]; 4]>,
}

/// One vector: values, per-block sums, and (8-bit mode only) per-block scales and i8 values as bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ActsView<'a> {
    pub values: &'a [f32],
    pub sums: &'a [f32],
    /// Σ of each 16 values (super-block forms only; empty otherwise).
    pub half_sums: &'a [f32],
    #[cfg_attr(
        not(target_arch = "x86_64"),
        allow(dead_code, reason = "read by the x86 SIMD kernels only")
    )]
    pub corrections: &'a [[i32; 8]],
    pub scales: &'a [f32],
    pub quants: &'a [[u8; 32]],
}

/// Four consecutive 8-bit vectors: each on its own, and their scales and quants interleaved per block (the
/// portable kernels take the vectors one by one).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(
    not(target_arch = "x86_64"),
    allow(
        dead_code,
        reason = "the interleaved runs are read by the x86 SIMD kernels only"
    )
)]
pub(crate) struct QuadView<'a> {
    pub vectors: [ActsView<'a>; 4],
    pub scales: &'a [[f32; 4]],
    pub quants: &'a [[[u8; 32]; 4]],
    pub corrections: &'a [[[i32; 8]; 4]],
}

impl<'a> Acts<'a> {
    /// `xs` is `n × cols` row-major; `cols` is a multiple of 32, and of `form.group` (both checked by the
    /// matrix that asks). `interleave`: also store the vectors four by four, for the kernels that read
    /// them so (the x86 SIMD ones, AVX2 and VNNI); the portable kernels take the vectors one by one, so for
    /// them the copy would be wasted work.
    pub fn new(xs: &'a [f32], cols: usize, form: Form, interleave: bool) -> Self {
        let Form {
            quantize,
            correction,
            ..
        } = form;
        let (sums, (scales, (quants, mut corrections))) = prepare_blocks(xs, form);
        if correction == 0 {
            corrections = Vec::new();
        }
        // `checked_div`: a matrix may have no columns (then there is nothing to interleave).
        let n = xs.len().checked_div(cols).unwrap_or(0);
        // The K-quants' one-vector kernels cost ~3.5× as much per vector as their four-vector ones (a
        // 8960 × 1536 Q4_K product of 50 vectors: 5.8 ms, of 48: 5.1), so a prompt's last two or three
        // vectors go through those as a group padded with copies of the last one (its extra results are
        // dropped): Qwen2.5-1.5B's prefill of 50 tokens 75–80 → 83–89 tokens/s (5 rounds, alternating).
        // Not for the 32-blocks, whose one-vector kernels are nearly as cheap per vector: padded, SmolLM2's
        // 51-token prefill showed no gain (498–523 against 593–599 tokens/s, two rounds). A last single
        // vector is left to the one-vector kernels either way.
        let quads = match (quantize, interleave) {
            (false, _) => 0,
            (true, true) if form.group > BLOCK && n % 4 >= 2 => n.div_ceil(4),
            (true, _) => n / 4,
        };
        let mut acts = Self {
            values: xs,
            cols,
            n,
            quads,
            sums,
            // Q6_K's 8-bit offsets meet each 16 values' sum; a group of 32 (every other format) and f32
            // activations (which take the values themselves) need none.
            half_sums: if quantize && form.group > BLOCK {
                xs.chunks_exact(BLOCK / 2)
                    .map(|half| half.iter().sum())
                    .collect()
            } else {
                Vec::new()
            },
            scales,
            corrections,
            quants,
            quad_scales: Vec::new(),
            quad_quants: Vec::new(),
            quad_corrections: Vec::new(),
        };
        if quantize && interleave {
            let nb = cols / BLOCK;
            acts.quad_scales.reserve(quads * nb);
            acts.quad_quants.reserve(quads * nb);
            for quad in 0..quads {
                for b in 0..nb {
                    let at = |k: usize| member(n, quad, k) * nb + b;
                    acts.quad_scales
                        .push([0, 1, 2, 3].map(|k| acts.scales[at(k)]));
                    acts.quad_quants
                        .push([0, 1, 2, 3].map(|k| acts.quants[at(k)]));
                    if correction != 0 {
                        acts.quad_corrections
                            .push([0, 1, 2, 3].map(|k| acts.corrections[at(k)]));
                    }
                }
            }
        }
        acts
    }

    pub fn is_quantized(&self) -> bool {
        !self.quants.is_empty()
    }

    /// The four-vector groups of an 8-bit product; the last may be padded (see `new`), so group q holds
    /// vectors 4q.. up to `n`, the rest copies of the last.
    pub fn quads(&self) -> usize {
        self.quads
    }

    /// Group q (8-bit mode only); the interleaved runs are empty unless made with `interleave`.
    pub fn quad(&self, q: usize) -> QuadView<'_> {
        let nb = self.cols / BLOCK;
        let blocks = q * nb..(q + 1) * nb;
        QuadView {
            vectors: [0, 1, 2, 3].map(|k| self.vector(member(self.n, q, k))),
            scales: self.quad_scales.get(blocks.clone()).unwrap_or(&[]),
            quants: self.quad_quants.get(blocks.clone()).unwrap_or(&[]),
            corrections: self.quad_corrections.get(blocks).unwrap_or(&[]),
        }
    }

    pub fn vector(&self, t: usize) -> ActsView<'_> {
        let nb = self.cols / BLOCK;
        let blocks = t * nb..(t + 1) * nb;
        let quantized = if self.is_quantized() {
            blocks.clone()
        } else {
            0..0
        };
        ActsView {
            values: &self.values[t * self.cols..(t + 1) * self.cols],
            sums: &self.sums[blocks.clone()],
            half_sums: self
                .half_sums
                .get(2 * blocks.start..2 * blocks.end)
                .unwrap_or(&[]),
            scales: &self.scales[quantized.clone()],
            corrections: self.corrections.get(quantized.clone()).unwrap_or(&[]),
            quants: &self.quants[quantized],
        }
    }
}
