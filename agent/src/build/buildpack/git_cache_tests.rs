//! The git buildpack cache against real local repositories (`file://` remotes): what is
//! fetched, what is kept, what an offline robot builds with, what is refused.

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// A remote: a work tree whose commits the cache fetches by `file://` URL.
pub(in crate::build::buildpack) struct Remote {
    pub _tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

/// git for setting up remotes, away from any gitconfig of this machine.
pub(in crate::build::buildpack) fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Remote {
    /// A repository with one commit of a buildpack whose compile says `says`.
    pub fn new(says: &str) -> Remote {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("counter-pack");
        fs::create_dir(&dir).unwrap();
        git(&dir, &["init", "--quiet"]);
        let r = Remote { _tmp: tmp, dir };
        r.commit(says);
        r
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.dir.display())
    }

    pub fn spec(&self, reference: &str) -> GitSpec {
        let s = match reference {
            "" => self.url(),
            r => format!("{}#{r}", self.url()),
        };
        GitSpec::parse(&s).unwrap()
    }

    /// Commits a buildpack whose compile prints `says`; the new commit.
    pub fn commit(&self, says: &str) -> String {
        let bin = self.dir.join("bin");
        fs::create_dir_all(&bin).unwrap();
        for (name, body) in [
            ("detect", "echo counter".to_string()),
            ("compile", format!("echo '{says}'")),
            ("release", "echo '--- {}'".to_string()),
        ] {
            let path = bin.join(name);
            fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::write(self.dir.join("README"), format!("{says}\n")).unwrap();
        git(&self.dir, &["add", "-A"]);
        git(&self.dir, &["commit", "--quiet", "-m", says]);
        self.head()
    }

    pub fn head(&self) -> String {
        git(&self.dir, &["rev-parse", "HEAD"])
    }

    /// The remote is gone (a robot offline, or a deleted repository: git cannot tell).
    pub fn take_away(&self) -> PathBuf {
        let away = self.dir.with_extension("away");
        fs::rename(&self.dir, &away).unwrap();
        away
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    cache: GitCache,
}

fn cache() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let cache = GitCache {
        root: tmp.path().join("buildpacks-git"),
        timeout: Duration::from_secs(60),
        build_tag: None,
    };
    Fixture { _tmp: tmp, cache }
}

fn resolve(f: &Fixture, spec: &GitSpec, pinned: Option<&str>) -> (Resolved, Vec<String>) {
    let mut lines = Vec::new();
    let r = f
        .cache
        .resolve(spec, pinned, &mut |l| lines.push(l.to_string()))
        .unwrap_or_else(|e| panic!("resolve {spec}: {e}"));
    (r, lines)
}

fn refused(f: &Fixture, spec: &GitSpec, pinned: Option<&str>) -> (GitPackError, Vec<String>) {
    let mut lines = Vec::new();
    match f
        .cache
        .resolve(spec, pinned, &mut |l| lines.push(l.to_string()))
    {
        Ok(r) => panic!("{spec} resolved to {r:?}"),
        Err(e) => (e, lines),
    }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn says(r: &Resolved) -> String {
    fs::read_to_string(r.dir.join("bin/compile")).unwrap()
}

#[test]
fn a_branch_is_fetched_shallow_into_a_read_only_checkout_per_commit() {
    let remote = Remote::new("one");
    let f = cache();
    let spec = remote.spec("main");
    let (r, lines) = resolve(&f, &spec, None);
    assert_eq!(r.commit, remote.head());
    assert!(says(&r).contains("echo 'one'"));
    assert_eq!(
        lines,
        [format!(
            "-----> Fetched buildpack {spec}: commit {}",
            &r.commit[..12]
        )]
    );
    let key_dir = f.cache.root.join(spec.cache_key());
    assert_eq!(
        r.dir,
        key_dir.join("trees").join(&r.commit).join("counter-pack")
    );
    assert!(key_dir.join("repo/shallow").is_file(), "fetched shallow");
    assert_eq!(
        fs::read_to_string(key_dir.join("url")).unwrap(),
        format!("{}\n", remote.url())
    );
    // No build user can read the cache, and the checkout is read-only even for its owner.
    assert_eq!(mode(&f.cache.root), 0o700);
    assert_eq!(mode(&key_dir), 0o700);
    assert_eq!(mode(&r.dir), 0o555);
    assert_eq!(mode(&r.dir.join("bin")), 0o555);
    assert_eq!(mode(&r.dir.join("bin/compile")), 0o555);
    assert_eq!(mode(&r.dir.join("README")), 0o444);
    assert!(!r.dir.join(".git").exists());
    let trees: Vec<_> = fs::read_dir(key_dir.join("trees")).unwrap().collect();
    assert_eq!(trees.len(), 1, "no temp dir left behind");
}

#[test]
fn a_new_commit_on_the_branch_is_picked_up_and_the_old_checkout_kept() {
    let remote = Remote::new("one");
    let f = cache();
    let spec = remote.spec("main");
    let (first, _) = resolve(&f, &spec, None);
    let second_commit = remote.commit("two");
    let (second, _) = resolve(&f, &spec, None);
    assert_eq!(second.commit, second_commit);
    assert_ne!(first.dir, second.dir);
    assert!(says(&second).contains("two"));
    assert!(says(&first).contains("one"), "v1's checkout is still there");
    // The default branch when no ref is given.
    let (head, _) = resolve(&f, &remote.spec(""), None);
    assert_eq!(head.commit, second_commit);
}

#[test]
fn offline_a_ref_fetched_before_builds_from_the_cache_and_says_so() {
    let remote = Remote::new("one");
    let f = cache();
    let spec = remote.spec("main");
    let (online, _) = resolve(&f, &spec, None);
    remote.take_away();
    let (offline, lines) = resolve(&f, &spec, None);
    assert_eq!(offline, online);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(
        line.starts_with(&format!("-----> Cannot fetch buildpack {spec} (")),
        "{line}"
    );
    assert!(
        line.contains("does not appear to be a git repository"),
        "{line}"
    );
    assert!(
        line.contains(&format!(
            "using the cached copy at commit {}, fetched ",
            &online.commit[..12]
        )),
        "{line}"
    );
}

#[test]
fn offline_a_ref_never_fetched_is_refused_naming_url_and_ref() {
    let remote = Remote::new("one");
    let f = cache();
    resolve(&f, &remote.spec("main"), None);
    git(&remote.dir, &["tag", "v1"]);
    remote.take_away();
    let (e, lines) = refused(&f, &remote.spec("v1"), None);
    let msg = e.to_string();
    assert!(matches!(e, GitPackError::Unavailable { .. }), "{msg}");
    assert!(
        msg.starts_with(&format!(
            "cannot fetch buildpack {}#v1 and there is no cached copy of ref v1 on this robot: ",
            remote.url()
        )),
        "{msg}"
    );
    assert!(
        msg.contains("does not appear to be a git repository"),
        "{msg}"
    );
    assert!(lines.is_empty());
    // Nothing cached at all, default branch.
    let (e, _) = refused(&cache(), &remote.spec(""), None);
    assert!(
        e.to_string()
            .contains("no cached copy of its default branch (HEAD)"),
        "{e}"
    );
}

#[test]
fn a_ref_the_remote_lacks_is_refused_even_with_a_cached_copy() {
    let remote = Remote::new("one");
    let f = cache();
    resolve(&f, &remote.spec("main"), None);
    let (e, _) = refused(&f, &remote.spec("nope"), None);
    let msg = e.to_string();
    assert!(matches!(e, GitPackError::NoRef { .. }), "{msg}");
    assert!(
        msg.contains("has no branch, tag or commit \"nope\""),
        "{msg}"
    );
    assert!(msg.contains("couldn't find remote ref nope"), "{msg}");
}

#[test]
fn tags_full_and_short_commits_resolve_to_their_commit() {
    let remote = Remote::new("one");
    let first = remote.head();
    git(&remote.dir, &["tag", "-a", "-m", "release", "v1"]);
    git(&remote.dir, &["tag", "light"]);
    remote.commit("two");
    let f = cache();
    for reference in ["v1", "light", first.as_str(), &first[..9]] {
        let (r, _) = resolve(&f, &remote.spec(reference), None);
        assert_eq!(r.commit, first, "{reference}");
        assert!(says(&r).contains("one"), "{reference}");
    }
    let (e, _) = refused(&f, &remote.spec("abcdef0123"), None);
    assert!(
        e.to_string()
            .contains("no branch, tag or commit starts with abcdef0123"),
        "{e}"
    );
}

#[test]
fn a_pinned_commit_builds_from_its_checkout_even_offline_and_is_fetched_when_missing() {
    let remote = Remote::new("one");
    let f = cache();
    let spec = remote.spec("main");
    let (v1, _) = resolve(&f, &spec, None);
    remote.commit("two");
    resolve(&f, &spec, None);

    // The branch moved on: the pin still wins, from the checkout, without asking the remote.
    let (pinned, lines) = resolve(&f, &spec, Some(&v1.commit));
    assert_eq!(pinned, v1);
    assert_eq!(
        lines,
        [format!(
            "-----> Using buildpack {} at commit {} (pinned), cached",
            remote.url(),
            &v1.commit[..12]
        )]
    );

    // A fresh cache (another robot) fetches the pinned commit by id.
    let other = cache();
    let (fetched, lines) = resolve(&other, &spec, Some(&v1.commit));
    assert_eq!(fetched.commit, v1.commit);
    assert!(says(&fetched).contains("one"));
    assert!(lines[0].contains("Fetched buildpack"), "{lines:?}");

    remote.take_away();
    let (again, _) = resolve(&f, &spec, Some(&v1.commit));
    assert_eq!(again, v1);
    let (e, _) = refused(&cache(), &spec, Some(&v1.commit));
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("no cached copy of commit {} (pinned)", v1.commit)),
        "{msg}"
    );
}

