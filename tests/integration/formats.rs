//! Other toolkits' manifests (NeMo, Hugging Face audiofolder, Kaldi/ESPnet) on the committed samples of
//! `tests/fixtures/formats/`, exported back, and their bad inputs.

use std::path::Path;

use serde_json::json;
use tinyalign_data::{Manifest, Split, Task, Utterance};

use crate::common::{fixture, temp_dir};

fn same_file(a: &Path, b: &Path) -> bool {
    a.canonicalize().unwrap() == b.canonicalize().unwrap()
}

/// The two recordings every sample points at: (file, duration, rate).
const WEASELS: (&str, f64, u32) = ("mel/tt-weasels.wav", 2.951, 8_000);
const LIBRIVOX: (&str, f64, u32) = ("mel/librivox-0880.wav", 2.99, 16_000);

fn check_audio(manifest: &Manifest, u: &Utterance, (file, duration, rate): (&str, f64, u32)) {
    assert!(same_file(&manifest.audio_path(u), &fixture(file)), "{u:?}");
    assert!(
        (u.duration_s - duration).abs() < 1e-3 && u.sample_rate == rate,
        "{u:?}"
    );
}

#[test]
fn nemo_manifests_keep_their_extra_fields_and_export_back() {
    let out = temp_dir("nemo");
    let nemo = fixture("formats/nemo/manifest.json");
    let utts = tinyalign_data::import_nemo(&nemo, Split::Test, None, &out).unwrap();
    let m = Manifest::new(&out, utts);
    let [a, b] = &m.utterances[..] else {
        panic!("{:?}", m.utterances)
    };
    check_audio(&m, a, WEASELS);
    check_audio(&m, b, LIBRIVOX);
    assert_eq!(
        (a.id.as_str(), a.text.as_str(), a.speaker.as_str(), a.split),
        (
            "tt-weasels",
            "Weasels have eaten our phone system.",
            "mel",
            Split::Test
        )
    );
    assert_eq!(
        a.extra,
        json!({"pred_text": "weasels have eaten our phone system", "lang": "en"})
            .as_object()
            .unwrap()
            .clone()
    );
    assert_eq!(
        (b.speaker.as_str(), b.task),
        ("880", Some(Task::Transcribe))
    );
    assert_eq!(
        (b.extra["offset"].clone(), b.extra["wer"].clone()),
        (json!(0.0), json!(0.0))
    );
    assert!(a.source.contains("NeMo") && a.licence.is_empty());

    // Our manifest, written and read back, then exported to NeMo and imported again: the same utterances.
    m.write(&out.join("m.jsonl")).unwrap();
    let reread = Manifest::read(&out.join("m.jsonl")).unwrap();
    assert_eq!(reread.utterances, m.utterances);
    let exported = out.join("export/nemo.json");
    tinyalign_data::export_nemo(&reread, &exported).unwrap();
    let line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&exported)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["audio_filepath"], json!(format!("../{}", a.audio)));
    assert_eq!(
        (line["duration"].clone(), line["pred_text"].clone()),
        (json!(2.951), json!("weasels have eaten our phone system"))
    );
    let again = tinyalign_data::import_nemo(&exported, Split::Train, None, &out).unwrap();
    assert_eq!(
        again, m.utterances,
        "the export keeps ids, splits and speakers"
    );
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn audiofolders_read_split_folders_csv_and_jsonl_and_export_back() {
    let out = temp_dir("hf");
    let utts = tinyalign_data::import_audiofolder(
        &fixture("formats/audiofolder"),
        Split::Adapt,
        None,
        &out,
    )
    .unwrap();
    let m = Manifest::new(&out, utts);
    let [a, b] = &m.utterances[..] else {
        panic!("{:?}", m.utterances)
    };
    check_audio(&m, a, WEASELS);
    check_audio(&m, b, LIBRIVOX);
    assert_eq!(
        (a.id.as_str(), a.text.as_str(), a.speaker.as_str(), a.split),
        (
            "tt-weasels",
            "Weasels have eaten our phone system, they said.",
            "allison",
            Split::Train
        )
    );
    assert_eq!(a.extra["accent"], json!("US, telephone"));
    assert_eq!(
        (b.split, b.speaker.as_str(), b.id.as_str()),
        (Split::Test, "mel", "880")
    );
    assert_eq!(b.extra["reader"]["chapter"], json!(1));

    // Audio outside the export folder is refused by name unless copied in.
    let dir = out.join("export");
    let err = tinyalign_data::export_audiofolder(&m, &dir, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&a.id) && err.contains("--copy-audio"), "{err}");
    assert!(!dir.join("metadata.jsonl").exists());
    tinyalign_data::export_audiofolder(&m, &dir, true).unwrap();
    let again = tinyalign_data::import_audiofolder(&dir, Split::Valid, None, &out).unwrap();
    assert_eq!(again.len(), 2);
    for (x, y) in m.utterances.iter().zip(&again) {
        let (mut x, mut y) = (x.clone(), y.clone());
        assert_eq!(
            std::fs::read(out.join(&x.audio)).unwrap(),
            std::fs::read(out.join(&y.audio)).unwrap()
        );
        (x.audio, y.audio) = (String::new(), String::new());
        (x.source, y.source) = (String::new(), String::new());
        assert_eq!(x, y, "everything but the path and the source survives");
    }
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn kaldi_data_folders_read_wav_scp_text_and_utt2spk() {
    let out = temp_dir("kaldi");
    let utts = tinyalign_data::import_kaldi(&fixture("formats/kaldi"), Split::Heldout, None, &out)
        .unwrap();
    let m = Manifest::new(&out, utts);
    let [a, b] = &m.utterances[..] else {
        panic!("{:?}", m.utterances)
    };
    check_audio(&m, a, WEASELS);
    check_audio(&m, b, LIBRIVOX);
    assert_eq!(
        (a.id.as_str(), a.text.as_str(), a.speaker.as_str(), a.split),
        (
            "allison-weasels",
            "WEASELS HAVE EATEN OUR PHONE SYSTEM",
            "allison",
            Split::Heldout
        )
    );
    assert_eq!(b.speaker, "lv0880");
    assert!(a.extra.is_empty());
    std::fs::remove_dir_all(out).ok();
}

