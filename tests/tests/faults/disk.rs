//! A full data disk: robokud starts on it (re-adopting its dynos) and keeps supervising.

use roboku_tests::{app_dir, kill, Agent, AgentOpts};
use std::io::Write;
use std::time::Duration;

/// Fills the filesystem holding `dir` until a write fails with ENOSPC.
fn fill(dir: &std::path::Path) {
    let path = dir.join("fill");
    let mut f = std::fs::File::create(&path).expect("create fill file");
    let chunk = vec![0u8; 1 << 20];
    let err = loop {
        if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_all()) {
            break e;
        }
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    let stat = nix_statvfs(dir);
    assert!(stat < 64 * 1024, "{} bytes still free", stat);
}

fn nix_statvfs(dir: &std::path::Path) -> u64 {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is a valid C string.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut st), 0);
        st.f_bavail * st.f_frsize
    }
}

#[test]
fn robokud_starts_and_supervises_on_a_full_data_disk() {
    let mut agent = Agent::start(AgentOpts {
        on_exit: "leave",
        tmpfs: Some("100M"),
        ..AgentOpts::default()
    });
    let app = app_dir(&[("Procfile", "web: exec sleep 1000\n")]);
    agent.create_and_deploy("demo", app.path());
    let pid = agent.wait_up("demo", "web.1", None, Duration::from_secs(10));
    agent.stop();
    fill(agent.data_dir());
    agent.respawn();
    assert_eq!(
        agent.up_pid("demo", "web.1"),
        Some(pid),
        "web.1 re-adopted on the full disk"
    );
    assert!(
        !agent.stderr_text().contains("built-in buildpacks"),
        "current buildpacks were rewritten: {}",
        agent.stderr_text()
    );
    assert!(kill(pid, libc::SIGKILL));
    agent.wait_up("demo", "web.1", Some(pid), Duration::from_secs(10));
}

