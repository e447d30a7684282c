// out (m × n) = activation(a (m × k) · Bᵀ + bias), B (n × k) a weight matrix in PyTorch / GGUF layout
// (rows = outputs), read through `load_b`, which the launcher defines for the matrix's format.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
    act: u32,
    // A band of a larger weight matrix writes columns out_offset .. out_offset + n of rows out_stride wide.
    out_stride: u32,
    out_offset: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> w0: array<u32>;
@group(0) @binding(3) var<storage, read> w1: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

fn epilogue(v: f32, col: u32) -> f32 {
    var x = v;
    if (p.has_bias != 0u) {
        x = x + bias[p.out_offset + col];
    }
    return activate(x, p.act);
}

// 64 × 64 output tiles, 16 × 16 threads of 4 × 4 outputs each, K in steps of 16 through workgroup memory.
var<workgroup> tile_a: array<f32, 1024>; // [64 rows][16 k]
var<workgroup> tile_b: array<f32, 1024>; // [64 cols][16 k]

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    _ = w1[0];
    _ = bias[0];
    let row0 = wg.y * 64u;
    let col0 = wg.x * 64u;
    let tid = lid.y * 16u + lid.x;
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < p.k; k0 = k0 + 16u) {
        for (var i = 0u; i < 4u; i = i + 1u) {
            let e = tid + i * 256u;
            let r = e >> 4u;
            let kk = k0 + (e & 15u);
            var av = 0.0;
            if (row0 + r < p.m && kk < p.k) {
                av = a[(row0 + r) * p.k + kk];
            }
            tile_a[e] = av;
            var bv = 0.0;
            if (col0 + r < p.n && kk < p.k) {
                bv = load_b((col0 + r) * p.k + kk);
            }
            tile_b[e] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk = kk + 1u) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i = i + 1u) {
                av[i] = tile_a[(lid.y * 4u + i) * 16u + kk];
                bv[i] = tile_b[(lid.x * 4u + i) * 16u + kk];
            }
            for (var i = 0u; i < 4u; i = i + 1u) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    acc[i * 4u + j] = acc[i * 4u + j] + av[i] * bv[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let r = row0 + lid.y * 4u + i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let c = col0 + lid.x * 4u + j;
            if (r < p.m && c < p.n) {
                out[r * p.out_stride + p.out_offset + c] = epilogue(acc[i * 4u + j], c);
            }
        }
    }
}

// Few rows (m ≤ 4, decoding): one workgroup per output column, 64 threads splitting k, each weight read once.
const GEMV_ROWS: u32 = 4u;
var<workgroup> partial: array<f32, 256>; // [GEMV_ROWS][64]

@compute @workgroup_size(64)
fn gemv(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    _ = w1[0];
    _ = bias[0];
    let col = flat_group(wg, nwg);
    let valid = col < p.n;
    var acc: array<f32, 4>;
    if (valid) {
        for (var kk = t; kk < p.k; kk = kk + 64u) {
            let b = load_b(col * p.k + kk);
            for (var r = 0u; r < GEMV_ROWS; r = r + 1u) {
                if (r < p.m) {
                    acc[r] = acc[r] + a[r * p.k + kk] * b;
                }
            }
        }
    }
    for (var r = 0u; r < GEMV_ROWS; r = r + 1u) {
        partial[r * 64u + t] = acc[r];
    }
    workgroupBarrier();
    for (var stride = 32u; stride > 0u; stride = stride >> 1u) {
        if (t < stride) {
            for (var r = 0u; r < GEMV_ROWS; r = r + 1u) {
                partial[r * 64u + t] = partial[r * 64u + t] + partial[r * 64u + t + stride];
            }
        }
        workgroupBarrier();
    }
    if (valid && t < p.m) {
        out[t * p.out_stride + p.out_offset + col] = epilogue(partial[t * 64u], col);
    }
}

// CPU adapters (llvmpipe, SwiftShader): one thread per output column and up to 8 rows, no workgroup memory
// and no barriers, which those emulate slowly; each weight is dequantised once per 8 rows.
@compute @workgroup_size(64)
fn rows8(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    _ = w1[0];
    _ = bias[0];
    let col = wg.x * 64u + t;
    let row0 = wg.y * 8u;
    if (col >= p.n) {
        return;
    }
    var acc: array<f32, 8>;
    let rows = min(8u, p.m - row0);
    for (var kk = 0u; kk < p.k; kk = kk + 1u) {
        let b = load_b(col * p.k + kk);
        for (var r = 0u; r < rows; r = r + 1u) {
            acc[r] = acc[r] + a[(row0 + r) * p.k + kk] * b;
        }
    }
    for (var r = 0u; r < rows; r = r + 1u) {
        out[(row0 + r) * p.out_stride + p.out_offset + col] = epilogue(acc[r], col);
    }
}
