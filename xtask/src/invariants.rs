//! The dependency rules of the README's crate map, checked with `cargo tree`:
//! - arrows point down: a crate depends only on tinyalign crates of a lower layer;
//! - the frontend, weight readers, kernels, test kit and Whisper (encoder and decoder) depend on no ML crate
//!   at all;
//! - the test kit is only ever a dev-dependency;
//! - only `tinyalign-nn` depends on dfdx directly; the wgpu and wasm crates never depend on it.

use std::collections::BTreeSet;

use anyhow::{Result, bail};

use crate::util::cargo_output;

/// Layer of each crate in the map; a crate may only depend on crates of a strictly lower layer. Crates not
/// yet in the workspace are skipped.
const LAYERS: &[(&str, u8)] = &[
    ("tinyalign-mel", 0),
    ("tinyalign-weights", 0),
    // Host-row inference kernels and frozen layers: no tinyalign crate below them.
    ("tinyalign-kernels", 0),
    // Dev-only test inputs and references (a normal dependency of none, checked below).
    ("tinyalign-testkit", 0),
    ("tinyalign-quant", 1),
    ("tinyalign-nn", 1),
    ("tinyalign-data", 1),
    ("tinyalign-whisper", 2),
    ("tinyalign-projector", 2),
    ("tinyalign-llm", 2),
    ("tinyalign-train", 3),
    ("tinyalign-eval", 3),
    // The GPU forward passes reuse the model crates' configs, readers and tokenizers (their dfdx parts
    // behind the default `dfdx` feature, which it turns off).
    ("tinyalign-wgpu", 3),
    // Personalisation runs training and evaluation.
    ("tinyalign-personal", 4),
    ("tinyalign-cli", 5),
    ("tinyalign-wasm", 5),
];

/// Crates that do machine learning; the bottom layer must not pull any of them in, even indirectly.
const ML_CRATES: &[&str] = &["dfdx", "wgpu", "candle-core", "tch", "ort", "burn"];
const ML_FREE: &[&str] = &[
    "tinyalign-mel",
    "tinyalign-weights",
    "tinyalign-kernels",
    "tinyalign-testkit",
    "tinyalign-quant",
    "tinyalign-data",
    // Frozen inference only: host kernels and the quantised head, no autodiff.
    "tinyalign-whisper",
];
const DFDX_FREE: &[&str] = &["tinyalign-wgpu", "tinyalign-wasm"];

pub fn check() -> Result<()> {
    let members = workspace_members()?;
    let mut problems = Vec::new();
    for (krate, layer) in LAYERS.iter().filter(|(k, _)| members.contains(*k)) {
        let direct = deps(krate, Some(1))?;
        for dep in direct.iter().filter(|d| d.starts_with("tinyalign-")) {
            match LAYERS.iter().find(|(k, _)| k == dep) {
                Some((_, dep_layer)) if dep_layer < layer => {}
                Some((_, dep_layer)) => problems.push(format!(
                    "{krate} (layer {layer}) depends on {dep} (layer {dep_layer}): arrows must point down"
                )),
                None => problems.push(format!("{krate} depends on {dep}, which has no layer in xtask's map")),
            }
        }
        if direct.contains("tinyalign-testkit") {
            problems.push(format!(
                "{krate} depends on tinyalign-testkit outside [dev-dependencies]: it is for tests only"
            ));
        }
        if *krate != "tinyalign-nn" && direct.contains("dfdx") {
            problems.push(format!(
                "{krate} depends on dfdx directly: only tinyalign-nn may"
            ));
        }
        let all = deps(krate, None)?;
        if ML_FREE.contains(krate) {
            for ml in ML_CRATES.iter().filter(|m| all.contains(**m)) {
                problems.push(format!(
                    "{krate} must stay free of ML crates but pulls in {ml}"
                ));
            }
        }
        if DFDX_FREE.contains(krate) && all.contains("dfdx") {
            problems.push(format!("{krate} must never depend on dfdx"));
        }
    }
    if !problems.is_empty() {
        bail!(
            "dependency invariants violated:\n  {}",
            problems.join("\n  ")
        );
    }
    eprintln!(
        "checked {} workspace crates against the crate map",
        members.len()
    );
    Ok(())
}

fn workspace_members() -> Result<BTreeSet<String>> {
    let out = cargo_output(&[
        "tree",
        "--workspace",
        "--depth",
        "0",
        "--prefix",
        "none",
        "-e",
        "normal",
    ])?;
    Ok(out.lines().filter_map(package_name).collect())
}

/// Names of the normal (non-dev, non-build) dependencies of `krate`, to `depth` levels (all if None).
fn deps(krate: &str, depth: Option<usize>) -> Result<BTreeSet<String>> {
    let depth = depth.map(|d| d.to_string());
    let mut args = vec!["tree", "-p", krate, "-e", "normal", "--prefix", "none"];
    if let Some(d) = &depth {
        args.extend(["--depth", d]);
    }
    let out = cargo_output(&args)?;
    Ok(out.lines().skip(1).filter_map(package_name).collect())
}

fn package_name(line: &str) -> Option<String> {
    let name = line.split_whitespace().next()?;
    (!name.is_empty()).then(|| name.to_string())
}
