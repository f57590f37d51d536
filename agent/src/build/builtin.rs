//! The built-in buildpacks (`buildpacks/` in the repository), embedded in the binary and written
//! out under the data dir at start, so robokud is one self-contained file on a robot. A script
//! already there with the same text and mode is left alone, so a start needs no free space.

use crate::util::{IoContext, PathError};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// `(pack, [script, ...])`: every script of `buildpacks/<pack>/bin/`, embedded. With `+ lib`,
/// also `buildpacks/shared/lib.sh` as `bin/lib.sh` (what the go, rust, cmake and colcon packs
/// share: messages, config vars, the content-keyed build cache).
macro_rules! pack {
    ($name:literal, [$($script:literal),+] + lib) => {
        (
            $name,
            &[$((
                $script,
                include_str!(concat!("../../../buildpacks/", $name, "/bin/", $script)),
            ),)+ ("lib.sh", include_str!("../../../buildpacks/shared/lib.sh"))],
        )
    };
    ($name:literal, [$($script:literal),+]) => {
        (
            $name,
            &[$((
                $script,
                include_str!(concat!("../../../buildpacks/", $name, "/bin/", $script)),
            )),+],
        )
    };
}

type Pack = (&'static str, &'static [(&'static str, &'static str)]);

const PACKS: [Pack; 7] = [
    // prune-record: the prune of dev dependencies, recorded and replayed on a warm build.
    pack!("nodejs", ["detect", "compile", "release", "prune-record"]),
    // lock2req: Pipfile.lock, poetry.lock and uv.lock as pinned pip requirements.
    pack!("python", ["detect", "compile", "release", "lock2req"]),
    pack!("go", ["detect", "compile", "release"] + lib),
    pack!("rust", ["detect", "compile", "release"] + lib),
    pack!("colcon", ["detect", "compile", "release"] + lib),
    pack!("cmake", ["detect", "compile", "release"] + lib),
    pack!("procfile", ["detect", "compile", "release"]),
];

/// Writes every built-in buildpack to `dir/<name>/bin/` (0755), replacing older copies; returns
/// how many scripts it wrote (0 when every one was already current).
pub fn install(dir: &Path) -> Result<usize, PathError> {
    let mut written = 0;
    for (name, scripts) in PACKS {
        let bin = dir.join(name).join("bin");
        fs::create_dir_all(&bin).at("create dir", &bin)?;
        for &(script, text) in scripts {
            let path = bin.join(script);
            if is_current(&path, text) {
                continue;
            }
            written += 1;
            let tmp = bin.join(format!(".{script}.new"));
            fs::write(&tmp, text).at("write", &tmp)?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).at("chmod", &tmp)?;
            fs::rename(&tmp, &path).at("rename to", &path)?;
        }
    }
    for d in [dir.to_path_buf()]
        .into_iter()
        .chain(PACKS.iter().map(|(n, _)| dir.join(n)))
    {
        let mode = fs::metadata(&d).at("stat", &d)?.permissions().mode() & 0o7777;
        if mode != 0o755 {
            fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).at("chmod", &d)?;
        }
    }
    Ok(written)
}

/// The script at `path` has exactly `text` and mode 0755.
fn is_current(path: &Path, text: &str) -> bool {
    let mode_ok = fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o7777 == 0o755);
    mode_ok && fs::read(path).is_ok_and(|b| b == text.as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn installs_executable_scripts() {
        let d = tempfile::tempdir().unwrap();
        let scripts = super::PACKS.iter().map(|(_, s)| s.len()).sum::<usize>();
        assert_eq!(super::install(d.path()).unwrap(), scripts);
        assert_eq!(
            super::install(d.path()).unwrap(),
            0,
            "current scripts are not rewritten"
        );
        let compile = d.path().join("python/bin/compile");
        std::fs::write(&compile, "old").unwrap();
        assert_eq!(
            super::install(d.path()).unwrap(),
            1,
            "a changed script is replaced"
        );
        for (name, _) in super::PACKS {
            for s in ["detect", "compile", "release"] {
                let p = d.path().join(name).join("bin").join(s);
                let mode = std::fs::metadata(&p).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o755, "{}", p.display());
            }
        }
    }
    use std::os::unix::fs::PermissionsExt;
}
