//! Apps are isolated from each other: a hostile dyno of one app (a real dyno, running the
//! attacks a person would try) cannot read another app's config through its dyno's
//! /proc/PID/environ, the store and its WAL, or its build's ENV_DIR; cannot signal its dynos;
//! cannot read or write its slug or build tree. Each app runs as its own uid, builds included,
//! kept across an agent restart; an app can opt into a named user; destroy still works.

use roboku_tests::{app_dir, wait_for, world_writable_dir, Agent, AgentOpts};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The attacker's dyno: runs `go.N` from the shared dir, in order, writing `r.N`.
const ATTACKER: &str = r#"n=1
while :; do
  if [ -f "$SIDE/go.$n" ]; then
    sh "$SIDE/go.$n" > "$SIDE/r.$n.tmp" 2>&1
    mv "$SIDE/r.$n.tmp" "$SIDE/r.$n"
    n=$((n + 1))
  fi
  sleep 0.05
done
"#;

struct Attacker {
    side: PathBuf,
    round: u32,
}

impl Attacker {
    /// Has the attacking dyno run `script`; its output.
    fn attack(&mut self, script: &str) -> String {
        self.round += 1;
        let n = self.round;
        let tmp = self.side.join(format!(".go.{n}"));
        std::fs::write(&tmp, script).expect("write attack");
        std::fs::rename(&tmp, self.side.join(format!("go.{n}"))).expect("publish attack");
        let result = self.side.join(format!("r.{n}"));
        wait_for(
            &format!("attack round {n} to run"),
            Duration::from_secs(20),
            || result.exists(),
        );
        std::fs::read_to_string(&result).expect("read attack result")
    }
}

/// `(uid, gid, state)` of a process, from /proc.
fn proc_ids(pid: i64) -> (u32, u32, char) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| -> u32 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    let state = status
        .lines()
        .find_map(|l| l.strip_prefix("State:"))
        .and_then(|s| s.trim().chars().next())
        .expect("state");
    (field("Uid:"), field("Gid:"), state)
}

fn app_uid(agent: &Agent, app: &str) -> u64 {
    agent.json(&["apps:info", "-a", app])["uid"]
        .as_u64()
        .unwrap_or_else(|| panic!("apps:info of {app} shows its uid"))
}

fn chmod_exec(path: &Path) {
    let ok = Command::new("chmod")
        .arg("755")
        .arg(path)
        .status()
        .expect("chmod");
    assert!(ok.success());
}

