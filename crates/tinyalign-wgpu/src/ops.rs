//! Launchers of the WGSL kernels in `src/kernels/`. Each checks shapes on the host, then records one
//! dispatch into the pending command encoder; results appear when something is read back.

use tinyalign_llm::RopeStyle;

use crate::context::grid;
use crate::{Gpu, GpuError, GpuMatrix, GpuTensor, WeightFormat};

const COMMON: &str = include_str!("kernels/common.wgsl");
const LOAD_B: &str = include_str!("kernels/load_b.wgsl");

/// Applied element-wise (and fused into matmuls' epilogue); the codes are `common.wgsl`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    None = 0,
    /// The erf form (Whisper's, PyTorch's default).
    Gelu = 1,
    Relu = 2,
}

fn source(body: &str) -> String {
    format!("{COMMON}\n{body}")
}

fn with_loader(body: &str, format: WeightFormat) -> String {
    let scalar = format.loader();
    let four = scalar.replace("load_", "load4_");
    format!(
        "{COMMON}\n{body}\n{LOAD_B}\nfn load_b(idx: u32) -> f32 {{ return {scalar}(idx); }}\n\
         fn load_b4(idx: u32) -> vec4<f32> {{ return {four}(idx); }}\n"
    )
}

fn shape_error(what: String) -> GpuError {
    GpuError::Shape(what)
}

fn bias_row(bias: &GpuTensor, n: usize, what: &str) -> Result<(), GpuError> {
    if bias.len() != n {
        return Err(shape_error(format!(
            "{what}: {} values where {n} are needed",
            bias.len()
        )));
    }
    Ok(())
}

/// The matmul kernels of `matmul.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKernel {
    /// 64×64 output tiles through workgroup memory (many rows on a GPU).
    Tiled,
    /// A 64-thread workgroup per output column splitting k, for up to 4 rows (decoding on a GPU).
    Vector,
    /// One thread per output column and 8 rows, no workgroup memory (CPU adapters).
    Rows8,
    /// [`MatmulKernel::Rows8`] four k at a time (k a multiple of 4): the CPU adapters' default.
    Rows8x4,
}

/// `act(x · wᵀ + bias)`: x `m × k`, w `n × k` → `m × n`, with the kernel that suits the adapter and m.
pub fn linear(
    gpu: &Gpu,
    x: &GpuTensor,
    w: &GpuMatrix,
    bias: Option<&GpuTensor>,
    act: Activation,
) -> Result<GpuTensor, GpuError> {
    let kernel = if gpu.is_software() {
        // Barriers and workgroup memory are emulated slowly there: several times faster than the tiles.
        if x.cols().is_multiple_of(4) {
            MatmulKernel::Rows8x4
        } else {
            MatmulKernel::Rows8
        }
    } else if x.rows() <= 4 {
        MatmulKernel::Vector
    } else {
        MatmulKernel::Tiled
    };
    linear_with(gpu, x, w, bias, act, kernel)
}

/// [`linear`] with a chosen kernel (the tests run every kernel on whatever adapter they have).
pub fn linear_with(
    gpu: &Gpu,
    x: &GpuTensor,
    w: &GpuMatrix,
    bias: Option<&GpuTensor>,
    act: Activation,
    kernel: MatmulKernel,
) -> Result<GpuTensor, GpuError> {
    let (m, k, n) = (x.rows(), x.cols(), w.rows());
    if k != w.cols() {
        return Err(shape_error(format!(
            "linear: input {m}×{k} against a {n}×{} weight",
            w.cols()
        )));
    }
    if let Some(b) = bias {
        bias_row(b, n, "linear bias")?;
    }
    if kernel == MatmulKernel::Vector && m > 4 {
        return Err(shape_error(format!(
            "the vector matmul kernel takes at most 4 rows, not {m}"
        )));
    }
    if kernel == MatmulKernel::Rows8x4 && !k.is_multiple_of(4) {
        return Err(shape_error(format!(
            "the four-wide matmul kernel needs k a multiple of 4, not {k}"
        )));
    }
    let out = gpu.output(m, n);
    let format = w.format();
    // One dispatch per row band of the weight (one band unless it outgrew a binding), each writing its
    // columns of `out`.
    for band in &w.bands {
        let params = [
            m as u32,
            band.rows as u32,
            k as u32,
            bias.is_some() as u32,
            act as u32,
            n as u32,
            band.first_row as u32,
        ];
        let buffers = [
            x.buffer(),
            &band.words,
            band.constants.as_ref().unwrap_or(gpu.dummy()),
            bias.map_or(gpu.dummy(), GpuTensor::buffer),
            out.buffer(),
        ];
        let tiles = |rows_per_group: usize| {
            [
                band.rows.div_ceil(64) as u32,
                m.div_ceil(rows_per_group) as u32,
                1,
            ]
        };
        let (kernel_file, entry, groups) = match kernel {
            MatmulKernel::Rows8x4 => ("matmul_cpu", "rows8x4", tiles(8)),
            MatmulKernel::Tiled => ("matmul", "gemm", tiles(64)),
            MatmulKernel::Vector => ("matmul", "gemv", grid(band.rows, 1)),
            MatmulKernel::Rows8 => ("matmul", "rows8", tiles(8)),
        };
        let body = if kernel == MatmulKernel::Rows8x4 {
            include_str!("kernels/matmul_cpu.wgsl")
        } else {
            include_str!("kernels/matmul.wgsl")
        };
        gpu.dispatch(
            &format!("{kernel_file}_{}", format.loader()),
            entry,
            || with_loader(body, format),
            &params,
            &buffers,
            groups,
        );
    }
    Ok(out)
}