#[test]
fn a_repository_without_bin_detect_is_refused_and_leaves_no_checkout() {
    let remote = Remote::new("one");
    git(&remote.dir, &["rm", "--quiet", "bin/detect"]);
    git(&remote.dir, &["commit", "--quiet", "-m", "no detect"]);
    let f = cache();
    let spec = remote.spec("main");
    let (e, _) = refused(&f, &spec, None);
    assert!(
        e.to_string()
            .ends_with("is not a Heroku classic buildpack: it has no bin/detect"),
        "{e}"
    );
    let trees = f.cache.root.join(spec.cache_key()).join("trees");
    assert_eq!(fs::read_dir(trees).unwrap().count(), 0);
}

#[test]
fn hooks_planted_in_the_cache_repository_never_run() {
    let remote = Remote::new("one");
    let f = cache();
    let spec = remote.spec("main");
    resolve(&f, &spec, None);
    let repo = f.cache.root.join(spec.cache_key()).join("repo");
    let marker = f.cache.root.join("hook-ran");
    for hook in [
        "reference-transaction",
        "post-checkout",
        "post-index-change",
    ] {
        let path = repo.join("hooks").join(hook);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    remote.commit("two");
    let (r, _) = resolve(&f, &spec, None);
    assert!(says(&r).contains("two"));
    assert!(!marker.exists(), "a hook ran");
}

#[test]
fn only_the_urls_own_transport_is_allowed() {
    let remote = Remote::new("one");
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let git = GitCmd {
        git_dir: &repo,
        protocol: "https",
        timeout: Duration::from_secs(30),
        build_tag: None,
    };
    git.run("init", &["init", "--bare", "--quiet"], &[])
        .unwrap();
    let done = git
        .run("fetch", &["fetch", "--", &remote.url(), "main"], &[])
        .unwrap();
    assert!(!done.status.success());
    assert!(
        done.reason().contains("transport 'file' not allowed"),
        "{}",
        done.reason()
    );
}

#[test]
fn a_remote_that_never_answers_is_given_up_on_at_the_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and says nothing: a TLS handshake that never ends.
    let _hold = std::thread::spawn(move || {
        let conns: Vec<_> = listener.incoming().take(4).collect();
        std::thread::sleep(Duration::from_secs(20));
        drop(conns);
    });
    let tmp = tempfile::tempdir().unwrap();
    let f = Fixture {
        cache: GitCache {
            root: tmp.path().join("buildpacks-git"),
            timeout: Duration::from_secs(1),
            build_tag: None,
        },
        _tmp: tmp,
    };
    let spec = GitSpec::parse(&format!("https://127.0.0.1:{port}/org/pack#main")).unwrap();
    let started = std::time::Instant::now();
    let (e, _) = refused(&f, &spec, None);
    assert!(started.elapsed() < Duration::from_secs(10), "{e}");
    let msg = e.to_string();
    assert!(matches!(e, GitPackError::Unavailable { .. }), "{msg}");
    assert!(msg.contains("took longer than 1s and was killed"), "{msg}");
}