#[test]
fn an_archive_that_unpacks_past_the_free_space_is_refused_while_extracting() {
    let agent = Agent::start(AgentOpts {
        tmpfs: Some("100M"),
        ..AgentOpts::default()
    });
    agent.ok(&["apps:create", "demo"]);
    // 300 MB of zeros compress to well under 1 MB.
    let src = app_dir(&[("Procfile", "web: exec sleep 1000\n")]);
    let big = std::fs::File::create(src.path().join("zeros")).expect("create zeros");
    big.set_len(300 << 20).expect("size zeros");
    let archive = src.path().join("../bomb.tar.gz");
    let ok = std::process::Command::new("tar")
        .arg("czf")
        .arg(&archive)
        .arg("-C")
        .arg(src.path())
        .args(["Procfile", "zeros"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "tar");
    std::fs::remove_file(src.path().join("zeros")).expect("remove zeros");
    let size = std::fs::metadata(&archive).expect("archive").len();
    assert!(size < 2 << 20, "the archive is {size} bytes");
    let before = nix_statvfs(agent.data_dir());
    let out = agent.roboku(&["deploy", archive.to_str().expect("utf-8"), "-a", "demo"]);
    let _ = std::fs::remove_file(&archive);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the bomb deployed");
    assert!(err.contains("unpacks to more than"), "{err}");
    roboku_tests::wait_for("tmp emptied", Duration::from_secs(10), || {
        std::fs::read_dir(agent.data_dir().join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    });
    let after = nix_statvfs(agent.data_dir());
    assert!(
        after + (4 << 20) >= before,
        "the failed deploy left {} bytes behind",
        before.saturating_sub(after)
    );
}

/// A `.tar.gz` app whose `blob` is `mib` MiB of incompressible bytes; `tag` makes it unique.
fn heavy_archive(mib: usize, tag: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let src = app_dir(&[("Procfile", "web: exec sleep 1000\n"), ("VERSION", tag)]);
    let mut x = 0x2545_f491_4f6c_dd1du64 ^ tag.len() as u64;
    let blob: Vec<u8> = (0..mib << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(src.path().join("blob"), blob).expect("blob");
    let out = tempfile::tempdir().expect("tempdir");
    let archive = out.path().join("heavy.tar.gz");
    let ok = std::process::Command::new("tar")
        .arg("czf")
        .arg(&archive)
        .arg("-C")
        .arg(src.path())
        .args(["Procfile", "VERSION", "blob"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "tar");
    (out, archive)
}

#[test]
fn a_deploy_that_would_cross_the_disk_reserve_is_refused_before_writing_and_works_once_space_is_back(
) {
    let agent = Agent::start(AgentOpts {
        tmpfs: Some("64M"),
        extra: vec!["--disk-reserve".into(), "16M".into()],
        ..AgentOpts::default()
    });
    let app = app_dir(&[("Procfile", "web: exec sleep 1000\n")]);
    agent.create_and_deploy("demo", app.path());
    let pid = agent.wait_up("demo", "web.1", None, Duration::from_secs(10));
    // Someone else's 24 MiB on the same filesystem: an 8 MiB archive (24 MiB with its
    // extraction and slug) no longer fits above the 16 MiB reserve.
    let filler = agent.data_dir().join("filler");
    std::fs::write(&filler, vec![1u8; 24 << 20]).expect("filler");
    let (_keep, archive) = heavy_archive(8, "two");
    let before = nix_statvfs(agent.data_dir());
    let out = agent.roboku(&["deploy", archive.to_str().expect("utf-8"), "-a", "demo"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "deployed across the reserve");
    for part in [
        "not enough disk",
        "needs about",
        "free",
        "16M reserved",
        "disk_reserve",
    ] {
        assert!(err.contains(part), "{part:?} missing: {err}");
    }
    // Refused before writing: no spool in tmp, the free space as it was.
    let after = nix_statvfs(agent.data_dir());
    assert!(
        after + (1 << 20) >= before,
        "{} bytes written",
        before - after
    );
    let spools = std::fs::read_dir(agent.data_dir().join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(spools, 0, "something was written to tmp");
    // The running release keeps running.
    assert_eq!(agent.up_pid("demo", "web.1"), Some(pid));
    let releases = agent.json(&["releases", "-a", "demo"]);
    assert_eq!(releases.as_array().map(Vec::len), Some(1), "{releases}");
    // A client that writes its whole body before it reads (as hyper's, in roboku, may): robokud
    // reads what is left of a refused upload, so the writes do not fail and the refusal arrives
    // (it used to close with the body unread: "broke off the upload" instead of why).
    let (wrote, answer) = upload_then_read(
        agent.socket(),
        "/v1/apps/demo/deploy/archive?name=raw.tar.gz",
        &std::fs::read(&archive).expect("read the archive"),
    );
    assert!(wrote, "the body could not be written: {answer}");
    assert!(answer.contains("not enough disk"), "{answer}");
    // Space back: the same deploy goes through.
    std::fs::remove_file(&filler).expect("remove filler");
    let out = agent.roboku(&["deploy", archive.to_str().expect("utf-8"), "-a", "demo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    agent.wait_up("demo", "web.1", Some(pid), Duration::from_secs(20));
    // `roboku disk` shows where the space went: the 8 MiB blob in demo's slug, v1's slug kept
    // for rollback, the reserve as configured.
    let d = agent.json(&["disk"]);
    assert_eq!(d["reserved"].as_u64(), Some(16 << 20), "{d}");
    let rows = d["rows"].as_array().expect("rows");
    let size = |what: &str| {
        rows.iter()
            .find(|r| r["what"] == what && r["app"] == "demo")
            .and_then(|r| r["bytes"].as_u64())
            .unwrap_or(0)
    };
    assert!(size("slug") >= 8 << 20, "{d}");
    assert!(size("rollback slugs") > 0, "{d}");
    let text = agent.ok(&["disk", "-a", "demo"]);
    assert!(
        text.contains("16M reserved") && text.contains("Slug GC would free"),
        "{text}"
    );
}

/// Bytes of `path`, 0 when it is not there.
fn size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The batch number of the newest line of `app` (the dyno prints `BATCH N` lines).
fn newest_batch(agent: &Agent, app: &str) -> u64 {
    agent
        .log_lines(&["-a", app, "-n", "1", "--dyno", "web.1"])
        .last()
        .and_then(|l| l["line"].as_str()?.split(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// A chatty dyno on a 64 MiB data disk with a 16 MiB reserve and no per-app log quota to
/// speak of (1 GiB): the global reaction alone must keep the disk from filling. Slug GC and
/// shedding run below twice the reserve, log lines stay in memory at the reserve, the dyno
/// keeps its pid, and once space is freed lines are written to disk again.
#[test]
fn disk_pressure_a_chatty_dyno_cannot_fill_the_disk_and_logs_flow_again_after() {
    let conf = tempfile::tempdir().expect("config dir");
    let conf_file = conf.path().join("robokud.toml");
    std::fs::write(&conf_file, "log_quota_bytes = 1073741824\n").expect("write config");
    let agent = Agent::start(AgentOpts {
        tmpfs: Some("64M"),
        extra: vec![
            "--config".into(),
            conf_file.display().to_string(),
            "--disk-reserve".into(),
            "16M".into(),
        ],
        ..AgentOpts::default()
    });
    let reserve = 16u64 << 20;
    // About 2 MB of stored lines a second: a second between looks lets little past the mark.
    let app = app_dir(&[(
        "Procfile",
        "web: i=0; while :; do i=$((i+1)); seq -f \"$i %g\" 1 2000; sleep 0.1; done\n",
    )]);
    agent.create_and_deploy("chatty", app.path());
    let pid = agent.wait_up("chatty", "web.1", None, Duration::from_secs(20));
    // Most of the disk taken by someone else: low at once, then the dyno's logs do the rest.
    let filler = agent.data_dir().join("filler");
    let f = std::fs::File::create(&filler).expect("create filler");
    f.set_len(0).unwrap();
    let mut w = std::io::BufWriter::new(f);
    let mb = vec![1u8; 1 << 20];
    for _ in 0..28 {
        w.write_all(&mb).expect("write filler");
    }
    w.flush().expect("flush filler");
    drop(w);
    wait_for_text(&agent, "log lines are kept in memory only", 120);
    assert!(
        agent
            .stderr_text()
            .contains("removed the rotated log segments"),
        "shedding ran first: {}",
        agent.stderr_text()
    );
    // Lines keep coming (in memory), the stored log does not grow, the disk keeps its reserve.
    let app_log = agent.data_dir().join("logs/chatty/app.log");
    let stored = size(&app_log);
    let b0 = newest_batch(&agent, "chatty");
    roboku_tests::wait::wait_for("20 more batches of lines", Duration::from_secs(60), || {
        newest_batch(&agent, "chatty") >= b0 + 20
    });
    assert_eq!(size(&app_log), stored, "nothing stored at the reserve");
    let free = nix_statvfs(agent.data_dir());
    assert!(
        free > reserve / 2,
        "{free} bytes free: the chatty dyno ate into the reserve"
    );
    assert_eq!(
        agent.up_pid("chatty", "web.1"),
        Some(pid),
        "supervision went on"
    );
    // Space comes back: lines are written to disk again, by themselves.
    std::fs::remove_file(&filler).expect("remove filler");
    wait_for_text(&agent, "log lines are written to disk again", 60);
    roboku_tests::wait::wait_for(
        "the stored log grows again",
        Duration::from_secs(60),
        || size(&app_log) > stored,
    );
    assert_eq!(
        agent.up_pid("chatty", "web.1"),
        Some(pid),
        "same dyno throughout"
    );
}

fn wait_for_text(agent: &Agent, text: &str, secs: u64) {
    roboku_tests::wait::wait_for(text, Duration::from_secs(secs), || {
        agent.stderr_text().contains(text)
    });
}

/// POSTs `body` with its Content-Length, all of it, and only then reads the answer. Whether
/// every write went through, and the answer.
fn upload_then_read(socket: &std::path::Path, path: &str, body: &[u8]) -> (bool, String) {
    use std::io::Read;
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect API socket");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: robokud\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let wrote = s.write_all(head.as_bytes()).is_ok() && s.write_all(body).is_ok();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    (wrote, String::from_utf8_lossy(&answer).to_string())
}

/// Sends `mib` MiB of incompressible bytes as a chunked body (no Content-Length) to `path` over
/// the API socket, stopping early if robokud stops reading; returns the answer and what was sent.
fn chunked_upload(socket: &std::path::Path, path: &str, mib: usize) -> (String, u64) {
    use std::io::Read;
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect API socket");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: robokud\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .expect("request head");
    // Read the answer while sending, as a client should: robokud answers and closes once the
    // stream would cross the reserve, and a reset for the unread rest can arrive before a read
    // started only after the writes failed.
    let mut reader = s.try_clone().expect("clone the socket");
    let answer = std::thread::spawn(move || {
        let mut answer = Vec::new();
        if let Err(e) = reader.read_to_end(&mut answer) {
            answer.extend_from_slice(format!("\n(reading the answer failed: {e})").as_bytes());
        }
        answer
    });
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunk = vec![0u8; 1 << 20];
    let mut sent = 0u64;
    for _ in 0..mib {
        for b in chunk.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        let ok = write!(s, "{:x}\r\n", chunk.len()).is_ok()
            && s.write_all(&chunk).is_ok()
            && s.write_all(b"\r\n").is_ok();
        if !ok {
            break;
        }
        sent += chunk.len() as u64;
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let _ = s.shutdown(std::net::Shutdown::Write);
    let answer = answer.join().expect("the reader thread");
    (String::from_utf8_lossy(&answer).to_string(), sent)
}

#[test]
fn a_chunked_upload_without_content_length_is_refused_at_the_reserve_and_cleaned_up() {
    let agent = Agent::start(AgentOpts {
        tmpfs: Some("64M"),
        extra: vec!["--disk-reserve".into(), "16M".into()],
        ..AgentOpts::default()
    });
    let app = app_dir(&[("Procfile", "web: exec sleep 1000\n")]);
    agent.create_and_deploy("demo", app.path());
    let pid = agent.wait_up("demo", "web.1", None, Duration::from_secs(10));
    let before = nix_statvfs(agent.data_dir());
    // 80 MiB on a 64 MiB filesystem: without a declared length nothing could be refused up
    // front; the stream is cut where it would cross the 16 MiB reserve.
    let (answer, sent) = chunked_upload(agent.socket(), "/v1/apps/demo/deploy/archive", 80);
    assert!(answer.starts_with("HTTP/1.1 409"), "{answer}");
    for part in [
        "not enough disk",
        "archive upload (refused after",
        "16M reserved",
        "disk_reserve",
    ] {
        assert!(answer.contains(part), "{part:?} missing: {answer}");
    }
    // robokud read the rest and dropped it (at most 256 MiB or 5 s), so the sender could finish
    // and read the refusal; none of it was written (the free space below).
    eprintln!("faults: the chunked upload sent {sent} bytes, refused at the reserve");
    // The partial file is gone and the space is back; the reserve was never crossed.
    let spools = std::fs::read_dir(agent.data_dir().join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(spools, 0, "a partial upload was left in tmp");
    let after = nix_statvfs(agent.data_dir());
    assert!(after + (1 << 20) >= before, "{} bytes kept", before - after);
    // The running release keeps running, and the agent answers.
    assert_eq!(agent.up_pid("demo", "web.1"), Some(pid));
    let releases = agent.json(&["releases", "-a", "demo"]);
    assert_eq!(releases.as_array().map(Vec::len), Some(1), "{releases}");
    // The same goes for bundles streamed without a length.
    let (answer, _) = chunked_upload(agent.socket(), "/v1/bundles?name=big.rkb", 80);
    assert!(
        answer.contains("not enough disk") && answer.contains("bundle upload"),
        "{answer}"
    );
    let after = nix_statvfs(agent.data_dir());
    assert!(after + (1 << 20) >= before, "{} bytes kept", before - after);
}