/// Copies a sample folder so a test can damage it.
fn copy_sample(name: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        // Paths were relative to the sample's folder; make them absolute for the copy.
        let text = text.replace("../../mel/", &format!("{}/", fixture("mel").display()));
        std::fs::write(to.join(path.file_name().unwrap()), text).unwrap();
    }
}

#[test]
fn other_layouts_bad_input_names_the_file_line_and_what_to_do() {
    let root = temp_dir("bad");
    let err_of =
        |result: Result<Vec<Utterance>, tinyalign_data::DataError>| result.unwrap_err().to_string();

    let nemo = root.join("nemo/manifest.json");
    copy_sample("formats/nemo", &root.join("nemo"));
    let good = std::fs::read_to_string(&nemo).unwrap();
    let first = good.lines().next().unwrap();
    for (line, want) in [
        (first.replace("\"offset\": 0.0", ""), ""),
        (
            first.replace("\"lang\"", "\"offset\": 1.5, \"lang\""),
            "`offset` 1.5 s",
        ),
        (first.replace("2.951", "1.2"), "segments"),
        (
            first.replace("\"text\": \"Weasels", "\"text\": 7, \"x\": \"Weasels"),
            "field `text` is 7",
        ),
        (first.replace("tt-weasels", "missing"), "missing.wav"),
        (first.replace("audio_filepath", "path"), "audio_filepath"),
    ] {
        std::fs::write(&nemo, format!("{}\n{line}\n", good.lines().nth(1).unwrap())).unwrap();
        let result = tinyalign_data::import_nemo(&nemo, Split::Test, None, &root);
        if want.is_empty() {
            assert_eq!(result.unwrap().len(), 2);
            continue;
        }
        let err = err_of(result);
        assert!(
            err.contains("manifest.json:2:") && err.contains(want),
            "{want}: {err}"
        );
    }

    let kaldi = root.join("kaldi");
    copy_sample("formats/kaldi", &kaldi);
    let kaldi_err = || {
        err_of(tinyalign_data::import_kaldi(
            &kaldi,
            Split::Train,
            None,
            &root,
        ))
    };
    std::fs::write(
        kaldi.join("wav.scp"),
        "allison-weasels sox x.flac -t wav - |\n",
    )
    .unwrap();
    let err = kaldi_err();
    assert!(
        err.contains("wav.scp:1:") && err.contains("is a command"),
        "{err}"
    );
    std::fs::write(kaldi.join("wav.scp"), "allison-weasels feats.ark:123\n").unwrap();
    let err = kaldi_err();
    assert!(err.contains("archives"), "{err}");
    std::fs::write(
        kaldi.join("wav.scp"),
        format!("allison-weasels {}\n", fixture(WEASELS.0).display()),
    )
    .unwrap();
    let err = kaldi_err();
    assert!(
        err.contains("text:2:") && err.contains("`lv0880-0001` has no line in wav.scp"),
        "{err}"
    );
    std::fs::write(kaldi.join("segments"), "x allison-weasels 0.0 1.0\n").unwrap();
    let err = kaldi_err();
    assert!(err.contains("segments"), "{err}");

    let hf = root.join("hf");
    std::fs::create_dir_all(&hf).unwrap();
    let err = err_of(tinyalign_data::import_audiofolder(
        &hf,
        Split::Train,
        None,
        &root,
    ));
    assert!(err.contains("no metadata.jsonl or metadata.csv"), "{err}");
    let weasels = fixture(WEASELS.0).display().to_string();
    for (csv, want) in [
        (
            format!("file_name,text\n{weasels},\"unclosed\n"),
            "metadata.csv:2: a quoted field is never closed",
        ),
        (
            format!("file_name,text\n{weasels},a,b\n"),
            "metadata.csv:2: 3 fields, the header has 2",
        ),
        (
            format!("path,text\n{weasels},hello\n"),
            "metadata.csv:2: no `file_name`",
        ),
        (
            format!("file_name,words\n{weasels},hello\n"),
            "no transcript (a field named transcription or text",
        ),
    ] {
        std::fs::write(hf.join("metadata.csv"), csv).unwrap();
        let err = err_of(tinyalign_data::import_audiofolder(
            &hf,
            Split::Train,
            None,
            &root,
        ));
        assert!(err.contains(want), "{want}: {err}");
    }
    std::fs::remove_dir_all(root).ok();
}
