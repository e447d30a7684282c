//! EmbedLink targets (Tiny-Align §3.2): the LLM's own input embeddings of the transcript, padded or truncated
//! to the utterance's T audio tokens. The LLM itself never runs.

use tinyalign_llm::LlamaModel;

use crate::TrainError;

/// A target sequence of `rows` (the projector's T) positions: the transcript's first `rows` tokens, then
/// the padding token, weighted 1 and `pad_weight`. Only the ids are held; the `(rows, d)` embedding rows
/// are looked up in a [`TargetTable`] batch by batch ([`Target::fill`]): held per example they were
/// T × d_llm floats each, 4.36 GB for the 20-hour set's 53,392 examples against the table's ~65 MB.
#[derive(Debug, Clone)]
pub struct Target {
    pub rows: usize,
    /// Transcript tokens that did not fit into T.
    pub truncated: usize,
    /// The transcript's token ids, all of them (CTC labels, and the token readout's reference).
    pub ids: Vec<u32>,
}

impl Target {
    /// Writes the first `rows` of this target into `data` `(rows, d)` and `weights` `(rows,)`: the
    /// embeddings of the transcript's tokens (weight 1), then of the padding token (`pad_weight`).
    pub fn fill(&self, table: &TargetTable, rows: usize, data: &mut [f32], weights: &mut [f32]) {
        let d = table.width;
        let kept = self.ids.len().min(self.rows).min(rows);
        for (r, &id) in self.ids[..kept].iter().enumerate() {
            data[r * d..(r + 1) * d].copy_from_slice(table.row(id));
            weights[r] = 1.0;
        }
        for r in kept..self.rows.min(rows) {
            data[r * d..(r + 1) * d].copy_from_slice(table.row(table.pad_id));
            weights[r] = table.pad_weight;
        }
    }

    /// The token id at target position `r`: the transcript's, or the padding token's past it.
    pub fn id_at(&self, table: &TargetTable, r: usize) -> u32 {
        if r < self.ids.len() {
            self.ids[r]
        } else {
            table.pad_id
        }
    }
}

/// The LLM's input-embedding rows of every token the targets use (the transcripts' and the padding
/// token), so training holds one row per distinct token instead of one per target position.
#[derive(Debug, Clone, Default)]
pub struct TargetTable {
    index: std::collections::HashMap<u32, usize>,
    /// `(tokens, width)` row-major, as the LLM stores them.
    rows: Vec<f32>,
    width: usize,
    pad_id: u32,
    pad_weight: f32,
}

impl TargetTable {
    /// The embedding row of token `id`; every target token is in the table by construction
    /// ([`TargetBuilder::table`] tokenises the same transcripts the targets are made from).
    fn row(&self, id: u32) -> &[f32] {
        let i = self.index[&id];
        &self.rows[i * self.width..(i + 1) * self.width]
    }

    /// Distinct tokens held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// A table of tokens `ids` with their rows `(ids.len(), width)` row-major.
    pub fn new(ids: &[u32], rows: Vec<f32>, pad_id: u32, pad_weight: f32) -> Self {
        let width = rows.len() / ids.len().max(1);
        assert_eq!(rows.len(), ids.len() * width, "one row per token");
        Self {
            index: ids.iter().enumerate().map(|(i, &id)| (id, i)).collect(),
            rows,
            width,
            pad_id,
            pad_weight,
        }
    }
}

#[derive(Debug)]
pub struct TargetBuilder<'a> {
    llm: &'a LlamaModel,
    pad_id: u32,
    pad_weight: f32,
    /// RMS of the whole embedding table: the scale projector outputs are normalised to.
    pub embedding_rms: f32,
}

