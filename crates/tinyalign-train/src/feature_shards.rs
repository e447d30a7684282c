//! Packed feature shards: many cache entries in one f16 safetensors file of bounded size
//! (`<cache folder>/shards/*.safetensors`), so a 20-hour corpus is ~120 files instead of 55,000. Each
//! shard's safetensors header is its index: one tensor `[frames, width]` per entry, named by the entry's
//! key, with the encoder's sha256 and the frontend version in `__metadata__`, checked when the cache
//! opens. A shard is written whole (temporary file, fsync, rename), so no reader sees a half-written one,
//! and an interrupted build loses at most the one shard it was filling.
//!
//! Training reads an entry's byte range when its batch is made, not a memory map of the shards: mapped
//! pages count towards the process's RSS as they are touched, so an epoch over a mapped 7.8 GB cache
//! would report (and, under memory pressure, hold) up to the whole cache, while a read keeps RSS at the
//! batch it is building; the page cache serves repeated reads either way.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::TrainError;

/// What a shard's `__metadata__.format` says; another value is not a feature shard of this version.
const FORMAT: &str = "tinyalign-features/1";

/// A shard is written once its entries reach this many bytes (~450 utterances of 3 s with Whisper tiny's
/// 384-wide features); it bounds both the file size and what an interrupted build loses.
pub const SHARD_BYTES: usize = 64 << 20;

/// Which encoder and frontend made a cache's entries; every shard must say the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheIdentity {
    pub(crate) encoder_sha256: String,
    pub(crate) frontend_version: String,
}

/// One shard file, or the shard being filled (its bytes still in memory, its path where it will go).
#[derive(Debug)]
pub(crate) struct ShardFile {
    path: PathBuf,
    state: Mutex<ShardState>,
}

#[derive(Debug)]
enum ShardState {
    Written { data_start: u64 },
    Filling { data: Vec<u8> },
}

impl ShardFile {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// `len` bytes of the data section from `start`, read from the file or the shard being filled.
    pub(crate) fn read(&self, start: u64, len: usize) -> Result<Vec<u8>, TrainError> {
        let name = self.path.display();
        let state = self.state.lock().map_err(|_| poisoned(&self.path))?;
        match &*state {
            ShardState::Filling { data } => {
                let start = start as usize;
                data.get(start..start + len)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| TrainError::Data(format!("{name}: entry past the filled bytes")))
            }
            ShardState::Written { data_start } => {
                let io = |e: std::io::Error| TrainError::Io(format!("{name}: {e}"));
                let mut file = std::fs::File::open(&self.path).map_err(io)?;
                file.seek(SeekFrom::Start(data_start + start)).map_err(io)?;
                let mut bytes = vec![0u8; len];
                file.read_exact(&mut bytes).map_err(|e| {
                    TrainError::Io(format!(
                        "{name}: {e} (the shard is shorter than when the run indexed it)"
                    ))
                })?;
                Ok(bytes)
            }
        }
    }
}

fn poisoned(path: &Path) -> TrainError {
    TrainError::Data(format!("{}: shard lock poisoned", path.display()))
}

/// One entry of a shard's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardEntry {
    pub(crate) key: String,
    pub(crate) frames: usize,
    pub(crate) width: usize,
    /// Offset of its f16 rows in the shard's data section.
    pub(crate) start: u64,
    pub(crate) utterance: String,
    pub(crate) augmentation: String,
}

impl ShardEntry {
    pub(crate) fn byte_len(&self) -> usize {
        self.frames * self.width * 2
    }
}