#[test]
fn a_hostile_dyno_cannot_reach_another_apps_config_dynos_slug_or_build() {
    let mut agent = Agent::start(AgentOpts {
        on_exit: "leave",
        ..AgentOpts::default()
    });
    let data = agent.data_dir().to_path_buf();
    let secret = format!("victim-secret-{}", std::process::id());
    let side = world_writable_dir();

    // The victim: a running dyno with a secret config var.
    let victim_src = app_dir(&[("Procfile", "web: exec sleep 100000\n")]);
    let release = agent.create_and_deploy("victim", victim_src.path());
    agent.ok(&["config:set", &format!("SECRET={secret}"), "-a", "victim"]);
    let vpid = agent.wait_up("victim", "web.1", None, Duration::from_secs(20));
    let vslug = data
        .join("slugs")
        .join(release["slug"].as_str().expect("slug sha"));

    // The attacker, another app on the same robot.
    let evil_src = app_dir(&[
        ("Procfile", "web: exec sh attack.sh\n"),
        ("attack.sh", ATTACKER),
    ]);
    agent.ok(&["apps:create", "evil"]);
    agent.ok(&[
        "config:set",
        &format!("SIDE={}", side.path().display()),
        "-a",
        "evil",
    ]);
    agent.deploy("evil", evil_src.path());
    let epid = agent.wait_up("evil", "web.1", None, Duration::from_secs(20));
    let mut evil = Attacker {
        side: side.path().to_path_buf(),
        round: 0,
    };

    // Each app has its own unprivileged uid/gid from the DynamicUser range.
    let (vuid, vgid, _) = proc_ids(vpid);
    let (euid, egid, _) = proc_ids(epid);
    assert_ne!(vuid, euid, "apps share a uid");
    assert_ne!(vgid, egid, "apps share a gid");
    for id in [vuid, euid, vgid, egid] {
        assert!(
            (61184..=65519).contains(&id),
            "uid/gid {id} outside 61184-65519"
        );
    }
    assert_eq!(app_uid(&agent, "victim"), u64::from(vuid));

    let data_s = data.display();
    let out = evil.attack(&format!(
        r#"cat /proc/{vpid}/environ && echo ENVIRON-READ || echo ENVIRON-DENIED
for f in roboku.db roboku.db-wal roboku.db-shm; do
  [ -e "{data_s}/$f" ] || echo "MISSING $f"
  cat "{data_s}/$f" > /dev/null && echo "DB-READ $f" || echo "DB-DENIED $f"
done
grep -rsl "{secret}" "{data_s}" && echo SECRET-FOUND || echo SECRET-NOT-FOUND
kill -STOP {vpid} && echo KILL-SENT || echo KILL-DENIED
kill -TERM {vpid} && echo TERM-SENT || echo TERM-DENIED
touch "{slug}/evil" && echo SLUG-WRITTEN || echo SLUG-DENIED
cat "{slug}/Procfile" && echo SLUG-READ || echo SLUG-UNREADABLE
ls "{data_s}/slugs" && echo SLUGS-LISTED || echo SLUGS-UNLISTABLE
cat "{data_s}"/logs/victim/* && echo LOGS-READ || echo LOGS-DENIED
"#,
        slug = vslug.display(),
    ));
    for want in [
        "ENVIRON-DENIED",
        "DB-DENIED roboku.db\n",
        "DB-DENIED roboku.db-wal",
        "DB-DENIED roboku.db-shm",
        "SECRET-NOT-FOUND",
        "KILL-DENIED",
        "TERM-DENIED",
        "SLUG-DENIED",
        "SLUG-UNREADABLE",
        "SLUGS-UNLISTABLE",
        "LOGS-DENIED",
    ] {
        assert!(out.contains(want), "expected {want}:\n{out}");
    }
    assert!(!out.contains(&secret), "the secret leaked:\n{out}");
    assert!(!out.contains("MISSING"), "the store files exist:\n{out}");
    assert_eq!(proc_ids(vpid).2, 'S', "the victim is not stopped");
    assert_eq!(agent.up_pid("victim", "web.1"), Some(vpid));

    // The victim builds (a buildpack that waits): its ENV_DIR and tree are out of reach.
    let s = side.path().display();
    let pack = app_dir(&[
        ("bin/detect", "#!/bin/sh\necho waiter\n"),
        (
            "bin/compile",
            &format!(
                "#!/bin/sh\nid -u > {s}/build-uid.tmp && mv {s}/build-uid.tmp {s}/build-uid\n\
                 echo \"$3\" > {s}/env-dir\necho \"$1\" > {s}/build-dir.tmp && mv {s}/build-dir.tmp {s}/build-dir\n\
                 while [ ! -f {s}/release-build ]; do sleep 0.05; done\n"
            ),
        ),
        ("bin/release", "#!/bin/sh\necho '--- {}'\n"),
    ]);
    for script in ["detect", "compile", "release"] {
        chmod_exec(&pack.path().join("bin").join(script));
    }
    agent.ok(&[
        "buildpacks:set",
        pack.path().to_str().expect("utf-8"),
        "-a",
        "victim",
    ]);
    std::fs::write(victim_src.path().join("CHANGES"), "v2\n").expect("write");
    let mut deploy = Command::new(roboku_tests::bins::bin("roboku"))
        .args([
            "deploy",
            victim_src.path().to_str().expect("utf-8"),
            "-a",
            "victim",
        ])
        .env("ROBOKU_SOCKET", agent.socket())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start deploy");
    let build_dir_file = side.path().join("build-dir");
    wait_for("the victim's build", Duration::from_secs(30), || {
        build_dir_file.exists()
    });
    let env_dir = std::fs::read_to_string(side.path().join("env-dir")).expect("env-dir");
    let build_dir = std::fs::read_to_string(&build_dir_file).expect("build-dir");
    let (env_dir, build_dir) = (env_dir.trim(), build_dir.trim());
    assert_eq!(
        std::fs::read_to_string(Path::new(env_dir).join("SECRET")).expect("ENV_DIR/SECRET"),
        secret,
        "the build itself gets the secret"
    );
    let build_uid = std::fs::read_to_string(side.path().join("build-uid")).expect("build uid");
    assert_eq!(
        build_uid.trim(),
        vuid.to_string(),
        "builds run as the app's uid"
    );
    let out = evil.attack(&format!(
        r#"cat "{env_dir}/SECRET" && echo ENV-READ || echo ENV-DENIED
ls "{env_dir}" && echo ENV-LISTED || echo ENV-UNLISTABLE
touch "{build_dir}/evil" && echo TREE-WRITTEN || echo TREE-DENIED
echo 'web: exec evil' > "{build_dir}/Procfile" && echo PROCFILE-WRITTEN || echo PROCFILE-DENIED
cat "{build_dir}/Procfile" && echo TREE-READ || echo TREE-UNREADABLE
ls "{data_s}/tmp" && echo TMP-LISTED || echo TMP-UNLISTABLE
"#
    ));
    for want in [
        "ENV-DENIED",
        "ENV-UNLISTABLE",
        "TREE-DENIED",
        "PROCFILE-DENIED",
        "TREE-UNREADABLE",
        "TMP-UNLISTABLE",
    ] {
        assert!(out.contains(want), "expected {want}:\n{out}");
    }
    assert!(!out.contains(&secret), "the secret leaked:\n{out}");
    std::fs::write(side.path().join("release-build"), "").expect("release the build");
    let status = deploy.wait().expect("deploy");
    assert!(status.success(), "the victim's deploy");
    let releases = agent.json(&["releases", "-a", "victim"]);
    let new_slug = releases
        .as_array()
        .and_then(|r| r.iter().max_by_key(|r| r["version"].as_u64()))
        .and_then(|r| r["slug"].as_str())
        .map(|s| data.join("slugs").join(s))
        .expect("the new release's slug");
    assert!(
        !new_slug.join("evil").exists(),
        "the attacker wrote into the slug"
    );
    let procfile = std::fs::read_to_string(new_slug.join("Procfile")).expect("Procfile");
    assert!(!procfile.contains("evil"), "{procfile}");

    // Restarting the agent re-adopts both, and the uids are the recorded ones.
    let vpid = agent.wait_up("victim", "web.1", None, Duration::from_secs(20));
    agent.restart("leave");
    assert_eq!(agent.up_pid("victim", "web.1"), Some(vpid), "re-adopted");
    assert_eq!(app_uid(&agent, "victim"), u64::from(vuid));
    agent.ok(&["ps:restart", "web", "-a", "victim"]);
    let vpid2 = agent.wait_up("victim", "web.1", Some(vpid), Duration::from_secs(20));
    assert_eq!(
        proc_ids(vpid2).0,
        vuid,
        "a restarted dyno keeps the app's uid"
    );

    // An app may opt into a named user.
    agent.ok(&["apps:update", "--user", "nobody", "-a", "evil"]);
    agent.ok(&["ps:restart", "web", "-a", "evil"]);
    let epid2 = agent.wait_up("evil", "web.1", Some(epid), Duration::from_secs(20));
    assert_eq!(proc_ids(epid2).0, 65534, "runs as nobody when asked");

    // Destroy still stops the dynos and takes the app's build cache with it.
    let cache = data.join("cache").join("victim");
    assert!(cache.is_dir(), "the victim's build made its cache");
    agent.ok(&["apps:destroy", "victim", "--confirm", "victim"]);
    wait_for(
        "the victim's dyno to be gone",
        Duration::from_secs(20),
        || !roboku_tests::alive(vpid2),
    );
    wait_for(
        "the victim's cache to be gone",
        Duration::from_secs(10),
        || !cache.exists(),
    );
}
