//! `cargo xtask <command>`: the project's workflow. It drives cargo and the `tinyalign` binary instead of
//! linking the library crates, so it builds in seconds and never pins their features.

mod bench;
mod bench_align;
mod bench_options;
mod bench_peers;
mod bench_report;
mod catalog;
mod ci;
mod eval;
mod fetch;
mod invariants;
mod train;
mod util;
mod wasm;
mod wasm_serve;

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  train    the main job, end to end on the default models and data
           (fetch, manifests, Whisper on the bundled recordings, the LLM answering, projector training
           with the LLM never running (CTC onto its vocabulary by default), the evaluation of `eval`,
           personalisation; --preset smoke|default|pooled|wide|full (full: 20 hours of synth-wide,
           ~1.7 h on 2 cores the first time), --run DIR, --resume,
           --device cuda to train the projector on an NVIDIA GPU: needs the CUDA toolkit, see README)
  fetch    download the pinned models and speech data into the cache (--with base adds Whisper base,
           --with qwen2.5-1.5b the larger Qwen LLM);
           cache: $TINYALIGN_CACHE, default .cache/tinyalign
  data     build a dataset's manifest into the cache: asterisk | pocketsphinx | synth | atypical | all
           (fetches first, installs espeak-ng + flite for the synthetic sets; extra options go to
           `tinyalign data build`, e.g. --seed 3 --adapt-fraction 0.5, --hours 2)
  eval     (re)evaluate a trained projector (--run DIR, default runs/latest; --limit 30): transcribe and
           respond tasks on unseen synthetic voices, transcribe on the real telephone speaker, every row
           with 95% intervals; writes RUN/report.md + report.json (tinyalign report)
  bench-align
           the headline comparisons under one time budget per run (--seconds 240, --limit 30):
           EmbedLink vs LLM-in-the-loop training of BridgeFormer, BridgeFormer vs the MLP projector;
           trains, evaluates on unseen synthetic voices, writes runs/bench-align-*/compare.md
  wasm     build the browser demo into target/wasm-demo (wasm32 + the pinned wasm-bindgen CLI);
           --serve [--port 8080] [--projector RUN_DIR_OR_USER] serves it with the model files on
           127.0.0.1 (a personalised user's projector by their name)
  wasm-test
           headless Chromium answers a real WAV on WebGPU and must equal the native CLI's answer
           (--wav FILE, --projector RUN_DIR_OR_USER, --max-tokens 2); saves target/wasm-demo/wasm-test.png
  ci       everything CI checks: fmt, clippy -D warnings, tests, dependency invariants, wasm32 build,
           the browser test
  invariants
           only the crate map's dependency rules (seconds; `ci` runs them too)
  bench    every stage's speed on this machine in one report (bench/report.md, report.json, chart.svg):
           the criterion benches (log-mel, encoder, LLM kernels, projector step, GPU kernels), then
           through the release CLI Whisper transcribe, LLM prefill/decode per cached LLM, a training
           step per projector kind, personalisation on 5 min of speech; where the peers are installed
           (benches/reference/peers.py in <cache>/venv-peers: faster-whisper, llama.cpp) the same
           inputs through them, interleaved, as speed ratios. --quick, --device cuda, --out DIR,
           --only criterion,whisper,llm,training,personalisation (the others become skipped rows)
  help     this text
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        print!("{USAGE}");
        return Ok(());
    };
    match command.as_str() {
        "train" => train::run(rest),
        "ci" => ci::run(rest),
        "invariants" => match rest.first() {
            Some(extra) => bail!("cargo xtask invariants takes no options (got '{extra}')"),
            None => invariants::check(),
        },
        "fetch" => fetch::run(rest),
        "bench" => bench::run(rest),
        "data" => data(rest),
        "eval" => eval::run(rest),
        "bench-align" => bench_align::run(rest),
        "wasm" => wasm::run(rest),
        "wasm-test" => wasm::test(rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command '{other}'\n\n{USAGE}"),
    }
}

/// `cargo xtask data NAME [options]`: fetch, then `tinyalign data build NAME` through the release CLI.
fn data(args: &[String]) -> Result<()> {
    let Some((name, options)) = args.split_first() else {
        bail!("cargo xtask data needs a dataset: asterisk, pocketsphinx, synth, atypical or all");
    };
    let names: Vec<&str> = match name.as_str() {
        "all" => vec!["asterisk", "pocketsphinx", "synth", "atypical"],
        "asterisk" | "pocketsphinx" | "synth" | "atypical" => vec![name.as_str()],
        other => bail!("unknown dataset '{other}' (asterisk, pocketsphinx, synth, atypical, all)"),
    };
    if names.iter().any(|n| ["synth", "atypical"].contains(n)) {
        util::ensure_synthesisers()?;
    }
    let cli = util::release_cli(&[])?;
    fetch::run_with(&[], Some(&cli))?;
    for name in names {
        util::run(
            std::process::Command::new(&cli)
                .args(["data", "build", name])
                .args(options),
        )?;
    }
    Ok(())
}
