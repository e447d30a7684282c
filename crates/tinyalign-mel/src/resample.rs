//! Band-limited rational resampling (polyphase FIR), a port of `scipy.signal.resample_poly` with its default
//! filter: `firwin(2 * 10 * max(up, down) + 1, 1 / max(up, down), window=('kaiser', 5.0)) * up` and zero
//! padding at both ends. Matching scipy exactly lets the tests compare with it sample by sample.
//!
//! Output sample `m` is `y[m] = sum_k x[k] * h[m * down + half_len - k * up]` (scipy's `upfirdn` with its
//! group-delay compensation folded in), so the output is aligned with the input and has
//! `ceil(len * up / down)` samples.

use crate::error::AudioErrorKind;
use crate::wav::check_sample_rate;

/// Kaiser window shape parameter of scipy's default `('kaiser', 5.0)`.
const KAISER_BETA: f64 = 5.0;
/// scipy's `half_len = 10 * max(up, down)`: ten zero crossings of the sinc on each side.
const ZERO_CROSSINGS: usize = 10;

/// A resampler between two fixed rates; build once, reuse for every utterance at that rate.
#[derive(Debug, Clone)]
pub struct Resampler {
    from_rate: u32,
    to_rate: u32,
    up: usize,
    down: usize,
    half_len: usize,
    /// `phases[p]` holds the taps `h[p], h[p + up], h[p + 2 up], ...`: the ones met by outputs whose filter
    /// position `m * down + half_len` is `p` modulo `up`.
    phases: Vec<Vec<f32>>,
}

impl Resampler {
    pub fn new(from_rate: u32, to_rate: u32) -> Result<Self, AudioErrorKind> {
        check_sample_rate(from_rate)?;
        check_sample_rate(to_rate)?;
        let g = gcd(from_rate as usize, to_rate as usize);
        let up = to_rate as usize / g;
        let down = from_rate as usize / g;
        if up == 1 && down == 1 {
            return Ok(Self {
                from_rate,
                to_rate,
                up,
                down,
                half_len: 0,
                phases: vec![vec![1.0]],
            });
        }
        let max_rate = up.max(down);
        let half_len = ZERO_CROSSINGS * max_rate;
        let taps = lowpass_taps(half_len, 1.0 / max_rate as f64, up as f64);
        let mut phases = vec![Vec::with_capacity(taps.len() / up + 1); up];
        for (i, &t) in taps.iter().enumerate() {
            phases[i % up].push(t as f32);
        }
        Ok(Self {
            from_rate,
            to_rate,
            up,
            down,
            half_len,
            phases,
        })
    }

    pub fn from_rate(&self) -> u32 {
        self.from_rate
    }

    pub fn to_rate(&self) -> u32 {
        self.to_rate
    }

    /// `ceil(input_len * up / down)`, as scipy.
    pub fn output_len(&self, input_len: usize) -> usize {
        (input_len * self.up).div_ceil(self.down)
    }

    /// Resamples a whole signal (zero outside it).
    pub fn process(&self, input: &[f32]) -> Vec<f32> {
        if self.up == 1 && self.down == 1 {
            return input.to_vec();
        }
        let n_out = self.output_len(input.len());
        let mut out = Vec::with_capacity(n_out);
        for m in 0..n_out {
            let position = m * self.down + self.half_len;
            let phase = &self.phases[position % self.up];
            // Tap j of this phase multiplies x[k_last - j].
            let k_last = position / self.up;
            // Skip taps that would read past the end of the input (zero padding).
            let j_first = (k_last + 1).saturating_sub(input.len());
            let j_end = phase.len().min(k_last + 1);
            let mut acc = 0.0f64;
            for j in j_first..j_end {
                acc += f64::from(phase[j]) * f64::from(input[k_last - j]);
            }
            out.push(acc as f32);
        }
        out
    }
}

/// Resamples `input` from `from_rate` to `to_rate` (a one-off [`Resampler`]).
pub fn resample(input: &[f32], from_rate: u32, to_rate: u32) -> Result<Vec<f32>, AudioErrorKind> {
    Ok(Resampler::new(from_rate, to_rate)?.process(input))
}

/// scipy `firwin(2 * half_len + 1, cutoff, window=('kaiser', 5.0))` (cutoff relative to Nyquist, unit DC
/// gain), multiplied by `gain`. Computed in f64 like scipy.
fn lowpass_taps(half_len: usize, cutoff: f64, gain: f64) -> Vec<f64> {
    let n_taps = 2 * half_len + 1;
    let alpha = half_len as f64;
    let i0_beta = bessel_i0(KAISER_BETA);
    let mut taps: Vec<f64> = (0..n_taps)
        .map(|n| {
            let m = n as f64 - alpha;
            let ideal = cutoff * sinc(cutoff * m);
            let r = m / alpha;
            let window = bessel_i0(KAISER_BETA * (1.0 - r * r).max(0.0).sqrt()) / i0_beta;
            ideal * window
        })
        .collect();
    let dc_gain: f64 = taps.iter().sum();
    for t in &mut taps {
        *t = *t / dc_gain * gain;
    }
    taps
}

/// Normalised sinc, `sin(pi x) / (pi x)`, as numpy's `np.sinc`.
fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// Modified Bessel function of the first kind, order 0, by its power series (converges fast for the
/// arguments a Kaiser window uses, |x| <= beta).
fn bessel_i0(x: f64) -> f64 {
    let half_sq = x * x / 4.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..200 {
        term *= half_sq / (k as f64 * k as f64);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bessel_i0_matches_known_values() {
        // scipy.special.i0 values.
        assert!((bessel_i0(0.0) - 1.0).abs() < 1e-15);
        assert!((bessel_i0(1.0) - 1.266_065_877_752_008_4).abs() < 1e-14);
        assert!((bessel_i0(5.0) - 27.239_871_823_604_442).abs() < 1e-11);
    }

    #[test]
    fn taps_have_requested_dc_gain_and_symmetry() {
        let taps = lowpass_taps(20, 0.5, 2.0);
        assert_eq!(taps.len(), 41);
        assert!((taps.iter().sum::<f64>() - 2.0).abs() < 1e-12);
        for i in 0..20 {
            assert!((taps[i] - taps[40 - i]).abs() < 1e-15);
        }
    }

    #[test]
    fn identity_rate_copies() {
        let r = Resampler::new(16_000, 16_000).expect("valid rates");
        assert_eq!(r.process(&[0.1, 0.2]), vec![0.1, 0.2]);
    }

    #[test]
    fn output_length_is_ceil_of_ratio() {
        let r = Resampler::new(22_050, 16_000).expect("valid rates");
        // 441 in -> 320 out exactly; one more input sample needs one more output.
        assert_eq!(r.output_len(441), 320);
        assert_eq!(r.output_len(442), 321);
        assert_eq!(r.process(&vec![0.0; 442]).len(), 321);
    }

    #[test]
    fn rejects_absurd_rates() {
        assert!(Resampler::new(0, 16_000).is_err());
        assert!(Resampler::new(16_000, 10_000_000).is_err());
    }
}
