// Element-wise ops over n values, 256 per workgroup on a 2-D grid.

struct Params {
    n: u32,
    // `add`: b is read at i % b_len (b_len = n without broadcasting; a bias row otherwise).
    b_len: u32,
    act: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn unary(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    _ = b[0];
    let i = flat_group(wg, nwg) * 256u + t;
    if (i < p.n) {
        out[i] = activate(a[i], p.act);
    }
}

@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let i = flat_group(wg, nwg) * 256u + t;
    if (i < p.n) {
        out[i] = a[i] + b[i % p.b_len];
    }
}

// SwiGLU: silu(a) · b.
@compute @workgroup_size(256)
fn silu_mul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let i = flat_group(wg, nwg) * 256u + t;
    if (i < p.n) {
        let g = a[i];
        out[i] = g / (1.0 + exp(-g)) * b[i];
    }
}
