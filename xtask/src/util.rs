//! Running cargo and other programs from the workspace root, failing loudly.

use std::path::{Path, PathBuf};
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

/// Builds the release CLI (with `features`, e.g. `cuda`) and returns its path: the one binary every stage of
/// the main job runs, Whisper's conversion included.
pub fn release_cli(features: &[&str]) -> Result<PathBuf> {
    let mut args = vec!["build", "--release", "--quiet", "-p", "tinyalign-cli"];
    let joined = features.join(",");
    if !features.is_empty() {
        args.extend(["--features", joined.as_str()]);
    }
    cargo(&args)?;
    Ok(root().join("target/release/tinyalign"))
}

/// Something a step needs from the system, and the Debian packages that provide it.
pub struct SystemNeed {
    pub what: &'static str,
    pub present: fn() -> bool,
    pub packages: &'static [&'static str],
}

fn runs(program: &str, flag: &str) -> bool {
    runs_quietly(Command::new(program).arg(flag))
}

/// espeak-ng and flite: the voices of the `synth` and `atypical` datasets (../shared/MODELS.md).
pub const SYNTHESISERS: SystemNeed = SystemNeed {
    what: "the synthetic datasets (espeak-ng, flite)",
    // flite's --version exits 1; -lv (list voices) exits 0.
    present: || runs("espeak-ng", "--version") && runs("flite", "-lv"),
    packages: &["espeak-ng", "flite"],
};

/// Festival and its three voices: the synth recipe's festival test.
pub const FESTIVAL: SystemNeed = SystemNeed {
    what: "the festival voice tests (text2wave and three voices)",
    present: || {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .any(|dir| dir.join("text2wave").is_file())
            && Path::new("/usr/share/festival/voices/us/cmu_us_slt_arctic_hts").is_dir()
    },
    packages: &[
        "festival",
        "festvox-kallpc16k",
        "festvox-kdlpc16k",
        "festvox-us-slt-hts",
    ],
};

/// Mesa's software Vulkan (llvmpipe): the adapter the wgpu kernel and model tests run on.
pub const SOFTWARE_VULKAN: SystemNeed = SystemNeed {
    what: "the GPU tests on a software adapter (Mesa's Vulkan)",
    present: || {
        std::fs::read_dir("/usr/share/vulkan/icd.d").is_ok_and(|entries| {
            entries.filter_map(|e| e.ok()).any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("lvp_icd.") && name.ends_with(".json")
            })
        })
    },
    packages: &["mesa-vulkan-drivers", "libvulkan1"],
};

/// Debian's Chromium: the browser demo's test (wasm-demo/test/browser.mjs starts $CHROMIUM, else
/// /usr/bin/chromium).
pub const CHROMIUM: SystemNeed = SystemNeed {
    what: "the browser test (chromium)",
    present: || {
        std::env::var_os("CHROMIUM")
            .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
            .is_file()
    },
    packages: &["chromium"],
};

/// node and npm, for the browser test's playwright-core. Apart from Chromium because machines with
/// NodeSource's nodejs (which bundles npm and conflicts with Debian's `npm`) need Chromium alone.
pub const NODE: SystemNeed = SystemNeed {
    what: "the browser test (node, npm)",
    present: || runs("node", "--version") && runs("npm", "--version"),
    packages: &["nodejs", "npm"],
};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installs what `needs` lack with apt-get when this process may: as root, or under CI (`$CI` set) through
/// passwordless sudo; otherwise stops at once with the exact command to run. Present needs cost one quick
/// probe each.
pub fn ensure_system(needs: &[&SystemNeed]) -> Result<()> {
    let missing: Vec<&SystemNeed> = needs.iter().copied().filter(|n| !(n.present)()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing
        .iter()
        .flat_map(|n| n.packages.iter().copied())
        .collect();
    let what: Vec<&str> = missing.iter().map(|n| n.what).collect();
    let sudo = if is_root() {
        None
    } else if std::env::var_os("CI").is_some()
        && runs_quietly(Command::new("sudo").args(["-n", "true"]))
    {
        Some("sudo")
    } else {
        bail!(
            "missing for {}: run `sudo apt-get install -y --no-install-recommends {}` and start again",
            what.join("; "),
            packages.join(" ")
        );
    };
    let apt = |args: &[&str]| {
        let mut cmd = match sudo {
            Some(sudo) => {
                let mut cmd = Command::new(sudo);
                cmd.arg("apt-get");
                cmd
            }
            None => Command::new("apt-get"),
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    let install = || {
        let mut cmd = apt(&["install", "-y", "-q", "--no-install-recommends"]);
        cmd.args(&packages).status().is_ok_and(|s| s.success())
    };
    eprintln!(
        "installing {} with apt-get (for {})",
        packages.join(" "),
        what.join("; ")
    );
    if !install() {
        // A fresh machine may have no package lists yet.
        run(&mut apt(&["update", "-q"]))?;
        if !install() {
            bail!("apt-get install {} failed", packages.join(" "));
        }
    }
    if let Some(still) = missing.iter().find(|n| !(n.present)()) {
        bail!(
            "installed {} but {} is still missing",
            packages.join(" "),
            still.what
        );
    }
    Ok(())
}

/// Whether `cmd` exits successfully; its output is dropped.
pub fn runs_quietly(cmd: &mut Command) -> bool {
    cmd.stdin(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The synthesisers the `synth` and `atypical` datasets need.
pub fn ensure_synthesisers() -> Result<()> {
    ensure_system(&[&SYNTHESISERS])
}
