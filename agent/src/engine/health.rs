//! Health checks: which checks a process type declares (dokku's `app.json` `healthchecks`
//! format, pure parsing) and how one check is carried out against a running dyno (async, off the
//! engine; the engine only hears "healthy" or "unhealthy, because ...").
//!
//! ```json
//! { "healthchecks": { "web": [
//!     { "type": "startup", "path": "/health", "attempts": 5, "timeout": 5, "wait": 1 },
//!     { "type": "startup", "listening": true },
//!     { "type": "startup", "command": ["./bin/ready"] } ],
//!   "worker": [ { "type": "startup", "reported": true, "timeout": 60 } ] } }
//! ```
//! A process type without checks is healthy once its process has stayed up for `uptime` (1 s).
//! `reported` is roboku's: the dyno itself says when it is ready (`roboku health:set okay`); a
//! report of `error` fails the check at once, and no `okay` within `timeout` seconds (default
//! [`REPORTED_TIMEOUT`]) fails it with the last report.

use roboku_wire::gates::{DynoHealth, HealthStatus};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// How long a `reported` check waits for `okay` when `timeout` is not given, seconds.
pub const REPORTED_TIMEOUT: f64 = 30.0;

/// One check, normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub kind: CheckKind,
    pub attempts: u32,
    pub timeout: Duration,
    pub wait: Duration,
    pub initial_delay: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// GET `path` on `127.0.0.1:$PORT`: 2xx/3xx (and `content`, if given, in the body).
    Http {
        path: String,
        content: Option<String>,
    },
    /// A TCP connection to `$PORT` is accepted.
    Listening,
    /// The command exits 0 (run in the slug dir with the dyno's env).
    Command(Vec<String>),
    /// The process is still up after `initial_delay`.
    Uptime,
    /// The dyno reports `okay` itself (`roboku health:set`) within `timeout`.
    Reported,
}

#[derive(Deserialize)]
struct AppJson {
    #[serde(default)]
    healthchecks: BTreeMap<String, Vec<RawCheck>>,
    /// Every other top-level key: Heroku's and dokku's are accepted (and not used here), any
    /// other is an error naming it (a typo would otherwise be silently ignored).
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

/// Top-level keys of Heroku's app.json schema and dokku's additions.
/// `roboku` is ours: the switch and probation policy (`engine::policy`).
const KNOWN_KEYS: [&str; 20] = [
    "name",
    "description",
    "keywords",
    "website",
    "repository",
    "logo",
    "success_url",
    "scripts",
    "env",
    "formation",
    "image",
    "addons",
    "buildpacks",
    "environments",
    "stack",
    "cron",
    "dokku",
    "heroku",
    "healthchecks",
    "roboku",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCheck {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    path: Option<String>,
    content: Option<String>,
    #[serde(default)]
    listening: bool,
    command: Option<Vec<String>>,
    attempts: Option<u32>,
    timeout: Option<f64>,
    wait: Option<f64>,
    initial_delay: Option<f64>,
    #[serde(default)]
    uptime: Option<f64>,
    #[serde(default)]
    reported: bool,
}

/// Parses `app.json`; errors name the field and say what is expected.
pub fn parse_app_json(text: &str) -> Result<BTreeMap<String, Vec<Check>>, String> {
    let raw: AppJson = serde_json::from_str(text).map_err(|e| format!("app.json: {e}"))?;
    if let Some(k) = raw.other.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
        return Err(format!(
            "app.json: unknown key {k:?} (known: {})",
            KNOWN_KEYS.join(", ")
        ));
    }
    let mut out = BTreeMap::new();
    for (ptype, checks) in raw.healthchecks {
        let mut list = Vec::new();
        for (i, c) in checks.into_iter().enumerate() {
            let at = format!("app.json: healthchecks.{ptype}[{i}]");
            if let Some(k) = &c.kind {
                if k != "startup" {
                    return Err(format!(
                        "{at}: type {k:?} is not supported (only \"startup\")"
                    ));
                }
            }
            let reported = c.reported;
            let kind = match (c.path, c.listening, c.command, c.uptime) {
                (None, false, None, None) if reported => CheckKind::Reported,
                _ if reported => {
                    return Err(format!(
                        "{at}: \"reported\": true is a check of its own; give it without \
                         \"path\", \"listening\", \"command\" or \"uptime\""
                    ))
                }
                (Some(path), false, None, None) => {
                    if !path.starts_with('/') {
                        return Err(format!("{at}: path {path:?} must start with '/'"));
                    }
                    // It is sent as `GET <path> HTTP/1.0`: a space or a line break would end it.
                    if path.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
                        return Err(format!(
                            "{at}: path {path:?} contains a space or control character; \
                             percent-encode it (%20)"
                        ));
                    }
                    CheckKind::Http { path, content: c.content }
                }
                (None, true, None, None) => CheckKind::Listening,
                (None, false, Some(cmd), None) if !cmd.is_empty() => {
                    if cmd[0].is_empty() || cmd.iter().any(|a| a.contains('\0')) {
                        return Err(format!(
                            "{at}: command {cmd:?} cannot run: it needs a program name and no \
                             NUL byte in any argument"
                        ));
                    }
                    CheckKind::Command(cmd)
                }
                (None, false, None, Some(_)) => CheckKind::Uptime,
                _ => {
                    return Err(format!(
                        "{at}: give exactly one of \"path\", \"listening\": true, \"command\", \"uptime\" or \"reported\": true"
                    ))
                }
            };
            // A report is waited for once, for the whole `timeout`.
            let attempts = if reported { 1 } else { c.attempts.unwrap_or(5) };
            if attempts == 0 || attempts > 1000 {
                return Err(format!("{at}: attempts must be 1..1000"));
            }
            // Seconds, fractions allowed (`"wait": 0.1`); clamped to sane ranges.
            let secs = |v: f64, lo: f64, hi: f64| {
                Duration::from_secs_f64(if v.is_finite() { v.clamp(lo, hi) } else { lo })
            };
            let initial = c.initial_delay.or(c.uptime).unwrap_or(0.0);
            list.push(Check {
                name: c.name.unwrap_or_else(|| format!("{ptype} check {}", i + 1)),
                kind,
                attempts,
                timeout: secs(
                    c.timeout
                        .unwrap_or(if reported { REPORTED_TIMEOUT } else { 5.0 }),
                    0.05,
                    600.0,
                ),
                wait: secs(c.wait.unwrap_or(1.0), 0.0, 600.0),
                initial_delay: secs(initial, 0.0, 3600.0),
            });
        }
        out.insert(ptype, list);
    }
    Ok(out)
}

