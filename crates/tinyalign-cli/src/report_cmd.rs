//! `tinyalign report RUN`: one report of a training run, `RUN/report.md` and `RUN/report.json`, from what is
//! in the folder: the training summary (time, steps, validation cosine, peak memory), the projector's
//! manifest and every evaluation (`eval-*/report.json`, written by `tinyalign eval`) with its chart.
//! `cargo xtask eval` runs the evaluations and then this.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A training run folder (summary.json, projector.json, eval-*/report.json).
    run: PathBuf,
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The run's evaluation folders holding a report, sorted by name.
fn evaluations(run: &Path) -> Result<Vec<(String, Value, String)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(run).with_context(|| run.display().to_string())? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.starts_with("eval-") || !path.join("report.json").is_file() {
            continue;
        }
        let markdown = std::fs::read_to_string(path.join("report.md")).unwrap_or_default();
        found.push((name, read_json(&path.join("report.json"))?, markdown));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

pub fn run(args: &ReportArgs) -> Result<ExitCode> {
    let run = &args.run;
    let summary = tinyalign_train::read_summary(run)
        .context("not a finished training run (train one with `tinyalign train`)")?;
    let manifest = tinyalign_projector::ProjectorManifest::read(run)?;
    let evals = evaluations(run)?;
    if evals.is_empty() {
        bail!(
            "{} holds no evaluation (eval-*/report.json); run `tinyalign eval --projector {} ...` or `cargo xtask eval --run {}`",
            run.display(),
            run.display(),
            run.display()
        );
    }
    let gb = |bytes: Option<u64>| bytes.map_or("-".into(), |b| format!("{:.2} GB", b as f64 / 1e9));
    let mut md = format!(
        "# Run report: {}\n\n## Training\n\n| objective | projector | parameters | steps | training s | best step | valid cosine | valid token readout | train utterances | peak RSS |\n|---|---|---|---|---|---|---|---|---|---|\n| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |\n",
        run.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        manifest.objective,
        format!("{:?}", manifest.projector.kind).to_lowercase(),
        summary.parameters,
        summary.steps,
        summary.training_seconds,
        summary.best_step.map_or("-".into(), |s| s.to_string()),
        summary
            .best_valid_cosine
            .map_or("-".into(), |c| format!("{c:.3}")),
        summary
            .best_valid_readout_error
            .map_or("-".into(), |e| format!("{:.1}% TER", 100.0 * e)),
        summary.train_utterances,
        gb(summary.peak_rss_bytes),
    );
    md.push_str("\nLoss curve: [loss.svg](loss.svg).\n");
    let mut reports = serde_json::Map::new();
    for (name, report, markdown) in &evals {
        // The evaluation's own report, its headings one level down.
        md.push_str(&format!("\n## {name}\n\n"));
        for line in markdown.lines() {
            match line.strip_prefix("# ") {
                Some(title) => md.push_str(&format!("### {title}\n")),
                None => md.push_str(&format!("{line}\n")),
            }
        }
        for chart in ["wer_per_row.svg", "f1_per_row.svg"] {
            if run.join(name).join(chart).is_file() {
                md.push_str(&format!("\nChart: [{name}/{chart}]({name}/{chart}).\n"));
            }
        }
        reports.insert(name.clone(), report.clone());
    }
    let json = json!({ "training": summary, "projector": manifest, "evaluations": reports });
    tinyalign_data::write_atomic(&run.join("report.md"), md.as_bytes())?;
    tinyalign_data::write_atomic(&run.join("report.json"), &serde_json::to_vec_pretty(&json)?)?;
    print!("{md}");
    eprintln!("report: {}", run.join("report.md").display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_summary_and_every_evaluation() {
        let dir =
            std::env::temp_dir().join(format!("tinyalign-report-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let write = |rel: &str, text: &str| {
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        let args = ReportArgs { run: dir.clone() };
        let summary = tinyalign_train::TrainSummary {
            steps: 600,
            stopped_because: tinyalign_train::StopReason::MaxSteps,
            best_valid_loss: None,
            best_valid_cosine: Some(0.684),
            best_valid_readout_error: None,
            classes: 0,
            valid_token_coverage: None,
            too_short_for_ctc: 0,
            best_step: Some(550),
            train_utterances: 1247,
            train_examples: 1247,
            valid_utterances: 100,
            parameters: 2253696,
            features_computed: 0,
            features_reused: 1347,
            feature_seconds: 0.0,
            training_seconds: 199.2,
            peak_rss_bytes: Some(727175168),
            projector: dir.join("projector.safetensors"),
            device: "cpu".into(),
        };
        write("summary.json", &serde_json::to_string(&summary).unwrap());
        let manifest = tinyalign_projector::ProjectorManifest {
            format: tinyalign_projector::MANIFEST_FORMAT.into(),
            projector: tinyalign_projector::ProjectorConfig::bridgeformer(384, 576, 0.1),
            encoder_sha256: "e".into(),
            llm_sha256: "l".into(),
            llm: None,
            frontend_version: 1,
            objective: "embedlink".into(),
            step: 550,
            valid_loss: None,
            valid_cosine: Some(0.684),
            valid_readout_error: None,
            train_utterances: 1247,
        };
        write(
            "projector.json",
            &String::from_utf8(manifest.to_json()).unwrap(),
        );
        let err = run(&args).unwrap_err().to_string();
        assert!(err.contains("holds no evaluation"), "{err}");
        write("eval-b/report.json", r#"{"task": "respond", "rows": []}"#);
        write(
            "eval-b/report.md",
            "# Respond task, split `test`\n\n| row |\n",
        );
        write("eval-b/f1_per_row.svg", "<svg/>");
        write(
            "eval-a/report.json",
            r#"{"task": "transcribe", "rows": []}"#,
        );
        write("eval-a/report.md", "# Transcribe task, split `test`\n");
        write("eval-c/notes.txt", "not an evaluation");
        run(&args).unwrap();
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(
            md.contains(
                "| embedlink | bridgeformer | 2253696 | 600 | 199 | 550 | 0.684 | - | 1247 | 0.73 GB |"
            ),
            "{md}"
        );
        let (a, b) = (md.find("## eval-a").unwrap(), md.find("## eval-b").unwrap());
        assert!(a < b && !md.contains("eval-c"));
        assert!(md.contains("### Respond task") && md.contains("(eval-b/f1_per_row.svg)"));
        let json: Value =
            serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
        assert_eq!(json["evaluations"]["eval-b"]["task"], "respond");
        assert_eq!(json["training"]["steps"], 600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
