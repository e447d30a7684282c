//! `tinyalign mel` as a user runs it: real files in, .npy/.png out, clear failures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tinyalign_mel::npy::from_npy_bytes;
use tinyalign_mel::{Frontend, FrontendConfig, InputFormat};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/mel")
        .join(name)
}

fn tinyalign(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinyalign"))
        .args(args)
        .output()
        .expect("runs the binary")
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tinyalign-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn writes_the_frontends_exact_features_and_a_png() {
    let out = temp_dir("ok");
    let wav = fixture("tt-weasels.wav");
    let result = tinyalign(&[
        "mel",
        wav.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
        "--png",
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(stdout.contains("80 x 295 log-mel"), "{stdout}");

    let written = from_npy_bytes(&std::fs::read(out.join("tt-weasels.npy")).expect("npy written"))
        .expect("valid npy");
    let expected = Frontend::new(FrontendConfig::default())
        .file_to_log_mel(&wav, InputFormat::Wav)
        .expect("decodes");
    assert_eq!(written.shape, vec![80, 295]);
    assert_eq!(written.data, expected.data);
    let png = std::fs::read(out.join("tt-weasels.png")).expect("png written");
    assert_eq!(&png[1..4], b"PNG");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn raw_input_needs_the_flag_and_pad30_gives_3000_frames() {
    let out = temp_dir("raw");
    let raw = fixture("goforward.raw");
    let (raw, out_s) = (raw.to_str().expect("utf-8"), out.to_str().expect("utf-8"));
    let refused = tinyalign(&["mel", raw, "--out", out_s]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("not a WAV file") && stderr.contains("--raw"),
        "{stderr}"
    );

    let ok = tinyalign(&[
        "mel", raw, "--raw", "--pad30", "--n-mels", "128", "--out", out_s,
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let written =
        from_npy_bytes(&std::fs::read(out.join("goforward.npy")).expect("npy")).expect("valid");
    assert_eq!(written.shape, vec![128, 3000]);
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn one_bad_file_fails_the_run_but_not_the_others() {
    let out = temp_dir("mixed");
    let bad = out.with_extension("broken.wav");
    std::fs::write(&bad, b"RIFF\x10\x00\x00\x00WAVEfmt ").expect("write temp");
    let good = fixture("synth22050.wav");
    let result = tinyalign(&[
        "mel",
        bad.to_str().expect("utf-8"),
        good.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(result.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("broken.wav") && stderr.contains("1 of 2 files failed"),
        "{stderr}"
    );
    assert!(out.join("synth22050.npy").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&out).expect("out dir").collect();
    assert_eq!(
        leftovers.len(),
        1,
        "only the good file's output, no temp files: {leftovers:?}"
    );
    let _ = std::fs::remove_file(bad);
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn colliding_output_names_are_refused_before_writing() {
    let out = temp_dir("collide");
    let a = fixture("tt-weasels.wav");
    let other_dir = temp_dir("collide-src");
    std::fs::create_dir_all(&other_dir).expect("mkdir");
    let b = other_dir.join("tt-weasels.wav");
    std::fs::copy(&a, &b).expect("copy");
    let result = tinyalign(&[
        "mel",
        a.to_str().expect("utf-8"),
        b.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(!result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("would both write tt-weasels.npy"));
    assert!(!out.exists(), "nothing may be written");
    let _ = std::fs::remove_dir_all(other_dir);
}

#[test]
fn unsupported_band_count_is_a_usage_error() {
    let result = tinyalign(&["mel", "x.wav", "--out", "/tmp/none", "--n-mels", "64"]);
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("use 80 or 128"));
}
