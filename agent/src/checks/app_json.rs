//! `app.json`: an accepted file yields checks the gate can carry out with bounded waits; a refused
//! one is refused with a message that names `app.json` (and the field, where there is one).

use crate::engine::health::{parse_app_json, CheckKind};
use std::time::Duration;

pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    check_policy(&text);
    let parsed = match parse_app_json(&text) {
        Ok(p) => p,
        Err(e) => {
            assert!(
                e.starts_with("app.json: "),
                "error does not name app.json: {e}"
            );
            return;
        }
    };
    for (ptype, checks) in &parsed {
        for c in checks {
            let at = format!("healthchecks.{ptype} {:?}", c.name);
            assert!(
                (1..=1000).contains(&c.attempts),
                "{at}: attempts {}",
                c.attempts
            );
            assert!(
                (Duration::from_millis(50)..=Duration::from_secs(600)).contains(&c.timeout),
                "{at}: timeout {:?}",
                c.timeout
            );
            assert!(
                c.wait <= Duration::from_secs(600),
                "{at}: wait {:?}",
                c.wait
            );
            assert!(
                c.initial_delay <= Duration::from_secs(3600),
                "{at}: initial delay {:?}",
                c.initial_delay
            );
            match &c.kind {
                CheckKind::Http { path, .. } => {
                    assert!(path.starts_with('/'), "{at}: path {path:?}");
                    // It goes into a request line: `GET <path> HTTP/1.0`.
                    assert!(
                        !path.chars().any(|ch| ch.is_whitespace() || ch.is_control()),
                        "{at}: path {path:?} would break the request line"
                    );
                }
                CheckKind::Command(argv) => {
                    assert!(
                        argv.first()
                            .is_some_and(|a| !a.is_empty() && !a.contains('\0')),
                        "{at}: command {argv:?} can never run"
                    );
                    assert!(
                        !argv.iter().any(|a| a.contains('\0')),
                        "{at}: NUL in {argv:?}"
                    );
                }
                CheckKind::Listening | CheckKind::Uptime | CheckKind::Reported => {}
            }
        }
    }
}

/// The `roboku` policy (switch, probation, start order, on_config): refused with `app.json`
/// named; an accepted start order is either refused with the field named or has no cycle.
fn check_policy(text: &str) {
    use crate::engine::{order, policy};
    let p = match policy::parse(text) {
        Ok(p) => p,
        Err(e) => {
            assert!(
                e.starts_with("app.json: "),
                "error does not name app.json: {e}"
            );
            return;
        }
    };
    let types = p.start_order().keys().cloned().collect();
    if let Err(e) = order::check(p.start_order(), &types) {
        assert!(
            e.starts_with("app.json: roboku.formation"),
            "error does not name the field: {e}"
        );
    }
}
