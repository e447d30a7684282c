//! `cargo xtask bench`'s options: `--quick`, `--only STAGES`, `--device cpu|cuda`, `--out DIR`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::util;

pub struct Options {
    pub quick: bool,
    /// The stages to run (all of [`STAGES`] unless `--only` names some); the others are skipped rows.
    pub stages: Vec<&'static str>,
    pub device: String,
    pub out: PathBuf,
}

/// What `--only` can name, in the order a report runs them.
pub const STAGES: [&str; 5] = ["criterion", "whisper", "llm", "training", "personalisation"];

impl Options {
    pub fn runs(&self, stage: &str) -> bool {
        self.stages.contains(&stage)
    }
}

/// `--only whisper,llm` → those stages, each one of [`STAGES`].
fn parse_stages(list: &str) -> Result<Vec<&'static str>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|name| {
            STAGES.into_iter().find(|s| *s == name).with_context(|| {
                format!("--only: no stage '{name}' (stages: {})", STAGES.join(", "))
            })
        })
        .collect::<Result<Vec<_>>>()
        .and_then(|stages| {
            if stages.is_empty() {
                bail!("--only needs stages: {}", STAGES.join(", "))
            }
            Ok(stages)
        })
}

pub fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        quick: false,
        stages: STAGES.to_vec(),
        device: "cpu".into(),
        out: util::root().join("bench"),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--only" => {
                options.stages = parse_stages(it.next().context("--only needs stages")?)?;
            }
            "--device" => options.device = it.next().context("--device needs cpu or cuda")?.clone(),
            "--out" => options.out = it.next().context("--out needs a folder")?.into(),
            other => bail!(
                "unknown option '{other}' (--quick, --only STAGE,..., --device cpu|cuda, --out DIR)"
            ),
        }
    }
    if !["cpu", "cuda"].contains(&options.device.as_str()) {
        bail!("--device {}: cpu or cuda", options.device);
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_known_stages() {
        assert_eq!(parse_stages("whisper, llm").unwrap(), ["whisper", "llm"]);
        let unknown = parse_stages("whisper,gpu").unwrap_err().to_string();
        assert!(unknown.contains("no stage 'gpu'"), "{unknown}");
        assert!(parse_stages(",").is_err());
        let options = parse(&["--only".into(), "training".into()]).unwrap();
        assert!(options.runs("training") && !options.runs("criterion"));
        assert!(parse(&["--only".into()]).is_err());
    }
}
