//! `tinyalign data stats`: what a manifest holds, per split.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::{Manifest, Split};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SplitStats {
    pub utterances: usize,
    pub seconds: f64,
    pub speakers: BTreeSet<String>,
    pub words_min: usize,
    pub words_max: usize,
    pub words_total: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ManifestStats {
    pub splits: BTreeMap<Split, SplitStats>,
    /// Utterance counts per duration bin (upper edges in seconds; the last bin is open).
    pub duration_bins: Vec<(f64, usize)>,
}

const BIN_EDGES: [f64; 7] = [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, f64::INFINITY];

impl ManifestStats {
    pub fn of(manifest: &Manifest) -> Self {
        let mut splits: BTreeMap<Split, SplitStats> = BTreeMap::new();
        let mut bins: Vec<(f64, usize)> = BIN_EDGES.iter().map(|&e| (e, 0)).collect();
        for u in &manifest.utterances {
            let s = splits.entry(u.split).or_default();
            let words = u.text.split_whitespace().count();
            s.words_min = if s.utterances == 0 {
                words
            } else {
                s.words_min.min(words)
            };
            s.words_max = s.words_max.max(words);
            s.words_total += words;
            s.utterances += 1;
            s.seconds += u.duration_s;
            s.speakers.insert(u.speaker.clone());
            if let Some(bin) = bins.iter_mut().find(|(edge, _)| u.duration_s <= *edge) {
                bin.1 += 1;
            }
        }
        Self {
            splits,
            duration_bins: bins,
        }
    }
}

impl fmt::Display for ManifestStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<8} {:>6} {:>9} {:>8} {:>14}",
            "split", "utts", "minutes", "speakers", "words/utt"
        )?;
        for (split, s) in &self.splits {
            writeln!(
                f,
                "{:<8} {:>6} {:>9.2} {:>8} {:>5.1} ({}–{})",
                split.name(),
                s.utterances,
                s.seconds / 60.0,
                s.speakers.len(),
                s.words_total as f64 / s.utterances.max(1) as f64,
                s.words_min,
                s.words_max
            )?;
        }
        writeln!(f, "\nduration histogram")?;
        let most = self
            .duration_bins
            .iter()
            .map(|b| b.1)
            .max()
            .unwrap_or(1)
            .max(1);
        let mut lower = 0.0;
        for &(edge, count) in &self.duration_bins {
            let label = if edge.is_finite() {
                format!("{lower:>4}–{edge:<4} s")
            } else {
                format!("{lower:>4}+      s")
            };
            writeln!(
                f,
                "{label} {count:>6} {}",
                "#".repeat((count * 40).div_ceil(most))
            )?;
            lower = edge;
        }
        Ok(())
    }
}
