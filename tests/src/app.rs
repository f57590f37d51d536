//! App directories for `roboku deploy`, written into temp dirs.

use std::os::unix::fs::PermissionsExt;
use tempfile::TempDir;

/// A temp dir holding `files` (`(relative path, content)`), with the modes a developer's checkout
/// has (the temp dir itself is 0700: robokud reads sources as root and must not need more).
pub fn app_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("roboku-e2e-app-")
        .tempdir()
        .expect("create app temp dir");
    for (name, content) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create app subdir");
        }
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    dir
}

/// A temp dir any user (dynos run as `nobody`) can write to: a side channel between test and dyno.
pub fn world_writable_dir() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("roboku-e2e-shared-")
        .tempdir()
        .expect("create shared temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod shared dir");
    dir
}
