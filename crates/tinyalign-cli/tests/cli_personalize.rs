//! `tinyalign personalize`, `users list`, `ask --projector USER` and `users forget` as a user runs them, on
//! the cached real models and the asterisk speaker (a handful of utterances and steps: this checks the
//! plumbing and the privacy promises, not the quality).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{cache, models_present};

fn tinyalign(users: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinyalign"))
        .args(args)
        .env("TINYALIGN_CACHE", cache())
        .env("TINYALIGN_USERS", users)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .output()
        .expect("runs the binary")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn personalise_ask_and_forget_a_user() {
    let needed = [
        "whisper-tiny.en/hf/model.safetensors",
        "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
        "speech-asterisk/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz",
    ];
    if !models_present(&needed) {
        return;
    }
    let root = std::env::temp_dir().join(format!("tinyalign-cli-personal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let users = root.join("users");
    let data = root.join("data");
    let path = |p: &Path| p.to_str().expect("utf-8").to_string();

    // A small personal set: 12 adaptation and 3 held-out prompts of the asterisk speaker.
    ok(tinyalign(
        &users,
        &["data", "build", "asterisk", "--out", &path(&data)],
    ));
    let full = std::fs::read_to_string(data.join("manifest.jsonl")).unwrap();
    let pick = |split: &str, n: usize| {
        full.lines()
            .filter(|l| l.contains(&format!("\"split\":\"{split}\"")))
            .take(n)
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    let small = data.join("small.jsonl");
    std::fs::write(&small, pick("adapt", 12) + &pick("heldout", 3)).unwrap();

    let base = root.join("base");
    ok(tinyalign(
        &users,
        &[
            "train",
            "--config",
            "configs/smoke.toml",
            "--manifest",
            &path(&small),
            "--max-steps",
            "4",
            "--run",
            &path(&base),
        ],
    ));

    let personalize = |extra: &[&str]| {
        let mut args = vec![
            "personalize".to_string(),
            "--user".into(),
            "pat".into(),
            "--data".into(),
            path(&small),
            "--base".into(),
            path(&base),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tinyalign(&users, &args)
    };
    let refused = personalize(&["--speaker", "nobody"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("no adapt/heldout utterances of speaker `nobody`"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let report = ok(personalize(&["--steps", "4", "--eval-limit", "2"]));
    assert!(
        report.contains("user `pat`: WER") && report.contains("on 2 held-out utterances"),
        "{report}"
    );
    let pat = users.join("pat");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&pat).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
    for file in [
        "manifest.jsonl",
        "personalization.json",
        "projector/projector.safetensors",
        "eval-before/report.json",
        "eval-after/report.json",
    ] {
        assert!(pat.join(file).exists(), "{file}");
    }
    let audio_copies = std::fs::read_dir(pat.join("audio")).unwrap().count();
    assert_eq!(audio_copies, 15);
    assert!(ok(tinyalign(&users, &["users", "list"])).contains("pat"));

    let wav = pat
        .join("audio")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    ok(tinyalign(
        &users,
        &[
            "ask",
            "--audio",
            &path(&wav),
            "--projector",
            "pat",
            "--max-tokens",
            "3",
        ],
    ));

    let forgot = ok(tinyalign(&users, &["users", "forget", "pat"]));
    assert!(forgot.contains("forgot `pat`"), "{forgot}");
    assert!(!pat.exists());
    assert_eq!(
        std::fs::read_dir(&users).unwrap().count(),
        0,
        "nothing of pat's is left"
    );
    assert!(ok(tinyalign(&users, &["users", "list"])).contains("no users"));
    let again = tinyalign(&users, &["users", "forget", "pat"]);
    assert!(!again.status.success());
    let _ = std::fs::remove_dir_all(&root);
}