/// Rows `ids` of `table` (`n × k`, any format) → `ids.len() × k`.
pub fn gather(gpu: &Gpu, table: &GpuMatrix, ids: &[u32]) -> Result<GpuTensor, GpuError> {
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= table.rows()) {
        return Err(shape_error(format!(
            "gather: id {bad} in a table of {} rows",
            table.rows()
        )));
    }
    if ids.is_empty() {
        return Err(shape_error("gather: no ids".into()));
    }
    let k = table.cols();
    let out = gpu.output(ids.len(), k);
    let ids_buffer = gpu.upload_u32(ids);
    let format = table.format();
    // Each band writes the rows whose ids it holds; the check above puts every id in one band.
    for band in &table.bands {
        gpu.dispatch(
            &format!("gather_{}", format.loader()),
            "gather",
            || with_loader(include_str!("kernels/gather.wgsl"), format),
            &[
                ids.len() as u32,
                k as u32,
                band.rows as u32,
                band.first_row as u32,
            ],
            &[
                &ids_buffer,
                &band.words,
                band.constants.as_ref().unwrap_or(gpu.dummy()),
                out.buffer(),
            ],
            grid(ids.len() * k, 256),
        );
    }
    Ok(out)
}

fn norm(
    gpu: &Gpu,
    entry: &str,
    x: &GpuTensor,
    weight: Option<&GpuTensor>,
    bias: Option<&GpuTensor>,
    eps: f32,
    scale: f32,
) -> Result<GpuTensor, GpuError> {
    for (t, what) in [(weight, "weight"), (bias, "bias")] {
        if let Some(t) = t {
            bias_row(t, x.cols(), &format!("{entry} {what}"))?;
        }
    }
    let out = gpu.output(x.rows(), x.cols());
    gpu.dispatch(
        "norm",
        entry,
        || source(include_str!("kernels/norm.wgsl")),
        &[
            x.rows() as u32,
            x.cols() as u32,
            eps.to_bits(),
            scale.to_bits(),
        ],
        &[
            x.buffer(),
            weight.map_or(gpu.dummy(), GpuTensor::buffer),
            bias.map_or(gpu.dummy(), GpuTensor::buffer),
            out.buffer(),
        ],
        grid(x.rows(), 1),
    );
    Ok(out)
}

/// Row-wise `(x − mean) / sqrt(var + eps) · weight + bias`.
pub fn layer_norm(
    gpu: &Gpu,
    x: &GpuTensor,
    weight: &GpuTensor,
    bias: &GpuTensor,
    eps: f32,
) -> Result<GpuTensor, GpuError> {
    norm(gpu, "layer_norm", x, Some(weight), Some(bias), eps, 1.0)
}

/// Row-wise `x / sqrt(mean(x²) + eps) · weight · scale`.
pub fn rms_norm(
    gpu: &Gpu,
    x: &GpuTensor,
    weight: &GpuTensor,
    eps: f32,
    scale: f32,
) -> Result<GpuTensor, GpuError> {
    norm(gpu, "rms_norm", x, Some(weight), None, eps, scale)
}

/// Row-wise softmax.
pub fn softmax(gpu: &Gpu, x: &GpuTensor) -> Result<GpuTensor, GpuError> {
    norm(gpu, "softmax", x, None, None, 0.0, 1.0)
}

