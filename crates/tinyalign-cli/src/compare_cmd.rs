//! `tinyalign compare RUN... --eval eval-test --out DIR`: the headline comparison of training runs (e.g.
//! EmbedLink vs LLM-in-the-loop, BridgeFormer vs MLP, run by `cargo xtask bench-align` on the same data and
//! time budget): training cost per utterance, validation cosine reached and when, and the WER of each
//! run's evaluation report. Writes `compare.md`, `compare.json` and two SVG charts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use tinyalign_train::{TrainConfig, TrainSummary};

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Training run folders (config.toml, summary.json, metrics.jsonl; an evaluation report inside).
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// The evaluation sub-folder of each run to read `report.json` from.
    #[arg(long, default_value = "eval-test")]
    eval: String,
    /// Where compare.md, compare.json and the charts go.
    #[arg(long)]
    out: PathBuf,
}

struct Run {
    name: String,
    objective: String,
    projector: String,
    batch: usize,
    summary: TrainSummary,
    /// (training seconds, validation cosine) at each validation.
    cosine_curve: Vec<(f64, f64)>,
    /// The evaluation report's `projector` row, if the run was evaluated.
    eval_row: Option<Value>,
}

impl Run {
    fn steps(&self) -> f64 {
        self.summary.steps as f64
    }

    fn training_seconds(&self) -> f64 {
        self.summary.training_seconds
    }

    /// A score (`wer`, `f1`, ...) of the run's evaluation (its `projector` row).
    fn score(&self, key: &str) -> Option<f64> {
        self.eval_row.as_ref()?[key].as_f64()
    }

    /// Training time per utterance seen (steps × batch).
    fn ms_per_utterance(&self) -> f64 {
        1e3 * self.training_seconds() / (self.steps() * self.batch as f64).max(1.0)
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn load(dir: &Path, eval: &str) -> Result<Run> {
    let config = TrainConfig::read(&dir.join("config.toml"))?;
    let summary = tinyalign_train::read_summary(dir)?;
    let cosine_curve = tinyalign_train::read_metrics(&dir.join("metrics.jsonl"))?
        .into_iter()
        .filter_map(|m| Some((m.seconds, f64::from(m.valid_cosine?))))
        .collect();
    let eval_path = dir.join(eval).join("report.json");
    let eval_row = if eval_path.exists() {
        read_json(&eval_path)?["rows"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["name"] == "projector").cloned())
    } else {
        None
    };
    Ok(Run {
        name: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string()),
        objective: serde_json::to_value(config.loss.objective)?
            .as_str()
            .unwrap_or_default()
            .to_string(),
        projector: serde_json::to_value(config.projector.kind)?
            .as_str()
            .unwrap_or_default()
            .to_string(),
        batch: config.optim.batch_size,
        summary,
        cosine_curve,
        eval_row,
    })
}

/// A run's name without its `-seedK` suffix.
fn configuration_name(run: &str) -> &str {
    match run.rsplit_once("-seed") {
        Some((base, seed)) if !seed.is_empty() && seed.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => run,
    }
}

