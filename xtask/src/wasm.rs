//! `cargo xtask wasm [--serve]` builds the browser demo (wasm32 + the pinned wasm-bindgen CLI, no wasm-pack)
//! into target/wasm-demo and serves it with the model files; `cargo xtask wasm-test` checks in headless
//! Chromium that the page answers a real WAV exactly as the native CLI does.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::wasm_serve::{serve, users_dir};
use crate::{fetch, util};

/// The `.wasm` size budget (weights are separate files).
const WASM_BUDGET_BYTES: u64 = 3 * 1024 * 1024;

pub(crate) fn dist() -> PathBuf {
    util::root().join("target/wasm-demo")
}

/// The exact wasm-bindgen version `wasm-demo/Cargo.toml` pins; the CLI must match it.
fn wasm_bindgen_version() -> Result<String> {
    let manifest = std::fs::read_to_string(util::root().join("wasm-demo/Cargo.toml"))?;
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("wasm-bindgen = \"="))
        .and_then(|rest| rest.split('"').next())
        .map(str::to_string)
        .context("wasm-demo/Cargo.toml must pin wasm-bindgen = \"=X.Y.Z\"")
}

/// `wasm-bindgen` of the pinned version: from PATH or ~/.cargo/bin, else `cargo install`ed (~2 min).
fn wasm_bindgen_cli() -> Result<PathBuf> {
    let version = wasm_bindgen_version()?;
    let candidates = [
        PathBuf::from("wasm-bindgen"),
        std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
            .unwrap_or_default()
            .join("bin/wasm-bindgen"),
    ];
    let matches = |bin: &Path| {
        Command::new(bin)
            .arg("--version")
            .output()
            .ok()
            .is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains(&version))
    };
    if let Some(bin) = candidates.iter().find(|b| matches(b)) {
        return Ok(bin.clone());
    }
    eprintln!("installing wasm-bindgen-cli {version} (matches the wasm-bindgen crate)");
    util::cargo(&["install", "wasm-bindgen-cli", "--version", &version])?;
    candidates
        .iter()
        .find(|b| matches(b))
        .cloned()
        .context("wasm-bindgen-cli was installed but is not on PATH or in ~/.cargo/bin")
}

/// Builds target/wasm-demo: index.html, main.js, worker.js, style.css and pkg/ (the wasm and its JS glue).
pub fn build() -> Result<()> {
    util::run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    util::run(
        Command::new(util::cargo_bin())
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-unknown-unknown",
                "-p",
                "tinyalign-wasm",
            ])
            // No debug info in the shipped module (the native release profile keeps line tables).
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false"),
    )?;
    let out = dist();
    std::fs::create_dir_all(&out)?;
    util::run(
        Command::new(wasm_bindgen_cli()?).args([
            "--target",
            "web",
            "--no-typescript",
            "--out-dir",
            &out.join("pkg").display().to_string(),
            &util::root()
                .join("target/wasm32-unknown-unknown/release/tinyalign_wasm.wasm")
                .display()
                .to_string(),
        ]),
    )?;
    for entry in std::fs::read_dir(util::root().join("wasm-demo/www"))? {
        let path = entry?.path();
        std::fs::copy(&path, out.join(path.file_name().unwrap_or_default()))?;
    }
    let wasm = out.join("pkg/tinyalign_wasm_bg.wasm");
    let size = std::fs::metadata(&wasm)?.len();
    eprintln!(
        "built {}: {:.2} MB of wasm (budget {:.0} MB)",
        out.display(),
        size as f64 / 1e6,
        WASM_BUDGET_BYTES as f64 / 1024.0 / 1024.0
    );
    if size > WASM_BUDGET_BYTES {
        bail!(
            "{} is {size} bytes, over the {WASM_BUDGET_BYTES}-byte budget",
            wasm.display()
        );
    }
    Ok(())
}

fn option<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn check_options(args: &[String], known_flags: &[&str], known_values: &[&str]) -> Result<()> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if known_values.contains(&a) {
            i += 2;
        } else if known_flags.contains(&a) {
            i += 1;
        } else {
            bail!("unknown option '{a}' (flags: {known_flags:?}, options: {known_values:?})");
        }
    }
    Ok(())
}

