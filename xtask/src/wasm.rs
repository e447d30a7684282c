//! `cargo xtask wasm [--serve]` builds the browser demo (wasm32 + the pinned wasm-bindgen CLI, no wasm-pack)
//! into target/wasm-demo and serves it with the model files; `cargo xtask wasm-test` checks in headless
//! Chromium that the page answers a real WAV exactly as the native CLI does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::{fetch, util};

/// The `.wasm` size budget (weights are separate files).
const WASM_BUDGET_BYTES: u64 = 3 * 1024 * 1024;

fn dist() -> PathBuf {
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

/// What the page downloads: role, URL path under /models/, file; projector files name their projector.
#[derive(Debug, Clone)]
struct ModelFile {
    role: &'static str,
    path: String,
    projector: Option<String>,
    file: PathBuf,
    sha256: String,
    bytes: u64,
}

fn model_file(
    role: &'static str,
    path: String,
    projector: Option<String>,
    file: PathBuf,
) -> Result<ModelFile> {
    let bytes = std::fs::metadata(&file)
        .with_context(|| {
            format!(
                "{} is missing (run `cargo xtask fetch`; a projector comes from `cargo xtask train`)",
                file.display()
            )
        })?
        .len();
    let sha256 = fetch::sha256_of(&file)?;
    Ok(ModelFile {
        role,
        path,
        projector,
        file,
        sha256,
        bytes,
    })
}

fn users_dir() -> PathBuf {
    std::env::var_os("TINYALIGN_USERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| fetch::cache_dir().join("users"))
}

/// The cached GGUF of each LLM a projector manifest names (`llm`, as `tinyalign --llm` spells it).
const LLM_FILES: &[(&str, &str)] = &[
    (
        "smollm2-135m",
        "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    (
        "qwen2.5-0.5b",
        "qwen2.5-coder-0.5b-instruct/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    ),
    (
        "qwen2.5-1.5b",
        "qwen2.5-coder-1.5b-instruct/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    ),
];

/// The `llm` a projector's `projector.json` records (a known name or a .gguf path); manifests from before
/// it was recorded were trained for SmolLM2. A plain scan for one string field: the xtask has no JSON
/// dependency, and the trainer writes the field as `"llm": "NAME"`.
fn projector_llm(dir: &Path) -> Result<String> {
    let path = dir.join("projector.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let Some(at) = text.find("\"llm\"") else {
        return Ok("smollm2-135m".into());
    };
    let rest = text[at + 5..].trim_start();
    let value = rest
        .strip_prefix(':')
        .map(str::trim_start)
        .and_then(|v| v.strip_prefix('"'))
        .and_then(|v| v.split_once('"'))
        .map(|(value, _)| value.to_string())
        .with_context(|| format!("{}: `llm` is not a string", path.display()))?;
    Ok(value)
}

/// The GGUF of the LLM `name` (see [`projector_llm`]).
fn llm_file(name: &str) -> Result<PathBuf> {
    if let Some((_, file)) = LLM_FILES.iter().find(|(n, _)| *n == name) {
        return Ok(fetch::cache_dir().join(file));
    }
    if name.ends_with(".gguf") {
        return Ok(PathBuf::from(name));
    }
    bail!("a projector was trained for LLM `{name}`, which the demo does not know")
}

/// Whisper, the LLM the base projector was trained for, and the projectors the page can choose from:
/// `projector` first (the default, named "base"), then every personalised user's trained for the same LLM
/// (the page loads one LLM).
fn model_files(projector: &Path) -> Result<Vec<ModelFile>> {
    let cache = fetch::cache_dir();
    let whisper = cache.join("whisper-tiny.en/hf");
    let llm = projector_llm(projector)?;
    let mut files = vec![
        model_file(
            "whisper_config",
            "whisper/config.json".into(),
            None,
            whisper.join("config.json"),
        )?,
        model_file(
            "whisper_weights",
            "whisper/model.safetensors".into(),
            None,
            whisper.join("model.safetensors"),
        )?,
        model_file(
            "llm_gguf",
            format!(
                "llm/{}.gguf",
                llm.rsplit('/')
                    .next()
                    .unwrap_or("model")
                    .trim_end_matches(".gguf")
            ),
            None,
            llm_file(&llm)?,
        )?,
    ];
    let mut projectors = vec![("base".to_string(), projector.to_path_buf())];
    if let Ok(entries) = std::fs::read_dir(users_dir()) {
        let mut users: Vec<(String, PathBuf)> = entries
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.path().join("projector"),
                )
            })
            .filter(|(name, dir)| {
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    && dir.join("projector.json").exists()
                    && dir.join("projector.safetensors").exists()
            })
            .filter(|(name, dir)| match projector_llm(dir) {
                Ok(theirs) if theirs == llm => true,
                other => {
                    eprintln!(
                        "user `{name}` is left out of the demo: their projector was trained for {} (the page loads {llm})",
                        other.unwrap_or_else(|e| e.to_string())
                    );
                    false
                }
            })
            .collect();
        users.sort();
        projectors.extend(users);
    }
    for (name, dir) in projectors {
        files.push(model_file(
            "projector_manifest",
            format!("projectors/{name}/projector.json"),
            Some(name.clone()),
            dir.join("projector.json"),
        )?);
        files.push(model_file(
            "projector_weights",
            format!("projectors/{name}/projector.safetensors"),
            Some(name),
            dir.join("projector.safetensors"),
        )?);
    }
    Ok(files)
}

fn manifest_json(files: &[ModelFile]) -> String {
    let entries: Vec<String> = files
        .iter()
        .map(|f| {
            let projector = f
                .projector
                .as_ref()
                .map(|p| format!(r#","projector":"{p}""#))
                .unwrap_or_default();
            format!(
                r#"{{"role":"{}","path":"{}","sha256":"{}","bytes":{}{projector}}}"#,
                f.role, f.path, f.sha256, f.bytes
            )
        })
        .collect();
    format!(r#"{{"files":[{}]}}"#, entries.join(","))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript",
        "css" => "text/css",
        "json" => "application/json",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    kind: &str,
    body: &mut dyn Read,
    len: u64,
) -> Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len}\r\nCache-Control: no-cache\r\n\
         Connection: close\r\n\r\n"
    )?;
    std::io::copy(body, stream)?;
    Ok(())
}

fn handle(mut stream: TcpStream, files: &[ModelFile], manifest: &str) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let target = request.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/");
    let not_found = |stream: &mut TcpStream| {
        let body = format!("{path}: not found\n");
        respond(
            stream,
            "404 Not Found",
            "text/plain",
            &mut body.as_bytes(),
            body.len() as u64,
        )
    };
    if path == "/models/manifest.json" {
        return respond(
            &mut stream,
            "200 OK",
            "application/json",
            &mut manifest.as_bytes(),
            manifest.len() as u64,
        );
    }
    if let Some(model_path) = path.strip_prefix("/models/") {
        return match files.iter().find(|f| f.path == model_path) {
            Some(f) => {
                let mut file = std::fs::File::open(&f.file)?;
                respond(
                    &mut stream,
                    "200 OK",
                    "application/octet-stream",
                    &mut file,
                    f.bytes,
                )
            }
            None => not_found(&mut stream),
        };
    }
    let rel = if path == "/" {
        "index.html"
    } else {
        path.trim_start_matches('/')
    };
    if rel.split('/').any(|part| part == ".." || part.is_empty()) {
        return not_found(&mut stream);
    }
    let file_path = dist().join(rel);
    match std::fs::File::open(&file_path) {
        Ok(mut file) => {
            let len = file.metadata()?.len();
            respond(
                &mut stream,
                "200 OK",
                content_type(&file_path),
                &mut file,
                len,
            )
        }
        Err(_) => not_found(&mut stream),
    }
}

/// Serves target/wasm-demo and the model files on 127.0.0.1:`port` (0: any free port) in a background
/// thread; returns the address.
fn serve(port: u16, projector: &Path) -> Result<std::net::SocketAddr> {
    let files = Arc::new(model_files(projector)?);
    let manifest = Arc::new(manifest_json(&files));
    let listener = TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (files, manifest) = (files.clone(), manifest.clone());
            std::thread::spawn(move || {
                if let Err(e) = handle(stream, &files, &manifest) {
                    eprintln!("serve: {e:#}");
                }
            });
        }
    });
    Ok(addr)
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
