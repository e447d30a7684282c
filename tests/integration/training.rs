//! EmbedLink training end to end on real features and targets: the loss falls, and a run interrupted and
//! resumed follows exactly the same path as an uninterrupted one.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tinyalign_train::{TrainConfig, TrainOptions};

use crate::common::{cache_dir, cached_model};

fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v
        })
        .collect()
}

/// The models and speech the training tests read (they skip without them).
const NEEDED: [&str; 3] = [
    "whisper-tiny.en/hf/model.safetensors",
    "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
    "speech-asterisk/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz",
];

/// A fresh folder `name` holding the asterisk manifest, and the smoke preset with `overrides` cut down to
/// 12 steps of batch 8 on 24 of its utterances, validating twice on 8; `None` without the models.
fn small_asterisk_run(name: &str, overrides: &[&str]) -> Option<(std::path::PathBuf, TrainConfig)> {
    if NEEDED.iter().any(|rel| cached_model(rel).is_none()) {
        return None;
    }
    let root = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    tinyalign_data::build_asterisk(&cache_dir(), &root.join("data"), 0, 0.7, 30.0).unwrap();
    let preset = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/smoke.toml");
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let mut config = TrainConfig::from_toml_with_overrides(
        &std::fs::read_to_string(&preset).unwrap(),
        "smoke",
        &overrides,
    )
    .unwrap();
    config.data.manifest = root.join("data/manifest.jsonl").display().to_string();
    config.data.max_train = 24;
    config.data.max_valid = 8;
    config.optim.batch_size = 8;
    config.optim.max_steps = 12;
    config.optim.warmup_steps = 2;
    config.optim.validate_every = 6;
    Some((root, config))
}

