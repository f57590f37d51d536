//! Persistent data dirs: `<data_dir>/data/<app>/`, kept across releases, `ROBOKU_DATA` in every
//! dyno (one-offs too). Each is its app's uid's, mode 0700; `data/` itself is root's 0711, so an
//! app can reach its own dir but neither list nor open another's. Moves with `apps:rename`,
//! goes with `apps:destroy`.

use crate::util::{IoContext, PathError};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

pub const ROOT_MODE: u32 = 0o711;
pub const DIR_MODE: u32 = 0o700;
/// The dyno env var naming the dir.
pub const VAR: &str = "ROBOKU_DATA";

/// Makes `dir` (under `root`) exist, owned by `owner` (uid, gid) when given, mode 0700. Cheap
/// when it is already right: two stats.
pub fn ensure(root: &Path, dir: &Path, owner: Option<(u32, u32)>) -> Result<(), PathError> {
    if !root.is_dir() {
        std::fs::create_dir_all(root).at("create dir", root)?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(ROOT_MODE))
            .at("chmod", root)?;
    }
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(dir).at("create dir", dir)?;
            std::fs::symlink_metadata(dir).at("stat", dir)?
        }
        Err(e) => return Err(e).at("stat", dir),
    };
    if !meta.is_dir() {
        let e = std::io::Error::other("not a directory (an app's data dir must be one)");
        return Err(e).at("use as data dir", dir);
    }
    if let Some((uid, gid)) = owner {
        if meta.uid() != uid || meta.gid() != gid {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).at("chown", dir)?;
        }
    }
    if meta.mode() & 0o7777 != DIR_MODE {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
            .at("chmod", dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_is_made_private_and_its_owners() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        let dir = root.join("nav");
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        ensure(&root, &dir, Some(me)).unwrap();
        let m = std::fs::metadata(&dir).unwrap();
        assert_eq!(m.mode() & 0o7777, DIR_MODE);
        assert_eq!(std::fs::metadata(&root).unwrap().mode() & 0o7777, ROOT_MODE);
        std::fs::write(dir.join("kept"), "x").unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure(&root, &dir, Some(me)).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().mode() & 0o7777,
            DIR_MODE,
            "mode repaired"
        );
        assert!(dir.join("kept").exists(), "contents kept");
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::write(&dir, "").unwrap();
        let e = ensure(&root, &dir, None).unwrap_err().to_string();
        assert!(e.contains("nav") && e.contains("not a directory"), "{e}");
    }
}
