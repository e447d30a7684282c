//! The demo's HTTP server for `cargo xtask wasm --serve` and `wasm-test`: target/wasm-demo, and the
//! model files the page downloads (Whisper, the LLM, the projector) with their sha256 in a manifest.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::fetch;
use crate::wasm::dist;

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

pub(crate) fn users_dir() -> PathBuf {
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
pub(crate) fn serve(port: u16, projector: &Path) -> Result<std::net::SocketAddr> {
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
