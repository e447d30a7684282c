// out (rows × k) = rows `ids` of a weight matrix in any format: token embeddings from the LLM's table. The
// bound matrix is the band of rows first_row .. first_row + n; ids outside it are left to the other bands.

struct Params {
    rows: u32,
    k: u32,
    n: u32,
    first_row: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> w0: array<u32>;
@group(0) @binding(3) var<storage, read> w1: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn gather(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    _ = w1[0];
    let i = flat_group(wg, nwg) * 256u + t;
    if (i >= p.rows * p.k) {
        return;
    }
    let r = i / p.k;
    let c = i % p.k;
    let id = ids[r];
    if (id < p.first_row || id - p.first_row >= p.n) {
        return;
    }
    out[i] = load_b((id - p.first_row) * p.k + c);
}
