//! Where the CLI finds what `cargo xtask fetch` and the other commands leave: one place, so no command
//! module imports another for a path.

use std::path::PathBuf;

/// The model and data cache: `$TINYALIGN_CACHE`, else `.cache/tinyalign` (what `cargo xtask fetch` fills).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("TINYALIGN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".cache/tinyalign"))
}

/// The default Whisper folder: where `cargo xtask fetch` puts the converted tiny.en.
pub fn default_whisper_dir() -> PathBuf {
    cache_dir().join("whisper-tiny.en/hf")
}

/// The personal projectors' store (`tinyalign personalize`, `tinyalign users`).
pub fn default_users_dir() -> PathBuf {
    cache_dir().join("users")
}
