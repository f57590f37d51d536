//! Can an unprivileged user get to a path? Walks the path's ancestors and names the first
//! directory whose permissions stop a given uid/gid from entering it, so a data dir under a
//! 0700 home dir fails with "which directory blocks which user, and what to do" rather than
//! with a bare `Permission denied` from some build script much later.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A directory on the way that the user cannot enter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub dir: PathBuf,
    pub mode: u32,
    pub owner: u32,
    pub group: u32,
}

/// Whether `uid`/`gid` (with no supplementary groups) may search (`x`) directory `meta`.
pub fn may_search(mode: u32, owner: u32, group: u32, uid: u32, gid: u32) -> bool {
    if uid == 0 {
        return true;
    }
    let bit = if owner == uid {
        0o100
    } else if group == gid {
        0o010
    } else {
        0o001
    };
    mode & bit != 0
}

/// The first ancestor of `path` (itself included when it is a directory) that `uid`/`gid`
/// cannot search. Paths that do not exist yet end the walk (their creator decides their mode).
pub fn first_blocked(path: &Path, uid: u32, gid: u32) -> Option<Blocked> {
    let mut dirs: Vec<&Path> = path.ancestors().collect();
    dirs.reverse();
    for dir in dirs {
        let Ok(meta) = std::fs::metadata(dir) else {
            return None;
        };
        if !meta.is_dir() {
            return None;
        }
        if !may_search(meta.mode(), meta.uid(), meta.gid(), uid, gid) {
            return Some(Blocked {
                dir: dir.to_path_buf(),
                mode: meta.mode() & 0o7777,
                owner: meta.uid(),
                group: meta.gid(),
            });
        }
    }
    None
}

impl Blocked {
    /// "`/root` (mode 0700, owner 0) blocks WHO from reaching PATH: ..." with the fix.
    pub fn explain(&self, who: &str, target: &Path) -> String {
        format!(
            "{} (mode {:04o}, owner uid {}) blocks {who} from reaching {}: every directory above \
             the data dir must be searchable by others. Fix it with `chmod o+x {}`, or move the \
             data dir (--data-dir, e.g. /var/lib/roboku)",
            self.dir.display(),
            self.mode,
            self.owner,
            target.display(),
            self.dir.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn search_bits_by_owner_group_other() {
        assert!(may_search(0o700, 5, 5, 5, 9));
        assert!(!may_search(0o700, 5, 5, 6, 5));
        assert!(may_search(0o710, 5, 7, 6, 7));
        assert!(!may_search(0o770, 5, 7, 6, 8));
        assert!(may_search(0o711, 5, 7, 6, 8));
        assert!(may_search(0o000, 5, 7, 0, 0), "root searches anything");
        // The owner's bits win even when the others' would allow it (as the kernel does).
        assert!(!may_search(0o071, 5, 7, 5, 7));
    }

    #[test]
    fn names_the_first_blocking_ancestor() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = root.join("home");
        let data = home.join("robot/data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        let b = first_blocked(&data, 65534, 65534).expect("blocked");
        assert_eq!(b.dir, home);
        assert_eq!(b.mode, 0o700);
        let msg = b.explain("app users", &data);
        assert!(
            msg.contains(&format!("chmod o+x {}", home.display())),
            "{msg}"
        );
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(first_blocked(&data, 65534, 65534), None);
        assert_eq!(first_blocked(&data.join("not-yet"), 65534, 65534), None);
    }
}
