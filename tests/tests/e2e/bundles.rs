//! Signed offline bundles on a robot with no broker configured (no network): a bundle made with
//! `roboku bundle create` applies with `roboku bundle apply` and the app serves; tampered,
//! expired, replayed, downgraded, foreign, untrusted, truncated and malformed bundles are each
//! refused with their reason while the running release keeps serving and nothing changes; a
//! rollback signed as one goes back; the watched directory takes good bundles in and sets bad
//! ones (and links) aside with a reason file.

use roboku_tests::{app_dir, http, now_ms, wait_for, Agent, AgentOpts};
use roboku_wire::bundle::{BundleApp, BundleWriter, Manifest, FORMAT};
use roboku_wire::fleet::seal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SERVER: &str = r#"import http.server, os
code = open("version.txt").read().strip() + " " + os.environ.get("GREETING", "-")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (code + "\n").encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// A workstation: the fleet key, another key nobody trusts, slugs and a .env.
struct Desk {
    dir: tempfile::TempDir,
}

impl Desk {
    fn new() -> Desk {
        let dir = tempfile::Builder::new()
            .prefix("roboku-e2e-desk-")
            .tempdir()
            .expect("desk dir");
        let desk = Desk { dir };
        for k in ["fleet.key", "other.key"] {
            let out = roboku(&["fleet", "keygen", "-o", desk.path(k).to_str().unwrap()]);
            assert!(out.status.success(), "keygen: {out:?}");
        }
        for code in ["one", "two"] {
            let app = app_dir(&[
                ("Procfile", "web: exec python3 server.py\n"),
                ("server.py", SERVER),
                ("version.txt", code),
            ]);
            let ok = Command::new("tar")
                .arg("czf")
                .arg(desk.path(&format!("{code}.tar.gz")))
                .arg("-C")
                .arg(app.path())
                .arg(".")
                .status()
                .expect("tar")
                .success();
            assert!(ok, "tar the {code} app");
        }
        std::fs::write(desk.path("prod.env"), "GREETING=hi\n").expect("write prod.env");
        desk
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// `roboku bundle create -a nav ARGS -o NAME` (the fleet key unless ARGS give one).
    fn create(&self, name: &str, args: &[&str]) -> PathBuf {
        let out = self.path(name);
        let mut all = vec!["bundle", "create", "-a", "nav"];
        all.extend_from_slice(args);
        let key = self.s("fleet.key");
        if !args.contains(&"--key") && !args.contains(&"--unsigned") {
            all.extend(["--key", &key]);
        }
        let o = out.display().to_string();
        all.extend(["-o", &o]);
        let r = roboku(&all);
        assert!(r.status.success(), "bundle create {args:?}: {r:?}");
        out
    }

    /// A bundle written here directly (for what the CLI refuses to make), signed with `key`.
    fn craft(&self, name: &str, m: &Manifest, key: &str) -> PathBuf {
        let secret =
            seal::parse_secret(&std::fs::read_to_string(self.path(key)).unwrap()).expect("key");
        let sealed = seal::seal(&serde_json::to_vec(m).unwrap(), &secret);
        let w = BundleWriter::new(Vec::new(), &sealed).unwrap();
        let out = self.path(name);
        std::fs::write(&out, w.finish().unwrap()).unwrap();
        out
    }
}

fn roboku(args: &[&str]) -> std::process::Output {
    Command::new(roboku_tests::bins::bin("roboku"))
        .args(args)
        .env_remove("ROBOKU_SOCKET")
        .env_remove("ROBOKU_FLEET_KEY")
        .output()
        .expect("run roboku")
}

fn robot(desk: &Desk) -> Agent {
    Agent::start(AgentOpts {
        extra: vec![
            "--device-id".into(),
            "r1".into(),
            "--group".into(),
            "field".into(),
            "--trusted-key".into(),
            desk.s("fleet.key.pub"),
            "--bundle-scan-ms".into(),
            "200".into(),
        ],
        ..AgentOpts::default()
    })
}

fn answer(agent: &Agent) -> String {
    let Some(port) = agent.dyno("nav", "web.1").and_then(|d| d["port"].as_u64()) else {
        return String::new();
    };
    http::get(port as u16, "/")
        .map(|r| r.body.trim().to_string())
        .unwrap_or_default()
}

/// What must not change when a bundle is refused: releases, config, formation.
fn state(agent: &Agent) -> String {
    let releases = agent.json(&["releases", "-a", "nav"]);
    let config = agent.json(&["config", "-a", "nav"]);
    let ps: Vec<String> = agent
        .ps("nav")
        .iter()
        .map(|d| format!("{} {}", d["name"], d["pid"]))
        .collect();
    format!("{releases}\n{config}\n{ps:?}")
}

/// `bundle apply FILE` must fail with `reason` in its message, and change nothing.
fn refused(agent: &Agent, file: &Path, reason: &str) {
    let before = state(agent);
    let out = agent.roboku(&["bundle", "apply", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{} is refused: {err}",
        file.display()
    );
    assert!(
        err.contains(reason),
        "{} refused for {reason:?}: {err}",
        file.display()
    );
    assert_eq!(state(agent), before, "{} changed nothing", file.display());
    assert_eq!(
        answer(agent),
        "one hi",
        "v1 still serves after {}",
        file.display()
    );
}

/// A copy of `file` with the byte at `at(bytes)` changed.
fn flipped(file: &Path, name: &str, at: impl Fn(&[u8]) -> usize) -> PathBuf {
    let mut bytes = std::fs::read(file).unwrap();
    let i = at(&bytes);
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let out = file.with_file_name(name);
    std::fs::write(&out, bytes).unwrap();
    out
}

/// Drops `src` into `inbox` as `name` the way a careful copier does: under a hidden name first
/// (robokud ignores those), then renamed, so no scan ever sees half a file.
fn drop_in(src: &Path, inbox: &Path, name: &str) {
    let hidden = inbox.join(format!(".{name}"));
    std::fs::copy(src, &hidden).unwrap();
    std::fs::rename(&hidden, inbox.join(name)).unwrap();
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in bundle")
}

#[test]
fn a_bundle_applies_offline_and_every_bad_one_is_refused_with_its_reason() {
    let desk = Desk::new();
    let agent = robot(&desk);
    let v1 = desk.create(
        "nav-v10.rkb",
        &[
            "--slug",
            &desk.s("one.tar.gz"),
            "--config-from",
            &desk.s("prod.env"),
            "--scale",
            "web=1",
            "--device",
            "r1",
            "--version",
            "10",
        ],
    );
    // Checked by the robot without applying anything.
    let check = agent.ok(&["bundle", "inspect", v1.to_str().unwrap()]);
    assert!(check.contains("verifies on this robot: yes"), "{check}");
    assert!(
        check.contains("version 10") && check.contains("GREETING"),
        "{check}"
    );
    assert!(
        agent.json(&["apps"]).as_array().unwrap().is_empty(),
        "inspect applied nothing"
    );

    let out = agent.ok(&["bundle", "apply", v1.to_str().unwrap()]);
    assert!(out.contains("bundle nav-v10.rkb applied: nav v"), "{out}");
    wait_for("nav v1 serves", Duration::from_secs(30), || {
        answer(&agent) == "one hi"
    });

    // The next good bundle, to be mangled.
    let v11 = desk.create(
        "nav-v11.rkb",
        &[
            "--slug",
            &desk.s("two.tar.gz"),
            "--group",
            "field",
            "--version",
            "11",
        ],
    );
    let inspect = agent.ok(&["bundle", "inspect", v11.to_str().unwrap()]);
    assert!(inspect.contains("verifies on this robot: yes"), "{inspect}");

    // Tampered: a byte of the slug, a byte of the signed manifest.
    let slug_byte = flipped(&v11, "slug-byte.rkb", |b| find(b, b"slugs/") + 512 + 10);
    refused(&agent, &slug_byte, "tampered bundle: member slugs/");
    let manifest_byte = flipped(&v11, "manifest-byte.rkb", |b| find(b, b"\"env\":\"") + 20);
    refused(&agent, &manifest_byte, "bad signature");
    // Untrusted key; foreign device and group.
    let other = desk.create(
        "other-key.rkb",
        &[
            "--scale",
            "web=2",
            "--device",
            "r1",
            "--version",
            "11",
            "--key",
            &desk.s("other.key"),
        ],
    );
    refused(&agent, &other, "signed with unknown key");
    let r2 = desk.create(
        "r2.rkb",
        &["--scale", "web=2", "--device", "r2", "--version", "11"],
    );
    refused(
        &agent,
        &r2,
        "signed for \"d/r2\", and this device is \"r1\" in groups [field]",
    );
    let lab = desk.create(
        "lab.rkb",
        &["--scale", "web=2", "--group", "lab", "--version", "11"],
    );
    refused(&agent, &lab, "signed for \"g/lab\"");
    // Replayed: the same file again, the same version in a new bundle; downgraded.
    refused(&agent, &v1, "duplicate");
    let same = desk.create(
        "same.rkb",
        &["--scale", "web=2", "--device", "r1", "--version", "10"],
    );
    refused(&agent, &same, "replayed: version 10 of app \"nav\"");
    let older = desk.create(
        "older.rkb",
        &["--scale", "web=2", "--device", "r1", "--version", "9"],
    );
    refused(&agent, &older, "downgrade: version 9");
    // Expired (made by hand: the CLI does not sign bundles that are dead on arrival).
    let day = 24 * 3600 * 1000;
    let expired = Manifest {
        bundle: FORMAT,
        id: "expired-1".into(),
        ts: now_ms() - 2 * day,
        expires: now_ms() - day,
        to: "d/r1".into(),
        apps: [(
            "nav".to_string(),
            BundleApp {
                version: 50,
                formation: [("web".to_string(), 2)].into(),
                ..BundleApp::default()
            },
        )]
        .into(),
    };
    refused(
        &agent,
        &desk.craft("expired.rkb", &expired, "fleet.key"),
        "expired at",
    );
    // Truncated; not a bundle at all; a tar with a link in it.
    let bytes = std::fs::read(&v11).unwrap();
    let cut = desk.path("cut.rkb");
    std::fs::write(&cut, &bytes[..bytes.len() - 1500]).unwrap();
    refused(&agent, &cut, "truncated bundle");
    let junk = desk.path("junk.rkb");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    refused(&agent, &junk, "not a roboku bundle");
    let linky = desk.path("linky.rkb");
    std::os::unix::fs::symlink("/etc/shadow", desk.path("roboku-bundle.json")).unwrap();
    let ok = Command::new("tar")
        .args(["--format=ustar", "-cf"])
        .arg(&linky)
        .arg("-C")
        .arg(desk.dir.path())
        .arg("roboku-bundle.json")
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar with a symlink");
    refused(&agent, &linky, "symbolic link");

    // The real v11 still applies (nothing above used up its version), then a rollback signed
    // as one goes back to v10's slug although its version is older.
    let out = agent.ok(&["bundle", "apply", v11.to_str().unwrap()]);
    assert!(out.contains("applied"), "{out}");
    wait_for("nav v11 serves", Duration::from_secs(30), || {
        answer(&agent) == "two hi"
    });
    let back = desk.create(
        "rollback.rkb",
        &[
            "--slug",
            &desk.s("one.tar.gz"),
            "--device",
            "r1",
            "--version",
            "10",
            "--rollback",
        ],
    );
    let out = agent.ok(&["bundle", "apply", back.to_str().unwrap()]);
    assert!(out.contains("applied"), "{out}");
    wait_for("nav back on one", Duration::from_secs(30), || {
        answer(&agent) == "one hi"
    });
    // And v11 cannot come back by replaying its old bundle.
    refused(&agent, &v11, "duplicate");
}

#[test]
fn the_watched_directory_takes_good_bundles_and_sets_bad_ones_aside() {
    let desk = Desk::new();
    let agent = robot(&desk);
    let inbox = agent.data_dir().join("bundles/inbox");
    let done = agent.data_dir().join("bundles/done");
    let rejected = agent.data_dir().join("bundles/rejected");
    let v1 = desk.create(
        "nav-v1.rkb",
        &[
            "--slug",
            &desk.s("one.tar.gz"),
            "--config-from",
            &desk.s("prod.env"),
            "--device",
            "r1",
            "--version",
            "1",
        ],
    );
    drop_in(&v1, &inbox, "nav-v1.rkb");
    wait_for(
        "nav-v1.rkb settled in done/",
        Duration::from_secs(60),
        || done.join("nav-v1.rkb.reason").exists(),
    );
    assert!(!inbox.join("nav-v1.rkb").exists(), "taken out of the inbox");
    wait_for("nav serves", Duration::from_secs(30), || {
        answer(&agent) == "one hi"
    });
    let before = state(&agent);

    // A tampered one, a replay, a link to a secret and a FIFO: each set aside with a reason.
    let v2 = desk.create(
        "nav-v2.rkb",
        &[
            "--slug",
            &desk.s("two.tar.gz"),
            "--device",
            "r1",
            "--version",
            "2",
        ],
    );
    let bad = flipped(&v2, "bad.rkb", |b| find(b, b"slugs/") + 512 + 10);
    drop_in(&bad, &inbox, "bad.rkb");
    drop_in(&v1, &inbox, "again.rkb");
    std::os::unix::fs::symlink("/etc/shadow", inbox.join("secret.rkb")).unwrap();
    let fifo = inbox.join("fifo.rkb");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for (name, why) in [
        ("bad.rkb", "tampered bundle"),
        ("again.rkb", "duplicate"),
        ("secret.rkb", "symbolic link"),
        ("fifo.rkb", "not a regular file"),
    ] {
        let reason = rejected.join(format!("{name}.reason"));
        wait_for(&format!("{name} rejected"), Duration::from_secs(30), || {
            reason.exists()
        });
        let text = std::fs::read_to_string(&reason).unwrap();
        assert!(
            text.starts_with(why) || text.contains(why),
            "{name}: {text}"
        );
        assert!(!inbox.join(name).exists(), "{name} taken out of the inbox");
    }
    assert!(
        !rejected.join("secret.rkb").exists(),
        "nothing was copied through the link"
    );
    assert_eq!(state(&agent), before, "nothing changed");
    assert_eq!(answer(&agent), "one hi");

    // A good one for the group, made elsewhere and copied in.
    let scale = desk.create("scale.rkb", &["--scale", "web=2", "--group", "field"]);
    drop_in(&scale, &inbox, "scale.rkb");
    wait_for(
        "web.2 up from the inbox bundle",
        Duration::from_secs(30),
        || agent.up_pid("nav", "web.2").is_some(),
    );
    wait_for("scale.rkb in done/", Duration::from_secs(10), || {
        done.join("scale.rkb.reason").exists()
    });
}

/// Runs `cmd` as `nobody` (uid/gid 65534).
fn as_nobody(cmd: &mut Command) -> bool {
    use std::os::unix::process::CommandExt;
    cmd.uid(65534)
        .gid(65534)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_hostile_user_dropping_files_in_a_shared_inbox_gets_nothing_unsigned() {
    use std::os::unix::fs::PermissionsExt;
    let desk = Desk::new();
    // A world-writable drop directory, as a USB stick or a shared folder may be.
    let usb = tempfile::Builder::new()
        .prefix("roboku-e2e-usb-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(usb.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let inbox = usb.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    std::fs::set_permissions(&inbox, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let agent = Agent::start(AgentOpts {
        extra: vec![
            "--device-id".into(),
            "r1".into(),
            "--trusted-key".into(),
            desk.s("fleet.key.pub"),
            "--bundle-scan-ms".into(),
            "200".into(),
            "--bundle-inbox".into(),
            inbox.display().to_string(),
        ],
        ..AgentOpts::default()
    });
    let rejected = agent.data_dir().join("bundles/rejected");
    // The dropper's own key, an unsigned bundle, and links to robokud's own state.
    let mine = desk.path("mine.key");
    assert!(roboku(&["fleet", "keygen", "-o", mine.to_str().unwrap()])
        .status
        .success());
    let forged = desk.create(
        "forged.rkb",
        &[
            "--scale",
            "web=1",
            "--device",
            "r1",
            "--key",
            mine.to_str().unwrap(),
        ],
    );
    let unsigned = desk.create(
        "unsigned.rkb",
        &["--scale", "web=1", "--device", "r1", "--unsigned"],
    );
    for f in [&forged, &unsigned] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(desk.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let fleet_json = agent.data_dir().join("fleet.json");
    assert!(as_nobody(
        Command::new("cp")
            .arg(&forged)
            .arg(inbox.join("forged.rkb"))
    ));
    assert!(as_nobody(
        Command::new("cp")
            .arg(&unsigned)
            .arg(inbox.join("unsigned.rkb"))
    ));
    assert!(as_nobody(
        Command::new("ln")
            .arg("-s")
            .arg(&fleet_json)
            .arg(inbox.join("state.rkb"))
    ));
    for (name, why) in [
        ("forged.rkb", "signed with unknown key"),
        ("unsigned.rkb", "unsigned payload refused"),
        ("state.rkb", "symbolic link"),
    ] {
        let reason = rejected.join(format!("{name}.reason"));
        wait_for(&format!("{name} rejected"), Duration::from_secs(30), || {
            reason.exists()
        });
        let text = std::fs::read_to_string(&reason).unwrap();
        assert!(text.contains(why), "{name}: {text}");
        let mode = std::fs::metadata(&reason).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}'s reason is root's alone");
        assert!(
            !inbox.join(name).exists(),
            "{name} taken out of the drop directory"
        );
    }
    assert!(
        agent.json(&["apps"]).as_array().unwrap().is_empty(),
        "no app was made"
    );
    // The drop directory holds nothing robokud wrote.
    let left: Vec<_> = std::fs::read_dir(&inbox).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
