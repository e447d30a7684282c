use super::*;

fn identity() -> CacheIdentity {
    CacheIdentity {
        encoder_sha256: "ab".repeat(32),
        frontend_version: "1".into(),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tinyalign-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Entry `i`: `frames` rows of width 6, values that f16 holds exactly.
fn entry(i: usize, frames: usize) -> (ShardEntry, Vec<u8>) {
    let rows = (0..frames * 6)
        .flat_map(|j| half::f16::from_f32((i * 1000 + j) as f32 * 0.5).to_le_bytes())
        .collect();
    let entry = ShardEntry {
        key: format!("{i:032x}"),
        frames,
        width: 6,
        start: 0,
        utterance: format!("speaker/{i}"),
        augmentation: if i % 2 == 1 {
            format!("speed=1.0{i}")
        } else {
            String::new()
        },
    };
    (entry, rows)
}

#[test]
fn entries_read_back_while_filling_and_from_the_written_shard() {
    let dir = temp_dir("shards-roundtrip");
    // 90 bytes: the second entry (5 × 6 × 2 = 60 bytes after 36) fills the first shard.
    let mut writer = ShardWriter::new(&dir, identity()).with_limit(90);
    let (e0, r0) = entry(0, 3);
    let (first, start0, written) = writer.push(e0, &r0).unwrap();
    assert!(written.is_empty());
    assert_eq!(first.read(start0, r0.len()).unwrap(), r0);
    assert!(!first.path().exists(), "nothing on disk before it fills");
    let (e1, r1) = entry(1, 5);
    let (same, start1, written) = writer.push(e1, &r1).unwrap();
    assert!(Arc::ptr_eq(&first, &same));
    assert_eq!(written.len(), 2);
    assert!(first.path().exists());
    // Now read from the file.
    assert_eq!(first.read(start0, r0.len()).unwrap(), r0);
    assert_eq!(first.read(start1, r1.len()).unwrap(), r1);
    let (e2, r2) = entry(2, 1);
    let (second, ..) = writer.push(e2, &r2).unwrap();
    assert_ne!(first.path(), second.path());
    assert_eq!(writer.flush().unwrap().len(), 1);
    assert!(writer.flush().unwrap().is_empty());

    let paths = shard_paths(&dir).unwrap();
    assert_eq!(
        paths,
        vec![first.path().to_path_buf(), second.path().to_path_buf()]
    );
    let (shard, entries) = read_shard(&paths[0], &identity()).unwrap();
    assert_eq!(entries.len(), 2);
    for (i, rows) in [(0, &r0), (1, &r1)] {
        let e = entries
            .iter()
            .find(|e| e.key == format!("{i:032x}"))
            .unwrap();
        assert_eq!(e.utterance, format!("speaker/{i}"));
        assert_eq!(e.augmentation.is_empty(), i == 0);
        assert_eq!(&shard.read(e.start, e.byte_len()).unwrap(), rows);
    }
    // The official safetensors reader sees the same tensors (an independent check of the format).
    let bytes = std::fs::read(&paths[0]).unwrap();
    assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()) % 8, 0);
    let tensors = tinyalign_weights::st::read_safetensors_raw(&bytes, "shard").unwrap();
    assert_eq!(tensors.len(), 2);
    for t in &tensors {
        let i = usize::from_str_radix(&t.name, 16).unwrap();
        let (expected_entry, rows) = entry(i, [3, 5][i]);
        assert_eq!(t.shape, vec![expected_entry.frames, 6]);
        assert_eq!(t.data, rows.as_slice());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn damaged_or_foreign_shards_are_errors_that_name_the_file() {
    let dir = temp_dir("shards-damaged");
    let mut writer = ShardWriter::new(&dir, identity());
    for i in 0..3 {
        let (e, r) = entry(i, 4);
        writer.push(e, &r).unwrap();
    }
    writer.flush().unwrap();
    let path = shard_paths(&dir).unwrap().remove(0);
    let good = std::fs::read(&path).unwrap();
    let name = path.display().to_string();
    let damaged: [(&str, Vec<u8>); 5] = [
        ("truncated", good[..good.len() - 1].to_vec()),
        ("one byte too many", [good.as_slice(), &[0]].concat()),
        ("only a length", good[..8].to_vec()),
        ("empty", Vec::new()),
        ("header garbled", {
            let mut b = good.clone();
            b[9] = b'#';
            b
        }),
    ];
    for (what, bytes) in damaged {
        std::fs::write(&path, bytes).unwrap();
        let message = read_shard(&path, &identity()).unwrap_err().to_string();
        assert!(
            message.contains(&name) && message.contains("damaged"),
            "{what}: {message}"
        );
    }
    std::fs::write(&path, &good).unwrap();
    let other = CacheIdentity {
        encoder_sha256: "cd".repeat(32),
        frontend_version: "1".into(),
    };
    let message = read_shard(&path, &other).unwrap_err().to_string();
    assert!(
        message.contains(&name) && message.contains(&"ab".repeat(32)),
        "{message}"
    );
    let newer = CacheIdentity {
        frontend_version: "2".into(),
        ..identity()
    };
    let message = read_shard(&path, &newer).unwrap_err().to_string();
    assert!(message.contains("frontend version 1"), "{message}");
    // A file in the folder that is not a shard of this version.
    let foreign = dir.join("shards/weights.safetensors");
    let mut map = tinyalign_weights::TensorMap::new("w");
    map.insert("w", tinyalign_weights::Tensor::new(vec![2], vec![1.0, 2.0]));
    let bytes =
        tinyalign_weights::st::write_safetensors(&map, tinyalign_weights::st::StoreAs::F16, &[])
            .unwrap();
    std::fs::write(&foreign, bytes).unwrap();
    let message = read_shard(&foreign, &identity()).unwrap_err().to_string();
    assert!(message.contains("not a feature shard"), "{message}");
    // A reader never lists a temporary file.
    std::fs::write(dir.join("shards/.x.safetensors.tmp77"), b"partial").unwrap();
    std::fs::write(dir.join("shards/.y.safetensors"), b"partial").unwrap();
    assert_eq!(shard_paths(&dir).unwrap(), vec![path, foreign]);
    assert!(shard_paths(&dir.join("none")).unwrap().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}
