//! The peer tools of `cargo xtask bench` (`benches/reference/peers.py` in `<cache>/venv-peers`): running
//! them, and their figures over the rounds.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{fetch, util};

/// The peer tools' interpreter, or why there is none.
pub struct Peers {
    python: Result<PathBuf, String>,
}

impl Peers {
    pub fn find() -> Self {
        Self {
            python: installed(fetch::cache_dir().join("venv-peers/bin/python")),
        }
    }

    /// One peers.py command's JSON line, or why not.
    pub fn run(&self, args: &[&str]) -> Result<Value, String> {
        let python = self.python.as_ref().map_err(Clone::clone)?;
        let stdout = stdout_of(
            Command::new(python)
                .arg(util::root().join("benches/reference/peers.py"))
                .args(args),
            python,
            &format!("peers.py {}", args[0]),
        )?;
        let stdout = String::from_utf8_lossy(&stdout);
        serde_json::from_str(stdout.lines().last().unwrap_or("")).map_err(|e| e.to_string())
    }
}

/// A peer tool's path, or why it is missing.
fn installed(path: PathBuf) -> Result<PathBuf, String> {
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "no {} (the recipe is at the top of benches/reference/peers.py)",
            path.display()
        ))
    }
}

/// What `command` (running `program`) printed, or why it failed, named `what`.
fn stdout_of(command: &mut Command, program: &Path, what: &str) -> Result<Vec<u8>, String> {
    let out = command
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or("");
        // A crash (llama.cpp's AMX kernels die with SIGILL where the OS does not enable AMX) leaves
        // stderr empty: the exit status is the only clue.
        return Err(format!("{what} failed ({}): {last}", out.status));
    }
    Ok(out.stdout)
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
        Self {
            binary: installed(fetch::cache_dir().join("llama.cpp-src/build/bin/llama-bench")),
        }
    }

    /// One repetition of `pp PROMPT` and `tg GENERATED` on `threads` threads, as `{"tool", "tokens_per_s"}`
    /// values for [`Measured::add`].
    pub fn run(&self, gguf: &str, prompt: u64, generated: &str, threads: &str) -> LlamaBenchRun {
        match self.tests(gguf, prompt, generated, threads) {
            Ok(tests) => LlamaBenchRun {
                prefill: pick_test(&tests, true),
                decode: pick_test(&tests, false),
            },
            Err(e) => LlamaBenchRun {
                prefill: Err(e.clone()),
                decode: Err(e),
            },
        }
    }

    /// llama-bench's JSON: one object per test it ran.
    fn tests(
        &self,
        gguf: &str,
        prompt: u64,
        generated: &str,
        threads: &str,
    ) -> Result<Value, String> {
        let binary = self.binary.as_ref().map_err(Clone::clone)?;
        let stdout = stdout_of(
            Command::new(binary)
                .args(["-m", gguf, "-p", &prompt.to_string(), "-n", generated])
                .args(["-t", threads, "-r", "1", "-o", "json"]),
            binary,
            "llama-bench",
        )?;
        serde_json::from_slice(&stdout).map_err(|e| format!("llama-bench's JSON: {e}"))
    }
}

/// The prompt test (`n_gen` = 0) or the generation test of a llama-bench report, as a peer figure.
fn pick_test(tests: &Value, prefill: bool) -> Result<Value, String> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two tests of one `llama-bench -p 46 -n 24 -o json` run (fields as llama.cpp 0c1e570 writes them).
    #[test]
    fn llama_bench_tests_become_prefill_and_decode_figures() {
        let tests = serde_json::json!([
            {"n_prompt": 46, "n_gen": 0, "avg_ts": 288.1, "build_commit": "0c1e570"},
            {"n_prompt": 0, "n_gen": 24, "avg_ts": 84.5, "build_commit": "0c1e570"},
        ]);
        let prefill = pick_test(&tests, true).unwrap();
        let decode = pick_test(&tests, false).unwrap();
        assert_eq!(prefill["tokens_per_s"].as_f64(), Some(288.1));
        assert_eq!(decode["tokens_per_s"].as_f64(), Some(84.5));
        assert_eq!(decode["tool"], "llama.cpp llama-bench (C++, 0c1e570)");
        let only_prompt = serde_json::json!([{"n_gen": 0, "avg_ts": 1.0}]);
        assert!(pick_test(&only_prompt, false).is_err());
    }

    #[test]
    fn a_missing_tool_names_its_path_and_the_recipe() {
        let err = installed(PathBuf::from("/nonexistent/llama-bench")).unwrap_err();
        assert!(
            err.contains("/nonexistent/llama-bench") && err.contains("peers.py"),
            "{err}"
        );
    }
}
