//! Git buildpacks on disk: one cache per URL under `<data>/buildpacks-git/<key>/`, fetched with
//! the hardened system git ([`super::git_cmd`]), shallow where git allows it, and a read-only
//! checkout per commit that builds copy from.
//!
//! ```text
//! buildpacks-git/            0700 root: no build user can read, let alone change, a pack
//!   <key>/                   key = GitSpec::cache_key (sha256 of the URL)
//!     url                    the URL, for a person looking at the dir
//!     lock                   flock'd while fetching and checking out
//!     repo/                  bare, shallow repository
//!     refs.json              ref asked for -> commit it was at, when (for offline builds)
//!     trees/<commit>/<name>/ the checkout: dirs 0555, files 0444/0555
//! ```
//!
//! Offline: when the fetch fails (no network, remote gone, timed out) a ref that was fetched
//! before builds from its cached commit, and the build output says so; a ref never fetched, or
//! a pinned commit with no checkout, is refused naming the URL, the ref and git's reason. A
//! remote that answers but lacks the ref is refused, never papered over with the cache.
//!
//! What it must never do: run anything from the fetched tree (that is the buildpack runner's
//! job, as the app's build user, on a copy), or let a build write here.

use super::git_cmd::{GitCmd, GitCmdError, GitOutput};
use super::git_spec::{is_full_commit, is_short_commit, GitSpec};
use crate::build::{make_read_only, remove_tree};
use crate::util::{now_ms, write_atomic, IoContext, PathError};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum GitPackError {
    #[error("{0}")]
    Spec(String),
    #[error("buildpack {spec}: the remote has no branch, tag or commit {wanted:?} ({reason}); check the #ref in `roboku buildpacks:set`")]
    NoRef {
        spec: String,
        wanted: String,
        reason: String,
    },
    #[error("cannot fetch buildpack {spec} and there is no cached copy of {wanted} on this robot: {reason}. The robot must reach the URL once; afterwards offline builds use the cached copy")]
    Unavailable {
        spec: String,
        wanted: String,
        reason: String,
    },
    #[error("buildpack {spec} at commit {commit} is not a Heroku classic buildpack: it has no bin/detect")]
    NotABuildpack { spec: String, commit: String },
    #[error("buildpack {spec}: {message}")]
    Git { spec: String, message: String },
    #[error(transparent)]
    Io(#[from] PathError),
}

/// A git buildpack ready to run: its checkout and the commit it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub dir: PathBuf,
    pub commit: String,
}

/// What `refs.json` remembers of one ref.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct RefEntry {
    pub(super) commit: String,
    fetched_at: u64,
}

/// The local ref a fetch writes to (the bare repo has no branches of its own).
const FETCHED: &str = "refs/roboku/fetched";

/// Refs that keep each checked-out commit's objects (`git_prune.rs` deletes them with it).
pub(super) const KEEP_PREFIX: &str = "refs/roboku/commits/";

/// The cache of every git buildpack of this agent.
pub struct GitCache {
    pub root: PathBuf,
    /// Budget of each git command.
    pub timeout: Duration,
    /// Set as [`crate::build::BUILD_TAG`] on every git process (the build's dir), so an agent
    /// killed mid-fetch finds and kills what it left, as it does a build's processes.
    pub build_tag: Option<PathBuf>,
}

