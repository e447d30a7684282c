//! Uncertainty of a corpus-level score from a handful of test utterances: the percentile bootstrap over
//! utterances. With 30 utterances a WER moves by tens of points between near-identical systems, so every
//! row carries its 95% interval.

use tinyalign_data::SplitMix;

/// Resamples per interval: enough for stable 2.5/97.5 percentiles at these sample sizes.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// 95% percentile-bootstrap interval of `statistic` over `n` items: `statistic` gets the indices of one
/// resample (drawn with replacement, length `n`). Seeded, so a report reproduces. None for `n == 0`.
pub fn bootstrap_ci95(n: usize, statistic: impl Fn(&[usize]) -> f64) -> Option<[f64; 2]> {
    if n == 0 {
        return None;
    }
    let mut rng = SplitMix::new(0x5eed_b007);
    let mut picks = vec![0usize; n];
    let mut values: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            for p in picks.iter_mut() {
                *p = rng.below(n);
            }
            statistic(&picks)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    let at =
        |q: f64| values[((q * (values.len() - 1) as f64).round() as usize).min(values.len() - 1)];
    Some([at(0.025), at(0.975)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_of_a_mean_is_near_the_normal_one() {
        // 0/1 outcomes, p = 0.3 over 100 items: the normal interval is 0.3 ± 1.96·sqrt(0.21/100) = ±0.090.
        let items: Vec<f64> = (0..100).map(|i| f64::from(u8::from(i % 10 < 3))).collect();
        let [lo, hi] = bootstrap_ci95(items.len(), |picks| {
            picks.iter().map(|&i| items[i]).sum::<f64>() / picks.len() as f64
        })
        .unwrap();
        assert!(
            (lo - 0.21).abs() < 0.02 && (hi - 0.39).abs() < 0.02,
            "{lo} {hi}"
        );
    }

    #[test]
    fn constant_items_give_a_point_and_none_for_no_items() {
        assert_eq!(bootstrap_ci95(5, |_| 0.25), Some([0.25, 0.25]));
        assert_eq!(bootstrap_ci95(0, |_| 1.0), None);
    }
}
