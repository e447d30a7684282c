// Scaled dot-product attention, one 64-thread workgroup per (query row, head); grouped-query heads share
// key/value heads. Key j is visible to query i when j < valid_keys and, if causal, j ≤ start + i (the
// query's absolute position). Scores of up to MAX_KEYS keys live in workgroup memory.

struct Params {
    n_q: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    q_stride: u32,
    kv_stride: u32,
    valid_keys: u32,
    causal: u32,
    start: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

const MAX_KEYS: u32 = 2048u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> scores: array<f32, MAX_KEYS>;
var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn attention(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let i = wg.x;
    let h = wg.y;
    let kvh = h / (p.heads / p.kv_heads);
    let q_base = i * p.q_stride + h * p.head_dim;
    var limit = min(p.valid_keys, MAX_KEYS);
    if (p.causal != 0u) {
        limit = min(limit, p.start + i + 1u);
    }
    var m = -3.4e38;
    for (var j = t; j < limit; j = j + 64u) {
        let k_base = j * p.kv_stride + kvh * p.head_dim;
        var s = 0.0;
        for (var d = 0u; d < p.head_dim; d = d + 1u) {
            s = s + q[q_base + d] * k[k_base + d];
        }
        s = s * p.scale;
        scores[j] = s;
        m = max(m, s);
    }
    red[t] = m;
    workgroupBarrier();
    for (var stride = 32u; stride > 0u; stride = stride >> 1u) {
        if (t < stride) {
            red[t] = max(red[t], red[t + stride]);
        }
        workgroupBarrier();
    }
    let row_max = red[0];
    workgroupBarrier();
    var s = 0.0;
    for (var j = t; j < limit; j = j + 64u) {
        let e = exp(scores[j] - row_max);
        scores[j] = e;
        s = s + e;
    }
    red[t] = s;
    workgroupBarrier();
    for (var stride = 32u; stride > 0u; stride = stride >> 1u) {
        if (t < stride) {
            red[t] = red[t] + red[t + stride];
        }
        workgroupBarrier();
    }
    let inv_total = 1.0 / red[0];
    let out_base = i * p.heads * p.head_dim + h * p.head_dim;
    for (var d = t; d < p.head_dim; d = d + 64u) {
        var acc = 0.0;
        for (var j = 0u; j < limit; j = j + 1u) {
            acc = acc + scores[j] * v[j * p.kv_stride + kvh * p.head_dim + d];
        }
        out[out_base + d] = acc * inv_total;
    }
}