/// `mean (min–max)` of `values` times `scale`, or `-` for none.
fn mean_range(values: &[f64], scale: f64, decimals: usize, unit: &str) -> String {
    if values.is_empty() {
        return "-".into();
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if values.len() == 1 {
        return format!("{:.decimals$}{unit}", scale * mean);
    }
    format!(
        "{:.decimals$}{unit} ({:.decimals$}–{:.decimals$})",
        scale * mean,
        scale * lo,
        scale * hi
    )
}

/// Training seconds at the first validation reaching `cosine`, if any.
fn time_to(curve: &[(f64, f64)], cosine: f64) -> Option<f64> {
    curve.iter().find(|p| p.1 >= cosine).map(|p| p.0)
}

pub fn run(args: &CompareArgs) -> Result<ExitCode> {
    let runs: Vec<Run> = args
        .runs
        .iter()
        .map(|d| load(d, &args.eval))
        .collect::<Result<_>>()?;
    if runs.is_empty() {
        bail!("name at least one run folder");
    }
    let mut md = String::from(
        "| run | objective | projector | parameters | steps × batch | training s | ms per utterance | best valid cosine | valid token readout | WER | CER | word F1 | loops |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut rows = Vec::new();
    for r in &runs {
        let (steps, seconds, ms_per_utterance) =
            (r.steps(), r.training_seconds(), r.ms_per_utterance());
        let (cosine, readout) = (
            r.summary.best_valid_cosine,
            r.summary.best_valid_readout_error,
        );
        let pct = |key: &str| {
            r.score(key)
                .map(|v| format!("{:.1}%", 100.0 * v))
                .unwrap_or_else(|| "-".into())
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} × {} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} |\n",
            r.name,
            r.objective,
            r.projector,
            r.summary.parameters,
            steps,
            r.batch,
            seconds,
            ms_per_utterance,
            cosine.map_or("-".into(), |c| format!("{c:.3}")),
            readout.map_or("-".into(), |e| format!("{:.1}% TER", 100.0 * e)),
            pct("wer"),
            pct("cer"),
            r.score("f1").map_or("-".into(), |f| format!("{f:.2}")),
            pct("loop_rate"),
        ));
        rows.push(json!({
            "run": r.name, "objective": r.objective, "projector": r.projector, "steps": steps,
            "batch": r.batch, "training_seconds": seconds, "ms_per_utterance": ms_per_utterance,
            "best_valid_cosine": cosine, "best_valid_readout_error": readout, "eval": r.eval_row,
            "cosine_curve": r.cosine_curve,
        }));
    }

    // Headline: per-utterance cost of EmbedLink against LLM-in-the-loop for the same projector.
    for loop_run in runs.iter().filter(|r| r.objective == "llm_in_the_loop") {
        for embed_run in runs
            .iter()
            .filter(|r| llm_free(&r.objective) && r.projector == loop_run.projector)
        {
            let (fast, slow) = (embed_run.ms_per_utterance(), loop_run.ms_per_utterance());
            md.push_str(&format!(
                "\nPer training utterance, {} (`{}`) takes {fast:.1} ms and LLM-in-the-loop (`{}`) {slow:.1} ms: {:.0}× less time for the same {} projector.\n",
                if embed_run.objective == "ctc" {
                    "CTC onto the LLM's vocabulary"
                } else {
                    "EmbedLink"
                },
                embed_run.name,
                loop_run.name,
                slow / fast,
                embed_run.projector,
            ));
        }
    }
    // Time to the same quality, as a bound: each run is evaluated once, at its end. Same quality means a WER
    // at most the loop run's *and* a word F1 at least its own: an empty answer scores exactly 100% WER, so a
    // barely trained projector that answers nothing would otherwise "beat" a loop run whose answers ramble.
    for loop_run in runs.iter().filter(|r| r.objective == "llm_in_the_loop") {
        let (Some(loop_wer), Some(loop_f1)) = (loop_run.score("wer"), loop_run.score("f1")) else {
            continue;
        };
        let fastest = runs
            .iter()
            .filter(|r| llm_free(&r.objective) && r.projector == loop_run.projector)
            .filter(|r| {
                r.score("wer").is_some_and(|w| w <= loop_wer)
                    && r.score("f1").is_some_and(|f| f >= loop_f1)
            })
            .min_by(|a, b| a.training_seconds().total_cmp(&b.training_seconds()));
        md.push_str(&match fastest {
            Some(r) => format!(
                "\nTime to the same quality: `{}` reached {:.1}% WER and word F1 {:.2} (the loop run: {:.1}%, {:.2}) after {:.0} s of training; `{}` trained {:.0} s. At least {:.1}× less training time (each run is evaluated only at its end).\n",
                r.name,
                100.0 * r.score("wer").unwrap_or_default(),
                r.score("f1").unwrap_or_default(),
                100.0 * loop_wer,
                loop_f1,
                r.training_seconds(),
                loop_run.name,
                loop_run.training_seconds(),
                loop_run.training_seconds() / r.training_seconds().max(1e-9),
            ),
            None => format!(
                "\nTime to the same quality: no EmbedLink run of the {} projector reached both the loop run's WER ({:.1}% or less) and its word F1 ({:.2} or more).\n",
                loop_run.projector,
                100.0 * loop_wer,
                loop_f1
            ),
        });
    }
    let floor = runs
        .iter()
        .filter_map(|r| r.summary.best_valid_cosine.map(f64::from))
        .fold(f64::INFINITY, f64::min);
    if floor.is_finite() {
        md.push_str(&format!(
            "\nTraining time to reach a validation cosine to the EmbedLink targets of {floor:.3} (the lowest best among the runs; LLM-in-the-loop does not optimise this cosine, so read its WER too):\n\n"
        ));
        for r in &runs {
            md.push_str(&format!(
                "- `{}`: {}\n",
                r.name,
                if r.cosine_curve.is_empty() {
                    "no cosine (its frames have no target positions)".into()
                } else {
                    time_to(&r.cosine_curve, floor)
                        .map_or("not reached".into(), |s| format!("{s:.0} s"))
                }
            ));
        }
    }

    // Repeats of one configuration with other seeds (`NAME-seedK`, from `cargo xtask bench-align --seeds`).
    let mut groups: Vec<(&str, Vec<&Run>)> = Vec::new();
    for r in &runs {
        let base = configuration_name(&r.name);
        match groups.iter_mut().find(|g| g.0 == base) {
            Some(g) => g.1.push(r),
            None => groups.push((base, vec![r])),
        }
    }
    let mut spread = Vec::new();
    if groups.iter().any(|g| g.1.len() > 1) {
        md.push_str(
            "\nAcross training seeds (mean, min–max; one seed where only one run):\n\n| configuration | seeds | best valid cosine | valid token readout (TER) | WER | CER |\n|---|---|---|---|---|---|\n",
        );
        for (base, members) in &groups {
            let cosine: Vec<f64> = members
                .iter()
                .filter_map(|r| r.summary.best_valid_cosine.map(f64::from))
                .collect();
            let of =
                |key: &str| -> Vec<f64> { members.iter().filter_map(|r| r.score(key)).collect() };
            let (wer, cer) = (of("wer"), of("cer"));
            let readout: Vec<f64> = members
                .iter()
                .filter_map(|r| r.summary.best_valid_readout_error.map(f64::from))
                .collect();
            md.push_str(&format!(
                "| {base} | {} | {} | {} | {} | {} |\n",
                members.len(),
                mean_range(&cosine, 1.0, 3, ""),
                mean_range(&readout, 100.0, 1, "%"),
                mean_range(&wer, 100.0, 1, "%"),
                mean_range(&cer, 100.0, 1, "%"),
            ));
            spread.push(json!({
                "configuration": base, "runs": members.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
                "best_valid_cosine": cosine, "best_valid_readout_error": readout, "wer": wer,
                "cer": cer,
            }));
        }
    }

    std::fs::create_dir_all(&args.out).with_context(|| args.out.display().to_string())?;
    let series: Vec<tinyalign_train::plot::Series> = runs
        .iter()
        .map(|r| (r.name.as_str(), r.cosine_curve.clone(), 2.0))
        .collect();
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        tinyalign_data::write_atomic(&args.out.join(name), bytes)?;
        Ok(())
    };
    write(
        "valid_cosine_vs_seconds.svg",
        tinyalign_train::plot::line_chart_svg("training s", "valid cosine", &series).as_bytes(),
    )?;
    let wer_vs_time: Vec<tinyalign_train::plot::Series> = runs
        .iter()
        .filter_map(|r| {
            let wer = r.score("wer")?;
            Some((r.name.as_str(), vec![(r.training_seconds(), wer)], 1.0))
        })
        .collect();
    if !wer_vs_time.is_empty() {
        write(
            "wer_vs_training_seconds.svg",
            tinyalign_train::plot::line_chart_svg("training s", "WER", &wer_vs_time).as_bytes(),
        )?;
    }
    write("compare.md", md.as_bytes())?;
    write(
        "compare.json",
        &serde_json::to_vec_pretty(&json!({ "runs": rows, "across_seeds": spread }))?,
    )?;
    print!("{md}");
    eprintln!("comparison: {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// Objectives whose training never runs the LLM (EmbedLink's point): the pooled EmbedLink loss and CTC.
fn llm_free(objective: &str) -> bool {
    matches!(objective, "embedlink" | "ctc")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_group_by_configuration() {
        assert_eq!(configuration_name("embedlink-mlp-seed2"), "embedlink-mlp");
        assert_eq!(configuration_name("embedlink-mlp"), "embedlink-mlp");
        assert_eq!(configuration_name("a-seedling"), "a-seedling");
        assert_eq!(
            mean_range(&[1.0, 1.5], 100.0, 1, "%"),
            "125.0% (100.0–150.0)"
        );
        assert_eq!(mean_range(&[0.5], 1.0, 3, ""), "0.500");
        assert_eq!(mean_range(&[], 1.0, 3, ""), "-");
    }

    #[test]
    fn time_to_a_cosine_is_the_first_validation_reaching_it() {
        let curve = [(10.0, 0.2), (20.0, 0.45), (30.0, 0.4), (40.0, 0.6)];
        assert_eq!(time_to(&curve, 0.45), Some(20.0));
        assert_eq!(time_to(&curve, 0.5), Some(40.0));
        assert_eq!(time_to(&curve, 0.7), None);
    }
}