impl<'a> TargetBuilder<'a> {
    pub fn new(llm: &'a LlamaModel, pad_text: &str, pad_weight: f32) -> Result<Self, TrainError> {
        let pad = llm.tokenizer.encode(pad_text, false);
        let &pad_id = pad.first().ok_or_else(|| {
            TrainError::Config(format!("pad_text {pad_text:?} encodes to no token"))
        })?;
        let vocab = llm.config.vocab_size as u32;
        let mut sum_sq = 0.0f64;
        for chunk in (0..vocab).collect::<Vec<_>>().chunks(4096) {
            let rows = llm.embed_tokens(chunk)?;
            sum_sq += rows
                .iter()
                .map(|v| f64::from(*v) * f64::from(*v))
                .sum::<f64>();
        }
        let embedding_rms =
            (sum_sq / (f64::from(vocab) * llm.config.hidden_size as f64)).sqrt() as f32;
        Ok(Self {
            llm,
            pad_id,
            pad_weight,
            embedding_rms,
        })
    }

    /// The padding token's id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The target of transcript `text` at T = `t` positions (its rows come from a [`TargetTable`] made of
    /// the same transcripts).
    pub fn target(&self, text: &str, t: usize) -> Result<Target, TrainError> {
        let ids = self.token_ids(text)?;
        Ok(Target {
            rows: t,
            truncated: ids.len().saturating_sub(t),
            ids,
        })
    }

    /// The embedding rows of every token of `texts` and of the padding token: what [`Target::fill`] reads.
    pub fn table<'t>(
        &self,
        texts: impl IntoIterator<Item = &'t str>,
    ) -> Result<TargetTable, TrainError> {
        let mut ids: Vec<u32> = texts
            .into_iter()
            .flat_map(|t| self.llm.tokenizer.encode(t, false))
            .collect();
        ids.push(self.pad_id);
        ids.sort_unstable();
        ids.dedup();
        let rows = self.llm.embed_tokens(&ids)?;
        Ok(TargetTable::new(&ids, rows, self.pad_id, self.pad_weight))
    }

    /// The transcript's token ids alone, without EmbedLink's rows (what a CTC projector trains on: the
    /// rows would be T × d_llm floats per example, more than its features).
    pub fn ids_only(&self, text: &str) -> Result<Target, TrainError> {
        Ok(Target {
            rows: 0,
            truncated: 0,
            ids: self.token_ids(text)?,
        })
    }

    /// The transcript's LLM token ids (no BOS); a transcript without tokens is an error.
    fn token_ids(&self, text: &str) -> Result<Vec<u32>, TrainError> {
        let ids = self.llm.tokenizer.encode(text, false);
        if ids.is_empty() {
            return Err(TrainError::Data(format!(
                "transcript {text:?} has no tokens"
            )));
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target of T positions holds the transcript's first T token rows, then the padding row, whatever
    /// the batch's longest T is.
    #[test]
    fn fill_truncates_to_t_and_pads_after_the_transcript() {
        let (a, b, pad) = ([1.0, 2.0], [3.0, 4.0], [0.5, 0.5]);
        let table = TargetTable::new(&[7, 8, 0], [a, b, pad].concat(), 0, 0.1);
        let fill = |target: &Target, rows: usize| {
            let (mut data, mut weights) = (vec![-1.0; rows * 2], vec![-1.0; rows]);
            target.fill(&table, rows, &mut data, &mut weights);
            (data, weights)
        };
        let long = Target {
            rows: 2,
            truncated: 1,
            ids: vec![7, 8, 7],
        };
        assert_eq!(fill(&long, 2), ([a, b].concat(), vec![1.0, 1.0]));
        let short = Target {
            rows: 3,
            truncated: 0,
            ids: vec![8],
        };
        assert_eq!(
            fill(&short, 3),
            ([b, pad, pad].concat(), vec![1.0, 0.1, 0.1])
        );
        // In a batch whose longest T is 4, the position past this target's T stays as the batch made it.
        assert_eq!(
            fill(&short, 4),
            (
                [b, pad, pad, [-1.0, -1.0]].concat(),
                vec![1.0, 0.1, 0.1, -1.0]
            )
        );
        assert_eq!(short.id_at(&table, 0), 8);
        assert_eq!(short.id_at(&table, 2), 0);
    }
}