impl GitCache {
    /// The checkout of `spec` to build with. `pinned`: exactly this commit (a release's, for
    /// `--buildpacks-of`), else whatever the ref is at now. `out` gets the `----->` lines that
    /// say what was fetched or which cached copy is used.
    pub fn resolve(
        &self,
        spec: &GitSpec,
        pinned: Option<&str>,
        out: &mut dyn FnMut(&str),
    ) -> Result<Resolved, GitPackError> {
        let dir = self.url_dir(spec)?;
        let _lock = Lock::take(&dir.join("lock"))?;
        let url = dir.join("url");
        if !url.exists() {
            write_atomic(&url, format!("{}\n", spec.url).as_bytes())?;
        }
        let repo = dir.join("repo");
        let git = GitCmd {
            git_dir: &repo,
            protocol: spec.scheme.git_protocol(),
            timeout: self.timeout,
            build_tag: self.build_tag.as_deref(),
        };
        if !repo.join("HEAD").is_file() {
            init_bare(&git, spec, &repo)?;
        }
        let trees = dir.join("trees");
        remove_stale_temp(&trees);
        let wanted = pinned.or(spec.reference.as_deref().filter(|r| is_full_commit(r)));
        if let Some(commit) = wanted {
            return self.at_commit(&git, spec, &trees, commit, pinned.is_some(), out);
        }

        let refs_path = dir.join("refs.json");
        let mut refs = read_refs(&refs_path);
        let asked = spec.wanted().to_string();
        match fetch_ref(&git, spec) {
            Ok(commit) => {
                let tree = checkout(&git, spec, &trees, &commit)?;
                out(&format!(
                    "-----> Fetched buildpack {spec}: commit {}",
                    short(&commit)
                ));
                refs.insert(
                    asked,
                    RefEntry {
                        commit: commit.clone(),
                        fetched_at: now_ms(),
                    },
                );
                let text = serde_json::to_vec_pretty(&refs).unwrap_or_default();
                write_atomic(&refs_path, &text)?;
                Ok(Resolved { dir: tree, commit })
            }
            Err(Fetch::NoRef(reason)) => Err(GitPackError::NoRef {
                spec: spec.to_string(),
                wanted: asked,
                reason,
            }),
            Err(Fetch::Failed(reason)) => {
                let cached = refs.get(&asked).filter(|e| {
                    tree_dir(&trees, &e.commit, spec)
                        .join("bin/detect")
                        .is_file()
                });
                let Some(entry) = cached else {
                    return Err(GitPackError::Unavailable {
                        spec: spec.to_string(),
                        wanted: describe_ref(spec),
                        reason,
                    });
                };
                out(&format!(
                    "-----> Cannot fetch buildpack {spec} ({reason}); using the cached copy at \
                     commit {}, fetched {}",
                    short(&entry.commit),
                    ago(entry.fetched_at)
                ));
                Ok(Resolved {
                    dir: tree_dir(&trees, &entry.commit, spec),
                    commit: entry.commit.clone(),
                })
            }
        }
    }

    /// A known commit: its checkout if there is one (nothing to fetch: a commit never changes),
    /// else fetched by id.
    fn at_commit(
        &self,
        git: &GitCmd<'_>,
        spec: &GitSpec,
        trees: &Path,
        commit: &str,
        pinned: bool,
        out: &mut dyn FnMut(&str),
    ) -> Result<Resolved, GitPackError> {
        let why = if pinned { " (pinned)" } else { "" };
        let tree = tree_dir(trees, commit, spec);
        if tree.join("bin/detect").is_file() {
            out(&format!(
                "-----> Using buildpack {} at commit {}{why}, cached",
                spec.url,
                short(commit)
            ));
            return Ok(Resolved {
                dir: tree,
                commit: commit.to_string(),
            });
        }
        if !has_commit(git, commit) {
            let refspec = format!("+{commit}:{FETCHED}");
            let fetched = fetch(git, spec, &["--depth=1"], &[&refspec]);
            if let Err(f) = fetched {
                return Err(GitPackError::Unavailable {
                    spec: spec.to_string(),
                    wanted: format!("commit {commit}{why}"),
                    reason: f.reason(),
                });
            }
        }
        let tree = checkout(git, spec, trees, commit)?;
        out(&format!(
            "-----> Fetched buildpack {} at commit {}{why}",
            spec.url,
            short(commit)
        ));
        Ok(Resolved {
            dir: tree,
            commit: commit.to_string(),
        })
    }

    /// `<root>/<key>`, made (0700) if new.
    fn url_dir(&self, spec: &GitSpec) -> Result<PathBuf, GitPackError> {
        private_dir(&self.root)?;
        let dir = self.root.join(spec.cache_key());
        private_dir(&dir)?;
        Ok(dir)
    }
}

/// How a fetch failed: the remote said it has no such ref, or it could not be asked.
enum Fetch {
    NoRef(String),
    Failed(String),
}

impl Fetch {
    fn reason(self) -> String {
        match self {
            Fetch::NoRef(r) | Fetch::Failed(r) => r,
        }
    }
}

