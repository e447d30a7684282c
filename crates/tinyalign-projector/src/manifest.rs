//! `projector.json`, the contract between training and every inference path (CPU assistant, GPU assistant,
//! browser, CLI): the projector's config and the identity of the models and frontend it was trained
//! against. One type reads, writes and checks it; nothing indexes the JSON by string.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ProjectorConfig;

/// The `format` every manifest carries.
pub const MANIFEST_FORMAT: &str = "tinyalign-projector/1";

/// The manifest's file name inside a run folder (next to `projector.safetensors`).
pub const MANIFEST_FILE: &str = "projector.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProjectorManifest {
    pub format: String,
    pub projector: ProjectorConfig,
    pub encoder_sha256: String,
    pub llm_sha256: String,
    /// What `--llm` named at training (a known name or a GGUF path): commands loading this projector default
    /// to it. Absent from manifests written before there was a choice (SmolLM2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<String>,
    pub frontend_version: u32,
    /// The training objective (`embedlink`, `llm_in_the_loop`, `ctc`); absent from the first manifests,
    /// which were all EmbedLink.
    #[serde(default = "embedlink")]
    pub objective: String,
    /// The step these weights are from, and their validation scores there.
    #[serde(default)]
    pub step: u64,
    #[serde(default)]
    pub valid_loss: Option<f32>,
    #[serde(default)]
    pub valid_cosine: Option<f32>,
    #[serde(default)]
    pub valid_readout_error: Option<f32>,
    #[serde(default)]
    pub train_utterances: usize,
}

fn embedlink() -> String {
    "embedlink".into()
}

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {message}")]
    Unreadable { path: String, message: String },
    #[error(
        "the projector was trained for another {what}: it expects sha256 {expected}, the loaded one is {found}"
    )]
    Mismatch {
        what: &'static str,
        expected: String,
        found: String,
    },
    #[error(
        "the projector was made with frontend version {made_with}, this build has {this_build}"
    )]
    Frontend { made_with: u32, this_build: u32 },
    #[error(
        "the projector maps {d_audio} → {d_llm} but the encoder gives {encoder} and the LLM takes {llm}"
    )]
    Widths {
        d_audio: usize,
        d_llm: usize,
        encoder: usize,
        llm: usize,
    },
}

/// What a projector must have been trained against to be used with the loaded models.
#[derive(Clone, Copy, Debug)]
pub struct LoadedModels<'a> {
    pub encoder_sha256: &'a str,
    pub llm_sha256: &'a str,
    pub frontend_version: u32,
    /// The encoder's output width and the LLM's embedding width.
    pub d_audio: usize,
    pub d_llm: usize,
}