#[test]
fn embedlink_training_lowers_the_loss_and_resumes_exactly() {
    let Some((root, config)) = small_asterisk_run("tinyalign-train-test", &[]) else {
        return;
    };
    let options = |run: &str, resume: bool, interrupt_at_step: Option<u64>| TrainOptions {
        run_dir: root.join(run),
        cache_dir: cache_dir(),
        whisper_dir: cache_dir().join("whisper-tiny.en/hf"),
        llm_path: cache_dir().join(NEEDED[1]),
        resume,
        stop: Arc::new(AtomicBool::new(false)),
        verbose: false,
        interrupt_at_step,
        init_from: None,
        feature_dir: None,
        device: tinyalign_train::ComputeDevice::Cpu,
    };

    let straight = tinyalign_train::train(&config, &options("straight", false, None)).unwrap();
    assert_eq!(
        (straight.steps, straight.stopped_because.as_str()),
        (12, "max_steps")
    );
    let m = metrics(&root.join("straight"));
    let valid: Vec<f64> = m.iter().filter_map(|v| v["valid_loss"].as_f64()).collect();
    let first_loss = m[0]["loss"].as_f64().unwrap();
    assert_eq!(valid.len(), 2);
    assert!(
        valid[1] < first_loss && valid[1] < valid[0],
        "train {first_loss}, valid {valid:?}"
    );
    assert!(
        root.join("straight/projector.safetensors").exists()
            && root.join("straight/loss.svg").exists()
    );

    let cut = tinyalign_train::train(&config, &options("resumed", false, Some(4))).unwrap();
    assert_eq!(
        (cut.steps, cut.stopped_because.as_str()),
        (4, "interrupted")
    );
    let resumed = tinyalign_train::train(&config, &options("resumed", true, None)).unwrap();
    assert_eq!(resumed.steps, 12);
    assert_eq!(
        metrics(&root.join("resumed")),
        m,
        "the resumed run's metrics equal the uninterrupted run's"
    );
    assert_eq!(resumed.best_valid_loss, straight.best_valid_loss);

    // The trained projector plugs into the speech assistant: audio → Whisper → projector → LLM.
    let whisper = cache_dir().join("whisper-tiny.en/hf");
    let llm = cache_dir().join(NEEDED[1]);
    let assistant =
        tinyalign_eval::Assistant::load(&whisper, &llm, &root.join("straight")).unwrap();
    let wav =
        cache_dir().join("speech-asterisk/usr/share/asterisk/sounds/en_US_f_Allison/vm-nomore.wav");
    let audio = tinyalign_mel::read_audio_file(&wav, tinyalign_mel::InputFormat::Wav).unwrap();
    let options = tinyalign_llm::GenerateOptions {
        max_tokens: 4,
        ..Default::default()
    };
    for prompt in [
        tinyalign_llm::SlotPrompt::transcribe(),
        tinyalign_llm::SlotPrompt::audio_only(),
    ] {
        let answer = assistant
            .answer(&audio, "vm-nomore", &prompt, &options, |_| true)
            .unwrap();
        assert_eq!(answer.audio_tokens, 16, "the smoke preset's fixed T");
        assert!(answer.generation.tokens.len() <= 4);
    }
    // The evaluation rows on two held-out prompts: Whisper transcribes them (nearly) exactly.
    let manifest = tinyalign_data::Manifest::read(&root.join("data/manifest.jsonl")).unwrap();
    let whisper_model = tinyalign_whisper::WhisperModel::load_dir(&whisper).unwrap();
    let eval = tinyalign_eval::EvalOptions {
        task: tinyalign_eval::Task::Transcribe,
        split: tinyalign_data::Split::Heldout,
        limit: 2,
        max_tokens: 8,
        ablation: true,
        baselines: true,
        speaker: None,
        instruction: None,
        readout: None,
        all_readouts: false,
    };
    let report = tinyalign_eval::evaluate(
        &manifest,
        &assistant,
        Some(&whisper_model),
        &eval,
        |_, _| {},
    )
    .unwrap();
    let names: Vec<&str> = report.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "whisper",
            "cascade",
            "text-oracle",
            "token-readout",
            "projector",
            "projector-no-injection"
        ]
    );
    assert!(report.rows.iter().all(|r| r.utterances == 2));
    assert!(
        report.rows[0].wer < 0.2,
        "whisper row WER {}",
        report.rows[0].wer
    );
    assert!(report.to_markdown().contains("| whisper | 2 |"));
    for r in &report.rows {
        let [lo, hi] = r.wer_ci95.expect("an interval per row");
        assert!(
            lo <= r.wer + 1e-12 && r.wer <= hi + 1e-12,
            "{}: {lo} {} {hi}",
            r.name,
            r.wer
        );
    }

    // The respond task skips utterances labelled transcribe (all of these prompts)...
    let respond = tinyalign_eval::EvalOptions {
        task: tinyalign_eval::Task::Respond,
        ..eval.clone()
    };
    let err = tinyalign_eval::evaluate(
        &manifest,
        &assistant,
        Some(&whisper_model),
        &respond,
        |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no utterances for the respond task"), "{err}");
    // ...and answers unlabelled ones, scored against the LLM's own answer to the typed transcript. The text
    // oracle puts that same text in the slot, only with the instruction injected.
    let mut unlabelled = manifest.clone();
    for u in &mut unlabelled.utterances {
        u.task = None;
    }
    let report = tinyalign_eval::evaluate(
        &unlabelled,
        &assistant,
        Some(&whisper_model),
        &respond,
        |_, _| {},
    )
    .unwrap();
    let names: Vec<&str> = report.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cascade",
            "text-oracle",
            "projector",
            "projector-no-injection"
        ]
    );
    for u in &report.utterances {
        let reference = u.reference_answer.as_deref().expect("a reference answer");
        assert!(!reference.is_empty(), "{}", u.id);
        for (row, h) in &u.rows {
            assert_eq!(h.f1, tinyalign_eval::token_f1(reference, &h.text), "{row}");
        }
    }
    assert!(report.to_markdown().starts_with("# Respond task"));

    // A pooled projector takes no readout.
    let mut pooled =
        tinyalign_eval::Assistant::load(&whisper, &llm, &root.join("straight")).unwrap();
    let err = pooled
        .set_readout(tinyalign_eval::Readout::Posterior)
        .unwrap_err()
        .to_string();
    assert!(err.contains("CTC objective"), "{err}");

    // A projector trained for other models is refused, naming which one.
    let manifest_path = root.join("straight/projector.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    manifest["llm_sha256"] = serde_json::json!("0".repeat(64));
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let err = tinyalign_eval::Assistant::load(&whisper, &llm, &root.join("straight"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("another LLM") && err.contains(&"0".repeat(64)),
        "{err}"
    );
    std::fs::remove_dir_all(root).ok();
}

/// The CTC objective end to end on real features: the token readout scores every validation and picks the
/// best step, the manifest records the classes, every readout feeds the LLM, and personalising from the
/// CTC projector grows its class set with the new speaker's tokens.
#[test]
fn ctc_training_reads_tokens_and_personalises() {
    let overrides = [
        "loss.objective=ctc",
        "loss.mse_weight=0",
        "loss.cosine_weight=0",
        "loss.token_weight=0",
    ];
    let Some((root, config)) = small_asterisk_run("tinyalign-ctc-test", &overrides) else {
        return;
    };
    let whisper = cache_dir().join("whisper-tiny.en/hf");
    let llm = cache_dir().join(NEEDED[1]);
    let options = |run: &str, init_from: Option<std::path::PathBuf>| TrainOptions {
        run_dir: root.join(run),
        cache_dir: cache_dir(),
        whisper_dir: whisper.clone(),
        llm_path: llm.clone(),
        resume: false,
        stop: Arc::new(AtomicBool::new(false)),
        verbose: false,
        interrupt_at_step: None,
        init_from,
        feature_dir: None,
        device: tinyalign_train::ComputeDevice::Cpu,
    };
    let summary = tinyalign_train::train(&config, &options("ctc", None)).unwrap();
    assert_eq!(summary.steps, 12);
    assert!(
        summary.best_valid_cosine.is_none(),
        "frames have no positions"
    );
    let error = summary.best_valid_readout_error.expect("a readout error");
    assert!((0.0..=10.0).contains(&error), "{error}");
    let m = metrics(&root.join("ctc"));
    let valid: Vec<f64> = m.iter().filter_map(|v| v["valid_loss"].as_f64()).collect();
    assert_eq!(valid.len(), 2);
    let train: Vec<f64> = m.iter().filter_map(|v| v["loss"].as_f64()).collect();
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    assert!(
        mean(&train[8..]) < 0.6 * mean(&train[..2]),
        "CTC training loss {train:?}"
    );
    assert!(m.iter().any(|v| v["valid_readout_error"].is_number()));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("ctc/projector.json")).unwrap())
            .unwrap();
    let output = &manifest["projector"]["output"];
    assert_eq!(output["mode"], "ctc");
    assert_eq!(output["classes"].as_array().unwrap().len(), summary.classes);

    let mut assistant = tinyalign_eval::Assistant::load(&whisper, &llm, &root.join("ctc")).unwrap();
    assert!(assistant.has_ctc_head());
    assistant
        .set_readout(tinyalign_eval::Readout::Vectors)
        .unwrap();
    let data = tinyalign_data::Manifest::read(&root.join("data/manifest.jsonl")).unwrap();
    let eval = tinyalign_eval::EvalOptions {
        task: tinyalign_eval::Task::Transcribe,
        split: tinyalign_data::Split::Heldout,
        limit: 2,
        max_tokens: 6,
        ablation: false,
        baselines: false,
        speaker: None,
        instruction: None,
        readout: Some(tinyalign_eval::Readout::Vectors),
        all_readouts: true,
    };
    let report = tinyalign_eval::evaluate(&data, &assistant, None, &eval, |_, _| {}).unwrap();
    let names: Vec<&str> = report.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "token-readout",
            "projector",
            "projector-greedy",
            "projector-posterior"
        ]
    );
    assert_eq!(report.readout.as_deref(), Some("vectors"));

    // Personalising from the CTC base keeps CTC and adds the new data's tokens to the classes.
    let mut adapt = config.clone();
    adapt.data.train_splits = vec!["adapt".into()];
    adapt.data.max_train = 0;
    adapt.optim.max_steps = 2;
    adapt.optim.validate_every = 2;
    let personal =
        tinyalign_train::train(&adapt, &options("personal", Some(root.join("ctc")))).unwrap();
    assert!(
        personal.classes > summary.classes,
        "{} classes from {}",
        personal.classes,
        summary.classes
    );
    std::fs::remove_dir_all(root).ok();
}

