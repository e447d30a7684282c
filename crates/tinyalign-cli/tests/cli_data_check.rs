//! `tinyalign data check`: the Whisper round-trip filter tags what Whisper hears right and flags (or drops)
//! an utterance whose text does not match its audio, on real pocketsphinx recordings.

mod common;

use std::process::{Command, Output};

use common::{cache, models_present};

use tinyalign_data::Manifest;

fn tinyalign(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinyalign"))
        .args(args)
        .env("TINYALIGN_CACHE", cache())
        .output()
        .expect("runs the binary")
}

#[test]
fn round_trip_flags_a_mismatched_transcript() {
    let needed = [
        "whisper-tiny.en/hf/model.safetensors",
        "speech-pocketsphinx/usr/share/pocketsphinx/test/data/goforward.raw",
    ];
    if !models_present(&needed) {
        return;
    }
    let root = std::env::temp_dir().join(format!("tinyalign-cli-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let data = root.join("data");
    let built = tinyalign(&[
        "data",
        "build",
        "pocketsphinx",
        "--out",
        data.to_str().unwrap(),
    ]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    // Two utterances: goforward as recorded, and one whose text has been swapped for another sentence.
    let mut m = Manifest::read(&data.join("manifest.jsonl")).unwrap();
    m.utterances
        .retain(|u| u.id == "pocketsphinx/goforward" || u.id.ends_with("austen_64kb-0870"));
    assert_eq!(m.utterances.len(), 2);
    let wrong = m
        .utterances
        .iter_mut()
        .find(|u| u.id != "pocketsphinx/goforward")
        .unwrap();
    wrong.text = "please close the kitchen window before it rains".into();
    let wrong_id = wrong.id.clone();
    let small = data.join("small.jsonl");
    m.write(&small).unwrap();

    let out = root.join("elsewhere/checked.jsonl");
    let result = tinyalign(&[
        "data",
        "check",
        small.to_str().unwrap(),
        "--per-speaker",
        "0",
        "--max-wer",
        "0.5",
        "--drop",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(
        stdout.contains("2 checked, 1 flagged, 1 dropped"),
        "{stdout}"
    );
    let checked = Manifest::read(&out).unwrap();
    assert_eq!(checked.utterances.len(), 1);
    assert_eq!(checked.utterances[0].id, "pocketsphinx/goforward");
    assert!(
        checked.utterances[0]
            .tags
            .iter()
            .any(|t| t == "whisper-wer=0.00"),
        "{:?}",
        checked.utterances[0].tags
    );
    assert!(
        checked.missing_audio().is_empty(),
        "paths rebased to the new folder"
    );

    // Without --drop the bad one stays, tagged.
    let tagged = tinyalign(&[
        "data",
        "check",
        small.to_str().unwrap(),
        "--per-speaker",
        "0",
    ]);
    assert!(tagged.status.success());
    let again = Manifest::read(&small).unwrap();
    let bad = again.utterances.iter().find(|u| u.id == wrong_id).unwrap();
    assert!(
        bad.tags.iter().any(|t| t == "whisper-roundtrip-flagged"),
        "{:?}",
        bad.tags
    );
    let _ = std::fs::remove_dir_all(&root);
}
