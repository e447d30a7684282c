//! Running cargo and other programs from the workspace root, failing loudly.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The cargo that runs us (rustup's proxy or a pinned toolchain), else `cargo` from PATH.
pub fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs `cargo ARGS` in the workspace root, streaming its output.
pub fn cargo(args: &[&str]) -> Result<()> {
    run(Command::new(cargo_bin()).args(args))
}

/// Runs `cargo ARGS` in the workspace root and returns its stdout.
pub fn cargo_output(args: &[&str]) -> Result<String> {
    let out = Command::new(cargo_bin())
        .args(args)
        .current_dir(root())
        .output()
        .with_context(|| format!("starting cargo {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "cargo {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Runs a command in the workspace root, streaming its output; an unsuccessful exit is an error.
pub fn run(cmd: &mut Command) -> Result<()> {
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(root());
    }
    let shown = format!("{cmd:?}");
    eprintln!("$ {shown}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

/// The offline synthesisers the `synth` and `atypical` datasets need (../shared/MODELS.md). Installed with
/// apt-get when missing and this process may (root); otherwise an error says what to install.
pub fn ensure_synthesisers() -> Result<()> {
    let present = |program: &str, flag: &str| {
        Command::new(program)
            .arg(flag)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    // flite's --version exits 1; -lv (list voices) exits 0.
    if present("espeak-ng", "--version") && present("flite", "-lv") {
        return Ok(());
    }
    let packages = ["espeak-ng", "flite"];
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !is_root {
        bail!(
            "the synthetic datasets need espeak-ng and flite: run `sudo apt-get install -y {}`",
            packages.join(" ")
        );
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    eprintln!("installing {} with apt-get", packages.join(" "));
    if !install() {
        // A fresh machine may have no package lists yet.
        run(Command::new("apt-get").args(["update", "-q"]))?;
        if !install() {
            bail!("apt-get install {} failed", packages.join(" "));
        }
    }
    Ok(())
}