/// The entries of the shard at `path`, checked against `identity` and the file's length: a damaged
/// shard, or one of another encoder or frontend, is an error that names it (it was never written that
/// way: it was truncated or copied in since).
pub(crate) fn read_shard(
    path: &Path,
    identity: &CacheIdentity,
) -> Result<(Arc<ShardFile>, Vec<ShardEntry>), TrainError> {
    let name = path.display();
    let damaged = |why: String| {
        TrainError::Data(format!(
            "{name}: damaged feature shard ({why}); delete it and its entries are computed again"
        ))
    };
    let mut file = std::fs::File::open(path).map_err(|e| TrainError::Io(format!("{name}: {e}")))?;
    let file_len = file
        .metadata()
        .map_err(|e| TrainError::Io(format!("{name}: {e}")))?
        .len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| damaged(format!("{file_len} bytes, shorter than a header")))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > 256 << 20 || 8 + header_len > file_len {
        return Err(damaged(format!(
            "a {header_len}-byte header in {file_len} bytes"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| TrainError::Io(format!("{name}: {e}")))?;
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| damaged(format!("header: {e}")))?;
    let metadata: BTreeMap<String, String> = header
        .get("__metadata__")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| damaged(format!("metadata: {e}")))?
        .unwrap_or_default();
    let field = |key: &str| metadata.get(key).map(String::as_str).unwrap_or("");
    if field("format") != FORMAT {
        return Err(TrainError::Data(format!(
            "{name}: not a feature shard of this version (format `{}`, expected `{FORMAT}`)",
            field("format")
        )));
    }
    if field("encoder") != identity.encoder_sha256 || field("frontend") != identity.frontend_version
    {
        return Err(TrainError::Data(format!(
            "{name}: features of encoder {} with frontend version {}, but this cache folder is for \
             encoder {} with frontend version {}: move the shard to its own cache folder or delete it",
            field("encoder"),
            field("frontend"),
            identity.encoder_sha256,
            identity.frontend_version
        )));
    }
    let mut entries = Vec::new();
    for (key, value) in header.iter().filter(|(k, _)| *k != "__metadata__") {
        let view: TensorHeader = serde_json::from_value(value.clone())
            .map_err(|e| damaged(format!("entry {key}: {e}")))?;
        let [frames, width] = view.shape[..] else {
            return Err(damaged(format!("entry {key} of shape {:?}", view.shape)));
        };
        let [start, end] = view.data_offsets;
        let bytes = frames
            .checked_mul(width)
            .and_then(|n| n.checked_mul(2))
            .map(|n| n as u64);
        if view.dtype != "F16" || end.checked_sub(start) != bytes {
            return Err(damaged(format!(
                "entry {key}: {} {:?} at {start}..{end}",
                view.dtype, view.shape
            )));
        }
        entries.push(ShardEntry {
            key: key.clone(),
            frames,
            width,
            start,
            utterance: field(&format!("{key}.utterance")).to_string(),
            augmentation: field(&format!("{key}.augmentation")).to_string(),
        });
    }
    // The entries tile the data section, which ends where the file does.
    entries.sort_by_key(|e| e.start);
    let mut expected = 0u64;
    for e in &entries {
        if e.start != expected {
            return Err(damaged(format!(
                "entry {} starts at {}, not {expected}",
                e.key, e.start
            )));
        }
        expected += e.byte_len() as u64;
    }
    if 8 + header_len + expected != file_len {
        return Err(damaged(format!(
            "{file_len} bytes where its header describes {}",
            8 + header_len + expected
        )));
    }
    let shard = ShardFile {
        path: path.to_path_buf(),
        state: Mutex::new(ShardState::Written {
            data_start: 8 + header_len,
        }),
    };
    Ok((Arc::new(shard), entries))
}

