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
            // A crash (llama.cpp's AMX kernels die with SIGILL where the OS does not enable AMX) leaves
            // stderr empty: the exit status is the only clue.
            return Err(format!(
                "peers.py {} failed ({}): {last}",
                args[0], out.status
            ));
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

/// llama.cpp's own C++ benchmark (`llama-bench`), built from the vendored source of the same
/// llama-cpp-python sdist (recipe at the top of `benches/reference/peers.py`): the decode and prefill
/// figures without a Python loop around them.
pub struct LlamaBench {
    binary: Result<PathBuf, String>,
}

/// What one `llama-bench` run measured: prompt tokens/s over `prompt` tokens and generation tokens/s over
/// `generated` tokens, each from its own test as llama-bench runs them.
pub struct LlamaBenchRun {
    pub prefill: Result<Value, String>,
    pub decode: Result<Value, String>,
}

impl LlamaBench {
    pub fn find() -> Self {
        let binary = fetch::cache_dir().join("llama.cpp-src/build/bin/llama-bench");
        let binary = if binary.exists() {
            Ok(binary)
        } else {
            Err(format!(
                "no {} (the recipe is at the top of benches/reference/peers.py)",
                binary.display()
            ))
        };
        Self { binary }
    }

    /// One repetition of `pp PROMPT` and `tg GENERATED` on `threads` threads, as `{"tool", "tokens_per_s"}`
    /// values for [`Measured::add`].
    pub fn run(&self, gguf: &str, prompt: u64, generated: &str, threads: &str) -> LlamaBenchRun {
        let failed = |e: String| LlamaBenchRun {
            prefill: Err(e.clone()),
            decode: Err(e),
        };
        let binary = match &self.binary {
            Ok(b) => b,
            Err(e) => return failed(e.clone()),
        };
        let out = Command::new(binary)
            .args(["-m", gguf, "-p", &prompt.to_string(), "-n", generated])
            .args(["-t", threads, "-r", "1", "-o", "json"])
            .output();
        let out = match out {
            Ok(out) if out.status.success() => out,
            Ok(out) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let last = stderr.lines().last().unwrap_or("").to_string();
                return failed(format!("llama-bench failed ({}): {last}", out.status));
            }
            Err(e) => return failed(format!("{}: {e}", binary.display())),
        };
        let tests: Value = match serde_json::from_slice(&out.stdout) {
            Ok(v) => v,
            Err(e) => return failed(format!("llama-bench's JSON: {e}")),
        };
        let pick = |prefill: bool| -> Result<Value, String> {
            let test = tests
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| (t["n_gen"].as_u64() == Some(0)) == prefill)
                .ok_or("llama-bench reported no such test")?;
            let commit = test["build_commit"].as_str().unwrap_or("?");
            Ok(serde_json::json!({
                "tool": format!("llama.cpp llama-bench (C++, {commit})"),
                "tokens_per_s": test["avg_ts"],
            }))
        };
        LlamaBenchRun {
            prefill: pick(true),
            decode: pick(false),
        }
    }
}
