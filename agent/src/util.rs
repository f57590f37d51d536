//! Small helpers shared by every module: wall-clock time and IO errors that name their path.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The soft fd limit in force.
pub fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 1024,
        rlim_max: 1024,
    };
    // SAFETY: getrlimit writes the struct we pass.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_cur
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An IO error with the operation and the path it was about: "create dir /x: Permission denied".
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {}", path.display(), roboku_wire::in_words(&source.to_string()))]
pub struct PathError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Wraps an IO result so its error names the operation and the path.
pub trait IoContext<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T, PathError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T, PathError> {
        self.map_err(|source| PathError {
            op,
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Writes `bytes` to `path` whole or not at all: a temp file beside it, fsync, rename, fsync of
/// the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PathError> {
    use std::io::Write;
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let mut f = std::fs::File::create(&tmp).at("create", &tmp)?;
    f.write_all(bytes).at("write", &tmp)?;
    f.sync_all().at("fsync", &tmp)?;
    drop(f);
    std::fs::rename(&tmp, path).at("rename to", path)?;
    sync_parent(path)
}

/// fsyncs the directory holding `path`, so a rename or removal in it is durable.
pub fn sync_parent(path: &Path) -> Result<(), PathError> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .at("fsync dir", dir),
        None => Ok(()),
    }
}

/// Moves the directory `src` to `dst` (one `rename(2)`, so it is never half moved). Idempotent,
/// for crash recovery: `Ok(false)` when `src` is not there (never made, or moved already). A
/// `dst` that is there already is removed first when `replace` (what a destroyed app of that
/// name left behind), else an error naming it.
pub fn move_dir(src: &Path, dst: &Path, replace: bool) -> Result<bool, PathError> {
    match std::fs::symlink_metadata(src) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).at("stat", src),
    }
    if std::fs::symlink_metadata(dst).is_ok() {
        if !replace {
            let e = std::io::Error::from(std::io::ErrorKind::AlreadyExists);
            return Err(e).at("move into", dst);
        }
        std::fs::remove_dir_all(dst).at("remove leftover", dst)?;
    }
    std::fs::rename(src, dst).at("move to", dst)?;
    sync_parent(dst)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn move_dir_is_idempotent_and_replaces_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(a.join("deep")).unwrap();
        std::fs::write(a.join("deep/f"), "kept").unwrap();
        assert!(move_dir(&a, &b, false).unwrap());
        assert!(!a.exists());
        assert_eq!(std::fs::read_to_string(b.join("deep/f")).unwrap(), "kept");
        assert!(
            !move_dir(&a, &b, false).unwrap(),
            "moved already: nothing to do"
        );

        std::fs::create_dir(&a).unwrap();
        std::fs::write(a.join("new"), "x").unwrap();
        let err = move_dir(&a, &b, false).unwrap_err();
        assert!(err.to_string().contains(&b.display().to_string()), "{err}");
        assert!(b.join("deep/f").exists(), "an existing target is kept");
        assert!(move_dir(&a, &b, true).unwrap());
        assert!(b.join("new").exists() && !b.join("deep").exists());
    }

    #[test]
    fn write_atomic_replaces_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