#[test]
fn two_builds_fetching_one_url_at_once_both_get_it() {
    let remote = Remote::new("one");
    let f = cache();
    let spec = remote.spec("main");
    let got: Vec<Resolved> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| resolve(&f, &spec, None).0))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(got.iter().all(|r| r.commit == remote.head()));
}

#[test]
fn a_build_as_the_app_user_runs_a_copy_and_cannot_reach_the_checkout() {
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "this test needs root, as CI has"
    );
    let remote = Remote::new("one");
    // The pack tries to change the cached checkout (its path comes in as a config var) and
    // writes into its own dir, as some classic packs do.
    let compile = bin_compile_that_attacks();
    fs::write(remote.dir.join("bin/compile"), compile).unwrap();
    git(&remote.dir, &["commit", "--quiet", "-am", "attack"]);
    let s = crate::build::buildpack::tests::site();
    let f = Fixture {
        cache: GitCache {
            root: s.root.join("buildpacks-git"),
            timeout: Duration::from_secs(60),
            build_tag: None,
        },
        _tmp: tempfile::tempdir().unwrap(),
    };
    let (r, _) = resolve(&f, &remote.spec("main"), None);
    let before = crate::build::hash_tree(&r.dir).unwrap();
    let checkout = r.dir.display().to_string();
    let run = crate::build::buildpack::tests::build_with(
        &s,
        &[
            ("CHECKOUT", &checkout),
            ("REC", &s.rec.display().to_string()),
        ],
        std::slice::from_ref(&r.dir),
        &s.root,
        Duration::from_secs(30),
        Some((65534, 65534)),
        |_| {},
    );
    run.result.unwrap();
    let rec = fs::read_to_string(s.rec.join("attack")).unwrap();
    for want in [
        "own-dir-writable",
        "checkout-unreachable",
        "compile-unchanged",
    ] {
        assert!(rec.contains(want), "expected {want}: {rec}");
    }
    assert_eq!(crate::build::hash_tree(&r.dir).unwrap(), before);
    assert!(!r.dir.join("bin/pwned").exists());
}

