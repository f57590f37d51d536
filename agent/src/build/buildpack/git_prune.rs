//! Pruning the git buildpack cache (`git_cache.rs`): what no app names and no kept release
//! pinned goes, with slug GC (`engine/gc.rs`), so a robot that tried a dozen packs over a year
//! does not keep a checkout of every commit it ever built.
//!
//! Kept: each commit a kept release records (what `rollback` and `--buildpacks-of` rebuild
//! with), and, for each git buildpack an app names now, the commit its ref was last fetched at
//! (what an offline build uses). Everything else of a URL goes: its checkouts, their refs in the
//! bare repository (then `git gc` drops the objects), and the remembered refs. A URL nothing
//! keeps loses its repository and checkouts; its dir stays with only `url` and `lock`, so a
//! build waiting on that lock finds a dir to fetch into. A URL whose lock is held (a build is
//! fetching it) is left for the next round.

use super::git_cache::{read_refs, GitCache, Lock, RefEntry, KEEP_PREFIX};
use super::git_cmd::GitCmd;
use super::git_spec::{is_full_commit, GitSpec};
use crate::build::remove_tree;
use crate::deploy::tree_size;
use crate::util::write_atomic;
use roboku_wire::ReleaseBuildpack;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// What one URL's cache must keep.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Keep {
    /// Commits a kept release was built with (or a pack set at a full commit).
    pub commits: BTreeSet<String>,
    /// Refs an app names now (`HEAD` for none): their last fetched commit stays.
    pub refs: BTreeSet<String>,
}

/// Per cache dir name ([`GitSpec::cache_key`]), what it keeps. `recorded`: the buildpacks of
/// every kept release; `named`: every app's buildpack setting. Entries that are not git
/// buildpacks are skipped. Pure.
pub fn in_use<'a>(
    recorded: impl IntoIterator<Item = &'a ReleaseBuildpack>,
    named: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, Keep> {
    let mut keep: BTreeMap<String, Keep> = BTreeMap::new();
    let pinned = recorded
        .into_iter()
        .map(|p| (p.source.as_str(), p.commit.as_deref()));
    let unpinned = named.into_iter().map(|s| (s, None));
    for (source, commit) in pinned.chain(unpinned) {
        let Ok(spec) = GitSpec::parse(source) else {
            continue;
        };
        let entry = keep.entry(spec.cache_key()).or_default();
        match commit.or(spec.reference.as_deref().filter(|r| is_full_commit(r))) {
            Some(c) => {
                entry.commits.insert(c.to_string());
            }
            None => {
                entry.refs.insert(spec.wanted().to_string());
            }
        }
    }
    keep
}

/// What a prune removed.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Pruned {
    pub checkouts: usize,
    pub urls: usize,
    pub bytes: u64,
}

/// Removes what `keep` does not name (blocking: run it off the engine).
pub fn prune(cache: &GitCache, keep: &BTreeMap<String, Keep>) -> Pruned {
    let mut pruned = Pruned::default();
    for entry in fs::read_dir(&cache.root).into_iter().flatten().flatten() {
        let key = entry.file_name().to_string_lossy().into_owned();
        if key.len() != 24 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let dir = entry.path();
        let Some(_lock) = Lock::try_take(&dir.join("lock")) else {
            continue;
        };
        let result = match keep.get(&key) {
            None => drop_url(&dir, &mut pruned),
            Some(k) => prune_url(cache, &dir, k, &mut pruned),
        };
        if let Err(e) = result {
            tracing::warn!(dir = %dir.display(), error = %e, "buildpack cache: cannot prune");
        }
    }
    pruned
}

/// A URL nothing keeps: all but `url` and `lock`.
fn drop_url(dir: &Path, pruned: &mut Pruned) -> Result<(), crate::util::PathError> {
    let mut any = false;
    for name in ["repo", "trees", "refs.json"] {
        let path = dir.join(name);
        if fs::symlink_metadata(&path).is_ok() {
            pruned.bytes += tree_size(&path);
            remove_tree(&path)?;
            any = true;
        }
    }
    pruned.urls += usize::from(any);
    Ok(())
}

