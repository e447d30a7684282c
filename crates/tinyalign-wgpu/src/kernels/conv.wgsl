// im2col for a 1-D convolution over time-major input x (frames × c_in): out (t_out × c_in·k) with column
// c·k + tap, the order of a PyTorch Conv1d weight (c_out, c_in, k) flattened per output channel, so the
// convolution is then one matmul with that weight. Taps outside the input read zero (padding).

struct Params {
    frames: u32,
    c_in: u32,
    kernel: u32,
    stride: u32,
    pad: u32,
    t_out: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn im2col(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let width = p.c_in * p.kernel;
    let i = flat_group(wg, nwg) * 256u + t;
    if (i >= p.t_out * width) {
        return;
    }
    let row = i / width;
    let col = i % width;
    let c = col / p.kernel;
    let tap = col % p.kernel;
    // Signed: the first taps of the first frame fall before the input.
    let src = i32(row * p.stride + tap) - i32(p.pad);
    var value = 0.0;
    if (src >= 0 && src < i32(p.frames)) {
        value = x[u32(src) * p.c_in + c];
    }
    out[i] = value;
}