/// The check a process type gets when it declares none: still up after `uptime`.
pub fn default_check(uptime: Duration) -> Check {
    Check {
        name: "process stays up".into(),
        kind: CheckKind::Uptime,
        attempts: 1,
        timeout: Duration::from_secs(1),
        wait: Duration::ZERO,
        initial_delay: uptime,
    }
}

/// What a command check needs to run.
#[derive(Debug, Clone)]
pub struct CheckEnv {
    pub port: u16,
    pub cwd: std::path::PathBuf,
    pub env: BTreeMap<String, String>,
    pub run_as: Option<(u32, u32)>,
    /// The dyno's name, for what a `reported` check says.
    pub dyno: String,
    /// The dyno's own reports as the engine hears them (for `reported` checks; `None`: the type
    /// has none).
    pub reports: Option<watch::Receiver<Option<DynoHealth>>>,
}

/// Whether the checks include a `reported` one (the engine then feeds the dyno's reports).
pub fn wants_reports(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.kind == CheckKind::Reported)
}

/// What a report means for a `reported` check: passed, failed (why), or wait for the next.
pub fn judge_report(dyno: &str, report: Option<&DynoHealth>) -> Option<Result<(), String>> {
    let h = report?;
    match h.status {
        HealthStatus::Okay => Some(Ok(())),
        HealthStatus::Error => Some(Err(reported(dyno, h))),
        HealthStatus::Waiting | HealthStatus::Blocked => None,
    }
}

/// `web.1 reported error: lidar lost` (the message left out when there is none).
pub fn reported(dyno: &str, h: &DynoHealth) -> String {
    match h.message.is_empty() {
        true => format!("{dyno} reported {}", h.status.as_str()),
        false => format!("{dyno} reported {}: {}", h.status.as_str(), h.message),
    }
}

/// Why a `reported` check failed when its time ran out with `last` the latest report.
pub fn stuck(dyno: &str, last: Option<&DynoHealth>, window: Duration) -> String {
    let secs = window.as_secs_f64();
    match last {
        None => format!("{dyno} did not report its health within {secs}s (roboku health:set okay)"),
        Some(h) => format!("{} and stayed so past {secs}s", reported(dyno, h)),
    }
}

