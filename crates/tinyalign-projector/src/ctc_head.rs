//! Reading a CTC projector's frames (host code, no dfdx): greedy segments of the best path and the three
//! ways they become the LLM's input (a readout).

use std::str::FromStr;

/// A run of frames whose most likely class is the same non-blank class: one emitted token of the greedy
/// CTC path (Graves et al. 2006, §3.2 "best path decoding"; repeats merge unless a blank separates them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Index into the head's classes (not an LLM token id).
    pub class: usize,
    /// Frames `start..end`.
    pub start: usize,
    pub end: usize,
    /// The frame where the class is most likely.
    pub peak: usize,
}

/// `logits` `(frames, classes + 1)` with the blank last → the greedy path's segments, in order.
pub fn greedy_segments(logits: &[f32], width: usize) -> Vec<Segment> {
    assert!(
        width >= 2 && logits.len().is_multiple_of(width),
        "logits must be frames × (classes + blank)"
    );
    let blank = width - 1;
    let mut segments: Vec<Segment> = Vec::new();
    let mut previous = blank;
    for (t, row) in logits.chunks_exact(width).enumerate() {
        let best = argmax(row);
        if best != blank {
            match segments.last_mut() {
                Some(s) if previous == best && s.end == t => {
                    s.end = t + 1;
                    if row[best] > logits[s.peak * width + best] {
                        s.peak = t;
                    }
                }
                _ => segments.push(Segment {
                    class: best,
                    start: t,
                    end: t + 1,
                    peak: t,
                }),
            }
        }
        previous = best;
    }
    segments
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        )
        .0
}

/// Softmax of every row, in place.
pub fn softmax_rows(logits: &mut [f32], width: usize) {
    for row in logits.chunks_exact_mut(width) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut total = 0.0;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            total += *v;
        }
        row.iter_mut().for_each(|v| *v /= total);
    }
}

/// How a CTC projector's frames become the LLM's input, one vector per greedy segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Readout {
    /// (a) The segment's class as a token: the LLM's own input embedding of it.
    #[default]
    Greedy,
    /// (b) The LLM embeddings weighted by the segment's mean non-blank posterior: keeps the runner-up
    /// tokens where the head is unsure.
    Posterior,
    /// (c) The projector's own vector at the segment's peak frame.
    Vectors,
}

impl Readout {
    pub const ALL: [Readout; 3] = [Readout::Greedy, Readout::Posterior, Readout::Vectors];

    pub fn name(self) -> &'static str {
        match self {
            Readout::Greedy => "greedy",
            Readout::Posterior => "posterior",
            Readout::Vectors => "vectors",
        }
    }
}

impl std::fmt::Display for Readout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Readout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown readout `{s}` (greedy, posterior or vectors)"))
    }
}

/// Readout (b)'s weights for one segment: the mean over its frames of the non-blank posteriors,
/// renormalised to sum to 1 (`probs` `(frames, classes + 1)`, softmaxed, blank last) → `classes` weights.
pub fn segment_posterior(probs: &[f32], width: usize, segment: &Segment) -> Vec<f32> {
    let classes = width - 1;
    let mut weights = vec![0.0f32; classes];
    for row in probs[segment.start * width..segment.end * width].chunks_exact(width) {
        for (w, p) in weights.iter_mut().zip(&row[..classes]) {
            *w += p;
        }
    }
    let total: f32 = weights.iter().sum::<f32>().max(1e-30);
    weights.iter_mut().for_each(|w| *w /= total);
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_follow_the_best_path() {
        // Classes a, b, blank. Frames: a, a, blank, a, b, b → segments a[0..2], a[3..4], b[4..6].
        let logits = [
            5.0, 0.0, 0.0, 6.0, 0.0, 0.0, 0.0, 0.0, 5.0, 5.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 7.0,
            1.0,
        ];
        let s = greedy_segments(&logits, 3);
        let spans: Vec<(usize, usize, usize, usize)> = s
            .iter()
            .map(|s| (s.class, s.start, s.end, s.peak))
            .collect();
        assert_eq!(spans, [(0, 0, 2, 1), (0, 3, 4, 3), (1, 4, 6, 5)]);
        assert!(greedy_segments(&[0.0, 0.0, 9.0], 3).is_empty());
    }

    #[test]
    fn posterior_weights_sum_to_one_and_drop_the_blank() {
        let mut probs = vec![1.0, 3.0, 2.0, 3.0, 1.0, 0.0];
        softmax_rows(&mut probs, 3);
        for row in probs.chunks_exact(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        let w = segment_posterior(
            &probs,
            3,
            &Segment {
                class: 1,
                start: 0,
                end: 2,
                peak: 0,
            },
        );
        assert_eq!(w.len(), 2);
        assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let (p0, p1) = (probs[0] + probs[3], probs[1] + probs[4]);
        assert!((w[0] - p0 / (p0 + p1)).abs() < 1e-6);
        assert_eq!("posterior".parse::<Readout>(), Ok(Readout::Posterior));
        assert!("best".parse::<Readout>().is_err());
    }
}
