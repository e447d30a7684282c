// Rotary position embedding in place on x (rows × heads·head_dim): within every head the pair of
// frequency i of row r turns by angle (start + r)·θᵢ. The pair is (x₂ᵢ, x₂ᵢ₊₁) (llama.cpp's permuted Llama
// Q/K) or, with half_split, (xᵢ, xᵢ₊head_dim/2) (Hugging Face's rotate_half, llama.cpp's NEOX: Qwen2).
// cos/sin come from a host-made table (positions × head_dim/2 each, interleaved cos, sin) because WGSL's
// sin/cos are only accurate near zero.

struct Params {
    rows: u32,
    width: u32,
    head_dim: u32,
    start: u32,
    half_split: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
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
    let half = p.head_dim / 2u;
    let freq = within % half;
    let angle = ((p.start + row) * half + freq) * 2u;
    let c = table[angle];
    let s = table[angle + 1u];
    var ia = row * p.width + within * 2u;
    var ib = ia + 1u;
    if (p.half_split != 0u) {
        ia = row * p.width + (within / half) * p.head_dim + freq;
        ib = ia + half;
    }
    let a = x[ia];
    let b = x[ib];
    x[ia] = a * c - b * s;
    x[ib] = a * s + b * c;
}
