//! `cargo xtask bench [--quick] [--only STAGES] [--device cuda] [--out DIR]`: every stage's speed on this
//! machine in one report. Criterion's per-stage benches (log-mel, encoder, LLM kernels, projector step, GPU
//! kernels) are collected from `target/criterion`; the end-to-end rows run the release CLI (Whisper
//! transcribe, LLM prefill and decode per cached LLM, a training step per projector kind, personalisation
//! on 5 minutes of speech), and, where the peer tools are installed (`benches/reference/peers.py` in
//! `<cache>/venv-peers`), the peers on the same inputs, interleaved with ours, as ratios. Writes
//! `DIR/report.{md,json}` and `DIR/chart.svg` (default `bench/`). A missing peer or dataset is a skipped row
//! with its reason.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bench_options::{Options, STAGES, parse};
use crate::bench_peers::{LlamaBench, Measured, Peers};
use crate::bench_report::{Row, write_report};
use crate::{fetch, util};

pub fn run(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    let started = SystemTime::now();
    let features: &[&str] = if options.device == "cuda" {
        &["cuda"]
    } else {
        &[]
    };
    let cli = util::release_cli(features)?;
    fetch::run_with(&[], Some(&cli))?;
    let machine = crate::bench_report::machine();
    eprintln!("== bench on {}", machine["cpu"].as_str().unwrap_or("?"));
    let mut rows = Vec::new();

    if options.runs("criterion") {
        rows.extend(criterion_rows(options.quick, started)?);
    }

    let peers = Peers::find();
    let rounds = if options.quick { 1 } else { 3 };
    if options.runs("whisper") {
        rows.extend(transcribe_rows(&cli, &peers, rounds));
    }
    if options.runs("llm") {
        rows.extend(llm_rows(&cli, &peers, rounds, options.quick));
    }
    if options.runs("training") {
        rows.extend(training_rows(&cli, &options));
    }
    if options.runs("personalisation") {
        if options.quick {
            rows.push(Row::skipped(
                "personalisation",
                "5 min of speech",
                "left out by --quick",
            ));
        } else {
            rows.extend(personalisation_rows(&cli, &options));
        }
    }
    for stage in STAGES.iter().filter(|s| !options.runs(s)) {
        rows.push(Row::skipped(stage, "every row", "left out by --only"));
    }
    write_report(&options.out, &machine, &rows, options.quick)?;
    eprintln!(
        "== wrote {}/report.md, report.json and chart.svg",
        options.out.display()
    );
    Ok(())
}

/// Criterion's per-stage benches, collected from `target/criterion` (those written since `started`).
fn criterion_rows(quick: bool, started: SystemTime) -> Result<Vec<Row>> {
    eprintln!(
        "== criterion benches{}",
        if quick { " (--quick)" } else { "" }
    );
    let mut bench_args = vec![
        "bench",
        "-p",
        "tinyalign-benches",
        "--bench",
        "tinyalign",
        "--",
    ];
    if quick {
        bench_args.extend([
            "--warm-up-time",
            "0.5",
            "--measurement-time",
            "2",
            "--sample-size",
            "10",
        ]);
    }
    match util::cargo(&bench_args) {
        Ok(()) => crate::bench_report::criterion_rows(started),
        Err(e) => Ok(vec![Row::skipped(
            "criterion",
            "benches",
            &format!("{e:#}"),
        )]),
    }
}

fn threads() -> String {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .to_string()
}

/// Runs `cli ARGS` and returns the JSON object on its last stdout line (`ask --stats` streams the answer
/// first, which may itself have lines starting with `{`).
fn cli_json(cli: &Path, args: &[&str]) -> Result<Value> {
    let stdout = cli_stdout(cli, args)?;
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(line).with_context(|| format!("tinyalign {}: no JSON line", args[0]))
}

/// Every stdout line of `tinyalign ARGS` as JSON (`transcribe --json`: one object per input file).
fn cli_json_lines(cli: &Path, args: &[&str]) -> Result<Vec<Value>> {
    cli_stdout(cli, args)?
        .lines()
        .map(|l| {
            serde_json::from_str(l).with_context(|| format!("tinyalign {}: bad JSON line", args[0]))
        })
        .collect()
}

/// `cli ARGS`' standard output, or its last error line if it failed.
fn cli_stdout(cli: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(cli)
        .args(args)
        .output()
        .with_context(|| format!("running {}", cli.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "tinyalign {} failed: {}",
            args[0],
            stderr.lines().last().unwrap_or("")
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (n > 0).then(|| {
        if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        }
    })
}

/// The real recording nearest 5 s among the asterisk prompts (8 kHz telephone speech, always fetched).
fn five_second_clip() -> Option<PathBuf> {
    let dir = fetch::cache_dir().join("speech-asterisk/usr/share/asterisk/sounds/en_US_f_Allison");
    let target = 5 * 8_000 * 2 + 44;
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.len().abs_diff(target), p)))
        .min()
        .map(|(_, p)| p)
}