/// The projector the page serves: `--projector RUN_DIR`, or the name of a user personalised with
/// `tinyalign personalize` (their folder under `$TINYALIGN_USERS`, default the cache's `users/`), else
/// runs/latest.
fn projector_dir(args: &[String]) -> Result<PathBuf> {
    let dir = match option(args, "--projector") {
        Some(arg) if Path::new(arg).is_dir() => PathBuf::from(arg),
        Some(name) => users_dir().join(name).join("projector"),
        None => util::root().join("runs/latest"),
    };
    if !dir.join("projector.json").exists() {
        bail!(
            "no trained projector in {} (train one with `cargo xtask train` or personalise one with \
             `tinyalign personalize`; pass --projector RUN_DIR_OR_USER)",
            dir.display()
        );
    }
    Ok(dir)
}

/// `cargo xtask wasm [--serve] [--port 8080] [--projector RUN_DIR_OR_USER]`.
pub fn run(args: &[String]) -> Result<()> {
    check_options(args, &["--serve"], &["--port", "--projector"])?;
    build()?;
    if args.iter().any(|a| a == "--serve") {
        let port: u16 = option(args, "--port")
            .unwrap_or("8080")
            .parse()
            .context("--port")?;
        let addr = serve(port, &projector_dir(args)?)?;
        eprintln!(
            "serving the demo on http://{addr}/ (WebGPU needs a recent Chrome/Chromium or Edge); Ctrl-C stops"
        );
        loop {
            std::thread::park();
        }
    }
    Ok(())
}

/// `cargo xtask wasm-test [--projector RUN_DIR_OR_USER] [--wav FILE] [--max-tokens 2] [--timeout 900]`.
pub fn test(args: &[String]) -> Result<()> {
    check_options(
        args,
        &[],
        &["--projector", "--wav", "--max-tokens", "--timeout"],
    )?;
    let cli = util::release_cli(&[])?;
    fetch::run_with(&[], Some(&cli))?;
    let max_tokens = option(args, "--max-tokens").unwrap_or("2");
    let timeout = option(args, "--timeout").unwrap_or("900");
    let projector = match option(args, "--projector") {
        Some(dir) => PathBuf::from(dir),
        None if util::root().join("runs/latest/projector.json").exists() => {
            util::root().join("runs/latest")
        }
        None => {
            // A fresh machine (CI) has no trained projector yet: train the smoke preset (SmolLM2, the
            // smallest LLM) with the default CTC objective, whose head and greedy readout the page runs.
            let run = dist().join("smoke-ctc-projector");
            if !run.join("projector.json").exists() {
                crate::data(&["asterisk".to_string()])?;
                util::run(
                    Command::new(&cli)
                        .args(["train", "--config", "configs/smoke.toml", "--run"])
                        .arg(&run)
                        .args(["--set", "loss.objective=ctc"])
                        .args([
                            "--set",
                            "loss.mse_weight=0",
                            "--set",
                            "loss.cosine_weight=0",
                        ]),
                )?;
            }
            run
        }
    };
    let wav = option(args, "--wav")
        .map(PathBuf::from)
        .unwrap_or_else(|| util::root().join("tests/fixtures/mel/tt-weasels.wav"));
    build()?;
    // The native answer with f32 activations: the arithmetic the GPU path does, so greedy decoding agrees.
    // The page sends its transcribe instruction as plain text (no answer prefix), so the CLI gets it the
    // same way.
    let out = Command::new(&cli)
        .args(["ask", "--audio"])
        .arg(&wav)
        .arg("--projector")
        .arg(&projector)
        .args(["--instruction", "Repeat exactly what the speaker said."])
        .args(["--exact-activations", "--max-tokens", max_tokens])
        .current_dir(util::root())
        .output()
        .context("running tinyalign ask")?;
    if !out.status.success() {
        bail!(
            "tinyalign ask failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The answer exactly as generated (whitespace included): the CLI ends it with one newline.
    let stdout = String::from_utf8(out.stdout)?;
    let expected = stdout.strip_suffix('\n').unwrap_or(&stdout).to_string();
    eprintln!("native CLI answer: {expected:?}");
    let expected_file = dist().join("expected-answer.txt");
    std::fs::write(&expected_file, &expected)?;

    let demo = util::root().join("wasm-demo");
    if !demo.join("node_modules/playwright-core").exists() {
        util::run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&demo),
        )?;
    }
    let addr = serve(0, &projector)?;
    let screenshot = dist().join("wasm-test.png");
    util::run(
        Command::new("node")
            .arg(demo.join("test/browser.mjs"))
            .arg(format!("http://{addr}/?max_tokens={max_tokens}"))
            .arg(&wav)
            .arg(&expected_file)
            .arg(&screenshot)
            .arg(timeout),
    )
    .context("the browser's answer differs from the native CLI's, or the page failed")
}