/// Waits for the dyno's report to pass or fail the check; the caller bounds it with the
/// check's timeout.
async fn await_report(
    dyno: &str,
    reports: Option<&watch::Receiver<Option<DynoHealth>>>,
) -> Result<(), String> {
    let Some(rx) = reports else {
        return Err(format!(
            "{dyno}: its reports are not available to the check"
        ));
    };
    let mut rx = rx.clone();
    loop {
        let verdict = judge_report(dyno, rx.borrow_and_update().as_ref());
        if let Some(v) = verdict {
            return v;
        }
        if rx.changed().await.is_err() {
            return Err(format!("{dyno}: stopped before it reported okay"));
        }
    }
}

/// Runs every check of a dyno in order; `Ok` when all passed, else the last failure.
/// (Whether the process is still alive is the engine's business: it hears about exits itself.)
pub async fn run_checks(checks: Vec<Check>, env: CheckEnv) -> Result<(), String> {
    for check in checks {
        tokio::time::sleep(check.initial_delay).await;
        if check.kind == CheckKind::Reported {
            let wait = await_report(&env.dyno, env.reports.as_ref());
            match tokio::time::timeout(check.timeout, wait).await {
                Ok(Ok(())) => continue,
                Ok(Err(why)) => return Err(why),
                Err(_) => {
                    let last = env.reports.as_ref().and_then(|r| r.borrow().clone());
                    return Err(stuck(&env.dyno, last.as_ref(), check.timeout));
                }
            }
        }
        let mut last = String::from("not tried");
        let mut passed = false;
        for attempt in 1..=check.attempts {
            match tokio::time::timeout(check.timeout, attempt_once(&check.kind, &env)).await {
                Ok(Ok(())) => {
                    passed = true;
                    break;
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no answer within {}s", check.timeout.as_secs()),
            }
            if attempt < check.attempts {
                tokio::time::sleep(check.wait).await;
            }
        }
        if !passed {
            return Err(format!(
                "{} failed after {} attempts: {last}",
                check.name, check.attempts
            ));
        }
    }
    Ok(())
}

async fn attempt_once(kind: &CheckKind, env: &CheckEnv) -> Result<(), String> {
    match kind {
        CheckKind::Uptime => Ok(()),
        CheckKind::Reported => await_report(&env.dyno, env.reports.as_ref()).await,
        CheckKind::Listening => tokio::net::TcpStream::connect(("127.0.0.1", env.port))
            .await
            .map(|_| ())
            .map_err(|e| format!("port {}: {e}", env.port)),
        CheckKind::Http { path, content } => http_get(env.port, path, content.as_deref()).await,
        CheckKind::Command(argv) => {
            let mut cmd = tokio::process::Command::new(&argv[0]);
            cmd.args(&argv[1..])
                .env_clear()
                .envs(&env.env)
                .current_dir(&env.cwd)
                .kill_on_drop(true);
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null());
            cmd.stderr(std::process::Stdio::null());
            if let Some((uid, gid)) = env.run_as {
                cmd.uid(uid).gid(gid);
            }
            let status = cmd
                .status()
                .await
                .map_err(|e| format!("cannot run {:?}: {e}", argv[0]))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("{:?} {status}", argv.join(" ")))
            }
        }
    }
}

