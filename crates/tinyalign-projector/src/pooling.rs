//! Masked adaptive average pooling: `L` valid frames → `T` tokens, token j averaging frames
//! `⌊jL/T⌋ .. ⌈(j+1)L/T⌉` (PyTorch `adaptive_avg_pool1d`'s bins, over the valid frames only). When L < T
//! bins overlap and frames repeat; padding frames never get weight.

/// Weights `(b, t_max, n)` row-major: `lengths[i]` valid frames of `n`, `tokens[i]` ≤ `t_max` tokens
/// (rows past `tokens[i]` are zero).
pub fn adaptive_pool_weights(
    lengths: &[usize],
    tokens: &[usize],
    n: usize,
    t_max: usize,
) -> Vec<f32> {
    let mut w = vec![0.0; lengths.len() * t_max * n];
    for (i, (&len, &t)) in lengths.iter().zip(tokens).enumerate() {
        for j in 0..t.min(t_max) {
            let start = j * len / t;
            let end = ((j + 1) * len).div_ceil(t).max(start + 1).min(len);
            let share = 1.0 / (end - start) as f32;
            for f in start..end {
                w[(i * t_max + j) * n + f] = share;
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_match_pytorch_adaptive_avg_pool() {
        // torch.nn.functional.adaptive_avg_pool1d bins for L=10, T=4: [0,3) [2,5) [5,8) [7,10).
        let w = adaptive_pool_weights(&[10], &[4], 10, 4);
        let bins: Vec<Vec<usize>> = (0..4)
            .map(|j| (0..10).filter(|&f| w[j * 10 + f] > 0.0).collect())
            .collect();
        assert_eq!(
            bins,
            [vec![0, 1, 2], vec![2, 3, 4], vec![5, 6, 7], vec![7, 8, 9]]
        );
        // Fewer frames than tokens: every token still averages at least one frame.
        let w = adaptive_pool_weights(&[3], &[5], 4, 6);
        for j in 0..5 {
            let row = &w[j * 4..(j + 1) * 4];
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6 && row[3] == 0.0);
        }
        assert!(
            w[5 * 4..].iter().all(|&v| v == 0.0),
            "rows past T are empty"
        );
    }
}
