//! Buildpacks from git (`roboku buildpacks:set URL#ref`), with a local repository as the remote:
//! the pack is fetched and builds, the release pins its commit, a new commit on the branch is
//! picked up, an unreachable remote builds from the cache (saying so), `--buildpacks-of v1`
//! builds with v1's commit again, and what cannot work is refused naming the URL and the ref.

use roboku_tests::{app_dir, Agent, AgentOpts};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Commits a pack whose compile writes `says` into the app's `pack-says`; the commit.
fn commit_pack(repo: &Path, says: &str) -> String {
    let bin = repo.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    for (name, body) in [
        ("detect", "echo says".to_string()),
        (
            "compile",
            format!("echo \"-----> pack says {says}\"\nprintf '{says}' > \"$1/pack-says\""),
        ),
        ("release", "echo '--- {}'".to_string()),
    ] {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\nset -e\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
    }
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "--quiet", "-m", says]);
    git(repo, &["rev-parse", "HEAD"])
}

fn build_log(agent: &Agent, app: &str) -> String {
    agent.ok(&["logs", "-a", app, "-d", "build", "-n", "500"])
}

fn releases(agent: &Agent, app: &str) -> Vec<Value> {
    match agent.json(&["releases", "-a", app]) {
        Value::Array(v) => v,
        other => panic!("releases --json is not a list: {other}"),
    }
}

/// The commit release `version` pinned its only buildpack at.
fn pinned(agent: &Agent, app: &str, version: u64) -> String {
    let all = releases(agent, app);
    let r = all
        .iter()
        .find(|r| r["version"] == version)
        .unwrap_or_else(|| panic!("no v{version}: {all:?}"));
    let packs = r["buildpacks"].as_array().expect("buildpacks recorded");
    assert_eq!(packs.len(), 1, "{r}");
    packs[0]["commit"].as_str().expect("a commit").to_string()
}

