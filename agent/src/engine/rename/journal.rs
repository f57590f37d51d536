//! The rename journal, `<data>/rename.json` (`{"from", "to"}`), and what the next start does
//! with it.
//!
//! The store transaction is the commit point of a rename; the directories named after the app
//! (build cache, logs, git repository) can only move after it, one `rename(2)` each. The journal
//! is written before the transaction and removed once everything has moved, so an agent killed
//! anywhere in between finds it at its next start, before anything else runs: if the store has
//! the new name the moves are finished (each one is idempotent), otherwise the rename never
//! happened and the journal is dropped.

use super::hook;
use crate::settings::Settings;
use crate::store::Store;
use crate::util::{IoContext, PathError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    pub from: String,
    pub to: String,
}

/// Writes the journal; refuses if one is there already (an earlier rename not finished).
pub fn write(path: &Path, journal: &Journal) -> Result<(), String> {
    if let Some(j) = read(path)? {
        return Err(format!(
            "the rename of {} to {} has not finished moving its files ({}); restart robokud to finish it",
            j.from,
            j.to,
            path.display()
        ));
    }
    let bytes = serde_json::to_vec(journal).map_err(|e| e.to_string())?;
    crate::util::write_atomic(path, &bytes).map_err(|e| e.to_string())
}

/// The journal, if there is one; a file that is not one is an error naming it.
pub fn read(path: &Path) -> Result<Option<Journal>, String> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            let op = "read";
            let path = path.to_path_buf();
            return Err(PathError { op, path, source }.to_string());
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| format!("{}: not a rename journal: {e}", path.display()))
}

pub fn remove(path: &Path) -> Result<(), PathError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at("remove", path),
        _ => crate::util::sync_parent(path),
    }
}

/// The directories that move with an app, `(what, from, to, replace a leftover at to)`, the
/// logs excepted (the log task owns them; see `logs::LogHandle::rename_app`).
pub fn app_dirs(
    settings: &Settings,
    from: &str,
    to: &str,
) -> Vec<(&'static str, PathBuf, PathBuf, bool)> {
    vec![
        (
            "build cache",
            settings.cache_dir(from),
            settings.cache_dir(to),
            true,
        ),
        (
            "git repository",
            settings.git_repo(from),
            settings.git_repo(to),
            false,
        ),
        (
            "persistent data dir",
            settings.app_data_dir(from),
            settings.app_data_dir(to),
            false,
        ),
        (
            "data snapshots",
            settings.data_snapshots_dir(from),
            settings.data_snapshots_dir(to),
            true,
        ),
    ]
}

/// Moves the build cache and the git repository (retargeting its hook). Returns what could not
/// be done, as sentences; the rename stands either way.
pub fn move_app_dirs(settings: &Settings, from: &str, to: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (what, src, dst, replace) in app_dirs(settings, from, to) {
        if let Err(e) = crate::util::move_dir(&src, &dst, replace) {
            problems.push(format!("the {what} was not moved: {e}"));
        }
    }
    let repo = settings.git_repo(to);
    if repo.exists() {
        if let Err(e) = hook::retarget(&repo, from, to) {
            problems.push(e);
        }
    }
    problems
}

/// At start, before the log task and the engine: finishes or drops an interrupted rename.
pub fn recover(settings: &Settings, store: &Store) {
    let path = settings.rename_journal_path();
    let journal = match read(&path) {
        Ok(Some(j)) => j,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "ignoring an unreadable rename journal");
            if let Err(e) = remove(&path) {
                tracing::error!(error = %e, "cannot remove the rename journal");
            }
            return;
        }
    };
    let Journal { from, to } = &journal;
    let committed = match (store.app(to), store.app(from)) {
        (Ok(new), Ok(old)) => new.is_some() && old.is_none(),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(from, to, error = %e, "cannot tell whether a rename was committed; keeping its journal");
            return;
        }
    };
    if committed {
        let mut problems = move_app_dirs(settings, from, to);
        let logs = settings.logs_dir();
        if let Err(e) = crate::util::move_dir(&logs.join(from), &logs.join(to), true) {
            problems.push(format!("the logs were not moved: {e}"));
        }
        for p in &problems {
            tracing::warn!(from, to, problem = %p, "finishing an interrupted rename");
        }
        tracing::info!(from, to, "finished an interrupted rename: the app is {to}");
    } else {
        tracing::info!(
            from,
            to,
            "a rename was interrupted before its commit: the app keeps the name {from}"
        );
    }
    if let Err(e) = remove(&path) {
        tracing::error!(error = %e, "cannot remove the rename journal");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_journal_at_a_time_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rename.json");
        assert_eq!(read(&path).unwrap(), None);
        let j = Journal {
            from: "a".into(),
            to: "b".into(),
        };
        write(&path, &j).unwrap();
        assert_eq!(read(&path).unwrap(), Some(j.clone()));
        let err = write(&path, &j).unwrap_err();
        assert!(err.contains("rename of a to b has not finished"), "{err}");
        remove(&path).unwrap();
        remove(&path).unwrap();
        std::fs::write(&path, "{\"from\": 1}").unwrap();
        let err = read(&path).unwrap_err();
        assert!(err.contains("rename.json: not a rename journal"), "{err}");
    }

    fn settings(dir: &Path) -> Settings {
        Settings {
            data_dir: dir.to_path_buf(),
            ..Settings::default()
        }
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "x").unwrap();
    }

    #[test]
    fn recovery_finishes_a_committed_rename_and_drops_an_uncommitted_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let mut store = Store::open(&s.db_path()).unwrap();
        store.create_app("old", 1).unwrap();
        touch(&s.cache_dir("old").join("c"));
        touch(&s.logs_dir().join("old/app.log"));
        let j = Journal {
            from: "old".into(),
            to: "new".into(),
        };

        // Killed before the commit: nothing moves, the journal goes.
        write(&s.rename_journal_path(), &j).unwrap();
        recover(&s, &store);
        assert!(s.cache_dir("old").join("c").exists());
        assert!(!s.rename_journal_path().exists());

        // Killed after the commit, the cache moved already: the logs follow.
        write(&s.rename_journal_path(), &j).unwrap();
        store.rename_app("old", "new", 2, "cli").unwrap();
        crate::util::move_dir(&s.cache_dir("old"), &s.cache_dir("new"), true).unwrap();
        recover(&s, &store);
        assert!(s.cache_dir("new").join("c").exists());
        assert!(s.logs_dir().join("new/app.log").exists());
        assert!(!s.logs_dir().join("old").exists());
        assert!(!s.rename_journal_path().exists());
    }
}
