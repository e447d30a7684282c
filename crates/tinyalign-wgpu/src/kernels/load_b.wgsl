// Element `idx` (row-major, rows of k values, k a multiple of 32 for the block formats) of a weight matrix
// held in `w0` (u32 words) and `w1` (f32 block constants). The block layouts are GGUF's, repacked on the host
// so that every field is 4-byte aligned (see `GpuMatrix`).

// F32: the words are the floats' bits; w1 is unused.
fn load_f32(idx: u32) -> f32 {
    return bitcast<f32>(w0[idx]);
}

// Q8_0: 32 signed bytes per block, four to a word; w1[block] = the block's scale d. Value = d · q.
fn load_q8_0(idx: u32) -> f32 {
    let word = bitcast<i32>(w0[idx >> 2u]);
    let q = extractBits(word, (idx & 3u) * 8u, 8u);
    return w1[idx >> 5u] * f32(q);
}

// Q8x16: 16 signed bytes per block, four to a word; w1[block] = the block's scale. Value = scale · q.
fn load_q8x16(idx: u32) -> f32 {
    let word = bitcast<i32>(w0[idx >> 2u]);
    let q = extractBits(word, (idx & 3u) * 8u, 8u);
    return w1[idx >> 4u] * f32(q);
}

// Q4_1: 16 bytes of nibbles per block (element e < 16 is the low nibble of byte e, element e ≥ 16 the high
// nibble of byte e − 16), four words per block; w1[2·block] = d, w1[2·block + 1] = m. Value = d · q + m.
fn load_q4_1(idx: u32) -> f32 {
    let block = idx >> 5u;
    let e = idx & 31u;
    let byte_index = e & 15u;
    let word = w0[block * 4u + (byte_index >> 2u)];
    let byte = (word >> ((byte_index & 3u) * 8u)) & 0xffu;
    let q = select(byte & 0xfu, byte >> 4u, e >= 16u);
    return w1[2u * block] * f32(q) + w1[2u * block + 1u];
}

// Four consecutive elements idx .. idx + 3 (idx a multiple of 4), with one word read for the block formats.
fn load4_f32(idx: u32) -> vec4<f32> {
    return vec4<f32>(bitcast<f32>(w0[idx]), bitcast<f32>(w0[idx + 1u]), bitcast<f32>(w0[idx + 2u]), bitcast<f32>(w0[idx + 3u]));
}

fn load4_q8_0(idx: u32) -> vec4<f32> {
    let word = bitcast<i32>(w0[idx >> 2u]);
    let q = vec4<f32>(f32(extractBits(word, 0u, 8u)), f32(extractBits(word, 8u, 8u)), f32(extractBits(word, 16u, 8u)), f32(extractBits(word, 24u, 8u)));
    return w1[idx >> 5u] * q;
}

fn load4_q8x16(idx: u32) -> vec4<f32> {
    let word = bitcast<i32>(w0[idx >> 2u]);
    let q = vec4<f32>(f32(extractBits(word, 0u, 8u)), f32(extractBits(word, 8u, 8u)), f32(extractBits(word, 16u, 8u)), f32(extractBits(word, 24u, 8u)));
    return w1[idx >> 4u] * q;
}

fn load4_q4_1(idx: u32) -> vec4<f32> {
    let block = idx >> 5u;
    let e = idx & 31u;
    let word = w0[block * 4u + ((e & 15u) >> 2u)];
    // Elements 0..15 are the bytes' low nibbles, 16..31 their high nibbles.
    let shifted = select(word, word >> 4u, e >= 16u);
    let q = vec4<f32>(f32(shifted & 0xfu), f32((shifted >> 8u) & 0xfu), f32((shifted >> 16u) & 0xfu), f32((shifted >> 24u) & 0xfu));
    return w1[2u * block] * q + vec4<f32>(w1[2u * block + 1u]);
}