/// A minimal HTTP/1.0 GET: enough to read a status line and a small body.
async fn http_get(port: u16, path: &str, content: Option<&str>) -> Result<(), String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("port {port}: {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: robokud-healthcheck\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("port {port}: {e}"))?;
    let mut buf = Vec::new();
    let _ = (&mut s).take(64 * 1024).read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    let status: u16 = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {path}: not an HTTP answer"))?;
    if !(200..400).contains(&status) {
        return Err(format!("GET {path}: HTTP {status}"));
    }
    if let Some(want) = content {
        if !text.contains(want) {
            return Err(format!("GET {path}: body does not contain {want:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dokku_style_checks() {
        let c = parse_app_json(
            r#"{"name":"x","healthchecks":{"web":[
                {"type":"startup","path":"/health","attempts":3,"timeout":2,"wait":0,"content":"ok"},
                {"listening":true},
                {"command":["./ready"],"initialDelay":2}]}}"#,
        )
        .unwrap();
        let web = &c["web"];
        assert_eq!(web.len(), 3);
        assert_eq!(
            web[0].kind,
            CheckKind::Http {
                path: "/health".into(),
                content: Some("ok".into())
            }
        );
        assert_eq!(
            (web[0].attempts, web[0].timeout, web[0].wait),
            (3, Duration::from_secs(2), Duration::ZERO)
        );
        assert_eq!(web[1].kind, CheckKind::Listening);
        assert_eq!(web[2].initial_delay, Duration::from_secs(2));
        let frac = parse_app_json(
            r#"{"healthchecks":{"web":[{"listening":true,"wait":0.05,"timeout":0.5}]}}"#,
        )
        .unwrap();
        assert_eq!(
            (frac["web"][0].wait, frac["web"][0].timeout),
            (Duration::from_millis(50), Duration::from_millis(500))
        );
        assert!(parse_app_json("{}").unwrap().is_empty());
        let heroku = r#"{"name": "nav", "env": {"A": {"value": "1"}}, "formation": {"web": {"quantity": 1}},
            "scripts": {"postdeploy": "true"}, "buildpacks": [], "addons": []}"#;
        assert!(
            parse_app_json(heroku).unwrap().is_empty(),
            "Heroku's keys are fine"
        );
    }

    #[test]
    fn rejects_bad_checks_naming_the_field() {
        for (text, want) in [
            (
                r#"{"healthchecks":{"web":[{"type":"liveness","path":"/"}]}}"#,
                "healthchecks.web[0]: type",
            ),
            (
                r#"{"healthchecks":{"web":[{"path":"health"}]}}"#,
                "must start with '/'",
            ),
            (r#"{"healthchecks":{"web":[{}]}}"#, "exactly one of"),
            (
                r#"{"healthchecks":{"web":[{"path":"/","listening":true}]}}"#,
                "exactly one of",
            ),
            (
                r#"{"healthchecks":{"web":[{"path":"/","attempts":0}]}}"#,
                "attempts",
            ),
            (r#"{"healthchecks":[1]}"#, "app.json"),
            (
                r#"{"healthchecks":{"web":[{"path":"/","initial_delay":2}]}}"#,
                "unknown field `initial_delay`",
            ),
            (r#"{"helthchecks":{}}"#, "unknown key \"helthchecks\""),
            // Accepted before and could never pass: a path that breaks the request line (found
            // by the app_json fuzz target) and commands that cannot be run (its other half).
            (
                r#"{"healthchecks":{"web":[{"path":"/health x"}]}}"#,
                "percent-encode",
            ),
            (
                r#"{"healthchecks":{"web":[{"path":"/health\r\nX: y"}]}}"#,
                "control character",
            ),
            (
                r#"{"healthchecks":{"web":[{"command":[""]}]}}"#,
                "needs a program name",
            ),
            (
                r#"{"healthchecks":{"web":[{"command":["true","a\u0000b"]}]}}"#,
                "NUL byte",
            ),
        ] {
            let e = parse_app_json(text).unwrap_err();
            assert!(e.contains(want), "{e} should mention {want}");
        }
    }

    #[test]
    fn reported_checks_parse_alone_with_their_own_timeout() {
        let c = parse_app_json(r#"{"healthchecks":{"worker":[{"reported":true}]}}"#).unwrap();
        let w = &c["worker"][0];
        assert_eq!(w.kind, CheckKind::Reported);
        assert_eq!(w.attempts, 1);
        assert_eq!(w.timeout, Duration::from_secs_f64(REPORTED_TIMEOUT));
        assert!(wants_reports(&c["worker"]));
        let c = parse_app_json(r#"{"healthchecks":{"w":[{"reported":true,"timeout":5}]}}"#);
        assert_eq!(c.unwrap()["w"][0].timeout, Duration::from_secs(5));
        let e = parse_app_json(r#"{"healthchecks":{"w":[{"reported":true,"path":"/"}]}}"#);
        assert!(e.unwrap_err().contains("a check of its own"));
        let e = parse_app_json(r#"{"healthchecks":{"w":[{"reported":false}]}}"#);
        assert!(e.unwrap_err().contains("\"reported\": true"));
    }

    fn report(status: HealthStatus, message: &str) -> DynoHealth {
        DynoHealth {
            status,
            message: message.into(),
            at: 1,
        }
    }

    #[test]
    fn reports_pass_fail_or_wait() {
        assert_eq!(judge_report("w.1", None), None);
        let okay = report(HealthStatus::Okay, "");
        assert_eq!(judge_report("w.1", Some(&okay)), Some(Ok(())));
        let err = report(HealthStatus::Error, "lidar lost");
        assert_eq!(
            judge_report("w.1", Some(&err)),
            Some(Err("w.1 reported error: lidar lost".into()))
        );
        for st in [HealthStatus::Waiting, HealthStatus::Blocked] {
            assert_eq!(judge_report("w.1", Some(&report(st, "x"))), None);
        }
        let w = Duration::from_secs(30);
        assert_eq!(
            stuck("w.1", Some(&report(HealthStatus::Blocked, "mission")), w),
            "w.1 reported blocked: mission and stayed so past 30s"
        );
        assert!(stuck("w.1", None, w).starts_with("w.1 did not report its health within 30s"));
    }

    #[tokio::test]
    async fn a_reported_check_follows_the_dynos_reports() {
        let check = |timeout: f64| Check {
            name: "reported".into(),
            kind: CheckKind::Reported,
            attempts: 1,
            timeout: Duration::from_secs_f64(timeout),
            wait: Duration::ZERO,
            initial_delay: Duration::ZERO,
        };
        let env = |rx| CheckEnv {
            port: 1,
            cwd: "/".into(),
            env: BTreeMap::new(),
            run_as: None,
            dyno: "worker.1".into(),
            reports: Some(rx),
        };
        // okay after a waiting: passes.
        let (tx, rx) = watch::channel(None);
        let run = tokio::spawn(run_checks(vec![check(600.0)], env(rx)));
        tx.send_replace(Some(report(HealthStatus::Waiting, "warming")));
        tx.send_replace(Some(report(HealthStatus::Okay, "ready")));
        assert_eq!(run.await.unwrap(), Ok(()));
        // error: fails at once, with the dyno's message.
        let (tx, rx) = watch::channel(None);
        let run = tokio::spawn(run_checks(vec![check(600.0)], env(rx)));
        tx.send_replace(Some(report(HealthStatus::Error, "no lidar")));
        assert_eq!(
            run.await.unwrap(),
            Err("worker.1 reported error: no lidar".into())
        );
        // blocked until the window ends: fails with the last report.
        let (tx, rx) = watch::channel(Some(report(HealthStatus::Blocked, "mission 4")));
        let got = run_checks(vec![check(0.05)], env(rx)).await;
        assert_eq!(
            got,
            Err("worker.1 reported blocked: mission 4 and stayed so past 0.05s".into())
        );
        drop(tx);
    }

    #[tokio::test]
    async fn http_and_tcp_checks_against_a_real_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let answer = if req.starts_with("GET /ok ") {
                    "HTTP/1.0 200 OK\r\n\r\nall ok"
                } else {
                    "HTTP/1.0 503 Busy\r\n\r\n"
                };
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        let env = CheckEnv {
            port,
            cwd: "/".into(),
            env: BTreeMap::new(),
            run_as: None,
            dyno: "web.1".into(),
            reports: None,
        };
        let check = |kind| Check {
            name: "c".into(),
            kind,
            attempts: 2,
            timeout: Duration::from_secs(2),
            wait: Duration::ZERO,
            initial_delay: Duration::ZERO,
        };
        assert!(run_checks(vec![check(CheckKind::Listening)], env.clone())
            .await
            .is_ok());
        assert!(run_checks(
            vec![check(CheckKind::Http {
                path: "/ok".into(),
                content: Some("all".into())
            })],
            env.clone()
        )
        .await
        .is_ok());
        let e = run_checks(
            vec![check(CheckKind::Http {
                path: "/bad".into(),
                content: None,
            })],
            env.clone(),
        )
        .await
        .unwrap_err();
        assert!(e.contains("HTTP 503") && e.contains("2 attempts"), "{e}");
        let e = run_checks(
            vec![check(CheckKind::Http {
                path: "/ok".into(),
                content: Some("nope".into()),
            })],
            env.clone(),
        )
        .await
        .unwrap_err();
        assert!(e.contains("does not contain"), "{e}");
        let ok = run_checks(
            vec![check(CheckKind::Command(vec![
                "/bin/sh".into(),
                "-c".into(),
                "exit 0".into(),
            ]))],
            env.clone(),
        )
        .await;
        assert!(ok.is_ok());
        let e = run_checks(
            vec![check(CheckKind::Command(vec![
                "/bin/sh".into(),
                "-c".into(),
                "exit 3".into(),
            ]))],
            env,
        )
        .await
        .unwrap_err();
        assert!(e.contains("exit status: 3"), "{e}");
    }
}