#[test]
fn a_git_buildpack_is_fetched_pinned_followed_cached_offline_and_replayed() {
    let agent = Agent::start(AgentOpts::default());
    let remote_root = tempfile::tempdir().expect("temp dir");
    let repo: PathBuf = remote_root.path().join("says-buildpack");
    std::fs::create_dir(&repo).expect("mkdir repo");
    git(&repo, &["init", "--quiet"]);
    let c1 = commit_pack(&repo, "one");
    let spec = format!("file://{}#main", repo.display());

    // Refused at set time, naming what is wrong; nothing is stored.
    agent.ok(&["apps:create", "gp"]);
    let out = agent.roboku(&[
        "buildpacks:set",
        "https://user:token@github.com/org/pack#main",
        "-a",
        "gp",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("has credentials in it"), "{err}");

    agent.ok(&["buildpacks:set", &spec, "-a", "gp"]);
    let serve = "import http.server, os\n\
class H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        b = open('pack-says').read().encode()\n        self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)\n\
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n";
    let src = app_dir(&[
        ("Procfile", "web: exec python3 serve.py\n"),
        ("serve.py", serve),
    ]);

    // v1: fetched, built, running; the release shows the commit.
    agent.deploy("gp", src.path());
    agent.web_answers("gp", "one", 30);
    assert_eq!(pinned(&agent, "gp", 1), c1);
    let log = build_log(&agent, "gp");
    assert!(
        log.contains(&format!("Fetched buildpack {spec}: commit {}", &c1[..12])),
        "{log}"
    );
    assert!(log.contains("pack says one"), "{log}");
    let info = agent.ok(&["releases:info", "v1", "-a", "gp"]);
    assert!(
        info.contains(&format!("Buildpacks:   {spec} at {}", &c1[..12])),
        "{info}"
    );

    // v2: a new commit on the branch is picked up by the next deploy.
    let c2 = commit_pack(&repo, "two");
    std::fs::write(src.path().join("CHANGES"), "2\n").expect("write");
    agent.deploy("gp", src.path());
    agent.web_answers("gp", "two", 30);
    assert_eq!(pinned(&agent, "gp", 2), c2);

    // v3: the remote is gone; the cached copy of main builds, and the build says so.
    let away = remote_root.path().join("moved-away");
    std::fs::rename(&repo, &away).expect("take the remote away");
    std::fs::write(src.path().join("CHANGES"), "3\n").expect("write");
    agent.deploy("gp", src.path());
    agent.web_answers("gp", "two", 30);
    assert_eq!(pinned(&agent, "gp", 3), c2);
    let log = build_log(&agent, "gp");
    assert!(
        log.contains(&format!("Cannot fetch buildpack {spec} (")),
        "{log}"
    );
    assert!(
        log.contains(&format!("using the cached copy at commit {}", &c2[..12])),
        "{log}"
    );

    // v4: v1's buildpacks, at v1's commit (from the cache: the remote is still gone).
    let v4 = agent.json(&[
        "deploy",
        src.path().to_str().expect("utf-8"),
        "-a",
        "gp",
        "--buildpacks-of",
        "v1",
    ]);
    assert_eq!(v4["version"], 4, "{v4}");
    assert!(
        v4["description"]
            .as_str()
            .is_some_and(|d| d.contains("buildpacks of v1")),
        "{v4}"
    );
    agent.web_answers("gp", "one", 30);
    assert_eq!(pinned(&agent, "gp", 4), c1);
    let log = build_log(&agent, "gp");
    assert!(
        log.contains(&format!("at commit {} (pinned), cached", &c1[..12])),
        "{log}"
    );

    // A rollback releases v2's slug and keeps its pin.
    agent.ok(&["rollback", "v2", "-a", "gp"]);
    agent.web_answers("gp", "two", 30);
    assert_eq!(pinned(&agent, "gp", 5), c2);

    // A ref never fetched cannot build offline: refused naming the URL and the ref; the
    // running release stays.
    let tag = format!("file://{}#v9", repo.display());
    agent.ok(&["buildpacks:set", &tag, "-a", "gp"]);
    std::fs::write(src.path().join("CHANGES"), "6\n").expect("write");
    let out = agent.roboku(&["deploy", src.path().to_str().expect("utf-8"), "-a", "gp"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "cannot fetch buildpack {tag} and there is no cached copy of ref v9 on this robot"
        )),
        "{err}"
    );
    agent.web_answers("gp", "two", 5);

    // The cache is root's alone; the pack's checkout is read-only.
    let cache = agent.data_dir().join("buildpacks-git");
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).expect("stat").permissions())
            & 0o777
    };
    assert_eq!(mode(&cache), 0o700);
    let key = std::fs::read_dir(&cache)
        .expect("read cache")
        .next()
        .expect("one URL cached")
        .expect("entry")
        .path();
    let checkout = key.join("trees").join(&c1).join("says-buildpack");
    assert_eq!(mode(&checkout.join("bin")), 0o555);
    assert_eq!(mode(&checkout.join("bin/compile")), 0o555);
}

