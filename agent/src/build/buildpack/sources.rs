//! From what an app names as its buildpacks (a built-in's name, an absolute path, a git URL) to
//! the directories the runner copies and runs, and what the release records of them: git
//! buildpacks with the commit they were at, so a later build can use exactly that again.

use super::git_cache::{GitCache, GitPackError};
use super::git_spec::{is_full_commit, is_git_spec, GitSpec};
use super::short_name;
use crate::build::BuildError;
use roboku_wire::ReleaseBuildpack;
use std::path::{Path, PathBuf};

/// Buildpacks resolved for one build.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The directories to run, in order.
    pub dirs: Vec<PathBuf>,
    /// What the release records: the same list, git buildpacks pinned to their commit.
    pub recorded: Vec<ReleaseBuildpack>,
}

/// Resolves `packs` in order. An entry with a `commit` (a release's, for `--buildpacks-of`) is
/// built at exactly that commit; a git entry without one at whatever its ref is now. `out` gets
/// what was fetched or taken from the cache.
pub fn resolve(
    packs: &[ReleaseBuildpack],
    builtin_dir: &Path,
    git: &GitCache,
    out: &mut dyn FnMut(&str),
) -> Result<Resolved, BuildError> {
    let mut resolved = Resolved {
        dirs: Vec::with_capacity(packs.len()),
        recorded: Vec::with_capacity(packs.len()),
    };
    for pack in packs {
        let source = pack.source.as_str();
        if let Some(mapped) = short_name::resolve(source) {
            let builtin = mapped.map_err(BuildError::Other)?;
            out(&format!(
                "-----> {source}: the built-in {builtin} buildpack"
            ));
            resolved.dirs.push(builtin_dir.join(builtin));
            resolved.recorded.push(plain(source));
        } else if source.starts_with('/') {
            resolved.dirs.push(PathBuf::from(source));
            resolved.recorded.push(plain(source));
        } else if is_git_spec(source) {
            let spec = GitSpec::parse(source).map_err(GitPackError::Spec)?;
            if let Some(c) = pack.commit.as_deref().filter(|c| !is_full_commit(c)) {
                return Err(GitPackError::Spec(format!(
                    "buildpack {spec}: pinned commit {c:?} is not a full commit id"
                ))
                .into());
            }
            let got = git.resolve(&spec, pack.commit.as_deref(), out)?;
            resolved.dirs.push(got.dir);
            resolved.recorded.push(ReleaseBuildpack {
                source: source.to_string(),
                commit: Some(got.commit),
            });
        } else {
            resolved.dirs.push(builtin_dir.join(source));
            resolved.recorded.push(plain(source));
        }
    }
    Ok(resolved)
}

/// The app's buildpack setting as entries to resolve (nothing pinned).
pub fn unpinned(names: &[String]) -> Vec<ReleaseBuildpack> {
    names.iter().map(|n| plain(n)).collect()
}

fn plain(source: &str) -> ReleaseBuildpack {
    ReleaseBuildpack {
        source: source.to_string(),
        commit: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::git_cache::tests::Remote;
    use super::*;
    use std::time::Duration;

    #[test]
    fn names_paths_and_git_urls_resolve_and_git_ones_are_pinned() {
        let remote = Remote::new("one");
        let tmp = tempfile::tempdir().unwrap();
        let git = GitCache {
            root: tmp.path().join("buildpacks-git"),
            timeout: Duration::from_secs(60),
            build_tag: None,
        };
        let builtin = tmp.path().join("builtin");
        let url = format!("{}#main", remote.url());
        let packs = unpinned(&["python".into(), "/srv/pack".into(), url.clone()]);
        let mut lines = Vec::new();
        let got = resolve(&packs, &builtin, &git, &mut |l| lines.push(l.to_string())).unwrap();
        let v1 = remote.head();
        assert_eq!(got.dirs[0], builtin.join("python"));
        assert_eq!(got.dirs[1], PathBuf::from("/srv/pack"));
        assert!(got.dirs[2].join("bin/detect").is_file());
        assert_eq!(
            got.recorded,
            [
                plain("python"),
                plain("/srv/pack"),
                ReleaseBuildpack {
                    source: url.clone(),
                    commit: Some(v1.clone()),
                },
            ]
        );
        assert_eq!(lines.len(), 1, "{lines:?}");

        // What v1 recorded builds v1's commit, though the branch moved on.
        remote.commit("two");
        let again = resolve(&got.recorded, &builtin, &git, &mut |_| {}).unwrap();
        assert_eq!(again, got);
        let now = resolve(&packs, &builtin, &git, &mut |_| {}).unwrap();
        assert_eq!(now.recorded[2].commit, Some(remote.head()));
    }

    #[test]
    fn heroku_registry_names_build_with_the_built_in_and_are_recorded_as_written() {
        let tmp = tempfile::tempdir().unwrap();
        let git = GitCache {
            root: tmp.path().join("buildpacks-git"),
            timeout: Duration::from_secs(60),
            build_tag: None,
        };
        let builtin = tmp.path().join("builtin");
        let mut lines = Vec::new();
        let packs = unpinned(&["heroku/python".into()]);
        let got = resolve(&packs, &builtin, &git, &mut |l| lines.push(l.to_string())).unwrap();
        assert_eq!(got.dirs, [builtin.join("python")]);
        assert_eq!(got.recorded, [plain("heroku/python")]);
        assert_eq!(
            lines,
            ["-----> heroku/python: the built-in python buildpack"]
        );
        let e = resolve(
            &unpinned(&["heroku/ruby".into()]),
            &builtin,
            &git,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("heroku-buildpack-ruby"), "{e}");
        assert!(!git.root.exists(), "no git for a registry name");
    }

    #[test]
    fn a_bad_url_or_pin_is_refused_before_git_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let git = GitCache {
            root: tmp.path().join("buildpacks-git"),
            timeout: Duration::from_secs(60),
            build_tag: None,
        };
        let bad = unpinned(&["https://user:pw@example.com/pack".into()]);
        let e = resolve(&bad, tmp.path(), &git, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("has credentials in it"), "{e}");
        let bad_pin = [ReleaseBuildpack {
            source: "https://example.com/org/pack#main".into(),
            commit: Some("--upload-pack=x".into()),
        }];
        let e = resolve(&bad_pin, tmp.path(), &git, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("is not a full commit id"), "{e}");
        assert!(!git.root.exists(), "git never ran");
    }
}
