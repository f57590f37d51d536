//! A ballast file in the data dir (`reserve`, 4 MiB), written while there is room, so an agent
//! started on a full data disk can free enough space to open its store (SQLite needs a few KiB
//! for the WAL index) and go on supervising. Written again at a later start once space is back.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Size of the ballast.
pub const SIZE: u64 = 4 << 20;

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("reserve")
}

/// Writes the ballast if it is missing (real blocks, not a sparse file). On a full disk it
/// removes what it wrote and says why; nothing depends on it being there.
pub fn ensure(data_dir: &Path) -> Result<(), String> {
    let p = path(data_dir);
    if fs::metadata(&p).is_ok_and(|m| m.len() == SIZE) {
        return Ok(());
    }
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&p)?;
        let chunk = vec![0u8; 64 << 10];
        for _ in 0..SIZE / chunk.len() as u64 {
            f.write_all(&chunk)?;
        }
        f.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&p);
        format!("write {}: {e}", p.display())
    })
}

/// Removes the ballast; true if there was one to free.
pub fn release(data_dir: &Path) -> bool {
    fs::remove_file(path(data_dir)).is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ensure_writes_once_and_release_frees_it() {
        let d = tempfile::tempdir().unwrap();
        super::ensure(d.path()).unwrap();
        let p = d.path().join("reserve");
        assert_eq!(std::fs::metadata(&p).unwrap().len(), super::SIZE);
        super::ensure(d.path()).unwrap();
        assert!(super::release(d.path()));
        assert!(!super::release(d.path()));
    }
}
