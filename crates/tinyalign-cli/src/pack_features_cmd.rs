//! `tinyalign data pack-features`: moves a feature cache's entry files (one per utterance copy, as
//! versions before packed shards wrote them) into shards, so a large corpus is a few hundred files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct PackFeaturesArgs {
    /// Whisper model folder whose cache is packed (its weights' sha256 names the cache folder).
    /// Default: the cached whisper-tiny.en.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The feature cache root. Default: <cache>/features.
    #[arg(long)]
    features_dir: Option<PathBuf>,
}

pub fn run(args: &PackFeaturesArgs) -> Result<ExitCode> {
    let model = args
        .model
        .clone()
        .unwrap_or_else(crate::paths::default_whisper_dir);
    let weights = model.join("model.safetensors");
    let bytes =
        std::fs::read(&weights).with_context(|| format!("reading {}", weights.display()))?;
    let encoder_sha256 = tinyalign_train::sha256_hex(&bytes);
    drop(bytes);
    let root = args
        .features_dir
        .clone()
        .unwrap_or_else(|| crate::paths::cache_dir().join("features"));
    let mut store = tinyalign_train::FeatureStore::open(&root, &encoder_sha256)?;
    eprintln!(
        "packing the entry files of {} ({} entries already in shards)",
        store.dir().display(),
        store.packed_entries()
    );
    let started = std::time::Instant::now();
    let mut shown = 0;
    let report = store.pack_entry_files(&mut |done, total| {
        let tenth = done * 10 / total.max(1);
        if tenth > shown {
            shown = tenth;
            let elapsed = started.elapsed().as_secs_f64();
            let eta = elapsed * (total - done) as f64 / done as f64;
            eprintln!("  {done}/{total} entry files, {elapsed:.0} s elapsed, ETA {eta:.0} s");
        }
    })?;
    for path in report.unreadable.iter().take(5) {
        eprintln!(
            "left in place (not a complete features entry): {}",
            path.display()
        );
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}