fn bin_compile_that_attacks() -> String {
    r#"#!/bin/sh
rec="$(cat "$3/REC")/attack"; co="$(cat "$3/CHECKOUT")"
BP_DIR=$(cd "$(dirname "$0")/.." && pwd)
touch "$BP_DIR/state" && echo own-dir-writable >> "$rec"
ls "$co" > /dev/null 2>&1 && echo checkout-listed >> "$rec" || echo checkout-unreachable >> "$rec"
touch "$co/bin/pwned" 2>/dev/null && echo checkout-written >> "$rec"
echo 'echo pwned' > "$co/bin/compile" 2>/dev/null && echo compile-written >> "$rec" || echo compile-unchanged >> "$rec"
true
"#
    .to_string()
}

#[test]
fn git_sees_a_cleared_hardened_environment_tagged_with_the_build() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let tag = tmp.path().join("build-dir");
    let git = GitCmd {
        git_dir: &repo,
        protocol: "file",
        timeout: Duration::from_secs(30),
        build_tag: Some(&tag),
    };
    git.run("init", &["init", "--bare", "--quiet"], &[])
        .unwrap();
    let done = git
        .run("env", &["-c", "alias.showenv=!env", "showenv"], &[])
        .unwrap();
    assert!(done.status.success(), "{}", done.reason());
    let env: Vec<&str> = done.stdout.lines().collect();
    for want in [
        format!("ROBOKU_BUILD={}", tag.display()),
        "GIT_TERMINAL_PROMPT=0".into(),
        "GIT_CONFIG_NOSYSTEM=1".into(),
        "GIT_CONFIG_GLOBAL=/dev/null".into(),
        "GIT_ALLOW_PROTOCOL=file".into(),
        "HOME=/nonexistent".into(),
    ] {
        assert!(env.contains(&want.as_str()), "{want} missing: {env:?}");
    }
    assert!(
        !env.iter()
            .any(|v| v.starts_with("CARGO") || v.starts_with("RUST")),
        "the agent's environment leaked: {env:?}"
    );
}

#[test]
fn temp_checkouts_a_killed_resolve_left_are_removed() {
    let remote = Remote::new("one");
    let f = cache();
    let spec = remote.spec("main");
    resolve(&f, &spec, None);
    let trees = f.cache.root.join(spec.cache_key()).join("trees");
    let stale = trees.join(".tmp-0123456789abcdef");
    fs::create_dir_all(stale.join("counter-pack/bin")).unwrap();
    resolve(&f, &spec, None);
    assert!(!stale.exists());
    assert_eq!(fs::read_dir(&trees).unwrap().count(), 1);
}