/// Transcriptions per `tinyalign transcribe` run: the first is the fresh process's, the rest are timed as
/// the peers time theirs (faster-whisper: one warm-up, then the median of 3; CTranslate2: 2 warm-ups).
const TRANSCRIBE_REPEATS: usize = 4;

/// Whisper: `transcribe --json` of a ~5 s real clip against faster-whisper (mel + encoder + decoder, load
/// left out), and the encoder on its padded 30 s window (the same runs' `encoder_ms`) against CTranslate2's
/// float32 encoder, interleaved round by round. Each run transcribes the clip [`TRANSCRIBE_REPEATS`] times:
/// the later ones are compared with the peers' timed runs, which follow warm-ups too; the first, a fresh
/// process's first call (pages and pools not yet touched), is its own row.
fn transcribe_rows(cli: &Path, peers: &Peers, rounds: usize) -> Vec<Row> {
    eprintln!(
        "== Whisper transcribe and encoder, ours, faster-whisper's and CTranslate2's, interleaved"
    );
    let Some(clip) = five_second_clip() else {
        return vec![Row::skipped(
            "whisper",
            "5 s clip",
            "no asterisk recordings in the cache",
        )];
    };
    let clip_s = clip.to_string_lossy().into_owned();
    let whisper = fetch::cache_dir().join("whisper-tiny.en");
    let whisper_s = whisper.to_string_lossy().into_owned();
    let (mut total, mut encoder, mut first_total) = (Vec::new(), Vec::new(), Vec::new());
    let (mut fw, mut ct2) = (Measured::default(), Measured::default());
    let mut ours_error = None;
    let mut args = vec!["transcribe", "--json"];
    args.extend([clip_s.as_str(); TRANSCRIBE_REPEATS]);
    for _ in 0..rounds {
        match cli_json_lines(cli, &args) {
            Ok(lines) => {
                for (i, v) in lines.iter().enumerate() {
                    let ms = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
                    let seconds = (ms("mel_ms") + ms("encoder_ms") + ms("decoder_ms")) / 1e3;
                    if i == 0 {
                        first_total.push(seconds);
                    } else {
                        total.push(seconds);
                        encoder.push(ms("encoder_ms") / 1e3);
                    }
                }
            }
            Err(e) => ours_error = Some(format!("{e:#}")),
        }
        fw.add(
            peers.run(&["transcribe", &whisper_s, &clip_s, &threads()]),
            "seconds",
        );
        ct2.add(peers.run(&["encoder", &whisper_s, &threads()]), "seconds");
    }
    let clip_name = clip
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let rows = [
        (
            format!("transcribe {clip_name} (real 8 kHz speech, ~5 s)"),
            total,
            fw,
            "faster-whisper",
        ),
        (
            "encoder, padded 30 s window".to_string(),
            encoder,
            ct2,
            "CTranslate2",
        ),
    ];
    let first_name = format!("transcribe {clip_name}, a fresh process's first call");
    let first = match median(first_total) {
        Some(s) => Row::timed(
            "whisper",
            &first_name,
            s,
            "s",
            "lower is better; load excluded, before any warm-up (the row above follows one, as the peer's)",
        ),
        None => Row::skipped(
            "whisper",
            &first_name,
            ours_error.as_deref().unwrap_or("no run"),
        ),
    };
    rows.into_iter()
        .map(|(name, ours, peer, tool)| match median(ours) {
            Some(s) => Row::timed("whisper", &name, s, "s", "lower is better").with_peer(
                peer.tool.as_deref().unwrap_or(tool),
                median(peer.values),
                peer.error,
            ),
            None => Row::skipped("whisper", &name, ours_error.as_deref().unwrap_or("no run")),
        })
        .chain([first])
        .collect()
}

/// LLMs in the cache: (name for --llm, GGUF path).
fn cached_llms() -> Vec<(&'static str, PathBuf)> {
    let cache = fetch::cache_dir();
    [
        ("smollm2-135m", "smollm2-135m-instruct"),
        ("qwen2.5-0.5b", "qwen2.5-coder-0.5b-instruct"),
        ("qwen2.5-1.5b", "qwen2.5-coder-1.5b-instruct"),
    ]
    .into_iter()
    .filter_map(|(name, dir)| {
        let gguf = std::fs::read_dir(cache.join(dir))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "gguf"))?;
        Some((name, gguf))
    })
    .collect()
}

