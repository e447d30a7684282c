//! `cargo xtask eval [--run DIR] [--limit N]`: (re)evaluates a trained projector (default `runs/latest`) on
//! the default test sets and writes its run report: the transcribe task on unseen synthetic voices, the
//! respond task on their spoken requests, the transcribe task on the real telephone speaker's held-out
//! prompts, each with the whisper / cascade / text-oracle / projector / no-injection rows, then
//! `tinyalign report` gathers them with the training summary into `RUN/report.md` and `RUN/report.json`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::fetch;
use crate::util::{self, root};

/// (dataset, split, task) of the default evaluation.
const SETS: [(&str, &str, &str); 3] = [
    ("synth", "test", "transcribe"),
    ("synth", "test", "respond"),
    ("asterisk", "heldout", "transcribe"),
];

pub fn run(args: &[String]) -> Result<()> {
    let (mut run, mut limit) = (root().join("runs/latest"), 30usize);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().context("a value must follow").cloned();
        match arg.as_str() {
            "--run" => run = PathBuf::from(value()?),
            "--limit" => limit = value()?.parse().context("--limit N")?,
            other => bail!("unknown option '{other}' (--run DIR, --limit N)"),
        }
    }
    if !run.join("projector.json").is_file() {
        bail!(
            "{} is not a trained run (no projector.json); train one with `cargo xtask train` or name it with --run DIR",
            run.display()
        );
    }
    let cli = util::release_cli(&[])?;
    fetch::run_with(&[], Some(&cli))?;
    for dataset in ["synth", "asterisk"] {
        if !fetch::cache_dir()
            .join("datasets")
            .join(dataset)
            .join("manifest.jsonl")
            .exists()
        {
            if dataset == "synth" {
                util::ensure_synthesisers()?;
            }
            util::run(Command::new(&cli).args(["data", "build", dataset]))?;
        }
    }
    evaluate_run(&cli, &run, limit)
}

/// Runs the default evaluations of `run` through the release CLI and writes its report.
pub fn evaluate_run(cli: &Path, run: &Path, limit: usize) -> Result<()> {
    let datasets = fetch::cache_dir().join("datasets");
    // A CTC projector's transcribe evaluations score every readout (README, "Train a projector"). The
    // manifest is the trainer's pretty JSON, whose output mode is the only `"mode": "ctc"` in it (xtask
    // keeps to std and anyhow).
    let ctc = std::fs::read_to_string(run.join("projector.json"))
        .is_ok_and(|text| text.contains("\"mode\": \"ctc\""));
    for (i, (dataset, split, task)) in SETS.iter().enumerate() {
        println!(
            "\n-- evaluation {}/{}: {task} task, {dataset} `{split}`, {limit} utterances",
            i + 1,
            SETS.len()
        );
        let folder = match *task {
            "respond" => format!("eval-{dataset}-{split}-respond"),
            _ => format!("eval-{dataset}-{split}"),
        };
        let mut eval = Command::new(cli);
        eval.args(["eval", "--task", task, "--split", split, "--ablation"])
            .args(["--limit", &limit.to_string(), "--manifest"])
            .arg(datasets.join(dataset).join("manifest.jsonl"))
            .arg("--projector")
            .arg(run)
            .arg("--out")
            .arg(run.join(folder));
        if ctc && *task == "transcribe" {
            eval.arg("--all-readouts");
        }
        util::run(&mut eval)?;
    }
    util::run(Command::new(cli).arg("report").arg(run))
}
