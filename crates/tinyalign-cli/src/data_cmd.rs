//! `tinyalign data`: build the packaged datasets' manifests, import a user's own recordings into a manifest,
//! and print a manifest's statistics.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tinyalign_data::{Manifest, ManifestStats, Split};

#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Debug, Subcommand)]
enum DataCommand {
    /// Build a dataset's manifest: `asterisk` (one telephone speaker, adapt/heldout) or `pocketsphinx` (test
    /// recordings) from the cache; `synth` (many synthetic speakers, train/valid/test), `synth-wide` (every
    /// espeak-ng variant and WordNet's 30,000+ example sentences beside the templates) or `atypical`
    /// (synthetic personal users, adapt/heldout) with espeak-ng and flite.
    Build {
        name: String,
        /// Output folder (manifest.jsonl goes there). Default: <cache>/datasets/<name>.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// asterisk: fraction of the prompts used for adaptation; the rest are held out.
        #[arg(long, default_value_t = 0.7)]
        adapt_fraction: f64,
        /// synth, synth-wide: hours of audio over all splits [default: 1, synth-wide 5].
        #[arg(long)]
        hours: Option<f64>,
        /// synth, synth-wide: number of voices (speakers), of them 4 valid and 4 test speakers (synth-wide:
        /// 8 and 8) [default: 48, synth-wide 160].
        #[arg(long)]
        speakers: Option<usize>,
        /// synth: add festival's three voices to the pool (slower; changes the seeded voice selection).
        #[arg(long)]
        festival: bool,
        /// synth-wide: sentences the LLM wrote (`data write-sentences`), up to a third of the texts.
        #[arg(long)]
        llm_sentences: Option<PathBuf>,
        /// synth, synth-wide: this many of the speakers are Kokoro-82M voices (natural neural speech, at
        /// most 35: five styles and their blends; ~3x faster than real time on 2 cores), run by one
        /// long-lived Python worker in <cache>/venv-kokoro (the build says how to make it when missing).
        #[arg(long, default_value_t = 0)]
        kokoro: usize,
        /// The Python that runs the Kokoro worker [default: <cache>/venv-kokoro/bin/python].
        #[arg(long)]
        kokoro_python: Option<PathBuf>,
        /// atypical: seconds of adaptation audio per user.
        #[arg(long, default_value_t = 300.0)]
        adapt_seconds: f64,
        /// atypical: held-out utterances per user.
        #[arg(long, default_value_t = 40)]
        heldout: usize,
    },
    /// Import recordings into a manifest: a folder of x.wav + x.txt (--wav-txt), a LibriSpeech tree
    /// (--librispeech), a Common Voice TSV (--common-voice), a NeMo manifest (--nemo), a Hugging Face
    /// audiofolder (--audiofolder) or a Kaldi/ESPnet data folder (--kaldi). Fields a NeMo or audiofolder
    /// record carries beyond the ones read are kept in the manifest and written back by `data export`.
    Import {
        #[arg(long, group = "layout")]
        wav_txt: Option<PathBuf>,
        #[arg(long, group = "layout")]
        librispeech: Option<PathBuf>,
        #[arg(long, group = "layout")]
        common_voice: Option<PathBuf>,
        /// A NeMo manifest (JSON lines with audio_filepath, duration, text).
        #[arg(long, group = "layout")]
        nemo: Option<PathBuf>,
        /// A Hugging Face audiofolder: metadata.jsonl/.csv with file_name, in it or in train/ validation/
        /// test/ folders (which then give the splits).
        #[arg(long, group = "layout")]
        audiofolder: Option<PathBuf>,
        /// A Kaldi/ESPnet data folder: wav.scp, text and optionally utt2spk.
        #[arg(long, group = "layout")]
        kaldi: Option<PathBuf>,
        /// The manifest to write.
        #[arg(long)]
        out: PathBuf,
        /// train, valid, test, adapt or heldout.
        #[arg(long, default_value = "train")]
        split: String,
        /// One speaker name for every utterance (default: the layout's speaker field, else each file's
        /// folder name; Kaldi without utt2spk: each utterance its own).
        #[arg(long)]
        speaker: Option<String>,
        /// The recordings' licence, recorded in the manifest (--wav-txt: "unspecified" when not given).
        #[arg(long)]
        licence: Option<String>,
    },
    /// Write a manifest in another toolkit's layout: `nemo` (a JSON-lines file at --out) or `hf` (a Hugging
    /// Face audiofolder: --out is the folder, metadata.jsonl goes in it). Extra fields are written back.
    Export {
        manifest: PathBuf,
        #[arg(long)]
        format: ExportFormat,
        #[arg(long)]
        out: PathBuf,
        /// hf: copy audio from outside --out into --out/audio/ (the datasets loader only finds files
        /// inside the folder).
        #[arg(long)]
        copy_audio: bool,
    },
    /// Hours, utterances, speakers and words per split, and a duration histogram.
    Stats {
        manifest: PathBuf,
        /// Also refuse fields this tool does not read (kept and written back otherwise).
        #[arg(long)]
        strict: bool,
    },
    /// Whisper round-trip quality filter: tag (or drop) utterances Whisper hears far from their text.
    Check(crate::check_cmd::CheckArgs),
    /// The frozen LLM writes training sentences (seeded sampling over topics with numbers, dates, names
    /// and places; filtered, deduplicated) into a JSON Lines file; `data build synth-wide --llm-sentences`
    /// reads them. Continues an existing file.
    WriteSentences(crate::sentences_cmd::WriteSentencesArgs),
    /// Move a feature cache's entry files (one per utterance copy, from versions before packed shards)
    /// into shards of at most 64 MB; each file is deleted once the shard holding it is written.
    PackFeatures(crate::pack_features_cmd::PackFeaturesArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    Nemo,
    Hf,
}

/// A progress line to stderr at every further tenth of the work, with the elapsed time and an ETA.
fn progress_printer(name: &'static str) -> impl FnMut(f64, f64) {
    let start = std::time::Instant::now();
    let mut shown = 0;
    move |done, total| {
        let tenth = (10.0 * done / total.max(1e-9)).floor() as u32;
        if tenth > shown {
            shown = tenth;
            let elapsed = start.elapsed().as_secs_f64();
            let eta = elapsed * (total - done).max(0.0) / done.max(1e-9);
            eprintln!(
                "  {name}: {:.0}/{:.0} s of audio ({}%), {elapsed:.0} s elapsed, ETA {eta:.0} s",
                done,
                total,
                tenth * 10
            );
        }
    }
}

pub fn run(args: &DataArgs) -> Result<ExitCode> {
    match &args.command {
        DataCommand::Build {
            name,
            out,
            seed,
            adapt_fraction,
            hours,
            speakers,
            festival,
            llm_sentences,
            kokoro,
            kokoro_python,
            adapt_seconds,
            heldout,
        } => {
            let cache = crate::paths::cache_dir();
            if *kokoro > 0 && !name.starts_with("synth") {
                bail!("--kokoro adds speakers to synth and synth-wide only, not {name}");
            }
            let kokoro = (*kokoro > 0).then(|| tinyalign_data::KokoroOptions {
                speakers: *kokoro,
                python: kokoro_python
                    .clone()
                    .unwrap_or_else(|| cache.join("venv-kokoro/bin/python")),
                work_dir: cache.join("kokoro"),
            });
            let out = out
                .clone()
                .unwrap_or_else(|| cache.join("datasets").join(name));
            let (manifest, report) = match name.as_str() {
                "asterisk" => {
                    if !(0.0..=1.0).contains(adapt_fraction) {
                        bail!("--adapt-fraction must be between 0 and 1");
                    }
                    tinyalign_data::build_asterisk(
                        &cache,
                        &out,
                        *seed,
                        *adapt_fraction,
                        tinyalign_mel::WINDOW_SECONDS,
                    )?
                }
                "pocketsphinx" => tinyalign_data::build_pocketsphinx(&cache, &out)?,
                "synth" => {
                    let options = tinyalign_data::SynthOptions {
                        seed: *seed,
                        hours: hours.unwrap_or(1.0),
                        speakers: speakers.unwrap_or(48),
                        festival: *festival,
                        kokoro,
                        ..Default::default()
                    };
                    tinyalign_data::build_synth(&out, &options, &mut progress_printer("synth"))?
                }
                "synth-wide" => {
                    let options = tinyalign_data::SynthOptions {
                        seed: *seed,
                        hours: hours.unwrap_or(5.0),
                        speakers: speakers.unwrap_or(160),
                        valid_speakers: 8,
                        test_speakers: 8,
                        festival: *festival,
                        every_variant: true,
                        wordnet: Some(tinyalign_data::wordnet_dir(&cache)),
                        llm_sentences: llm_sentences.clone(),
                        kokoro,
                    };
                    tinyalign_data::build_synth(
                        &out,
                        &options,
                        &mut progress_printer("synth-wide"),
                    )?
                }
                "atypical" => {
                    let options = tinyalign_data::AtypicalOptions {
                        seed: *seed,
                        adapt_seconds: *adapt_seconds,
                        heldout: *heldout,
                    };
                    tinyalign_data::build_atypical(
                        &out,
                        &options,
                        &mut progress_printer("atypical"),
                    )?
                }
                other => {
                    bail!(
                        "unknown dataset `{other}` (asterisk, pocketsphinx, synth, synth-wide, atypical)"
                    )
                }
            };
            for (id, reason) in &report.skipped {
                eprintln!("  left out {id}: {reason}");
            }
            println!(
                "{}: {} utterances → {}",
                name,
                report.kept,
                out.join("manifest.jsonl").display()
            );
            print!("{}", ManifestStats::of(&manifest));
        }
        DataCommand::Import {
            wav_txt,
            librispeech,
            common_voice,
            nemo,
            audiofolder,
            kaldi,
            out,
            split,
            speaker,
            licence,
        } => {
            let split: Split = split.parse()?;
            let dir = out.parent().map(PathBuf::from).unwrap_or_default();
            let speaker = speaker.as_deref();
            let mut utterances = if let Some(d) = wav_txt {
                let licence = licence.as_deref().unwrap_or("unspecified");
                tinyalign_data::import_wav_txt(d, speaker, split, licence, &dir)?
            } else if let Some(d) = librispeech {
                tinyalign_data::import_librispeech(d, split, &dir)?
            } else if let Some(t) = common_voice {
                tinyalign_data::import_common_voice(t, split, &dir)?
            } else if let Some(f) = nemo {
                tinyalign_data::import_nemo(f, split, speaker, &dir)?
            } else if let Some(d) = audiofolder {
                tinyalign_data::import_audiofolder(d, split, speaker, &dir)?
            } else if let Some(d) = kaldi {
                tinyalign_data::import_kaldi(d, split, speaker, &dir)?
            } else {
                bail!(
                    "say what to import: --wav-txt DIR, --librispeech DIR, --common-voice TSV, \
                     --nemo FILE, --audiofolder DIR or --kaldi DIR"
                )
            };
            if let Some(licence) = licence.as_deref().filter(|_| wav_txt.is_none()) {
                for u in utterances.iter_mut().filter(|u| u.licence.is_empty()) {
                    u.licence = licence.to_string();
                }
            }
            // The same checks as reading it back (ids, speaker-disjoint splits), before anything is written.
            let manifest = Manifest::parse(
                &Manifest::new(&dir, utterances).to_jsonl(),
                dir.clone(),
                &out.display().to_string(),
            )?;
            manifest
                .write(out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{} utterances → {}",
                manifest.utterances.len(),
                out.display()
            );
            print!("{}", ManifestStats::of(&manifest));
        }
        DataCommand::Check(check) => crate::check_cmd::run(check)?,
        DataCommand::WriteSentences(write) => crate::sentences_cmd::run(write)?,
        DataCommand::PackFeatures(pack) => return crate::pack_features_cmd::run(pack),
        DataCommand::Export {
            manifest,
            format,
            out,
            copy_audio,
        } => {
            let m = Manifest::read(manifest)?;
            match format {
                ExportFormat::Nemo => tinyalign_data::export_nemo(&m, out)?,
                ExportFormat::Hf => tinyalign_data::export_audiofolder(&m, out, *copy_audio)?,
            }
            let written = match format {
                ExportFormat::Nemo => out.clone(),
                ExportFormat::Hf => out.join("metadata.jsonl"),
            };
            println!("{} utterances → {}", m.utterances.len(), written.display());
        }
        DataCommand::Stats { manifest, strict } => {
            let m = if *strict {
                Manifest::read_strict(manifest)?
            } else {
                Manifest::read(manifest)?
            };
            print!("{}", ManifestStats::of(&m));
            let missing = m.missing_audio();
            if !missing.is_empty() {
                for (id, path) in missing.iter().take(5) {
                    eprintln!("missing audio: {id} ({})", path.display());
                }
                bail!("{} utterances have no audio file", missing.len());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