#[derive(serde::Deserialize)]
struct TensorHeader {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// Every shard of the cache folder `dir`, in name order.
pub(crate) fn shard_paths(dir: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let shards = dir.join("shards");
    let listing = match std::fs::read_dir(&shards) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TrainError::Io(format!("{}: {e}", shards.display()))),
    };
    let mut paths = Vec::new();
    for entry in listing {
        let path = entry
            .map_err(|e| TrainError::Io(format!("{}: {e}", shards.display())))?
            .path();
        // Temporary files of write_atomic start with a dot and end in `.tmpPID`.
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".safetensors") && !name.starts_with('.') {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

/// Fills shards with new entries and writes each whole once it holds [`SHARD_BYTES`].
#[derive(Debug)]
pub(crate) struct ShardWriter {
    dir: PathBuf,
    identity: CacheIdentity,
    /// Unique to this writer (time and process), so writers on many machines share a folder.
    prefix: String,
    next: usize,
    limit: usize,
    filling: Option<(Arc<ShardFile>, Vec<ShardEntry>)>,
}

impl ShardWriter {
    pub(crate) fn new(cache_dir: &Path, identity: CacheIdentity) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self {
            dir: cache_dir.join("shards"),
            identity,
            prefix: format!("{nanos:x}-{}", std::process::id()),
            next: 0,
            limit: SHARD_BYTES,
            filling: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Adds an entry (`rows`: its f16 little-endian bytes, `entry.start` ignored); returns the shard it is
    /// in and its offset there, and the entries of a shard this wrote out (when it filled one).
    pub(crate) fn push(
        &mut self,
        mut entry: ShardEntry,
        rows: &[u8],
    ) -> Result<(Arc<ShardFile>, u64, Vec<ShardEntry>), TrainError> {
        debug_assert_eq!(rows.len(), entry.byte_len());
        let (shard, entries) = self.filling.get_or_insert_with(|| {
            let path = self
                .dir
                .join(format!("{}-{:05}.safetensors", self.prefix, self.next));
            self.next += 1;
            let shard = ShardFile {
                path,
                state: Mutex::new(ShardState::Filling { data: Vec::new() }),
            };
            (Arc::new(shard), Vec::new())
        });
        let shard = shard.clone();
        let filled = {
            let mut state = shard.state.lock().map_err(|_| poisoned(&shard.path))?;
            let ShardState::Filling { data } = &mut *state else {
                unreachable!("a written shard is never the one being filled")
            };
            entry.start = data.len() as u64;
            data.extend_from_slice(rows);
            data.len()
        };
        let start = entry.start;
        entries.push(entry);
        let written = if filled >= self.limit {
            self.flush()?
        } else {
            Vec::new()
        };
        Ok((shard, start, written))
    }

    /// Writes the shard being filled (if any) and returns its entries; its readers switch to the file.
    pub(crate) fn flush(&mut self) -> Result<Vec<ShardEntry>, TrainError> {
        let Some((shard, entries)) = self.filling.take() else {
            return Ok(Vec::new());
        };
        let mut state = shard.state.lock().map_err(|_| poisoned(&shard.path))?;
        let ShardState::Filling { data } = &*state else {
            unreachable!("a shard is written once")
        };
        let header = encode_header(&entries, &self.identity);
        let mut bytes = Vec::with_capacity(8 + header.len() + data.len());
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(data);
        tinyalign_data::write_atomic(&shard.path, &bytes)?;
        *state = ShardState::Written {
            data_start: 8 + header.len() as u64,
        };
        Ok(entries)
    }
}

/// The safetensors header of a shard, padded with spaces to a multiple of 8 bytes (as the safetensors
/// writer does, so the f16 data is aligned).
fn encode_header(entries: &[ShardEntry], identity: &CacheIdentity) -> Vec<u8> {
    let mut metadata = serde_json::Map::new();
    metadata.insert("format".into(), FORMAT.into());
    metadata.insert("encoder".into(), identity.encoder_sha256.clone().into());
    metadata.insert("frontend".into(), identity.frontend_version.clone().into());
    let mut header = serde_json::Map::new();
    for e in entries {
        metadata.insert(format!("{}.utterance", e.key), e.utterance.clone().into());
        if !e.augmentation.is_empty() {
            metadata.insert(
                format!("{}.augmentation", e.key),
                e.augmentation.clone().into(),
            );
        }
        header.insert(
            e.key.clone(),
            serde_json::json!({
                "dtype": "F16",
                "shape": [e.frames, e.width],
                "data_offsets": [e.start, e.start + e.byte_len() as u64],
            }),
        );
    }
    header.insert("__metadata__".into(), metadata.into());
    let mut bytes = serde_json::to_vec(&header).expect("a JSON map serialises");
    bytes.resize(bytes.len().next_multiple_of(8), b' ');
    bytes
}

#[cfg(test)]
#[path = "feature_shards_tests.rs"]
mod tests;
