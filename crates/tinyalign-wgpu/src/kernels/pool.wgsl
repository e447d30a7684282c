// Masked adaptive average pooling of the first `valid` rows of h (rows × cols) to `tokens` rows: token j
// averages rows ⌊j·L/T⌋ .. max(⌈(j+1)·L/T⌉, start + 1) (capped at L), PyTorch adaptive_avg_pool1d's bins
// over the valid rows only.

struct Params {
    valid: u32,
    tokens: u32,
    cols: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> h: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn adaptive_pool(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let i = flat_group(wg, nwg) * 256u + t;
    if (i >= p.tokens * p.cols) {
        return;
    }
    let j = i / p.cols;
    let c = i % p.cols;
    let start = j * p.valid / p.tokens;
    let end = min(max(((j + 1u) * p.valid + p.tokens - 1u) / p.tokens, start + 1u), p.valid);
    var s = 0.0;
    for (var r = start; r < end; r = r + 1u) {
        s = s + h[r * p.cols + c];
    }
    out[i] = s / f32(end - start);
}
