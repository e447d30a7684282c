//! `cargo xtask bench-align [--seconds S] [--limit N] [--seeds K]`: the paper's headline comparisons on our
//! models and data, under one training-time budget per run, on the same synthetic speakers:
//! 1. EmbedLink vs LLM-in-the-loop training of the same BridgeFormer (cost per utterance, validation cosine
//!    reached and when, WER on unseen voices; and time to the same quality, bounded by one more EmbedLink run
//!    on a quarter of the budget);
//! 2. BridgeFormer vs the SLAM-ASR MLP projector, both with EmbedLink and instruction injection;
//! 3. the same two projectors with a CTC head (`configs/default.toml`; the LLM never runs in training
//!    either), read into the LLM by the greedy readout.
//!
//! With `--seeds K` the two EmbedLink runs repeat with training seeds 0..K (initialisation and batch order),
//! so their spread shows how much of a difference is noise; the LLM-in-the-loop run, 80× slower per
//! utterance, runs once. Every run goes into `runs/bench-align-<time>/`; `tinyalign compare` writes the
//! table, the spread across seeds and the charts there.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::fetch;
use crate::util::{self, root};

pub fn run(args: &[String]) -> Result<()> {
    let (mut seconds, mut limit, mut seeds) = (240u64, 30usize, 1u64);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().context("a value must follow").cloned();
        match arg.as_str() {
            "--seconds" => seconds = value()?.parse().context("--seconds N")?,
            "--limit" => limit = value()?.parse().context("--limit N")?,
            "--seeds" => seeds = value()?.parse().context("--seeds K")?,
            other => bail!("unknown option '{other}' (--seconds S, --limit N, --seeds K)"),
        }
    }
    util::ensure_synthesisers()?;
    let cli = util::release_cli(&[])?;
    fetch::run_with(&[], Some(&cli))?;
    let manifest = fetch::cache_dir().join("datasets/synth/manifest.jsonl");
    if !manifest.exists() {
        util::run(Command::new(&cli).args(["data", "build", "synth"]))?;
    }
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("system clock before 1970")?
        .as_secs();
    let out = root().join("runs").join(format!("bench-align-{stamp}"));
    // Every run trains for the whole budget, its learning-rate schedule stretched over that time (the step
    // cap is out of reach, no early stopping), and validates on the same 16 utterances (the loop run's
    // validation runs the LLM).
    let runs: [(&str, &str, Vec<&str>); 5] = [
        ("embedlink-bridgeformer", "pooled", vec![]),
        (
            "in-the-loop-bridgeformer",
            "pooled",
            vec![
                "loss.objective=llm_in_the_loop",
                "optim.batch_size=8",
                "optim.validate_every=5",
                "optim.warmup_steps=3",
            ],
        ),
        (
            "embedlink-mlp",
            "pooled",
            vec!["projector.kind=mlp", "projector.stack=5"],
        ),
        ("ctc-bridgeformer", "default", vec![]),
        // The same frame rate as the BridgeFormer (stack 4): the comparison is the trunk's.
        ("ctc-mlp", "default", vec!["projector.kind=mlp"]),
    ];
    // (folder name, preset, seed, seconds, overrides): every configuration at seed 0, then the ones that
    // never run the LLM again.
    let mut plan: Vec<(String, &str, u64, u64, &Vec<&str>)> = Vec::new();
    for seed in 0..seeds.max(1) {
        for (name, preset, overrides) in &runs {
            if seed > 0 && name.starts_with("in-the-loop") {
                continue;
            }
            let folder = if seeds > 1 {
                format!("{name}-seed{seed}")
            } else {
                name.to_string()
            };
            plan.push((folder, preset, seed, seconds, overrides));
        }
    }
    // Time to the same quality, bounded from one end: EmbedLink on a quarter of the budget against the loop
    // run on the whole budget (a sixteenth, 15 s, trained too little to answer at all).
    let no_overrides = Vec::new();
    plan.push((
        "embedlink-bridgeformer-quick".to_string(),
        "pooled",
        0,
        (seconds / 4).max(5),
        &no_overrides,
    ));
    for (i, (name, preset, seed, seconds, overrides)) in plan.iter().enumerate() {
        let budget = format!("optim.max_seconds={seconds}");
        let dir = out.join(name);
        println!("\n== {}/{}: {name} ({budget})", i + 1, plan.len());
        let mut train = Command::new(&cli);
        train
            .args(["train", "--config"])
            .arg(root().join(format!("configs/{preset}.toml")))
            .arg("--run")
            .arg(&dir)
            // The LLM-in-the-loop baseline runs SmolLM2's differentiable graph (the only architecture it
            // has), so every run of the comparison uses SmolLM2.
            .args(["--llm", "smollm2-135m"])
            .args(["--set", &budget, "--set", "optim.max_steps=1000000"])
            .args(["--set", "data.max_valid=16", "--set", "optim.patience=0"])
            .args(["--set", &format!("optim.seed={seed}")]);
        for o in overrides.iter() {
            train.args(["--set", o]);
        }
        util::run(&mut train)?;
        evaluate(&cli, &manifest, &dir, limit, i == 0)?;
    }
    let mut compare = Command::new(&cli);
    compare.arg("compare");
    for (name, _, _, _, _) in &plan {
        compare.arg(out.join(name));
    }
    compare.args(["--eval", "eval-test", "--out"]).arg(&out);
    util::run(&mut compare)?;
    println!(
        "\ncomparison: {}/compare.md (+ compare.json, valid_cosine_vs_seconds.svg, wer_vs_training_seconds.svg)\n\
         the whisper and text-oracle rows for the same utterances: {}/{}/eval-test/report.md",
        out.display(),
        out.display(),
        plan[0].0
    );
    Ok(())
}

fn evaluate(cli: &Path, manifest: &Path, run: &Path, limit: usize, baselines: bool) -> Result<()> {
    let mut eval = Command::new(cli);
    eval.args([
        "eval",
        "--split",
        "test",
        "--limit",
        &limit.to_string(),
        "--manifest",
    ])
    .arg(manifest)
    .arg("--projector")
    .arg(run)
    .arg("--out")
    .arg(run.join("eval-test"));
    if !baselines {
        eval.arg("--no-baselines");
    }
    util::run(&mut eval)
}
