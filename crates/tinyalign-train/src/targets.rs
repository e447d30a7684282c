//! EmbedLink targets (Tiny-Align §3.2): the LLM's own input embeddings of the transcript, padded or truncated
//! to the utterance's T audio tokens. The LLM itself never runs.

use tinyalign_llm::LlamaModel;

use crate::TrainError;

/// A target sequence `(t, d)` with one weight per row (1 for transcript tokens, `pad_weight` after them).
#[derive(Debug, Clone)]
pub struct Target {
    pub rows: usize,
    pub data: Vec<f32>,
    pub weights: Vec<f32>,
    /// Transcript tokens that did not fit into T.
    pub truncated: usize,
    /// The transcript's token ids, all of them (CTC labels, and the token readout's reference).
    pub ids: Vec<u32>,
}

#[derive(Debug)]
pub struct TargetBuilder<'a> {
    llm: &'a LlamaModel,
    pad_embedding: Vec<f32>,
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
            pad_embedding: llm.embed_tokens(&[pad_id])?,
            pad_id,
            pad_weight,
            embedding_rms,
        })
    }

    /// The padding token's id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    pub fn target(&self, text: &str, t: usize) -> Result<Target, TrainError> {
        let ids = self.token_ids(text)?;
        let kept = ids.len().min(t);
        let mut data = self.llm.embed_tokens(&ids[..kept])?;
        let mut weights = vec![1.0; kept];
        for _ in kept..t {
            data.extend_from_slice(&self.pad_embedding);
            weights.push(self.pad_weight);
        }
        Ok(Target {
            rows: t,
            data,
            weights,
            truncated: ids.len() - kept,
            ids,
        })
    }

    /// The transcript's token ids alone, without EmbedLink's rows (what a CTC projector trains on: the
    /// rows would be T × d_llm floats per example, more than its features).
    pub fn ids_only(&self, text: &str) -> Result<Target, TrainError> {
        Ok(Target {
            rows: 0,
            data: Vec::new(),
            weights: Vec::new(),
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