fn elementwise(
    gpu: &Gpu,
    entry: &str,
    a: &GpuTensor,
    b: Option<&GpuTensor>,
    b_len: usize,
    act: Activation,
) -> GpuTensor {
    let out = gpu.output(a.rows(), a.cols());
    gpu.dispatch(
        "elementwise",
        entry,
        || source(include_str!("kernels/elementwise.wgsl")),
        &[a.len() as u32, b_len.max(1) as u32, act as u32],
        &[
            a.buffer(),
            b.map_or(gpu.dummy(), GpuTensor::buffer),
            out.buffer(),
        ],
        grid(a.len(), 256),
    );
    out
}

pub fn activation(gpu: &Gpu, x: &GpuTensor, act: Activation) -> GpuTensor {
    elementwise(gpu, "unary", x, None, 0, act)
}

/// `a + b` where b has a's shape, is a single row (broadcast over a's rows), or has at least a's rows (its
/// first rows are used: Whisper's position table).
pub fn add(gpu: &Gpu, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor, GpuError> {
    if b.cols() != a.cols() || (b.rows() != 1 && b.rows() < a.rows()) {
        return Err(shape_error(format!(
            "add: {}×{} + {}×{}",
            a.rows(),
            a.cols(),
            b.rows(),
            b.cols()
        )));
    }
    let b_len = if b.rows() == 1 { b.cols() } else { a.len() };
    Ok(elementwise(gpu, "add", a, Some(b), b_len, Activation::None))
}

/// SwiGLU's `silu(gate) · up`.
pub fn silu_mul(gpu: &Gpu, gate: &GpuTensor, up: &GpuTensor) -> Result<GpuTensor, GpuError> {
    if (gate.rows(), gate.cols()) != (up.rows(), up.cols()) {
        return Err(shape_error(format!(
            "silu_mul: {}×{} and {}×{}",
            gate.rows(),
            gate.cols(),
            up.rows(),
            up.cols()
        )));
    }
    Ok(elementwise(
        gpu,
        "silu_mul",
        gate,
        Some(up),
        up.len(),
        Activation::None,
    ))
}

/// Output frames of a 1-D convolution.
pub fn conv_out_frames(frames: usize, kernel: usize, stride: usize, pad: usize) -> usize {
    (frames + 2 * pad).saturating_sub(kernel) / stride + 1
}

/// The im2col matrix of time-major x (`frames × c_in`) for a `kernel`-tap convolution: `t_out × c_in·kernel`
/// with column `c·kernel + tap` (a PyTorch Conv1d weight's layout), so the convolution is one [`linear`].
pub fn im2col(
    gpu: &Gpu,
    x: &GpuTensor,
    kernel: usize,
    stride: usize,
    pad: usize,
) -> Result<GpuTensor, GpuError> {
    if x.rows() + 2 * pad < kernel || stride == 0 {
        return Err(shape_error(format!(
            "im2col: {} frames are too few for a {kernel}-tap kernel",
            x.rows()
        )));
    }
    let t_out = conv_out_frames(x.rows(), kernel, stride, pad);
    let out = gpu.output(t_out, x.cols() * kernel);
    gpu.dispatch(
        "conv",
        "im2col",
        || source(include_str!("kernels/conv.wgsl")),
        &[
            x.rows() as u32,
            x.cols() as u32,
            kernel as u32,
            stride as u32,
            pad as u32,
            t_out as u32,
        ],
        &[x.buffer(), out.buffer()],
        grid(out.len(), 256),
    );
    Ok(out)
}

/// Keys longer than this do not fit the attention kernel's workgroup memory.
pub const MAX_KEYS: usize = 2048;

#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Keys 0..valid_keys are visible (the rest are padding or not yet written).
    pub valid_keys: usize,
    /// Causal attention with query i at absolute position `start + i`.
    pub causal_start: Option<usize>,
}

