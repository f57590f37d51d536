//! The built-in buildpacks (`buildpacks/` in the repository), embedded in the binary and written
//! out under the data dir at start, so robokud is one self-contained file on a robot.

use crate::util::{IoContext, PathError};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

macro_rules! pack {
    ($name:literal) => {
        (
            $name,
            [
                (
                    "detect",
                    include_str!(concat!("../../../buildpacks/", $name, "/bin/detect")),
                ),
                (
                    "compile",
                    include_str!(concat!("../../../buildpacks/", $name, "/bin/compile")),
                ),
                (
                    "release",
                    include_str!(concat!("../../../buildpacks/", $name, "/bin/release")),
                ),
            ],
        )
    };
}

const PACKS: [(&str, [(&str, &str); 3]); 3] = [pack!("nodejs"), pack!("python"), pack!("procfile")];

/// Writes every built-in buildpack to `dir/<name>/bin/` (0755), replacing older copies.
pub fn install(dir: &Path) -> Result<(), PathError> {
    for (name, scripts) in PACKS {
        let bin = dir.join(name).join("bin");
        fs::create_dir_all(&bin).at("create dir", &bin)?;
        for (script, text) in scripts {
            let path = bin.join(script);
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
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).at("chmod", &d)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn installs_executable_scripts() {
        let d = tempfile::tempdir().unwrap();
        super::install(d.path()).unwrap();
        super::install(d.path()).unwrap();
        for name in ["nodejs", "python", "procfile"] {
            for s in ["detect", "compile", "release"] {
                let p = d.path().join(name).join("bin").join(s);
                let mode = std::fs::metadata(&p).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o755, "{}", p.display());
            }
        }
    }
    use std::os::unix::fs::PermissionsExt;
}
