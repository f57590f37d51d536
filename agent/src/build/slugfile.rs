//! Prebuilt slug files: `robokud slug:build DIR -o nav.slug` (what `roboku slug:build` runs)
//! builds an app once, on a workstation or in CI, into a `.tar.gz` that many robots can deploy
//! without building: it carries a `.roboku-slug` marker (so the agent skips the buildpacks) and a
//! Procfile with every process type, including those the buildpacks gave by default.

use super::buildpack::{run_buildpacks, BuildOpts};
use super::{prepare_slug_with, remove_tree, ArchiveLimits, BuildError};
use crate::util::IoContext;
use flate2::write::GzEncoder;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::time::Duration;

/// The marker file name: a tree holding it is a prebuilt slug, deployed without building
/// (`deploy` re-exports it as `PREBUILT_MARKER`).
pub const MARKER: &str = ".roboku-slug";

/// What a slug file holds, also written into its marker as JSON.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct SlugInfo {
    pub sha256: String,
    pub arch: String,
    pub process_types: BTreeMap<String, String>,
    pub buildpacks: Vec<String>,
}

/// Builds `src` with the buildpacks (`buildpacks` empty: detect among those in `builtin_dir`)
/// and writes the slug file `out` for robots with CPU `arch` (a [`super::elf::KNOWN_ARCHES`]
/// name; the build host's own by default). A slug for another CPU than the build host's is
/// fine as long as the build made no native code: a native executable or library for another
/// CPU than `arch` is refused by name. Build output lines go to `output`.
pub fn build_slug_file(
    src: &Path,
    out: &Path,
    buildpacks: &[std::path::PathBuf],
    builtin_dir: &Path,
    arch: &str,
    output: &mut dyn FnMut(&str),
) -> Result<SlugInfo, BuildError> {
    if !super::elf::KNOWN_ARCHES.contains(&arch) {
        return Err(BuildError::Other(format!(
            "unknown CPU architecture {arch:?} (one of: {})",
            super::elf::KNOWN_ARCHES.join(", ")
        )));
    }
    static BUILDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let work = std::env::temp_dir().join(format!("roboku-slug-build-{}-{n}", std::process::id()));
    let _ = remove_tree(&work);
    let (tmp, slugs, cache) = (work.join("tmp"), work.join("slugs"), work.join("cache"));
    let mut used = Vec::new();
    let result = (|| {
        let mut step = |root: &Path| {
            let mut opts = BuildOpts {
                timeout: Duration::from_secs(3600),
                run_as: None,
                output: &mut *output,
                join: &[],
            };
            let outcome = run_buildpacks(
                root,
                &cache,
                &target_env(arch),
                buildpacks,
                builtin_dir,
                &mut opts,
            )?;
            used = outcome.buildpacks_used.clone();
            super::elf::check_arch(root, arch).map_err(|e| for_target(e, arch))?;
            Ok(outcome.default_process_types.into_iter().collect())
        };
        let slug = prepare_slug_with(src, &tmp, &slugs, ArchiveLimits::default(), &mut step)?;
        let info = SlugInfo {
            sha256: slug.sha256.clone(),
            arch: arch.to_string(),
            process_types: slug.process_types.iter().cloned().collect(),
            buildpacks: used.clone(),
        };
        write_tar(&slug.path, out, &info)?;
        Ok(info)
    })();
    let _ = remove_tree(&work);
    result
}

/// What the buildpacks see of the slug's CPU: `ROBOKU_TARGET_ARCH` (an ELF-check name such as
/// `aarch64`), when it is not the build host's. The go, rust and cmake built-ins cross-compile
/// for it; a buildpack that ignores it builds for the host, and the ELF check says so.
fn target_env(arch: &str) -> BTreeMap<String, String> {
    if arch == std::env::consts::ARCH {
        return BTreeMap::new();
    }
    BTreeMap::from([("ROBOKU_TARGET_ARCH".to_string(), arch.to_string())])
}

/// The arch error of a cross build says what to do about it.
fn for_target(e: BuildError, arch: &str) -> BuildError {
    match e {
        BuildError::Arch {
            file,
            built_for,
            more,
            ..
        } if arch != std::env::consts::ARCH => BuildError::Other(format!(
            "{file} is built for {built_for} but the slug is for {arch}{}: the build made native \
             code for the build host; build this slug on an {arch} machine (or container)",
            match more {
                0 => String::new(),
                n => format!(" (and {n} more file(s))"),
            }
        )),
        e => e,
    }
}