/// `softmax(q kᵀ / sqrt(head_dim)) v` per head: q `n × heads·head_dim`, k and v `≥ valid_keys ×
/// kv_heads·head_dim` → `n × heads·head_dim`.
pub fn attention(
    gpu: &Gpu,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    s: AttentionShape,
) -> Result<GpuTensor, GpuError> {
    let (d, kvd) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
    if s.kv_heads == 0 || !s.heads.is_multiple_of(s.kv_heads) {
        return Err(shape_error(format!(
            "attention: {} heads over {} key/value heads",
            s.heads, s.kv_heads
        )));
    }
    if q.cols() != d || k.cols() != kvd || v.cols() != kvd {
        return Err(shape_error(format!(
            "attention: q {}×{}, k {}×{}, v {}×{} for {} heads of {} ({} key/value heads)",
            q.rows(),
            q.cols(),
            k.rows(),
            k.cols(),
            v.rows(),
            v.cols(),
            s.heads,
            s.head_dim,
            s.kv_heads
        )));
    }
    if s.valid_keys == 0 || s.valid_keys > k.rows() || s.valid_keys > v.rows() {
        return Err(shape_error(format!(
            "attention: {} valid keys in {} rows",
            s.valid_keys,
            k.rows()
        )));
    }
    if s.valid_keys > MAX_KEYS {
        return Err(shape_error(format!(
            "attention over {} keys; the GPU kernel holds at most {MAX_KEYS}",
            s.valid_keys
        )));
    }
    let out = gpu.output(q.rows(), d);
    let scale = 1.0 / (s.head_dim as f32).sqrt();
    gpu.dispatch(
        "attention",
        "attention",
        || source(include_str!("kernels/attention.wgsl")),
        &[
            q.rows() as u32,
            s.heads as u32,
            s.kv_heads as u32,
            s.head_dim as u32,
            d as u32,
            kvd as u32,
            s.valid_keys as u32,
            s.causal_start.is_some() as u32,
            s.causal_start.unwrap_or(0) as u32,
            scale.to_bits(),
        ],
        &[q.buffer(), k.buffer(), v.buffer(), out.buffer()],
        [q.rows() as u32, s.heads as u32, 1],
    );
    Ok(out)
}

/// The cos/sin table [`rope`] reads: `positions × head_dim/2` interleaved (cos, sin) pairs of angle
/// `pos · θ^(−2i/head_dim)`, computed in f64.
pub fn rope_table(positions: usize, head_dim: usize, theta: f32) -> Vec<f32> {
    let half = head_dim / 2;
    let mut table = Vec::with_capacity(positions * half * 2);
    for pos in 0..positions {
        for i in 0..half {
            // The CPU model computes the frequency in f32; match it, then take the angle's sin/cos exactly.
            let freq = theta.powf(-(2.0 * i as f32) / head_dim as f32);
            let (sin, cos) = f64::from(pos as f32 * freq).sin_cos();
            table.push(cos as f32);
            table.push(sin as f32);
        }
    }
    table
}

/// Rotates x (`n × heads·head_dim`, rows at positions `start..start + n`) in place with a [`rope_table`]
/// upload (`positions × head_dim`), pairing each head's dimensions as `style` says.
pub fn rope(
    gpu: &Gpu,
    x: &GpuTensor,
    table: &GpuTensor,
    head_dim: usize,
    start: usize,
    style: RopeStyle,
) -> Result<(), GpuError> {
    if !head_dim.is_multiple_of(2) || !x.cols().is_multiple_of(head_dim) || table.cols() != head_dim
    {
        return Err(shape_error(format!(
            "rope: rows of {} in heads of {head_dim}, table rows of {}",
            x.cols(),
            table.cols()
        )));
    }
    if start + x.rows() > table.rows() {
        return Err(shape_error(format!(
            "rope: positions up to {} with a table of {}",
            start + x.rows(),
            table.rows()
        )));
    }
    gpu.dispatch(
        "rope",
        "rope",
        || source(include_str!("kernels/rope.wgsl")),
        &[
            x.rows() as u32,
            x.cols() as u32,
            head_dim as u32,
            start as u32,
            (style == RopeStyle::HalfSplit) as u32,
        ],
        &[table.buffer(), x.buffer()],
        grid(x.len() / 2, 256),
    );
    Ok(())
}

/// Masked adaptive average pooling of the first `valid` rows of h to `tokens` rows (the projector's).
pub fn adaptive_pool(
    gpu: &Gpu,
    h: &GpuTensor,
    valid: usize,
    tokens: usize,
) -> Result<GpuTensor, GpuError> {
    if valid == 0 || valid > h.rows() || tokens == 0 {
        return Err(shape_error(format!(
            "adaptive_pool: {valid} valid rows of {} to {tokens} tokens",
            h.rows()
        )));
    }
    let out = gpu.output(tokens, h.cols());
    gpu.dispatch(
        "pool",
        "adaptive_pool",
        || source(include_str!("kernels/pool.wgsl")),
        &[valid as u32, tokens as u32, h.cols() as u32],
        &[h.buffer(), out.buffer()],
        grid(out.len(), 256),
    );
    Ok(out)
}
