//! Where cached encoder features live: a folder per encoder and frontend version
//! (`<root>/<encoder sha256 prefix>-fe<version>/`), holding packed shards ([`crate::feature_shards`]) and,
//! from earlier versions, one file per entry (`<key>.safetensors`, still read; [`FeatureStore::pack_entry_files`]
//! moves them into shards). Entries are keyed by a hash of the audio bytes and the augmentation's tag.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tinyalign_weights::st::read_safetensors;
use tinyalign_weights::{FloatKind, le_floats};

use crate::TrainError;
use crate::feature_shards::{
    CacheIdentity, ShardEntry, ShardFile, ShardWriter, read_shard, shard_paths,
};
use crate::features::{FRONTEND_VERSION, Features};

/// Stored features of one utterance copy: where they are and their shape, read when a batch needs them.
#[derive(Debug, Clone)]
pub struct FeatureFile {
    location: Location,
    pub frames: usize,
    pub width: usize,
}

#[derive(Debug, Clone)]
enum Location {
    /// One safetensors file with one tensor `features`.
    Entry(PathBuf),
    /// A byte range of a shard's data section.
    Packed { shard: Arc<ShardFile>, start: u64 },
}

impl FeatureFile {
    /// An entry stored as its own file (`features`, f16 `[frames, width]`).
    pub fn entry_file(path: PathBuf, frames: usize, width: usize) -> Self {
        Self {
            location: Location::Entry(path),
            frames,
            width,
        }
    }

    /// The file the features are read from (an entry file or a shard).
    pub fn source(&self) -> &Path {
        match &self.location {
            Location::Entry(path) => path,
            Location::Packed { shard, .. } => shard.path(),
        }
    }

    /// The stored (f16-rounded) features; an unreadable or reshaped file is an error naming it.
    pub fn load(&self) -> Result<Features, TrainError> {
        let features = match &self.location {
            Location::Entry(path) => {
                let name = path.display().to_string();
                let bytes =
                    std::fs::read(path).map_err(|e| TrainError::Io(format!("{name}: {e}")))?;
                decode(&bytes, &name)?
            }
            Location::Packed { shard, start } => {
                let rows = shard.read(*start, self.frames * self.width * 2)?;
                Features {
                    frames: self.frames,
                    width: self.width,
                    data: le_floats(FloatKind::F16, &rows),
                }
            }
        };
        if (features.frames, features.width) != (self.frames, self.width) {
            return Err(TrainError::Data(format!(
                "{}: {}×{} features, {}×{} when the run started (was the cache changed under it?)",
                self.source().display(),
                features.frames,
                features.width,
                self.frames,
                self.width
            )));
        }
        Ok(features)
    }
}

/// The `(frames, width)` of a stored entry from its safetensors header alone (8-byte length + JSON), the
/// f16 data unread; `None` when the file is missing, truncated or not a features entry (it is recomputed).
/// At start-up a run learns every entry's shape this way: 13,768 entries were 5.4 s of decoding whole files.
fn stored_shape(path: &Path) -> Option<(usize, usize)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let file_len = file.metadata().ok()?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len).ok()?;
    let header_len = u64::from_le_bytes(len);
    if header_len > 1 << 20 || 8 + header_len > file_len {
        return None;
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).ok()?;
    let (frames, width, _) = entry_header(&header, file_len)?;
    Some((frames, width))
}

/// The shape and parsed JSON of an entry file's safetensors `header` (the bytes after its 8-byte length),
/// when it describes one complete f16 tensor `features` ending where the `file_len`-byte file does.
fn entry_header(header: &[u8], file_len: u64) -> Option<(usize, usize, serde_json::Value)> {
    let header_len = header.len() as u64;
    let json: serde_json::Value = serde_json::from_slice(header).ok()?;
    let entry = json.get("features")?;
    let shape: Vec<usize> = entry
        .get("shape")?
        .as_array()?
        .iter()
        .map(|v| v.as_u64().map(|v| v as usize))
        .collect::<Option<_>>()?;
    let offsets: Vec<u64> = entry
        .get("data_offsets")?
        .as_array()?
        .iter()
        .map(serde_json::Value::as_u64)
        .collect::<Option<_>>()?;
    let (&[frames, width], &[start, end], Some("F16")) = (
        shape.as_slice(),
        offsets.as_slice(),
        entry.get("dtype").and_then(serde_json::Value::as_str),
    ) else {
        return None;
    };
    let bytes = frames.checked_mul(width)?.checked_mul(2)? as u64;
    let complete = end.checked_sub(start) == Some(bytes) && 8 + header_len + end == file_len;
    complete.then_some((frames, width, json))
}

fn decode(bytes: &[u8], name: &str) -> Result<Features, TrainError> {
    let mut map = read_safetensors(bytes, name)?;
    let t = map
        .remove("features")
        .ok_or_else(|| TrainError::Io(format!("{name}: no tensor `features`")))?;
    if t.shape.len() != 2 {
        return Err(TrainError::Data(format!(
            "{name}: features of shape {:?}",
            t.shape
        )));
    }
    Ok(Features {
        frames: t.shape[0],
        width: t.shape[1],
        data: t.data,
    })
}