fn write_tar(slug: &Path, out: &Path, info: &SlugInfo) -> Result<(), BuildError> {
    let file = File::create(out).at("create", out)?;
    let mut tar = tar::Builder::new(GzEncoder::new(file, flate2::Compression::default()));
    tar.follow_symlinks(false);
    // Plain entries only: our extraction refuses GNU sparse ones, and a file with holes (a
    // linker's or cp's output) would otherwise be written as one.
    tar.sparse(false);
    let io = |e: std::io::Error| BuildError::Other(format!("writing {}: {e}", out.display()));
    for entry in std::fs::read_dir(slug).at("read dir", slug)? {
        let entry = entry.at("read dir", slug)?;
        let name = entry.file_name();
        if name == "Procfile" || name == MARKER {
            continue;
        }
        let path = entry.path();
        if entry.file_type().at("stat", &path)?.is_dir() {
            tar.append_dir_all(&name, &path).map_err(io)?;
        } else {
            tar.append_path_with_name(&path, &name).map_err(io)?;
        }
    }
    let procfile: String = info
        .process_types
        .iter()
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect();
    let marker = serde_json::to_vec_pretty(info).map_err(|e| BuildError::Other(e.to_string()))?;
    for (name, data) in [("Procfile", procfile.as_bytes()), (MARKER, &marker[..])] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data).map_err(io)?;
    }
    tar.into_inner()
        .and_then(|gz| gz.finish())
        .map_err(io)?
        .sync_all()
        .map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_file_carries_marker_and_merged_procfile_and_deploys_without_building() {
        let builtin = tempfile::tempdir().unwrap();
        crate::build::builtin::install(builtin.path()).unwrap();
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("Procfile"), "web: exec sleep 1\n").unwrap();
        std::fs::write(src.path().join("run.sh"), "echo hi\n").unwrap();
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("app.slug");
        let mut lines = Vec::new();
        let host = std::env::consts::ARCH;
        let info = build_slug_file(src.path(), &out, &[], builtin.path(), host, &mut |l| {
            lines.push(l.to_string())
        })
        .unwrap();
        assert_eq!(info.process_types["web"], "exec sleep 1");
        assert_eq!(info.buildpacks, ["Procfile".to_string()], "{lines:?}");

        // Deploying the file: the marker is there, so a step that refuses to build is never asked.
        let data = tempfile::tempdir().unwrap();
        let mut step = |root: &Path| {
            assert!(root.join(MARKER).is_file(), "marker present");
            Ok(Vec::new())
        };
        let slug = prepare_slug_with(
            &out,
            &data.path().join("tmp"),
            &data.path().join("slugs"),
            ArchiveLimits::default(),
            &mut step,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(slug.path.join("run.sh")).unwrap(),
            "echo hi\n"
        );
        assert_eq!(
            slug.process_types,
            [("web".to_string(), "exec sleep 1".to_string())]
        );
    }

    #[test]
    fn a_slug_for_another_cpu_is_built_when_it_holds_no_native_code() {
        let builtin = tempfile::tempdir().unwrap();
        crate::build::builtin::install(builtin.path()).unwrap();
        let other = if std::env::consts::ARCH == "aarch64" {
            "x86_64"
        } else {
            "aarch64"
        };
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("Procfile"), "web: exec sh run.sh\n").unwrap();
        std::fs::write(src.path().join("run.sh"), "echo hi\n").unwrap();
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("app.slug");
        let info =
            build_slug_file(src.path(), &out, &[], builtin.path(), other, &mut |_| {}).unwrap();
        assert_eq!(info.arch, other);

        // A host binary in the tree: refused, naming the file and both CPUs; no slug written.
        std::fs::create_dir(src.path().join("bin")).unwrap();
        std::fs::copy("/bin/true", src.path().join("bin/tool")).unwrap();
        let out2 = out_dir.path().join("native.slug");
        let err = build_slug_file(src.path(), &out2, &[], builtin.path(), other, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "bin/tool is built for {} but the slug is for {other}",
                std::env::consts::ARCH
            )),
            "{err}"
        );
        assert!(!out2.exists());
        let err = build_slug_file(src.path(), &out2, &[], builtin.path(), "z80", &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown CPU architecture \"z80\""), "{err}");
    }
}
