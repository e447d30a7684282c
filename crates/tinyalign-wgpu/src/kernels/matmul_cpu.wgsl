// out (m × n) = activation(a (m × k) · Bᵀ + bias) for CPU adapters (llvmpipe, SwiftShader): one thread per
// output column and up to 8 rows, four k at a time, no workgroup memory and no barriers (which those
// emulate slowly). k must be a multiple of 4; `load_b4` is defined by the launcher for the weight format.

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
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w0: array<u32>;
@group(0) @binding(3) var<storage, read> w1: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn rows8x4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    _ = w1[0];
    _ = bias[0];
    let col = wg.x * 64u + t;
    let row0 = wg.y * 8u;
    if (col >= p.n) {
        return;
    }
    let k4 = p.k / 4u;
    let rows = min(8u, p.m - row0);
    var acc: array<f32, 8>;
    for (var q = 0u; q < k4; q = q + 1u) {
        let b = load_b4(col * p.k + q * 4u);
        for (var r = 0u; r < rows; r = r + 1u) {
            acc[r] = acc[r] + dot(a[(row0 + r) * k4 + q], b);
        }
    }
    for (var r = 0u; r < rows; r = r + 1u) {
        var v = acc[r];
        if (p.has_bias != 0u) {
            v = v + bias[p.out_offset + col];
        }
        out[(row0 + r) * p.out_stride + p.out_offset + col] = activate(v, p.act);
    }
}