/// `roboku slug:build -b URL#ref` on a workstation fetches the pack too; the robot's release of
/// that slug records no buildpacks (none ran there), so `--buildpacks-of` it is refused by name.
#[test]
fn slug_build_takes_a_git_buildpack_and_its_release_records_none() {
    let remote_root = tempfile::tempdir().expect("temp dir");
    let repo = remote_root.path().join("says-buildpack");
    std::fs::create_dir(&repo).expect("mkdir repo");
    git(&repo, &["init", "--quiet"]);
    commit_pack(&repo, "slugged");
    let spec = format!("file://{}#main", repo.display());
    let src = app_dir(&[("Procfile", "web: exec sleep 100000\n")]);
    let out_dir = tempfile::tempdir().expect("temp dir");
    let slug = out_dir.path().join("gp.slug");
    let out = Command::new(roboku_tests::bins::bin("roboku"))
        .arg("slug:build")
        .arg(src.path())
        .arg("-o")
        .arg(&slug)
        .args(["-b", &spec])
        .output()
        .expect("run roboku slug:build");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("Fetched buildpack {spec}")), "{err}");
    assert!(err.contains("pack says slugged"), "{err}");

    let agent = Agent::start(AgentOpts::default());
    agent.ok(&["apps:create", "gp"]);
    let slug_s = slug.to_str().expect("utf-8");
    let v1 = agent.json(&["deploy", "--slug", slug_s, "-a", "gp"]);
    assert_eq!(v1["status"], "succeeded", "{v1}");
    assert!(v1.get("buildpacks").is_none(), "nothing ran here: {v1}");
    let out = agent.roboku(&[
        "deploy",
        src.path().to_str().expect("utf-8"),
        "-a",
        "gp",
        "--buildpacks-of",
        "v1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("v1 of gp records no buildpacks"), "{err}");
    let out = agent.roboku(&[
        "deploy",
        src.path().to_str().expect("utf-8"),
        "-a",
        "gp",
        "--buildpacks-of",
        "v9",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("app \"gp\" has no release v9"), "{err}");
}

/// The cache keeps what kept releases pinned and what the app names, and nothing else: with
/// `--keep-releases 2`, v1's checkout goes once v1 ages out, and the URL's repository once no
/// kept release and no setting names it. A Heroku registry name (`heroku/procfile`) builds
/// with the built-in and is recorded as written; one roboku cannot build is refused by name.
#[test]
fn the_git_buildpack_cache_is_pruned_as_releases_age_out() {
    let agent = Agent::start(AgentOpts {
        extra: vec!["--keep-releases".into(), "2".into()],
        ..AgentOpts::default()
    });
    let remote_root = tempfile::tempdir().expect("temp dir");
    let repo: PathBuf = remote_root.path().join("says-buildpack");
    std::fs::create_dir(&repo).expect("mkdir repo");
    git(&repo, &["init", "--quiet"]);
    let c1 = commit_pack(&repo, "one");
    let spec = format!("file://{}#main", repo.display());
    agent.ok(&["apps:create", "gp"]);
    agent.ok(&["buildpacks:set", &spec, "-a", "gp"]);
    let src = app_dir(&[("Procfile", "web: exec sleep 100000\n")]);
    let deploy = |n: u32| {
        std::fs::write(src.path().join("CHANGES"), format!("{n}\n")).expect("write");
        agent.deploy("gp", src.path());
    };
    deploy(1);
    let c2 = commit_pack(&repo, "two");
    deploy(2);
    let cache = agent.data_dir().join("buildpacks-git");
    let url_dir = std::fs::read_dir(&cache)
        .expect("read cache")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("url").is_file())
        .expect("the URL's dir");
    let trees = url_dir.join("trees");
    let has = |c: &str| trees.join(c).is_dir();
    assert!(has(&c1) && has(&c2), "v1 and v2 are both kept");

    let out = agent.roboku(&["buildpacks:set", "heroku/ruby", "-a", "gp"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("https://github.com/heroku/heroku-buildpack-ruby#<tag>"),
        "{err}"
    );

    agent.ok(&["buildpacks:set", "heroku/procfile", "-a", "gp"]);
    deploy(3);
    let log = build_log(&agent, "gp");
    assert!(
        log.contains("heroku/procfile: the built-in procfile buildpack"),
        "{log}"
    );
    let v3 = releases(&agent, "gp")
        .into_iter()
        .find(|r| r["version"] == 3)
        .expect("v3");
    assert_eq!(v3["buildpacks"][0]["source"], "heroku/procfile", "{v3}");
    // Kept now: v2 (pins c2) and v3; v1's checkout goes, c2's stays.
    roboku_tests::wait_for(
        "v1's checkout pruned",
        std::time::Duration::from_secs(20),
        || !has(&c1),
    );
    assert!(has(&c2), "v2 still pins c2");

    deploy(4);
    // Kept: v3 and v4, neither a git pack, and the app names none: the URL is emptied.
    roboku_tests::wait_for(
        "the URL's repository pruned",
        std::time::Duration::from_secs(20),
        || !url_dir.join("repo").exists() && !trees.exists(),
    );
    assert!(url_dir.join("url").is_file());
    let disk = agent.ok(&["disk"]);
    assert!(disk.contains("buildpack git cache"), "{disk}");
}
