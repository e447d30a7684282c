// Rotary position embedding in place on x (rows × heads·head_dim): within every head the adjacent pair
// (x₂ᵢ, x₂ᵢ₊₁) of row r turns by angle (start + r)·θᵢ. cos/sin come from a host-made table
// (positions × head_dim/2 each, interleaved cos, sin) because WGSL's sin/cos are only accurate near zero.

struct Params {
    rows: u32,
    width: u32,
    head_dim: u32,
    start: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(256)
fn rope(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let pair = flat_group(wg, nwg) * 256u + t;
    let pairs_per_row = p.width / 2u;
    if (pair >= p.rows * pairs_per_row) {
        return;
    }
    let row = pair / pairs_per_row;
    let within = pair % pairs_per_row;
    let freq = within % (p.head_dim / 2u);
    let angle = ((p.start + row) * (p.head_dim / 2u) + freq) * 2u;
    let c = table[angle];
    let s = table[angle + 1u];
    let idx = row * p.width + within * 2u;
    let a = x[idx];
    let b = x[idx + 1u];
    x[idx] = a * c - b * s;
    x[idx + 1u] = a * s + b * c;
}
