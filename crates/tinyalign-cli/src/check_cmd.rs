//! `tinyalign data check MANIFEST`: the Whisper round-trip quality filter for synthetic (or any) speech.
//! Whisper transcribes utterances, the WER against the manifest's text is written into each checked
//! utterance's tags (`whisper-wer=0.25`), and an utterance far off (`--max-wer`) is tagged
//! `whisper-roundtrip-flagged`, or dropped with `--drop`. A voice that mispronounced the text shows up here
//! before it teaches the projector a wrong sound.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tinyalign_data::Manifest;
use tinyalign_whisper::WhisperModel;

pub const FLAG: &str = "whisper-roundtrip-flagged";

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    manifest: PathBuf,
    /// Check the first N utterances of each speaker (id order; 0 = all). Whisper takes ~2 s per utterance
    /// on 2 cores.
    #[arg(long, default_value_t = 5)]
    per_speaker: usize,
    /// Flag an utterance whose round-trip WER is above this.
    #[arg(long, default_value_t = 0.5)]
    max_wer: f64,
    /// Leave flagged utterances out of the written manifest instead of tagging them.
    #[arg(long)]
    drop: bool,
    /// Where to write the checked manifest (default: over the input, atomically).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: &CheckArgs) -> Result<()> {
    if !(args.max_wer.is_finite() && args.max_wer >= 0.0) {
        bail!("--max-wer must be ≥ 0");
    }
    let mut manifest = Manifest::read(&args.manifest)?;
    let dir = crate::paths::default_whisper_dir();
    let model = WhisperModel::load_dir(&dir)
        .with_context(|| format!("Whisper in {} (run `cargo xtask fetch`)", dir.display()))?;
    // Whisper's decoder expects its 30 s window.
    let frontend = model.encoder.config().frontend(true)?;

    let mut order: Vec<usize> = (0..manifest.utterances.len()).collect();
    order.sort_by(|&a, &b| manifest.utterances[a].id.cmp(&manifest.utterances[b].id));
    let mut per_speaker: BTreeMap<String, usize> = BTreeMap::new();
    let chosen: Vec<usize> = order
        .into_iter()
        .filter(|&i| {
            let seen = per_speaker
                .entry(manifest.utterances[i].speaker.clone())
                .or_default();
            *seen += 1;
            args.per_speaker == 0 || *seen <= args.per_speaker
        })
        .collect();
    let mut by_speaker: BTreeMap<String, (usize, tinyalign_eval::EditCounts, usize)> =
        BTreeMap::new();
    for (done, &i) in chosen.iter().enumerate() {
        let u = &manifest.utterances[i];
        let path = manifest.audio_path(u);
        let name = format!("{} ({})", path.display(), u.id);
        let audio = tinyalign_mel::read_audio_file(&path, u.input_format())?;
        let mel = frontend.audio_to_log_mel(&audio, &name)?;
        let text = model.transcribe(&mel, 224)?;
        let errors = tinyalign_eval::word_errors(&u.text, &text);
        let wer = errors.rate();
        let flagged = wer > args.max_wer;
        let entry = by_speaker.entry(u.speaker.clone()).or_default();
        entry.0 += 1;
        entry.1.add(errors);
        entry.2 += usize::from(flagged);
        let u = &mut manifest.utterances[i];
        u.tags
            .retain(|t| !t.starts_with("whisper-wer=") && t != FLAG);
        u.tags.push(format!("whisper-wer={wer:.2}"));
        if flagged {
            u.tags.push(FLAG.into());
            eprintln!("  flagged {}: \"{}\" heard as \"{text}\"", u.id, u.text);
        }
        if (done + 1) % 20 == 0 || done + 1 == chosen.len() {
            eprintln!("  checked {}/{}", done + 1, chosen.len());
        }
    }
    println!(
        "{:<32} {:>7} {:>8} {:>8}",
        "speaker", "checked", "WER", "flagged"
    );
    for (speaker, (n, counts, flagged)) in &by_speaker {
        println!(
            "{speaker:<32} {n:>7} {:>7.1}% {flagged:>8}",
            100.0 * counts.rate()
        );
    }
    let before = manifest.utterances.len();
    if args.drop {
        manifest
            .utterances
            .retain(|u| !u.tags.iter().any(|t| t == FLAG));
    }
    if manifest.utterances.is_empty() {
        bail!("every utterance was flagged; nothing written");
    }
    let out = args.out.clone().unwrap_or_else(|| args.manifest.clone());
    let out_dir = out.parent().map(PathBuf::from).unwrap_or_default();
    // Audio paths are relative to the manifest's folder: rebase them when writing elsewhere.
    for u in &mut manifest.utterances {
        let absolute = manifest.base_dir.join(&u.audio);
        if !std::path::Path::new(&u.audio).is_absolute() {
            u.audio = tinyalign_data::relative_path(&absolute, &out_dir)
                .to_string_lossy()
                .into_owned();
        }
    }
    manifest.write(&out)?;
    println!(
        "{} checked, {} flagged{}; manifest → {}",
        chosen.len(),
        by_speaker.values().map(|v| v.2).sum::<usize>(),
        if args.drop {
            format!(", {} dropped", before - manifest.utterances.len())
        } else {
            String::new()
        },
        out.display()
    );
    Ok(())
}
