//! App directories for `roboku deploy`, written into temp dirs.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
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

/// Writes `tinydep-1.0-py3-none-any.whl` (module `tinydep`, `GREETING = 'tiny ok'`) into `dir` with Python's zipfile (a wheel is a zip with
/// dist-info), as a developer vendoring a wheel would have one: no network, no pip.
pub fn tiny_wheel(dir: &Path) {
    let script = r#"
import base64, hashlib, sys, zipfile
files = {
    "tinydep/__init__.py": b"GREETING = 'tiny ok'\n",
    "tinydep-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinydep\nVersion: 1.0\n",
    "tinydep-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
for name, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record.append(f"{name},sha256={digest},{len(data)}")
record.append("tinydep-1.0.dist-info/RECORD,,")
with zipfile.ZipFile(sys.argv[1] + "/tinydep-1.0-py3-none-any.whl", "w") as z:
    for name, data in files.items():
        z.writestr(name, data)
    z.writestr("tinydep-1.0.dist-info/RECORD", "\n".join(record) + "\n")
"#;
    let ok = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(dir)
        .status()
        .expect("run python3");
    assert!(ok.success(), "building the test wheel");
}