/// The entries of one cache folder: the shards' index, the shard being filled and entry files.
#[derive(Debug)]
pub struct FeatureStore {
    dir: PathBuf,
    /// Every packed entry, from the shards found at start and those written since.
    packed: HashMap<String, FeatureFile>,
    writer: ShardWriter,
}

/// What [`FeatureStore::pack_entry_files`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PackReport {
    pub cache: PathBuf,
    /// Entry files moved into shards, and those already in a shard (deleted).
    pub packed: usize,
    pub duplicates: usize,
    /// Entry files that are not a readable features entry, left where they are (`train` computes them again).
    pub unreadable: Vec<PathBuf>,
    pub shards_written: usize,
    pub bytes: u64,
}

impl FeatureStore {
    /// `root`/`<encoder sha256 prefix>-fe<version>/`, made if missing; `encoder_sha256` is the sha256 of the
    /// encoder's weight file. Every shard there is indexed now: a damaged one, or one of another encoder,
    /// is an error naming it.
    pub fn open(root: &Path, encoder_sha256: &str) -> Result<Self, TrainError> {
        let dir = root.join(format!(
            "{}-fe{FRONTEND_VERSION}",
            &encoder_sha256[..16.min(encoder_sha256.len())]
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| TrainError::Io(format!("{}: {e}", dir.display())))?;
        let identity = CacheIdentity {
            encoder_sha256: encoder_sha256.to_string(),
            frontend_version: FRONTEND_VERSION.to_string(),
        };
        let mut packed = HashMap::new();
        for path in shard_paths(&dir)? {
            let (shard, entries) = read_shard(&path, &identity)?;
            for e in entries {
                // Two machines may have made the same entry; either copy is the same features.
                packed.entry(e.key.clone()).or_insert_with(|| FeatureFile {
                    location: Location::Packed {
                        shard: shard.clone(),
                        start: e.start,
                    },
                    frames: e.frames,
                    width: e.width,
                });
            }
        }
        Ok(Self {
            writer: ShardWriter::new(&dir, identity),
            dir,
            packed,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Entries in shards (written, or being filled).
    pub fn packed_entries(&self) -> usize {
        self.packed.len()
    }

    /// The stored entry `key` (32 hex digits), packed or in its own file.
    pub(crate) fn find(&self, key: &str) -> Option<FeatureFile> {
        if let Some(entry) = self.packed.get(key) {
            return Some(entry.clone());
        }
        let file = self.dir.join(format!("{key}.safetensors"));
        let (frames, width) = stored_shape(&file)?;
        Some(FeatureFile::entry_file(file, frames, width))
    }

    /// Packs an entry; returns where it is and how many entries a shard this filled holds.
    pub(crate) fn add_to_shard(
        &mut self,
        entry: ShardEntry,
        rows: &[u8],
    ) -> Result<(FeatureFile, usize), TrainError> {
        let (key, frames, width) = (entry.key.clone(), entry.frames, entry.width);
        let (shard, start, written) = self.writer.push(entry, rows)?;
        let file = FeatureFile {
            location: Location::Packed { shard, start },
            frames,
            width,
        };
        self.packed.insert(key, file.clone());
        Ok((file, written.len()))
    }

    /// Writes the shard being filled. Dropping the cache does too, but cannot report a failure.
    pub fn flush(&mut self) -> Result<(), TrainError> {
        self.writer.flush().map(drop)
    }

    /// Moves the cache's entry files (one per utterance copy, as earlier versions stored them) into
    /// shards; each file is deleted once the shard holding it is written. `progress(done, total)` after
    /// each file.
    pub fn pack_entry_files(
        &mut self,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<PackReport, TrainError> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.dir)
            .map_err(|e| TrainError::Io(format!("{}: {e}", self.dir.display())))?
        {
            let path = entry
                .map_err(|e| TrainError::Io(format!("{}: {e}", self.dir.display())))?
                .path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".safetensors") && !name.starts_with('.') && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut report = PackReport {
            cache: self.dir.clone(),
            ..PackReport::default()
        };
        let mut waiting: Vec<PathBuf> = Vec::new();
        let remove = |paths: &mut Vec<PathBuf>| -> Result<(), TrainError> {
            for p in paths.drain(..) {
                std::fs::remove_file(&p)
                    .map_err(|e| TrainError::Io(format!("{}: {e}", p.display())))?;
            }
            Ok(())
        };
        for (done, path) in files.iter().enumerate() {
            let key = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("")
                .to_string();
            if self.packed.contains_key(&key) {
                report.duplicates += 1;
                std::fs::remove_file(path)
                    .map_err(|e| TrainError::Io(format!("{}: {e}", path.display())))?;
            } else if let Some((entry, rows)) = read_entry_file(path, &key) {
                report.bytes += rows.len() as u64;
                waiting.push(path.clone());
                if self.add_to_shard(entry, &rows)?.1 > 0 {
                    report.shards_written += 1;
                    remove(&mut waiting)?;
                }
                report.packed += 1;
            } else {
                report.unreadable.push(path.clone());
            }
            progress(done + 1, files.len());
        }
        if !self.writer.flush()?.is_empty() {
            report.shards_written += 1;
        }
        remove(&mut waiting)?;
        Ok(report)
    }
}

impl Drop for FeatureStore {
    fn drop(&mut self) {
        if let Err(e) = self.writer.flush() {
            eprintln!("warning: features computed since the last shard were not kept: {e}");
        }
    }
}

/// An entry file's index entry and f16 rows, from one read of it; `None` when it is not a complete f16
/// features entry.
fn read_entry_file(path: &Path, key: &str) -> Option<(ShardEntry, Vec<u8>)> {
    let mut bytes = std::fs::read(path).ok()?;
    let header_len = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header = bytes.get(8..8usize.checked_add(header_len)?)?;
    let (frames, width, json) = entry_header(header, bytes.len() as u64)?;
    let meta = |field: &str| {
        json["__metadata__"][field]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let entry = ShardEntry {
        key: key.to_string(),
        frames,
        width,
        start: 0,
        utterance: meta("utterance"),
        augmentation: meta("augmentation"),
    };
    // `entry_header` checked that the data section is exactly the tensor, starting at offset 0.
    let rows = bytes.split_off(8 + header_len);
    (rows.len() == entry.byte_len()).then_some((entry, rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinyalign_weights::st::{StoreAs, write_safetensors};
    use tinyalign_weights::{Tensor as HostTensor, TensorMap};

    fn entry(frames: usize, width: usize, store_as: StoreAs) -> Vec<u8> {
        let mut map = TensorMap::new("features");
        let data = (0..frames * width).map(|i| i as f32 * 0.25).collect();
        map.insert("features", HostTensor::new(vec![frames, width], data));
        write_safetensors(&map, store_as, &[("utterance", "u1")]).unwrap()
    }

    #[test]
    fn a_stored_shape_comes_from_the_header_and_a_damaged_entry_has_none() {
        let dir = std::env::temp_dir().join(format!("tinyalign-shape-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("entry.safetensors");
        let bytes = entry(37, 384, StoreAs::F16);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(stored_shape(&path), Some((37, 384)));
        let decoded = decode(&bytes, "entry").unwrap();
        assert_eq!((decoded.frames, decoded.width), (37, 384));
        // Truncated (a crash before the rename cannot leave one, a full disk or a copy can), one byte too
        // many, another dtype, a missing file: recomputed, not trusted.
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(stored_shape(&path), None);
        std::fs::write(&path, [bytes.as_slice(), &[0]].concat()).unwrap();
        assert_eq!(stored_shape(&path), None);
        std::fs::write(&path, entry(37, 384, StoreAs::F32)).unwrap();
        assert_eq!(stored_shape(&path), None);
        std::fs::write(&path, &bytes[..5]).unwrap();
        assert_eq!(stored_shape(&path), None);
        assert_eq!(stored_shape(&dir.join("missing.safetensors")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn entry_files_are_found_then_packed_into_shards_and_deleted() {
        let root = std::env::temp_dir().join(format!("tinyalign-pack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let hash = "12".repeat(32);
        let mut store = FeatureStore::open(&root, &hash).unwrap();
        let key = |i: usize| format!("{i:032x}");
        for i in 0..5 {
            std::fs::write(
                store.dir().join(format!("{}.safetensors", key(i))),
                entry(10 + i, 384, StoreAs::F16),
            )
            .unwrap();
        }
        let damaged = store.dir().join(format!("{}.safetensors", key(9)));
        std::fs::write(&damaged, &entry(3, 384, StoreAs::F16)[..100]).unwrap();
        let before: Vec<Features> = (0..5)
            .map(|i| store.find(&key(i)).unwrap().load().unwrap())
            .collect();
        assert!(
            store.find(&key(9)).is_none(),
            "a damaged entry is computed again"
        );

        let report = store.pack_entry_files(&mut |_, _| {}).unwrap();
        assert_eq!(
            (report.packed, report.duplicates, report.shards_written),
            (5, 0, 1)
        );
        assert_eq!(report.unreadable, vec![damaged.clone()]);
        assert!(damaged.exists());
        for (i, expected) in before.iter().enumerate() {
            assert!(!store.dir().join(format!("{}.safetensors", key(i))).exists());
            let found = store.find(&key(i)).unwrap();
            assert!(found.source().starts_with(store.dir().join("shards")));
            assert_eq!(found.load().unwrap(), *expected);
        }
        drop(store);

        // A reopened store finds them in the shard; an entry file already packed is a duplicate.
        let mut store = FeatureStore::open(&root, &hash).unwrap();
        assert_eq!(store.packed_entries(), 5);
        std::fs::write(
            store.dir().join(format!("{}.safetensors", key(2))),
            entry(12, 384, StoreAs::F16),
        )
        .unwrap();
        let report = store.pack_entry_files(&mut |_, _| {}).unwrap();
        assert_eq!(
            (report.packed, report.duplicates, report.shards_written),
            (0, 1, 0)
        );
        assert_eq!(store.find(&key(2)).unwrap().load().unwrap(), before[2]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
