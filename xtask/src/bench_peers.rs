//! The peer tools of `cargo xtask bench` (`benches/reference/peers.py` in `<cache>/venv-peers`): running
//! them, and their figures over the rounds.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::{fetch, util};

/// The peer tools' interpreter, or why there is none.
pub struct Peers {
    python: Result<PathBuf, String>,
}

impl Peers {
    pub fn find() -> Self {
        let python = fetch::cache_dir().join("venv-peers/bin/python");
        let python = if python.exists() {
            Ok(python)
        } else {
            Err(format!(
                "no {} (the recipe is at the top of benches/reference/peers.py)",
                python.display()
            ))
        };
        Self { python }
    }

    /// One peers.py command's JSON line, or why not.
    pub fn run(&self, args: &[&str]) -> Result<Value, String> {
        let python = self.python.as_ref().map_err(Clone::clone)?;
        let out = Command::new(python)
            .arg(util::root().join("benches/reference/peers.py"))
            .args(args)
            .output()
            .map_err(|e| format!("{}: {e}", python.display()))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().last().unwrap_or("").to_string();
            return Err(format!("peers.py {} failed: {last}", args[0]));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(stdout.lines().last().unwrap_or("")).map_err(|e| e.to_string())
    }
}

/// A peer's figures over the rounds, its name, and the last reason one failed.
#[derive(Default)]
pub struct Measured {
    pub values: Vec<f64>,
    pub tool: Option<String>,
    pub error: Option<String>,
}

impl Measured {
    pub fn add(&mut self, result: Result<Value, String>, key: &str) {
        match result {
            Ok(v) => {
                self.values.extend(v[key].as_f64());
                self.tool = v["tool"].as_str().map(str::to_owned);
            }
            Err(e) => self.error = Some(e),
        }
    }
}