impl ProjectorManifest {
    /// Parses a manifest's text; `name` says where it came from in errors.
    pub fn from_json(text: &str, name: &str) -> Result<Self, ManifestError> {
        let manifest: Self = serde_json::from_str(text).map_err(|e| ManifestError::Unreadable {
            path: name.into(),
            message: e.to_string(),
        })?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(ManifestError::Unreadable {
                path: name.into(),
                message: format!(
                    "format `{}`, this build reads `{MANIFEST_FORMAT}`",
                    manifest.format
                ),
            });
        }
        manifest
            .projector
            .validate()
            .map_err(|e| ManifestError::Unreadable {
                path: name.into(),
                message: format!("`projector`: {e}"),
            })?;
        Ok(manifest)
    }

    /// The manifest of run folder `dir`.
    pub fn read(dir: &Path) -> Result<Self, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| ManifestError::Unreadable {
            path: path.display().to_string(),
            message: format!("{e} (a projector is a training run folder: `tinyalign train`)"),
        })?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// Pretty JSON, as written into run folders.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("manifests serialise")
    }

    /// Refuses a projector trained against other models, another frontend or other widths, naming both
    /// sides.
    pub fn check(&self, loaded: &LoadedModels<'_>) -> Result<(), ManifestError> {
        for (what, expected, found) in [
            (
                "Whisper encoder",
                &self.encoder_sha256,
                loaded.encoder_sha256,
            ),
            ("LLM", &self.llm_sha256, loaded.llm_sha256),
        ] {
            if expected != found {
                return Err(ManifestError::Mismatch {
                    what,
                    expected: expected.clone(),
                    found: found.into(),
                });
            }
        }
        if self.frontend_version != loaded.frontend_version {
            return Err(ManifestError::Frontend {
                made_with: self.frontend_version,
                this_build: loaded.frontend_version,
            });
        }
        if self.projector.d_audio != loaded.d_audio || self.projector.d_llm != loaded.d_llm {
            return Err(ManifestError::Widths {
                d_audio: self.projector.d_audio,
                d_llm: self.projector.d_llm,
                encoder: loaded.d_audio,
                llm: loaded.d_llm,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> ProjectorManifest {
        ProjectorManifest {
            format: MANIFEST_FORMAT.into(),
            projector: ProjectorConfig::bridgeformer(384, 576, 0.1),
            encoder_sha256: "e".repeat(64),
            llm_sha256: "l".repeat(64),
            llm: Some("smollm2-135m".into()),
            frontend_version: 2,
            objective: "ctc".into(),
            step: 10,
            valid_loss: Some(1.5),
            valid_cosine: None,
            valid_readout_error: Some(0.25),
            train_utterances: 7,
        }
    }

    #[test]
    fn round_trips_and_reads_the_first_manifests() {
        let m = manifest();
        let text = String::from_utf8(m.to_json()).unwrap();
        assert_eq!(ProjectorManifest::from_json(&text, "x").unwrap(), m);
        // A manifest of the first trainer: no llm, objective, readout error or output mode.
        let old = r#"{"format": "tinyalign-projector/1", "projector": {"kind": "bridgeformer", "d_audio": 384,
            "d_llm": 576, "d_model": 256, "layers": 2, "heads": 4, "ffn_dim": 1024, "stack": 4,
            "tokens": {"mode": "fixed", "tokens": 32}, "frames_per_second": 50.0, "output_rms": 0.136,
            "norm_eps": 1e-5}, "encoder_sha256": "a", "llm_sha256": "b", "frontend_version": 2,
            "step": 600, "valid_loss": 5.2, "valid_cosine": 0.68, "train_utterances": 1247}"#;
        let old = ProjectorManifest::from_json(old, "old").unwrap();
        assert_eq!((old.llm, old.objective.as_str()), (None, "embedlink"));
        assert_eq!(old.projector.ctc_classes(), None);
        let other = text.replace(MANIFEST_FORMAT, "tinyalign-projector/9");
        let err = ProjectorManifest::from_json(&other, "p.json").unwrap_err();
        assert!(err.to_string().contains("p.json: format"), "{err}");
        let bad = text.replace("\"heads\": 4", "\"heads\": 3");
        let err = ProjectorManifest::from_json(&bad, "p.json").unwrap_err();
        assert!(err.to_string().contains("heads"), "{err}");
    }

    #[test]
    fn check_names_what_differs() {
        let m = manifest();
        let (e, l) = ("e".repeat(64), "l".repeat(64));
        let loaded = LoadedModels {
            encoder_sha256: &e,
            llm_sha256: &l,
            frontend_version: 2,
            d_audio: 384,
            d_llm: 576,
        };
        m.check(&loaded).unwrap();
        let other = "0".repeat(64);
        let err = m
            .check(&LoadedModels {
                llm_sha256: &other,
                ..loaded
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("another LLM") && err.contains(&other), "{err}");
        let err = m
            .check(&LoadedModels {
                frontend_version: 3,
                ..loaded
            })
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("frontend version 2, this build has 3"),
            "{err}"
        );
        let err = m
            .check(&LoadedModels {
                d_llm: 896,
                ..loaded
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("the LLM takes 896"), "{err}");
    }
}
