//! Per-user folders for personalisation: `<cache>/users/<name>/` holds that user's copied audio, manifest,
//! features, projector and results, and nothing of anyone else's. Folders are private to the OS user (0700
//! on Unix); forgetting a user removes the folder and checks that nothing is left.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// What `personalize` measured, kept in the user's folder as `personalization.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PersonalisationResult {
    pub user: String,
    pub base_projector: String,
    pub adapt_utterances: usize,
    pub adapt_seconds: f64,
    pub heldout_utterances: usize,
    pub wer_before: f64,
    pub wer_after: f64,
    pub cer_before: f64,
    pub cer_after: f64,
    /// Mean cosine between projected tokens and the transcript's LLM embeddings on all held-out
    /// utterances: alignment measured without the LLM's generation in the way.
    /// (Pooled projectors only; a CTC projector's frames have no positions to compare.)
    #[serde(default)]
    pub heldout_cosine_before: Option<f32>,
    #[serde(default)]
    pub heldout_cosine_after: Option<f32>,
    /// Token readout error rate on all held-out utterances (see `tinyalign_train::Alignment`).
    #[serde(default)]
    pub heldout_readout_error_before: Option<f32>,
    #[serde(default)]
    pub heldout_readout_error_after: Option<f32>,
    /// Held-out answers that were empty (an empty answer scores exactly 100% WER).
    #[serde(default)]
    pub empty_answers_before: usize,
    #[serde(default)]
    pub empty_answers_after: usize,
    /// Features + training: the cost of adapting, without the two evaluations.
    pub adaptation_seconds: f64,
    pub steps: u64,
    pub peak_rss_bytes: Option<u64>,
}

/// One user, as `users list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserInfo {
    pub name: String,
    pub bytes: u64,
    pub files: usize,
    pub has_projector: bool,
    pub result: Option<PersonalisationResult>,
}

#[derive(Debug, Clone)]
pub struct UserStore {
    root: PathBuf,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::Io(format!("{}: {e}", path.display()))
}

/// Creates `dir` (and missing parents) readable only by its owner.
fn create_private_dir(dir: &Path) -> Result<(), TrainError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io(dir))?;
    // An existing folder keeps its mode under DirBuilder: tighten it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

fn walk(dir: &Path, bytes: &mut u64, files: &mut usize) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(&entry.path(), bytes, files)?;
        } else {
            *bytes += meta.len();
            *files += 1;
        }
    }
    Ok(())
}

impl UserStore {
    /// The store under `root` (normally `<cache>/users`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// A user name is a folder name: letters, digits, `-`, `_`, `.` (not leading), at most 64.
    pub fn check_name(name: &str) -> Result<(), TrainError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(())
        } else {
            Err(TrainError::Config(format!(
                "user name `{name}`: use letters, digits, `-`, `_` or `.` (not first), at most 64"
            )))
        }
    }

    /// The user's folder (which may not exist).
    pub fn dir(&self, name: &str) -> Result<PathBuf, TrainError> {
        Self::check_name(name)?;
        Ok(self.root.join(name))
    }

    /// The user's folder, created private if missing.
    pub fn create(&self, name: &str) -> Result<PathBuf, TrainError> {
        let dir = self.dir(name)?;
        create_private_dir(&self.root)?;
        create_private_dir(&dir)?;
        Ok(dir)
    }

    /// The user's personalised projector (a run folder), if one exists.
    pub fn projector(&self, name: &str) -> Option<PathBuf> {
        let dir = self.dir(name).ok()?.join("projector");
        dir.join("projector.json").exists().then_some(dir)
    }

    pub fn list(&self) -> Result<Vec<UserInfo>, TrainError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.root)(e)),
        };
        let mut users = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !entry.path().is_dir() || Self::check_name(&name).is_err() {
                continue;
            }
            let (mut bytes, mut files) = (0, 0);
            walk(&entry.path(), &mut bytes, &mut files).map_err(io(&entry.path()))?;
            let result = std::fs::read_to_string(entry.path().join("personalization.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            users.push(UserInfo {
                has_projector: self.projector(&name).is_some(),
                name,
                bytes,
                files,
                result,
            });
        }
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(users)
    }

    /// Deletes everything of `name`'s (audio copies, features, projector, results) and checks that the
    /// folder is gone. Returns the bytes and files removed.
    pub fn forget(&self, name: &str) -> Result<(u64, usize), TrainError> {
        let dir = self.dir(name)?;
        if !dir.exists() {
            return Err(TrainError::Data(format!(
                "no user `{name}` in {}",
                self.root.display()
            )));
        }
        let (mut bytes, mut files) = (0, 0);
        walk(&dir, &mut bytes, &mut files).map_err(io(&dir))?;
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        if dir.exists() {
            return Err(TrainError::Io(format!(
                "{} still exists after deleting it",
                dir.display()
            )));
        }
        Ok((bytes, files))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_folder_names() {
        for good in ["alice", "user_2", "a.b-c"] {
            assert!(UserStore::check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "../x", "a/b", ".hidden", "spa ce", &"x".repeat(65)] {
            assert!(UserStore::check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn users_are_private_listed_and_forgotten_completely() {
        let root = std::env::temp_dir().join(format!("tinyalign-users-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let store = UserStore::new(&root);
        assert!(store.list().unwrap().is_empty());
        let alice = store.create("alice").unwrap();
        std::fs::create_dir_all(alice.join("audio")).unwrap();
        std::fs::write(alice.join("audio/a.wav"), [0u8; 100]).unwrap();
        let bob = store.create("bob").unwrap();
        std::fs::write(bob.join("b.txt"), b"hi").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&alice).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let listed = store.list().unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|u| (u.name.as_str(), u.bytes, u.files))
                .collect::<Vec<_>>(),
            [("alice", 100, 1), ("bob", 2, 1)]
        );
        assert_eq!(store.forget("alice").unwrap(), (100, 1));
        assert!(!alice.exists());
        assert!(bob.join("b.txt").exists(), "forgetting alice touched bob");
        assert!(
            store
                .forget("alice")
                .unwrap_err()
                .to_string()
                .contains("no user")
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
