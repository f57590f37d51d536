//! The CLI as people use it: slugs built in CI for another CPU, `--json` everywhere, errors in
//! words.

use roboku_tests::{app_dir, Agent, AgentOpts};
use std::process::Command;

fn roboku(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(roboku_tests::bins::bin("roboku"))
        .args(args)
        .output()
        .expect("run roboku");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// CI (this machine's CPU) builds an aarch64 robot's slug: fine without native code, recorded
/// in the slug, deployable; with a native binary for the build host, refused by name.
#[test]
fn slug_build_for_another_cpu() {
    let other = if std::env::consts::ARCH == "aarch64" {
        "x86_64"
    } else {
        "aarch64"
    };
    let src = app_dir(&[
        ("Procfile", "web: exec sleep 1000\n"),
        ("run.sh", "echo hi\n"),
    ]);
    let out_dir = tempfile::tempdir().expect("tempdir");
    let slug = out_dir.path().join("nav.slug");
    let (src_s, slug_s) = (
        src.path().to_str().expect("utf-8"),
        slug.to_str().expect("utf-8"),
    );
    let (ok, out, err) = roboku(&["--json", "slug:build", src_s, "-o", slug_s, "--arch", other]);
    assert!(ok, "{err}");
    let info: serde_json::Value = serde_json::from_str(&out).expect("slug:build --json is JSON");
    assert_eq!(info["arch"], other, "{info}");

    let agent = Agent::start(AgentOpts::default());
    agent.ok(&["apps:create", "nav"]);
    let r = agent.json(&["deploy", "--slug", slug_s, "-a", "nav"]);
    assert_eq!(
        r["status"], "succeeded",
        "no native code: runs anywhere: {r}"
    );

    std::fs::create_dir(src.path().join("bin")).expect("mkdir");
    std::fs::copy("/bin/true", src.path().join("bin/tool")).expect("copy an ELF binary");
    let native = out_dir.path().join("native.slug");
    let native_s = native.to_str().expect("utf-8");
    let (ok, _, err) = roboku(&["slug:build", src_s, "-o", native_s, "--arch", other]);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "bin/tool is built for {} but the slug is for {other}",
            std::env::consts::ARCH
        )),
        "{err}"
    );
    assert!(!native.exists(), "no slug file is left behind");
}