/// Augmented copies: each training utterance gets its clean example and `copies` augmented ones, each
/// recorded with its recipe and cached under its own key; sharded feature-only passes fill the cache that
/// training then only reads, a damaged shard is an error naming it, entry files of earlier versions are
/// read (a missing one recomputed), and a stored entry that no longer matches the run is an error naming
/// the file.
#[test]
fn augmented_copies_are_recorded_cached_apart_and_reused() {
    let overrides = [
        "loss.objective=ctc",
        "loss.mse_weight=0",
        "loss.cosine_weight=0",
        "loss.token_weight=0",
        "augment.copies=1",
        "augment.telephone=0.5",
        "augment.babble=0.5",
        "augment.babble_talkers=[2, 3]",
    ];
    let Some((root, mut config)) = small_asterisk_run("tinyalign-augment-test", &overrides) else {
        return;
    };
    config.optim.max_steps = 2;
    config.optim.validate_every = 2;
    let features = root.join("features");
    let options = |run: &str| TrainOptions {
        run_dir: root.join(run),
        cache_dir: cache_dir(),
        whisper_dir: cache_dir().join("whisper-tiny.en/hf"),
        llm_path: cache_dir().join(NEEDED[1]),
        resume: false,
        stop: Arc::new(AtomicBool::new(false)),
        verbose: false,
        interrupt_at_step: None,
        init_from: None,
        feature_dir: Some(features.clone()),
        device: tinyalign_train::ComputeDevice::Cpu,
    };
    // Two shards fill the cache first (as two machines would): 24 training utterances × (clean + 1 copy)
    // + 8 validation ones, none augmented, split between them; training then computes nothing.
    let mut computed = 0;
    for index in 0..2 {
        let shard = tinyalign_train::Shard { index, count: 2 };
        let report =
            tinyalign_train::cache_features(&config, &options("a"), shard, &mut |_, _| {}).unwrap();
        assert!(
            report.utterances > 4 && report.utterances < 28,
            "{report:?}"
        );
        computed += report.computed;
    }
    assert_eq!(computed, 56);
    let first = tinyalign_train::train(&config, &options("a")).unwrap();
    assert_eq!((first.features_computed, first.features_reused), (0, 56));
    let lines = std::fs::read_to_string(root.join("a/augmentations.jsonl")).unwrap();
    let recipes: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recipes.len(), 24);
    let tags: std::collections::HashSet<&str> = recipes
        .iter()
        .map(|r| r["augmentation"].as_str().unwrap())
        .collect();
    assert_eq!(tags.len(), 24, "each copy has its own draw");
    let telephone = tags.iter().filter(|t| t.contains("telephone")).count();
    assert!(
        (4..=20).contains(&telephone),
        "{telephone} of 24 at p = 0.5"
    );
    // Babble: two or three other training recordings of the same speaker set, named in the tag.
    let babble = tags.iter().filter(|t| t.contains("babble=")).count();
    assert!((4..=20).contains(&babble), "{babble} of 24 at p = 0.5");
    // The two passes wrote one shard each (64 MB holds them all), 56 entries between them.
    let shards: Vec<_> = std::fs::read_dir(&features)
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path().join("shards")).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(shards.len(), 2, "{shards:?}");
    let tensors_in = |path: &std::path::Path| {
        let bytes = std::fs::read(path).unwrap();
        tinyalign_weights::st::read_safetensors_raw(&bytes, "shard")
            .unwrap()
            .into_iter()
            .map(|t| (t.name, t.shape, t.data.to_vec()))
            .collect::<Vec<_>>()
    };
    let first_shard = tensors_in(&shards[0]);
    assert_eq!(first_shard.len() + tensors_in(&shards[1]).len(), 56);

    // A truncated shard stops the next run with its name.
    let bytes = std::fs::read(&shards[0]).unwrap();
    std::fs::write(&shards[0], &bytes[..bytes.len() / 2]).unwrap();
    let message = tinyalign_train::train(&config, &options("b"))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&shards[0].display().to_string()) && message.contains("damaged"),
        "{message}"
    );
    // Its entries as files of their own (how earlier versions stored them, still read), one of them
    // missing: computed again, the rest reused, the same recipes.
    std::fs::remove_file(&shards[0]).unwrap();
    let folder = shards[0].parent().unwrap().parent().unwrap();
    let mut entry_files = Vec::new();
    for (key, shape, data) in &first_shard[1..] {
        let mut map = tinyalign_weights::TensorMap::new("features");
        let values = data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        map.insert(
            "features",
            tinyalign_weights::Tensor::new(shape.clone(), values),
        );
        let path = folder.join(format!("{key}.safetensors"));
        let encoded = tinyalign_weights::st::write_safetensors(
            &map,
            tinyalign_weights::st::StoreAs::F16,
            &[("utterance", "u")],
        )
        .unwrap();
        std::fs::write(&path, encoded).unwrap();
        entry_files.push(path);
    }
    let second = tinyalign_train::train(&config, &options("b")).unwrap();
    assert_eq!((second.features_computed, second.features_reused), (1, 55));
    assert_eq!(second.best_valid_loss, first.best_valid_loss);
    assert_eq!(
        std::fs::read_to_string(root.join("b/augmentations.jsonl")).unwrap(),
        lines
    );

    // An entry read at batch time that is not what the run indexed names the file.
    let file = tinyalign_train::FeatureFile::entry_file(entry_files[0].clone(), 1, 384);
    let message = file.load().unwrap_err().to_string();
    assert!(
        message.contains(&entry_files[0].display().to_string()),
        "{message}"
    );
    std::fs::write(&entry_files[0], b"not a safetensors file").unwrap();
    assert!(file.load().is_err());
    let _ = std::fs::remove_dir_all(&root);
}