fn init_bare(git: &GitCmd<'_>, spec: &GitSpec, repo: &Path) -> Result<(), GitPackError> {
    // A half-made repo of an earlier, killed attempt goes first.
    remove_tree(repo)?;
    let done = git
        .run("init", &["init", "--bare", "--quiet"], &[])
        .map_err(|e| git_error(spec, e))?;
    if !done.status.success() {
        return Err(GitPackError::Git {
            spec: spec.to_string(),
            message: format!("git init {}: {}", repo.display(), done.reason()),
        });
    }
    Ok(())
}

/// Fetches the spec's ref (or the remote's HEAD): shallow by name; an abbreviated commit needs
/// the history, so when no ref has that name the branches and tags are fetched whole.
fn fetch_ref(git: &GitCmd<'_>, spec: &GitSpec) -> Result<String, Fetch> {
    let wanted = spec.wanted();
    let refspec = format!("+{wanted}:{FETCHED}");
    match fetch(git, spec, &["--depth=1"], &[&refspec]) {
        Ok(()) => {}
        Err(Fetch::NoRef(_)) if is_short_commit(wanted) => {
            let mut flags = vec![];
            if git.git_dir.join("shallow").exists() {
                flags.push("--unshallow");
            }
            fetch(
                git,
                spec,
                &flags,
                &[
                    "+refs/heads/*:refs/roboku/heads/*",
                    "+refs/tags/*:refs/roboku/tags/*",
                ],
            )?;
            return rev_parse(git, wanted).ok_or_else(|| {
                Fetch::NoRef(format!("no branch, tag or commit starts with {wanted}"))
            });
        }
        Err(e) => return Err(e),
    }
    rev_parse(git, FETCHED)
        .ok_or_else(|| Fetch::NoRef(format!("{wanted} is not a commit (nor a tag of one)")))
}

/// `git fetch FLAGS -- URL REFSPECS`; the URL after `--`, so nothing in it is an option.
fn fetch(git: &GitCmd<'_>, spec: &GitSpec, flags: &[&str], refspecs: &[&str]) -> Result<(), Fetch> {
    let mut args = vec!["fetch", "--quiet", "--no-tags", "--no-write-fetch-head"];
    args.extend_from_slice(flags);
    args.push("--");
    args.push(&spec.url);
    args.extend_from_slice(refspecs);
    let done = git
        .run(&format!("fetch {spec}"), &args, &[])
        .map_err(|e| Fetch::Failed(e.to_string()))?;
    if done.status.success() {
        return Ok(());
    }
    Err(classify(&done))
}

/// The remote answered and lacks the ref, or it could not be reached at all.
fn classify(done: &GitOutput) -> Fetch {
    let reason = done.reason();
    let no_ref = [
        "couldn't find remote ref",
        "not our ref",
        "no such remote ref",
    ]
    .iter()
    .any(|m| done.stderr.contains(m));
    match no_ref {
        true => Fetch::NoRef(reason),
        false => Fetch::Failed(reason),
    }
}

/// The commit `rev` names in the cache's repo, if any.
fn rev_parse(git: &GitCmd<'_>, rev: &str) -> Option<String> {
    let arg = format!("{rev}^{{commit}}");
    let done = git
        .run(
            "rev-parse",
            &["rev-parse", "--verify", "--quiet", "--end-of-options", &arg],
            &[],
        )
        .ok()?;
    let commit = done.stdout.trim().to_string();
    (done.status.success() && is_full_commit(&commit)).then_some(commit)
}

fn has_commit(git: &GitCmd<'_>, commit: &str) -> bool {
    rev_parse(git, commit).as_deref() == Some(commit)
}

/// `trees/<commit>/<name>`.
fn tree_dir(trees: &Path, commit: &str, spec: &GitSpec) -> PathBuf {
    trees.join(commit).join(spec.repo_name())
}

