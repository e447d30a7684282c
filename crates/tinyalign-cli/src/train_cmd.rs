//! `tinyalign train --config configs/default.toml`: EmbedLink training of a projector into a run folder.
//! Ctrl-C stops after the current step with a checkpoint; `--resume` continues it exactly.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::Args;
use tinyalign_train::{ComputeDevice, TrainConfig, TrainOptions};

use crate::paths::cache_dir;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// A preset from configs/ (smoke, default, pooled, full) or any TOML file in that format.
    #[arg(long, default_value = "configs/default.toml")]
    config: PathBuf,
    /// Run folder (default: runs/<config name>).
    #[arg(long)]
    run: Option<PathBuf>,
    /// Continue the run folder's checkpoint instead of starting over.
    #[arg(long)]
    resume: bool,
    /// Override the config's manifest.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Override the config's step budget.
    #[arg(long)]
    max_steps: Option<u64>,
    /// Override any config field: `--set optim.batch_size=8 --set loss.objective=llm_in_the_loop`.
    #[arg(long = "set", value_name = "SECTION.FIELD=VALUE")]
    overrides: Vec<String>,
    /// Where the projector trains: cpu, or cuda / cuda:N (a build with `--features cuda`). The frozen
    /// encoder and LLM run on the CPU either way.
    #[arg(long, default_value = "cpu")]
    device: ComputeDevice,
    /// The frozen LLM whose embedding table is the target (overrides the config's `[llm] model`):
    /// smollm2-135m, qwen2.5-0.5b, qwen2.5-1.5b, a .gguf file or a Hugging Face folder (`DIR`, or `DIR@q8_0` to quantise it at load).
    #[arg(long)]
    llm: Option<String>,
    /// Only fill the feature cache (with the config's augmented copies) and exit: what a batch of machines
    /// runs before training, each with its own --shard, sharing one $TINYALIGN_CACHE.
    #[arg(long)]
    features_only: bool,
    /// With --features-only: this process's part of the utterances, I/N (0-based), by a hash of the id.
    #[arg(long, value_name = "I/N", requires = "features_only")]
    shard: Option<String>,
}

pub fn run(args: &TrainArgs) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let mut config = TrainConfig::from_toml_with_overrides(
        &text,
        &args.config.display().to_string(),
        &args.overrides,
    )?;
    if let Some(m) = &args.manifest {
        config.data.manifest = std::fs::canonicalize(m)
            .with_context(|| format!("manifest {}", m.display()))?
            .display()
            .to_string();
    }
    if let Some(steps) = args.max_steps {
        config.optim.max_steps = steps;
    }
    if let Some(llm) = &args.llm {
        config.llm.model = llm.clone();
    }
    let llm_path = crate::llm_choice::resolve(&config.llm.model)?;
    if !crate::llm_choice::is_known(&config.llm.model) {
        // A file or folder is recorded absolute (with its `@FORMAT`), so the projector's manifest finds the
        // same LLM from any working directory.
        config.llm.model = llm_path.display().to_string();
    }
    let name = args
        .config
        .file_stem()
        .map_or("run".into(), |s| s.to_string_lossy().into_owned());
    let run_dir = args
        .run
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(name));
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("second Ctrl-C: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!("Ctrl-C: stopping after this step and writing a checkpoint (again to abort)");
    })
    .context("installing the Ctrl-C handler")?;
    let cache = cache_dir();
    let options = TrainOptions {
        run_dir: run_dir.clone(),
        whisper_dir: crate::paths::default_whisper_dir(),
        llm_path,
        cache_dir: cache,
        resume: args.resume,
        stop,
        verbose: true,
        interrupt_at_step: None,
        init_from: None,
        feature_dir: None,
        device: args.device,
    };
    if args.features_only {
        let shard = match &args.shard {
            Some(text) => tinyalign_train::Shard::parse(text)?,
            None => tinyalign_train::Shard::ALL,
        };
        let started = std::time::Instant::now();
        let mut shown = 0;
        let report = tinyalign_train::cache_features(
            &config,
            &options,
            shard,
            &mut |done, total| {
                let tenth = done * 10 / total.max(1);
                if tenth > shown {
                    shown = tenth;
                    let elapsed = started.elapsed().as_secs_f64();
                    let eta = elapsed * (total - done) as f64 / done as f64;
                    eprintln!(
                        "  features {done}/{total} utterances, {elapsed:.0} s elapsed, ETA {eta:.0} s"
                    );
                }
            },
        )?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let summary = tinyalign_train::train(&config, &options)?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    eprintln!(
        "run folder: {} (loss.svg, metrics.jsonl, projector.safetensors)",
        run_dir.display()
    );
    Ok(
        if summary.stopped_because == tinyalign_train::StopReason::Interrupted {
            ExitCode::from(130)
        } else {
            ExitCode::SUCCESS
        },
    )
}