const LLM_PROMPT: &str =
    "Write a long story about a lighthouse keeper who finds a message in a bottle.";

fn llm_rows(cli: &Path, peers: &Peers, rounds: usize, quick: bool) -> Vec<Row> {
    eprintln!("== LLM prefill and decode, ours and llama.cpp's, interleaved");
    let lengths: &[usize] = if quick { &[32] } else { &[24, 128] };
    let llama_bench = LlamaBench::find();
    let mut rows = Vec::new();
    for (name, gguf) in cached_llms() {
        let gguf_s = gguf.to_string_lossy().into_owned();
        for &tokens in lengths {
            let max = tokens.to_string();
            let (mut prefill, mut decode) = (Vec::new(), Vec::new());
            let (mut peer_prefill, mut peer_decode) = (Measured::default(), Measured::default());
            let (mut bench_prefill, mut bench_decode) = (Measured::default(), Measured::default());
            let (mut ours_error, mut prompts) = (None, (None, None));
            for _ in 0..rounds {
                let args = [
                    "ask",
                    LLM_PROMPT,
                    "--llm",
                    name,
                    "--max-tokens",
                    &max,
                    "--stats",
                ];
                match cli_json(cli, &args) {
                    Ok(v) => {
                        prefill.extend(v["prefill_tokens_per_s"].as_f64());
                        decode.extend(v["decode_tokens_per_s"].as_f64());
                        prompts.0 = v["prompt_tokens"].as_u64();
                    }
                    Err(e) => ours_error = Some(format!("{e:#}")),
                }
                let peer = peers.run(&["llm", &gguf_s, LLM_PROMPT, &max, &threads()]);
                if let Ok(v) = &peer {
                    prompts.1 = v["prompt_tokens"].as_u64();
                }
                peer_prefill.add(peer.clone(), "prefill_tokens_per_s");
                peer_decode.add(peer, "decode_tokens_per_s");
                // llama-bench's prompt test gets our templated prompt's length; its generation test
                // starts from an empty context (ours follows the prompt: a few dozen more keys).
                let prompt_len = prompts.0.or(prompts.1).unwrap_or(48);
                let run = llama_bench.run(&gguf_s, prompt_len, &max, &threads());
                bench_prefill.add(run.prefill, "tokens_per_s");
                bench_decode.add(run.decode, "tokens_per_s");
            }
            for (what, ours, peers) in [
                ("prefill", prefill, [peer_prefill, bench_prefill]),
                ("decode", decode, [peer_decode, bench_decode]),
            ] {
                let ours = median(ours);
                let labels = [
                    ("", "llama-cpp-python"),
                    (", against llama-bench", "llama-bench"),
                ];
                for (peer, (against, tool)) in peers.into_iter().zip(labels) {
                    let row_name = format!("{name} {what}, {tokens}-token answer{against}");
                    rows.push(match ours {
                        Some(v) => {
                            Row::timed("llm", &row_name, v, "tokens/s", &prompt_note(prompts))
                                .with_peer(
                                    peer.tool.as_deref().unwrap_or(tool),
                                    median(peer.values),
                                    peer.error,
                                )
                        }
                        None => Row::skipped(
                            "llm",
                            &row_name,
                            ours_error.as_deref().unwrap_or("no run"),
                        ),
                    });
                }
            }
        }
    }
    if rows.is_empty() {
        rows.push(Row::skipped("llm", "every LLM", "no GGUF in the cache"));
    }
    rows
}

/// The templated prompt's length on each side: both apply the GGUF's chat template, so they should agree.
fn prompt_note((ours, theirs): (Option<u64>, Option<u64>)) -> String {
    let count = |n: Option<u64>| n.map_or("?".into(), |n| n.to_string());
    format!(
        "higher is better; prompt {} tokens (the peer's: {})",
        count(ours),
        count(theirs)
    )
}