/// The read-only checkout of `commit`, made if missing: written into a fresh temp dir by git
/// itself (`read-tree` + `checkout-index`: no hooks, no submodules, no work tree of its own),
/// checked to be a buildpack, then renamed into place whole.
fn checkout(
    git: &GitCmd<'_>,
    spec: &GitSpec,
    trees: &Path,
    commit: &str,
) -> Result<PathBuf, GitPackError> {
    let dest = tree_dir(trees, commit, spec);
    if dest.join("bin/detect").is_file() {
        return Ok(dest);
    }
    private_dir(trees)?;
    // Keeps the commit's objects reachable, should the repo ever be gc'd.
    let keep = format!("{KEEP_PREFIX}{commit}");
    let _ = git.run("update-ref", &["update-ref", &keep, commit], &[]);

    let tmp = trees.join(format!(".tmp-{:016x}", rand::rngs::OsRng.next_u64()));
    private_dir(&tmp)?;
    let result = (|| {
        let index = tmp.join("index");
        let tree = tmp.join(spec.repo_name());
        let spec_err = |e| git_error(spec, e);
        let env = [("GIT_INDEX_FILE", index.as_path())];
        let read = git
            .run(
                "read-tree",
                &["read-tree", "--end-of-options", commit],
                &env,
            )
            .map_err(spec_err)?;
        check(spec, "read-tree", &read)?;
        private_dir(&tree)?;
        let env = [
            ("GIT_INDEX_FILE", index.as_path()),
            ("GIT_WORK_TREE", &tree),
        ];
        let written = git
            .run_in("checkout-index", &["checkout-index", "--all"], &env, &tree)
            .map_err(spec_err)?;
        check(spec, "checkout-index", &written)?;
        fs::remove_file(&index).at("remove", &index)?;
        if !tree.join("bin/detect").is_file() {
            return Err(GitPackError::NotABuildpack {
                spec: spec.to_string(),
                commit: commit.to_string(),
            });
        }
        make_read_only(&tree)?;
        let commit_dir = trees.join(commit);
        remove_tree(&commit_dir)?;
        fs::rename(&tmp, &commit_dir).at("rename into place", &commit_dir)?;
        Ok(())
    })();
    if result.is_err() {
        if let Err(e) = remove_tree(&tmp) {
            tracing::warn!(error = %e, "cannot remove a failed buildpack checkout");
        }
    }
    result.map(|()| dest)
}

/// Temp checkouts of a resolve that died half-way (an agent killed mid-checkout). Called with
/// the URL's lock held, so none of them is in use.
fn remove_stale_temp(trees: &Path) {
    for entry in fs::read_dir(trees).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            if let Err(e) = remove_tree(&entry.path()) {
                tracing::warn!(error = %e, "cannot remove a stale buildpack checkout");
            }
        }
    }
}

fn check(spec: &GitSpec, op: &str, done: &GitOutput) -> Result<(), GitPackError> {
    if done.status.success() {
        return Ok(());
    }
    Err(GitPackError::Git {
        spec: spec.to_string(),
        message: format!("git {op}: {}", done.reason()),
    })
}

fn git_error(spec: &GitSpec, e: GitCmdError) -> GitPackError {
    GitPackError::Git {
        spec: spec.to_string(),
        message: e.to_string(),
    }
}

pub(super) fn read_refs(path: &Path) -> BTreeMap<String, RefEntry> {
    fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn describe_ref(spec: &GitSpec) -> String {
    match &spec.reference {
        Some(r) => format!("ref {r}"),
        None => "its default branch (HEAD)".into(),
    }
}

fn short(commit: &str) -> &str {
    &commit[..12.min(commit.len())]
}

/// `3 min ago`, `2 days ago`: when a cached copy was fetched.
fn ago(then_ms: u64) -> String {
    let secs = now_ms().saturating_sub(then_ms) / 1000;
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        7200..=172_799 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// A dir only root may enter, made if missing.
fn private_dir(path: &Path) -> Result<(), PathError> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e).at("create dir", path),
    }
}

/// An exclusive `flock` on a file, released when dropped: two builds of one URL never run git
/// on its repository at once.
pub(super) struct Lock {
    _file: fs::File,
}

impl Lock {
    fn take(path: &Path) -> Result<Lock, PathError> {
        let file = open_lock(path)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error()).at("lock", path);
        }
        Ok(Lock { _file: file })
    }

    /// The lock if nobody holds it for long (a lock file that cannot be opened counts as held).
    /// A few tries over 0.2 s: a child forked by another thread between our open and its exec
    /// shares the descriptor, and so the lock, for that moment.
    pub(super) fn try_take(path: &Path) -> Option<Lock> {
        let file = open_lock(path).ok()?;
        for _ in 0..20 {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Some(Lock { _file: file });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

fn open_lock(path: &Path) -> Result<fs::File, PathError> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .at("open lock", path)
}

#[cfg(test)]
#[path = "git_cache_tests.rs"]
pub(super) mod tests;
