//! What the CLI tests that need the downloaded models share.

use std::path::{Path, PathBuf};

/// The model cache the binary under test reads: `$TINYALIGN_CACHE`, else the repository's.
pub fn cache() -> PathBuf {
    std::env::var_os("TINYALIGN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/tinyalign"))
}

/// Whether every `needed` file (relative to the cache) is there. Missing: a failure when
/// `TINYALIGN_REQUIRE_MODELS=1` (CI fetches first), else a `SKIPPED:` notice and `false`.
pub fn models_present(needed: &[&str]) -> bool {
    let Some(missing) = needed.iter().find(|p| !cache().join(p).exists()) else {
        return true;
    };
    if std::env::var("TINYALIGN_REQUIRE_MODELS").is_ok_and(|v| v == "1") {
        panic!("{missing} is missing and TINYALIGN_REQUIRE_MODELS=1: run `cargo xtask fetch`");
    }
    eprintln!("SKIPPED: {missing} is not in the cache (run `cargo xtask fetch`)");
    false
}