/// A short training run per projector kind on `synth` (built when missing), timed per step from its
/// metrics (validation steps left out).
fn training_rows(cli: &Path, options: &Options) -> Vec<Row> {
    eprintln!("== training steps per projector kind");
    let manifest = fetch::cache_dir().join("datasets/synth/manifest.jsonl");
    if !manifest.exists() {
        let built = util::ensure_synthesisers()
            .and_then(|()| util::run(Command::new(cli).args(["data", "build", "synth"])));
        if let Err(e) = built {
            return vec![Row::skipped("training", "every kind", &format!("{e:#}"))];
        }
    }
    let steps = if options.quick { 20 } else { 60 };
    let mut rows = Vec::new();
    for (kind, config) in [
        ("CTC BridgeFormer (default)", "default"),
        ("pooled BridgeFormer (paper)", "pooled"),
    ] {
        let run =
            std::env::temp_dir().join(format!("tinyalign-bench-{config}-{}", std::process::id()));
        let name = format!("{kind}, batch 16, {} step", options.device);
        let result = util::run(
            Command::new(cli)
                .args(["train", "--config"])
                .arg(util::root().join(format!("configs/{config}.toml")))
                .arg("--run")
                .arg(&run)
                .args([
                    "--max-steps",
                    &steps.to_string(),
                    "--device",
                    &options.device,
                ])
                .args(["--set", "data.max_train=128", "--set", "data.max_valid=16"])
                .args(["--set", &format!("optim.validate_every={}", steps * 2)]),
        )
        .and_then(|()| step_seconds(&run.join("metrics.jsonl")));
        rows.push(match result {
            Ok(s) => Row::timed("training", &name, s, "s/step", "lower is better"),
            Err(e) => Row::skipped("training", &name, &format!("{e:#}")),
        });
        let _ = std::fs::remove_dir_all(&run);
    }
    rows
}

/// Median seconds between consecutive training steps, leaving out those that also validated.
fn step_seconds(metrics: &Path) -> Result<f64> {
    let text = std::fs::read_to_string(metrics).with_context(|| metrics.display().to_string())?;
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let gaps: Vec<f64> = lines
        .windows(2)
        .filter(|w| w[1].get("valid_loss").is_none())
        .skip(2) // the first steps warm caches and threads
        .filter_map(|w| Some(w[1]["seconds"].as_f64()? - w[0]["seconds"].as_f64()?))
        .collect();
    median(gaps).with_context(|| format!("{}: too few steps", metrics.display()))
}

/// Personalisation of one synthetic user's 5 minutes (`atypical`), from a 60-step base, 150 steps.
fn personalisation_rows(cli: &Path, options: &Options) -> Vec<Row> {
    eprintln!("== personalisation on 5 minutes of speech");
    let name = "atypical-slow-croaky, 5.0 min, 150 steps";
    let result = (|| -> Result<f64> {
        let manifest = fetch::cache_dir().join("datasets/atypical/manifest.jsonl");
        if !manifest.exists() {
            util::ensure_synthesisers()?;
            util::run(Command::new(cli).args(["data", "build", "atypical"]))?;
        }
        let base =
            std::env::temp_dir().join(format!("tinyalign-bench-base-{}", std::process::id()));
        util::run(
            Command::new(cli)
                .args(["train", "--config"])
                .arg(util::root().join("configs/default.toml"))
                .arg("--run")
                .arg(&base)
                .args([
                    "--max-steps",
                    "60",
                    "--set",
                    "data.max_train=128",
                    "--set",
                    "data.max_valid=16",
                ]),
        )?;
        let user = format!("bench-{}", std::process::id());
        let t = Instant::now();
        let adapted = util::run(
            Command::new(cli)
                .args([
                    "personalize",
                    "--user",
                    &user,
                    "--speaker",
                    "atypical-slow-croaky",
                    "--data",
                ])
                .arg(&manifest)
                .arg("--base")
                .arg(&base)
                .args([
                    "--steps",
                    "150",
                    "--eval-limit",
                    "8",
                    "--device",
                    &options.device,
                ]),
        );
        let seconds = t.elapsed().as_secs_f64();
        let _ = Command::new(cli).args(["users", "forget", &user]).output();
        let _ = std::fs::remove_dir_all(&base);
        adapted.map(|()| seconds)
    })();
    vec![match result {
        Ok(s) => Row::timed(
            "personalisation",
            name,
            s,
            "s",
            "lower is better (8 held-out utterances scored before and after)",
        ),
        Err(e) => Row::skipped("personalisation", name, &format!("{e:#}")),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_times_leave_out_validation_and_warm_up() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.jsonl");
        let lines: Vec<String> = [0.0, 1.0, 3.0, 3.5, 4.0, 9.0, 9.5, 10.0]
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let valid = if i == 5 { ",\"valid_loss\":1.0" } else { "" };
                format!("{{\"step\":{},\"seconds\":{s}{valid}}}", i + 1)
            })
            .collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
        // Gaps 1, 2 skipped (warm-up); 0.5, 0.5, [5 validated], 0.5, 0.5 → 0.5.
        assert_eq!(step_seconds(&path).unwrap(), 0.5);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(median(vec![3.0, 1.0, f64::NAN, 2.0]), Some(2.0));
        assert_eq!(median(vec![]), None);
    }
}
