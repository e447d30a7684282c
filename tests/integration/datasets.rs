//! Manifests: the recipes on the packaged real speech, and the importers on generated folders.

use std::path::Path;

use tinyalign_data::{ASTERISK_SPEAKER, Manifest, ManifestStats, Split};

use crate::common::{cache_dir, cached_model, pcm16_spec, wav_bytes};

fn write_wav(path: &Path, seconds: f32, rate: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let samples: Vec<i16> = (0..(seconds * rate as f32) as usize)
        .map(|i| ((i % 50) as i16 - 25) * 100)
        .collect();
    std::fs::write(path, wav_bytes(pcm16_spec(1, rate), &samples)).unwrap();
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tinyalign-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn asterisk_recipe_is_one_speaker_split_by_seed() {
    if cached_model("speech-asterisk/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
        .is_none()
    {
        return;
    }
    let out = temp_dir("asterisk");
    let (manifest, report) =
        tinyalign_data::build_asterisk(&cache_dir(), &out, 0, 0.7, 30.0).unwrap();
    // 569 transcript lines: 5 tone markers, 3 prompts over 30 s and 1 without audio are left out.
    assert_eq!(report.kept, 560, "{:?}", report.skipped);
    assert!(
        report
            .skipped
            .iter()
            .any(|(id, why)| id == "demo-instruct" && why.contains("over 30 s"))
    );
    let reread = Manifest::read(&out.join("manifest.jsonl")).unwrap();
    assert_eq!(reread.utterances, manifest.utterances);
    assert!(reread.missing_audio().is_empty());
    assert!(
        reread
            .utterances
            .iter()
            .all(|u| u.speaker == ASTERISK_SPEAKER && u.sample_rate == 8000)
    );
    let stats = ManifestStats::of(&reread);
    assert_eq!(stats.splits[&Split::Adapt].utterances, 392);
    assert_eq!(stats.splits[&Split::Heldout].utterances, 168);
    let prompt = reread
        .utterances
        .iter()
        .find(|u| u.id == "asterisk/vm-nomore")
        .unwrap();
    assert_eq!(prompt.text, "No more messages.");
    // Same seed, same split; another seed, another.
    let (again, _) = tinyalign_data::build_asterisk(&cache_dir(), &out, 0, 0.7, 30.0).unwrap();
    assert_eq!(again.utterances, manifest.utterances);
    let (other, _) = tinyalign_data::build_asterisk(&cache_dir(), &out, 1, 0.7, 30.0).unwrap();
    assert_ne!(other.utterances, manifest.utterances);
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn pocketsphinx_recipe_has_the_transcribed_test_recordings() {
    if cached_model("speech-pocketsphinx/usr/share/pocketsphinx/test/data/librivox/transcription")
        .is_none()
    {
        return;
    }
    let out = temp_dir("pocketsphinx");
    let (manifest, _) = tinyalign_data::build_pocketsphinx(&cache_dir(), &out).unwrap();
    assert_eq!(manifest.utterances.len(), 11);
    assert!(manifest.utterances.iter().all(|u| u.split == Split::Test));
    let go = manifest
        .utterances
        .iter()
        .find(|u| u.id == "pocketsphinx/goforward")
        .unwrap();
    assert!(matches!(
        go.input_format(),
        tinyalign_mel::InputFormat::RawPcm16 {
            sample_rate: 16_000
        }
    ));
    let cards = manifest
        .utterances
        .iter()
        .find(|u| u.id == "pocketsphinx/cards/001")
        .unwrap();
    assert_eq!(cards.text, "ten of clubs");
    // Every listed file decodes as the manifest says.
    for u in &manifest.utterances {
        let audio =
            tinyalign_mel::read_audio_file(&manifest.audio_path(u), u.input_format()).unwrap();
        assert!((audio.duration_s() - u.duration_s).abs() < 1e-6);
    }
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn importers_read_common_layouts_and_name_what_they_cannot() {
    let root = temp_dir("import");
    // wav + txt folder, speakers from folder names.
    write_wav(&root.join("wavtxt/alice/a1.wav"), 1.5, 16_000);
    std::fs::write(root.join("wavtxt/alice/a1.txt"), "Turn on  the lights.\n").unwrap();
    write_wav(&root.join("wavtxt/bob/b1.wav"), 0.5, 8_000);
    std::fs::write(root.join("wavtxt/bob/b1.txt"), "Hello").unwrap();
    write_wav(&root.join("wavtxt/bob/untranscribed.wav"), 0.5, 8_000);
    let out_dir = root.join("manifests");
    let utts =
        tinyalign_data::import_wav_txt(&root.join("wavtxt"), None, Split::Adapt, "CC0", &out_dir)
            .unwrap();
    assert_eq!(utts.len(), 2);
    assert_eq!(
        (utts[0].speaker.as_str(), utts[0].text.as_str()),
        ("alice", "Turn on the lights.")
    );
    assert!((utts[1].duration_s - 0.5).abs() < 1e-9 && utts[1].sample_rate == 8_000);
    let manifest = Manifest::new(&out_dir, utts);
    manifest.write(&out_dir.join("m.jsonl")).unwrap();
    assert!(
        Manifest::read(&out_dir.join("m.jsonl"))
            .unwrap()
            .missing_audio()
            .is_empty(),
        "relative paths resolve"
    );

    // LibriSpeech: a converted WAV is used; a FLAC-only entry is refused with the conversion hint.
    let chapter = root.join("libri/84/121123");
    write_wav(&chapter.join("84-121123-0000.wav"), 1.0, 16_000);
    std::fs::write(
        chapter.join("84-121123.trans.txt"),
        "84-121123-0000 GO DO YOU HEAR\n",
    )
    .unwrap();
    let utts =
        tinyalign_data::import_librispeech(&root.join("libri"), Split::Train, &out_dir).unwrap();
    assert_eq!(
        (utts[0].speaker.as_str(), utts[0].text.as_str()),
        ("84", "GO DO YOU HEAR")
    );
    std::fs::write(
        chapter.join("84-121123.trans.txt"),
        "84-121123-0000 GO\n84-121123-0001 NO WAV\n",
    )
    .unwrap();
    let err = tinyalign_data::import_librispeech(&root.join("libri"), Split::Train, &out_dir)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("84-121123-0001.flac") && err.contains("ffmpeg"),
        "{err}"
    );

    // Common Voice TSV.
    write_wav(&root.join("cv/clips/common_voice_en_1.wav"), 2.0, 48_000);
    std::fs::write(
        root.join("cv/test.tsv"),
        "client_id\tpath\tsentence\tup_votes\nabc123\tcommon_voice_en_1.mp3\tIt is raining.\t2\n",
    )
    .unwrap();
    let utts =
        tinyalign_data::import_common_voice(&root.join("cv/test.tsv"), Split::Test, &out_dir)
            .unwrap();
    assert_eq!(
        (utts[0].speaker.as_str(), utts[0].id.as_str()),
        ("abc123", "common_voice_en_1")
    );
    std::fs::write(root.join("cv/bad.tsv"), "client_id\tsentence\nx\ty\n").unwrap();
    let err = tinyalign_data::import_common_voice(&root.join("cv/bad.tsv"), Split::Test, &out_dir)
        .unwrap_err();
    assert!(err.to_string().contains("`path` column"), "{err}");
    std::fs::remove_dir_all(root).ok();
}