/// A URL still in use: the checkouts of commits nothing keeps, and refs no app names.
fn prune_url(
    cache: &GitCache,
    dir: &Path,
    keep: &Keep,
    pruned: &mut Pruned,
) -> Result<(), crate::util::PathError> {
    let refs_path = dir.join("refs.json");
    let refs = read_refs(&refs_path);
    let kept_refs: BTreeMap<String, RefEntry> = refs
        .iter()
        .filter(|(r, _)| keep.refs.contains(*r))
        .map(|(r, e)| (r.clone(), e.clone()))
        .collect();
    let mut commits = keep.commits.clone();
    commits.extend(kept_refs.values().map(|e| e.commit.clone()));
    if kept_refs.len() != refs.len() {
        let text = serde_json::to_vec_pretty(&kept_refs).unwrap_or_default();
        write_atomic(&refs_path, &text)?;
    }

    let trees = dir.join("trees");
    let mut doomed = Vec::new();
    for e in fs::read_dir(&trees).into_iter().flatten().flatten() {
        let commit = e.file_name().to_string_lossy().into_owned();
        if is_full_commit(&commit) && !commits.contains(&commit) {
            doomed.push(commit);
        }
    }
    if doomed.is_empty() {
        return Ok(());
    }
    let url = fs::read_to_string(dir.join("url")).unwrap_or_default();
    let spec = GitSpec::parse(url.trim()).ok();
    let repo = dir.join("repo");
    let git = spec.as_ref().map(|s| GitCmd {
        git_dir: &repo,
        protocol: s.scheme.git_protocol(),
        timeout: cache.timeout,
        build_tag: cache.build_tag.as_deref(),
    });
    for commit in &doomed {
        let path = trees.join(commit);
        pruned.bytes += tree_size(&path);
        remove_tree(&path)?;
        pruned.checkouts += 1;
        if let Some(git) = &git {
            let name = format!("{KEEP_PREFIX}{commit}");
            let _ = git.run("update-ref", &["update-ref", "-d", &name], &[]);
        }
    }
    // The objects only the removed checkouts' refs held.
    if let Some(git) = &git {
        let before = tree_size(&repo);
        match git.run("gc", &["gc", "--prune=now", "--quiet"], &[]) {
            Ok(done) if done.status.success() => {
                pruned.bytes += before.saturating_sub(tree_size(&repo));
            }
            Ok(done) => tracing::warn!(reason = %done.reason(), "buildpack cache: git gc failed"),
            Err(e) => tracing::warn!(error = %e, "buildpack cache: git gc failed"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::git_cache::tests::Remote;
    use super::*;
    use std::time::Duration;

    fn pinned(source: &str, commit: &str) -> ReleaseBuildpack {
        ReleaseBuildpack {
            source: source.into(),
            commit: Some(commit.into()),
        }
    }

    #[test]
    fn what_is_in_use_comes_from_releases_pins_and_apps_refs() {
        let a = "https://example.com/org/a#main";
        let c = "c".repeat(40);
        let recorded = [
            pinned(a, &"1".repeat(40)),
            ReleaseBuildpack {
                source: "python".into(),
                commit: None,
            },
        ];
        let named = [
            a,
            "https://example.com/org/b",
            &format!("https://example.com/org/c#{c}"),
        ];
        let got = in_use(&recorded, named.iter().copied());
        let key = |s: &str| GitSpec::parse(s).unwrap().cache_key();
        assert_eq!(got.len(), 3, "python is not a git pack: {got:?}");
        assert_eq!(got[&key(a)].commits, BTreeSet::from(["1".repeat(40)]));
        assert_eq!(got[&key(a)].refs, BTreeSet::from(["main".to_string()]));
        assert_eq!(
            got[&key("https://example.com/org/b")].refs,
            BTreeSet::from(["HEAD".to_string()])
        );
        let by_commit = &got[&key("https://example.com/org/c")];
        assert_eq!(by_commit.commits, BTreeSet::from([c]));
        assert!(by_commit.refs.is_empty());
    }

    /// A real cache of a `file://` remote: two commits built, then pruned as releases age out.
    #[test]
    fn checkouts_nothing_keeps_go_and_a_url_nothing_names_is_emptied() {
        let remote = Remote::new("one");
        let tmp = tempfile::tempdir().unwrap();
        let cache = GitCache {
            root: tmp.path().join("buildpacks-git"),
            timeout: Duration::from_secs(60),
            build_tag: None,
        };
        let spec = remote.spec("main");
        let source = format!("{}#main", remote.url());
        let v1 = cache.resolve(&spec, None, &mut |_| {}).unwrap().commit;
        let v2_commit = remote.commit("two");
        let v2 = cache.resolve(&spec, None, &mut |_| {}).unwrap();
        assert_eq!(v2.commit, v2_commit);
        let dir = cache.root.join(spec.cache_key());
        let trees = dir.join("trees");
        let checkouts = || {
            let mut names: Vec<String> = fs::read_dir(&trees)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let mut both = vec![v1.clone(), v2.commit.clone()];
        both.sort();
        assert_eq!(checkouts(), both);

        // v1 is still a kept release's: nothing goes.
        let keep = in_use(&[pinned(&source, &v1)], [source.as_str()]);
        assert_eq!(prune(&cache, &keep), Pruned::default());
        assert_eq!(checkouts(), both);

        // v1's release aged out: its checkout goes, the ref's commit (an offline build's) stays.
        let keep = in_use(&[], [source.as_str()]);
        let pruned = prune(&cache, &keep);
        assert_eq!(pruned.checkouts, 1, "{pruned:?}");
        assert!(pruned.bytes > 0);
        assert_eq!(checkouts(), std::slice::from_ref(&v2.commit));
        let keep_ref = Command::new("git")
            .args(["--git-dir"])
            .arg(dir.join("repo"))
            .args(["show-ref", "--verify", "--quiet"])
            .arg(format!("{KEEP_PREFIX}{v1}"))
            .status()
            .unwrap();
        assert!(!keep_ref.success(), "v1's keep ref is deleted with it");
        // Offline, the named ref still builds from what was kept.
        let away = remote.take_away();
        let offline = cache.resolve(&spec, None, &mut |_| {}).unwrap();
        assert_eq!(offline.commit, v2.commit);
        fs::rename(&away, &remote.dir).unwrap();

        // No app names it any more: the URL is emptied, and a later build fetches it again.
        let pruned = prune(&cache, &BTreeMap::new());
        assert_eq!(pruned.urls, 1, "{pruned:?}");
        assert!(!dir.join("repo").exists() && !trees.exists());
        assert!(dir.join("url").is_file(), "url and lock stay");
        let again = cache.resolve(&spec, None, &mut |_| {}).unwrap();
        assert_eq!(again.commit, v2.commit);
        assert!(again.dir.join("bin/detect").is_file());
    }

    #[test]
    fn a_url_being_fetched_is_left_for_the_next_round() {
        let remote = Remote::new("one");
        let tmp = tempfile::tempdir().unwrap();
        let cache = GitCache {
            root: tmp.path().join("buildpacks-git"),
            timeout: Duration::from_secs(60),
            build_tag: None,
        };
        let spec = remote.spec("");
        cache.resolve(&spec, None, &mut |_| {}).unwrap();
        let dir = cache.root.join(spec.cache_key());
        let held = Lock::try_take(&dir.join("lock")).unwrap();
        assert!(
            Lock::try_take(&dir.join("lock")).is_none(),
            "flock is exclusive"
        );
        assert_eq!(prune(&cache, &BTreeMap::new()), Pruned::default());
        assert!(dir.join("repo").is_dir());
        drop(held);
        assert_eq!(prune(&cache, &BTreeMap::new()).urls, 1);
    }

    use std::process::Command;
}
