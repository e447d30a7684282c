//! Connectionist temporal classification (Graves et al., ICML 2006, §4): the negative log-likelihood of a
//! label sequence under per-frame class distributions, summed over every alignment, and its gradient with
//! respect to the frames' logits. Computed on the host in log space (forward α and backward β over the
//! label sequence with blanks between and around its labels); the trainer feeds the gradient back into
//! dfdx's graph as a constant weighting of the logits, so that backward gives exactly this gradient.

/// `−log p(labels | logits)` and `∂/∂logits` (`frames × classes`, row-major).
#[derive(Debug, Clone)]
pub struct CtcLoss {
    pub loss: f64,
    pub grad: Vec<f32>,
}

fn log_add(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

/// CTC over `frames` rows of `classes` logits with class `blank` as the blank. `None` when no alignment
/// exists (fewer frames than labels plus the blanks that repeated labels need).
pub fn ctc_loss(
    logits: &[f32],
    frames: usize,
    classes: usize,
    blank: usize,
    labels: &[usize],
) -> Option<CtcLoss> {
    assert_eq!(
        logits.len(),
        frames * classes,
        "logits must be frames × classes"
    );
    let repeats = labels.windows(2).filter(|w| w[0] == w[1]).count();
    if frames == 0 || frames < labels.len() + repeats {
        return None;
    }
    // log softmax per frame, in f64.
    let mut logp = vec![0.0f64; frames * classes];
    for (row, out) in logits
        .chunks_exact(classes)
        .zip(logp.chunks_exact_mut(classes))
    {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let total = row
            .iter()
            .map(|&v| (v as f64 - max).exp())
            .sum::<f64>()
            .ln()
            + max;
        for (o, &v) in out.iter_mut().zip(row) {
            *o = v as f64 - total;
        }
    }
    // Extended labels: blank, l₁, blank, l₂, ..., blank.
    let ext: Vec<usize> = std::iter::once(blank)
        .chain(labels.iter().flat_map(|&l| [l, blank]))
        .collect();
    let s_len = ext.len();
    let can_skip = |s: usize| s >= 2 && ext[s] != blank && ext[s] != ext[s - 2];
    let neg = f64::NEG_INFINITY;
    // α[t][s]: log prob of the prefixes ending in state s at frame t, emission at t included.
    let mut alpha = vec![neg; frames * s_len];
    alpha[0] = logp[ext[0]];
    if s_len > 1 {
        alpha[1] = logp[ext[1]];
    }
    for t in 1..frames {
        for s in 0..s_len {
            let prev = &alpha[(t - 1) * s_len..t * s_len];
            let mut a = prev[s];
            if s >= 1 {
                a = log_add(a, prev[s - 1]);
            }
            if can_skip(s) {
                a = log_add(a, prev[s - 2]);
            }
            alpha[t * s_len + s] = a + logp[t * classes + ext[s]];
        }
    }
    // β[t][s]: log prob of the rest after frame t given state s at t (emission at t excluded).
    let mut beta = vec![neg; frames * s_len];
    beta[(frames - 1) * s_len + s_len - 1] = 0.0;
    if s_len > 1 {
        beta[(frames - 1) * s_len + s_len - 2] = 0.0;
    }
    for t in (0..frames - 1).rev() {
        for s in 0..s_len {
            let next = |s2: usize| beta[(t + 1) * s_len + s2] + logp[(t + 1) * classes + ext[s2]];
            let mut b = next(s);
            if s + 1 < s_len {
                b = log_add(b, next(s + 1));
            }
            if s + 2 < s_len && can_skip(s + 2) {
                b = log_add(b, next(s + 2));
            }
            beta[t * s_len + s] = b;
        }
    }
    let last = (frames - 1) * s_len;
    let log_p = if s_len > 1 {
        log_add(alpha[last + s_len - 1], alpha[last + s_len - 2])
    } else {
        alpha[last]
    };
    if !log_p.is_finite() {
        return None;
    }
    // ∂(−log p)/∂z_{t,k} = softmax_{t,k} − Σ_{s: ext[s] = k} exp(α_t(s) + β_t(s) − log p).
    let mut grad: Vec<f32> = logp.iter().map(|&l| l.exp() as f32).collect();
    for t in 0..frames {
        for (s, &k) in ext.iter().enumerate() {
            let occupancy = (alpha[t * s_len + s] + beta[t * s_len + s] - log_p).exp();
            grad[t * classes + k] -= occupancy as f32;
        }
    }
    Some(CtcLoss { loss: -log_p, grad })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(n: usize, seed: u64) -> Vec<f32> {
        tinyalign_testkit::lcg64(n, seed, 2.0)
    }

    /// Brute force: every path of `frames` classes whose collapse (merge repeats, drop blanks) is `labels`.
    fn brute_force_log_p(
        logits: &[f32],
        frames: usize,
        classes: usize,
        blank: usize,
        labels: &[usize],
    ) -> f64 {
        let logp: Vec<f64> = logits
            .chunks_exact(classes)
            .flat_map(|row| {
                let total = row.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
                row.iter().map(move |&v| v as f64 - total)
            })
            .collect();
        let mut total = 0.0f64;
        for code in 0..classes.pow(frames as u32) {
            let path: Vec<usize> = (0..frames)
                .map(|t| code / classes.pow(t as u32) % classes)
                .collect();
            let mut collapsed = Vec::new();
            let mut previous = None;
            for &c in &path {
                if c != blank && previous != Some(c) {
                    collapsed.push(c);
                }
                previous = Some(c);
            }
            if collapsed == labels {
                total += path
                    .iter()
                    .enumerate()
                    .map(|(t, &c)| logp[t * classes + c])
                    .sum::<f64>()
                    .exp();
            }
        }
        total.ln()
    }

    #[test]
    fn loss_matches_brute_force_and_gradient_matches_differences() {
        let (classes, blank) = (3, 2);
        for (frames, labels, seed) in [
            (4, vec![0, 1], 1u64),
            (5, vec![1, 1], 2),
            (3, vec![0], 3),
            (6, vec![0, 1, 0], 4),
        ] {
            let logits = lcg(frames * classes, seed);
            let ctc = ctc_loss(&logits, frames, classes, blank, &labels).unwrap();
            let want = -brute_force_log_p(&logits, frames, classes, blank, &labels);
            assert!(
                (ctc.loss - want).abs() < 1e-9,
                "{labels:?}: {} vs {want}",
                ctc.loss
            );
            for i in 0..logits.len() {
                let eps = 1e-3;
                let mut plus = logits.clone();
                plus[i] += eps;
                let mut minus = logits.clone();
                minus[i] -= eps;
                let numeric = (ctc_loss(&plus, frames, classes, blank, &labels)
                    .unwrap()
                    .loss
                    - ctc_loss(&minus, frames, classes, blank, &labels)
                        .unwrap()
                        .loss)
                    / (2.0 * f64::from(eps));
                assert!(
                    (f64::from(ctc.grad[i]) - numeric).abs() < 2e-3,
                    "{labels:?} logit {i}: {} vs {numeric}",
                    ctc.grad[i]
                );
            }
        }
    }

    /// (Greedy decoding of the same paths is `tinyalign_projector::greedy_segments`, tested there.)
    #[test]
    fn impossible_alignments_have_no_loss() {
        // Two equal labels need a blank between them: 2 frames cannot hold "a a".
        assert!(ctc_loss(&[0.0; 6], 2, 3, 2, &[0, 0]).is_none());
    }
}
