//! The token readout: vectors in the LLM's input-embedding space read back as the nearest vocabulary
//! rows, without running the model (an alignment score independent of what the LLM generates).

use tinyalign_quant::{Activations, Product};

use crate::{LlamaModel, LlmError};

impl LlamaModel {
    /// The token readout: for each of `n` vectors (`n × hidden_size`, e.g. projected audio tokens) the id of
    /// the input-embedding row with the highest cosine similarity, without running the model. Scores are one
    /// product with the embedding table in its stored format (f32 activations), divided by the row norms.
    pub fn nearest_tokens(&self, vectors: &[f32], n: usize) -> Result<Vec<u32>, LlmError> {
        let (d, vocab) = (self.config.hidden_size, self.config.vocab_size);
        if vectors.len() != n * d {
            return Err(LlmError::Shape(format!(
                "nearest_tokens wants n × {d} values, got {} for n = {n}",
                vectors.len()
            )));
        }
        let norms = self.embed_norms.get_or_init(|| {
            (0..vocab)
                .map(|r| {
                    let row = self.weights.embed.row_f32(r);
                    tinyalign_quant::dot(&row, &row).sqrt().max(1e-12)
                })
                .collect()
        });
        let mut scores = vec![0.0; n * vocab];
        let exact = Product {
            activations: Activations::F32,
            ..self.product
        };
        self.weights
            .embed
            .matmul_with(exact, vectors, n, &mut scores)?;
        Ok(scores
            .chunks_exact(vocab)
            .map(|row| {
                row.iter()
                    .zip(norms)
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |best, (i, (&s, &norm))| {
                        let cosine = s / norm;
                        if cosine > best.1 { (i, cosine) } else { best }
                    })
                    .0 as u32
            })
            .collect())
    }
}
