//! Manifests: the recipes on the packaged real speech, and the importers on generated folders.

use std::path::Path;

use tinyalign_data::{ASTERISK_SPEAKER, Manifest, ManifestStats, Split};

use crate::common::{cache_dir, cached_model, pcm16_spec, temp_dir, wav_bytes};

fn write_wav(path: &Path, seconds: f32, rate: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let samples: Vec<i16> = (0..(seconds * rate as f32) as usize)
        .map(|i| ((i % 50) as i16 - 25) * 100)
        .collect();
    std::fs::write(path, wav_bytes(pcm16_spec(1, rate), &samples)).unwrap();
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

#[test]
fn synth_recipe_is_deterministic_speaker_and_text_disjoint_and_resumable() {
    if !crate::common::synthesisers_present() {
        return;
    }
    let options = tinyalign_data::SynthOptions {
        seed: 5,
        hours: 0.02,
        speakers: 12,
        valid_speakers: 2,
        test_speakers: 2,
        festival: false,
        ..Default::default()
    };
    let (a_dir, b_dir) = (temp_dir("synth-a"), temp_dir("synth-b"));
    let mut progress = Vec::new();
    let (a, report) = tinyalign_data::build_synth(&a_dir, &options, &mut |done, total| {
        progress.push((done, total))
    })
    .unwrap();
    assert!(report.kept > 20, "{report:?}");
    assert_eq!(progress.last().map(|p| p.0), Some(72.0));
    let (b, _) = tinyalign_data::build_synth(&b_dir, &options, &mut |_, _| {}).unwrap();
    // Same seed → byte-identical manifest (paths are relative to each folder).
    let jsonl = |dir: &Path| std::fs::read_to_string(dir.join("manifest.jsonl")).unwrap();
    assert_eq!(jsonl(&a_dir), jsonl(&b_dir));
    assert_eq!(a.utterances, b.utterances);
    assert!(Manifest::read(&a_dir.join("manifest.jsonl")).is_ok());
    assert!(a.missing_audio().is_empty());
    let stats = ManifestStats::of(&a);
    assert_eq!(stats.splits[&Split::Test].speakers.len(), 2);
    assert_eq!(stats.splits[&Split::Valid].speakers.len(), 2);
    assert_eq!(stats.splits[&Split::Train].speakers.len(), 8);
    // Festival is off: every utterance names espeak-ng or flite as its engine.
    assert!(
        a.utterances
            .iter()
            .all(|u| ["espeak-ng", "flite"].contains(&u.tags[0].as_str()))
    );
    // No sentence of valid/test was trained on.
    let train_texts: std::collections::HashSet<&str> =
        a.split(Split::Train).map(|u| u.text.as_str()).collect();
    assert!(
        a.split(Split::Test)
            .all(|u| !train_texts.contains(u.text.as_str()))
    );
    assert!(
        a.split(Split::Valid)
            .all(|u| !train_texts.contains(u.text.as_str()))
    );

    // Resume: finished files are kept (same modification time), a deleted one is made again, a leftover
    // temporary file is never taken for a finished one.
    let keep = a_dir.join(&a.utterances[0].audio);
    let redo = a_dir.join(&a.utterances[1].audio);
    let kept_time = std::fs::metadata(&keep).unwrap().modified().unwrap();
    std::fs::remove_file(&redo).unwrap();
    std::fs::write(redo.with_extension("tmp1.wav"), b"half a file").unwrap();
    let (again, _) = tinyalign_data::build_synth(&a_dir, &options, &mut |_, _| {}).unwrap();
    assert_eq!(again.utterances, a.utterances);
    assert_eq!(
        std::fs::metadata(&keep).unwrap().modified().unwrap(),
        kept_time
    );
    assert!(redo.exists());
    let _ = std::fs::remove_dir_all(&a_dir);
    let _ = std::fs::remove_dir_all(&b_dir);

    let bad = tinyalign_data::SynthOptions {
        speakers: 4,
        ..options.clone()
    };
    let err = tinyalign_data::build_synth(&b_dir, &bad, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("need more speakers"), "{err}");
}

#[test]
fn atypical_users_have_adapt_and_heldout_parts_with_their_effects() {
    if !crate::common::synthesisers_present() {
        return;
    }
    let dir = temp_dir("atypical");
    let options = tinyalign_data::AtypicalOptions {
        seed: 0,
        adapt_seconds: 6.0,
        heldout: 2,
    };
    let (m, _) = tinyalign_data::build_atypical(&dir, &options, &mut |_, _| {}).unwrap();
    let users = tinyalign_data::atypical_voices();
    for user in &users {
        let mine: Vec<_> = m
            .utterances
            .iter()
            .filter(|u| u.speaker == user.speaker)
            .collect();
        let adapt: Vec<_> = mine.iter().filter(|u| u.split == Split::Adapt).collect();
        let heldout: Vec<_> = mine.iter().filter(|u| u.split == Split::Heldout).collect();
        assert_eq!(heldout.len(), 2, "{}", user.speaker);
        let adapt_s: f64 = adapt.iter().map(|u| u.duration_s).sum();
        assert!(adapt_s >= 6.0, "{}: {adapt_s} s", user.speaker);
        assert!(
            heldout
                .iter()
                .all(|h| adapt.iter().all(|a| a.text != h.text))
        );
    }
    // The slow user speaks slower than the fast one, per word.
    let seconds_per_word = |speaker: &str| {
        let (s, w) = m
            .utterances
            .iter()
            .filter(|u| u.speaker == speaker)
            .fold((0.0, 0usize), |(s, w), u| {
                (s + u.duration_s, w + u.text.split_whitespace().count())
            });
        s / w as f64
    };
    assert!(
        seconds_per_word("atypical-slow-croaky") > 2.0 * seconds_per_word("atypical-fast-high")
    );
    // The telephone user's audio has (almost) nothing under 300 Hz or over 3.4 kHz left: compare its
    // spectrum's out-of-band energy with an unfiltered user's.
    let out_of_band = |speaker: &str| {
        let u = m.utterances.iter().find(|u| u.speaker == speaker).unwrap();
        let audio =
            tinyalign_mel::read_audio_file(&m.audio_path(u), tinyalign_mel::InputFormat::Wav)
                .unwrap();
        let x = tinyalign_mel::to_16k(&audio, "x").unwrap();
        let n = 4096.min(x.len());
        let (mut low_high, mut total) = (0.0f64, 0.0f64);
        for k in 1..n / 2 {
            let hz = k as f64 * 16_000.0 / n as f64;
            let (re, im) = x[..n]
                .iter()
                .enumerate()
                .fold((0.0f64, 0.0f64), |(re, im), (i, &s)| {
                    let ph = std::f64::consts::TAU * (k * i) as f64 / n as f64;
                    (re + f64::from(s) * ph.cos(), im - f64::from(s) * ph.sin())
                });
            let p = re * re + im * im;
            total += p;
            if !(250.0..=4000.0).contains(&hz) {
                low_high += p;
            }
        }
        low_high / total
    };
    assert!(
        out_of_band("atypical-telephone") < 0.2 * out_of_band("atypical-fast-high"),
        "{} vs {}",
        out_of_band("atypical-telephone"),
        out_of_band("atypical-fast-high")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_synth_voice_speaks_festival_included() {
    if !crate::common::synthesisers_present() {
        return;
    }
    let dir = temp_dir("synth-all");
    let options = tinyalign_data::SynthOptions {
        seed: 0,
        hours: 0.08,
        speakers: 104,
        valid_speakers: 4,
        test_speakers: 4,
        festival: true,
        ..Default::default()
    };
    let (m, report) = tinyalign_data::build_synth(&dir, &options, &mut |_, _| {}).unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let mut speakers: Vec<&str> = m.utterances.iter().map(|u| u.speaker.as_str()).collect();
    speakers.sort();
    speakers.dedup();
    assert_eq!(
        speakers.len(),
        104,
        "every voice made at least one utterance"
    );
    let festival: Vec<_> = m
        .utterances
        .iter()
        .filter(|u| u.tags[0] == "text2wave")
        .collect();
    assert!(festival.len() >= 3);
    assert!(
        festival
            .iter()
            .all(|u| u.duration_s > 0.5 && u.sample_rate >= 16_000)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_espeak_variant_is_a_distinct_voice() {
    if !crate::common::synthesisers_present() {
        return;
    }
    // espeak-ng falls back to its default voice, silently, on a variant it does not have: each variant of
    // the wide pool must sound different from every other (and from no variant at all).
    let dir = temp_dir("variants");
    std::fs::create_dir_all(&dir).unwrap();
    // Every variant of the wide pool (under whichever accents the default set's held-out voices leave
    // it), each spoken with the en-us accent.
    let voices = tinyalign_data::synth_voices(0, usize::MAX, false, true);
    let mut variants: Vec<String> = voices
        .iter()
        .filter_map(|v| v.name.split_once('+'))
        .map(|(_, variant)| format!("en-us+{variant}"))
        .collect();
    variants.sort();
    variants.dedup();
    variants.push("en-us".into());
    assert_eq!(variants.len(), 92);
    let mut seen = std::collections::HashMap::new();
    for name in &variants {
        let wav = dir.join("v.wav");
        let status = std::process::Command::new("espeak-ng")
            .args(["-v", name, "-w"])
            .arg(&wav)
            .arg("Seven wide voices.")
            .status()
            .unwrap();
        assert!(status.success(), "{name}");
        let audio = std::fs::read(&wav).unwrap();
        if let Some(other) = seen.insert(audio, name) {
            panic!("{name} sounds exactly like {other}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn synth_wide_reads_wordnet_sentences_with_their_licence() {
    let wordnet = tinyalign_data::wordnet_dir(&cache_dir());
    if !crate::common::synthesisers_present()
        || cached_model("text-wordnet/usr/share/wordnet/data.noun").is_none()
    {
        return;
    }
    let sentences = tinyalign_data::wordnet_sentences(&wordnet).unwrap();
    let types: std::collections::HashSet<String> = sentences
        .iter()
        .flat_map(|s| {
            s.split(|c: char| !c.is_ascii_alphabetic() && c != '\'')
                .map(str::to_lowercase)
        })
        .filter(|w| !w.is_empty())
        .collect();
    // Issue #18's text breadth: 30,000 distinct sentences, 15,000 word types.
    assert!(sentences.len() >= 30_000, "{} sentences", sentences.len());
    assert!(types.len() >= 15_000, "{} word types", types.len());

    let dir = temp_dir("synth-wide");
    let options = tinyalign_data::SynthOptions {
        seed: 2,
        hours: 0.03,
        speakers: 30,
        valid_speakers: 3,
        test_speakers: 3,
        every_variant: true,
        wordnet: Some(wordnet),
        ..Default::default()
    };
    let (m, report) = tinyalign_data::build_synth(&dir, &options, &mut |_, _| {}).unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let from_wordnet = m
        .utterances
        .iter()
        .filter(|u| u.source.contains("WordNet"))
        .count();
    // Two thirds of the texts are WordNet's, each with its own licence recorded.
    let share = from_wordnet as f64 / m.utterances.len() as f64;
    assert!((0.5..0.85).contains(&share), "{share}");
    assert!(
        m.utterances
            .iter()
            .all(|u| u.source.contains("WordNet") == u.licence.contains("WordNet"))
    );
    let train_texts: std::collections::HashSet<&str> =
        m.split(Split::Train).map(|u| u.text.as_str()).collect();
    assert!(
        m.utterances
            .iter()
            .filter(|u| u.split != Split::Train)
            .all(|u| !train_texts.contains(u.text.as_str()))
    );
    let _ = std::fs::remove_dir_all(&dir);
}
