// Row-wise normalisations and softmax, one 256-thread workgroup per row (rows of any length).

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    // RMSNorm only: the output is multiplied by this too (the projector's output RMS).
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, 256>;

fn reduce_sum(t: u32, v: f32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride >> 1u) {
        if (t < stride) {
            red[t] = red[t] + red[t + stride];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

fn reduce_max(t: u32, v: f32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride >> 1u) {
        if (t < stride) {
            red[t] = max(red[t], red[t + stride]);
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

// Two passes (mean, then the variance of x − mean) as PyTorch does, so large means cost no precision.
@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = flat_group(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var s = 0.0;
    for (var c = t; c < p.cols; c = c + 256u) {
        s = s + x[base + c];
    }
    let mean = reduce_sum(t, s) / f32(p.cols);
    var v = 0.0;
    for (var c = t; c < p.cols; c = c + 256u) {
        let d = x[base + c] - mean;
        v = v + d * d;
    }
    let inv = inverseSqrt(reduce_sum(t, v) / f32(p.cols) + p.eps);
    for (var c = t; c < p.cols; c = c + 256u) {
        out[base + c] = (x[base + c] - mean) * inv * weight[c] + bias[c];
    }
}

@compute @workgroup_size(256)
fn rms_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    _ = bias[0];
    let row = flat_group(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var s = 0.0;
    for (var c = t; c < p.cols; c = c + 256u) {
        s = s + x[base + c] * x[base + c];
    }
    let inv = inverseSqrt(reduce_sum(t, s) / f32(p.cols) + p.eps) * p.scale;
    for (var c = t; c < p.cols; c = c + 256u) {
        out[base + c] = x[base + c] * inv * weight[c];
    }
}

@compute @workgroup_size(256)
fn softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    _ = weight[0];
    _ = bias[0];
    let row = flat_group(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var m = -3.4e38;
    for (var c = t; c < p.cols; c = c + 256u) {
        m = max(m, x[base + c]);
    }
    let row_max = reduce_max(t, m);
    var s = 0.0;
    for (var c = t; c < p.cols; c = c + 256u) {
        s = s + exp(x[base + c] - row_max);
    }
    let total = reduce_sum(t, s);
    for (var c = t; c < p.cols; c = c + 256u) {
        out[base + c] = exp(x[base + c] - row_max) / total;
    }
}
