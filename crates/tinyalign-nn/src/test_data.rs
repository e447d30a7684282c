//! Seeded test inputs shared by the unit tests.

/// `n` values in [−0.5, 0.5) from a 32-bit LCG (Numerical Recipes constants), reproducible by seed.
pub fn lcg(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}
