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
