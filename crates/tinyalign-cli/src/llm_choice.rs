//! `--llm NAME|PATH.gguf|DIR[@FORMAT]`: the frozen LLM, by the short name of a model `cargo xtask fetch`
//! puts in the cache, any GGUF file of a supported architecture (llama, qwen2), or a Hugging Face folder of
//! one (`config.json`, `model.safetensors`, `tokenizer.json`), optionally quantised at load (`DIR@q8_0`).
//!
//! Which LLM a projector was trained for is recorded in its `projector.json` (`llm`, next to the
//! `llm_sha256` that loading checks), so commands that load a projector default to that one.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// A model the fetch step knows: short name, file under the cache, and how to get it.
pub struct KnownLlm {
    pub name: &'static str,
    pub file: &'static str,
    pub fetch: &'static str,
}

pub const KNOWN_LLMS: &[KnownLlm] = &[
    KnownLlm {
        name: "smollm2-135m",
        file: "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
        fetch: "cargo xtask fetch",
    },
    KnownLlm {
        name: "qwen2.5-0.5b",
        file: "qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        fetch: "cargo xtask fetch",
    },
    KnownLlm {
        name: "qwen2.5-1.5b",
        file: "qwen2.5-coder-1.5b-instruct/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        fetch: "cargo xtask fetch --with qwen2.5-1.5b",
    },
];

/// The LLM used when neither `--llm`, the config nor a projector's manifest names one: Qwen2.5-0.5B, whose
/// projector path measured better than SmolLM2's (the README's "Evaluate" section).
pub const DEFAULT_LLM: &str = "qwen2.5-0.5b";

/// What a projector whose manifest names no LLM was trained for (every projector before `llm` was
/// recorded).
const UNRECORDED_LLM: &str = "smollm2-135m";

/// Whether `choice` is the short name of a model the fetch step knows.
pub fn is_known(choice: &str) -> bool {
    KNOWN_LLMS.iter().any(|k| k.name == choice)
}

/// The GGUF path of `choice` (a known name, or a path to a `.gguf` file), which must exist.
pub fn resolve(choice: &str) -> Result<PathBuf> {
    if let Some(known) = KNOWN_LLMS.iter().find(|k| k.name == choice) {
        let path = crate::paths::cache_dir().join(known.file);
        if !path.exists() {
            bail!(
                "LLM `{choice}` is not in the cache ({}): run `{}`",
                path.display(),
                known.fetch
            );
        }
        return Ok(path);
    }
    let path = Path::new(choice);
    if let Some((dir, quantize)) = tinyalign_llm::hf_choice(path)? {
        if !dir.join("config.json").exists() {
            bail!(
                "--llm `{choice}`: {} has no config.json (a Hugging Face model folder has config.json, \
                 model.safetensors and tokenizer.json)",
                dir.display()
            );
        }
        // Canonical, with the quantisation kept: what a projector's manifest records and reloads.
        let dir = std::fs::canonicalize(&dir)?;
        return Ok(match quantize {
            Some(ty) => PathBuf::from(format!("{}@{}", dir.display(), ty.name().to_lowercase())),
            None => dir,
        });
    }
    if path.extension().is_some_and(|e| e == "gguf") {
        if !path.exists() {
            bail!("LLM file {} does not exist", path.display());
        }
        return Ok(std::fs::canonicalize(path)?);
    }
    let names: Vec<_> = KNOWN_LLMS.iter().map(|k| k.name).collect();
    bail!(
        "--llm `{choice}`: neither a known LLM ({}), a .gguf file nor a Hugging Face folder",
        names.join(", ")
    )
}

/// The LLM a projector folder was trained for (`projector.json`'s `llm`), if it records one; an unreadable
/// manifest is an error naming the file.
pub fn of_projector(projector_dir: &Path) -> Result<Option<String>> {
    Ok(tinyalign_projector::ProjectorManifest::read(projector_dir)?.llm)
}

/// `--llm` if given, else the projector's own LLM (SmolLM2 for a manifest that records none).
pub fn for_projector(flag: Option<&str>, projector_dir: &Path) -> Result<PathBuf> {
    match flag {
        Some(choice) => resolve(choice),
        None => resolve(&of_projector(projector_dir)?.unwrap_or_else(|| UNRECORDED_LLM.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_and_missing_files_are_clear_errors() {
        let err = resolve("gpt-5").unwrap_err().to_string();
        assert!(
            err.contains("smollm2-135m") && err.contains("qwen2.5-0.5b"),
            "{err}"
        );
        let err = resolve("/nonexistent/model.gguf").unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn a_projector_names_its_llm() {
        let dir = std::env::temp_dir().join(format!("tinyalign-llm-choice-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = of_projector(&dir).unwrap_err().to_string();
        assert!(err.contains("projector.json"), "{err}");
        let mut manifest = tinyalign_projector::ProjectorManifest {
            format: tinyalign_projector::MANIFEST_FORMAT.into(),
            projector: tinyalign_projector::ProjectorConfig::bridgeformer(384, 896, 0.02),
            encoder_sha256: "e".into(),
            llm_sha256: "l".into(),
            llm: Some("qwen2.5-0.5b".into()),
            frontend_version: 1,
            objective: "ctc".into(),
            step: 1,
            valid_loss: None,
            valid_cosine: None,
            valid_readout_error: None,
            train_utterances: 1,
        };
        std::fs::write(dir.join("projector.json"), manifest.to_json()).unwrap();
        assert_eq!(of_projector(&dir).unwrap().as_deref(), Some("qwen2.5-0.5b"));
        manifest.llm = None;
        std::fs::write(dir.join("projector.json"), manifest.to_json()).unwrap();
        assert_eq!(of_projector(&dir).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
