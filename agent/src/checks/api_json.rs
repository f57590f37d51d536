//! The request bodies the unix-socket API decodes (`roboku_wire` request types): an accepted body
//! survives encoding and decoding unchanged (what the CLI sends is what the agent reads), and the
//! pure checks the engine applies to it agree with the rules they state. The first byte picks
//! the route's type, the rest is the body.

use crate::engine::formation::merge_limits;
use roboku_wire as wire;
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;

/// Decodes a body as the API does; an accepted one must come back the same through JSON.
fn accepted<T>(body: &[u8], default_when_empty: bool) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug + Default,
{
    let value: T = if default_when_empty && body.iter().all(u8::is_ascii_whitespace) {
        T::default()
    } else {
        serde_json::from_slice(body).ok()?
    };
    Some(round_trip(value))
}

/// The same for request types without a `Default` (never sent empty).
fn accepted_strict<T>(body: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    serde_json::from_slice(body).ok().map(round_trip)
}

/// An accepted request must come back the same through JSON.
fn round_trip<T>(value: T) -> T
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let json = serde_json::to_vec(&value).expect("a decoded request encodes");
    let back: T = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "{value:?} encodes as {} and does not decode: {e}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(
        back,
        value,
        "round trip through {}",
        String::from_utf8_lossy(&json)
    );
    value
}

pub fn check(data: &[u8]) {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    match route % 9 {
        0 => {
            if let Some(r) = accepted_strict::<wire::CreateApp>(body) {
                app_name(&r.name);
            }
        }
        1 => {
            if let Some(r) = accepted::<wire::UpdateApp>(body, false) {
                let _ = r.to_string();
            }
        }
        2 => {
            accepted_strict::<wire::DeployRequest>(body);
        }
        3 => {
            if let Some(r) = accepted_strict::<wire::ScaleRequest>(body) {
                for name in r.counts.keys() {
                    let rule = !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
                    assert_eq!(wire::procfile::process_type_name_ok(name), rule, "{name:?}");
                }
            }
        }
        4 => {
            if let Some(r) = accepted_strict::<wire::ResizeRequest>(body) {
                resize(&r);
            }
        }
        5 => {
            accepted::<wire::TargetRequest>(body, true);
        }
        6 => {
            if let Some(r) = accepted::<wire::ConfigChange>(body, false) {
                for (k, v) in &r.set {
                    let fits = !v.contains('\0')
                        && k.len() + 1 + v.len() <= wire::procfile::envsize::MAX_VAR;
                    assert_eq!(
                        wire::procfile::envsize::check_var(k, v).is_ok(),
                        fits,
                        "{k:?}"
                    );
                }
            }
        }
        7 => {
            accepted::<wire::RollbackRequest>(body, true);
        }
        _ => {
            accepted_strict::<wire::RunRequest>(body);
        }
    }
}

/// `[a-z][a-z0-9-]{0,29}`, written out independently of `check_app_name`.
fn app_name(name: &str) {
    let b = name.as_bytes();
    let rule = !b.is_empty()
        && b.len() <= 30
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    assert_eq!(
        wire::check_app_name(name).is_ok(),
        rule,
        "app name {name:?}"
    );
}

/// A resize either applies whole (every value in its range, cleared limits gone) or is refused
/// and changes nothing.
fn resize(req: &wire::ResizeRequest) {
    let base = wire::Limits {
        memory_max: Some(64 << 20),
        cpu: Some(0.5),
        nice: Some(5),
        ..wire::Limits::default()
    };
    let mut merged = base.clone();
    let result = merge_limits(&mut merged, req);
    let _ = (merged.to_string(), req.limits.to_string());
    if let Err(e) = result {
        assert_eq!(merged, base, "a refused resize ({e}) changed the limits");
        return;
    }
    let cleared = |names: &[&str]| req.clear.iter().any(|c| names.contains(&c.as_str()));
    let pick = |field: bool, names: &[&str]| field && !cleared(names);
    if let Some(m) = merged.memory_max {
        assert!(m >= 1 << 20, "memory {m}");
    }
    if let Some(m) = merged.memory_high {
        assert!(m >= 1 << 20, "memory-high {m}");
    }
    if let Some(c) = merged.cpu {
        assert!(c.is_finite() && (0.01..=1024.0).contains(&c), "cpu {c}");
    }
    if let Some(n) = merged.nice {
        assert!((-20..=19).contains(&n), "nice {n}");
    }
    assert_ne!(merged.pids, Some(0), "pids 0");
    if let Some(rt) = &merged.rt {
        assert!(wire::parse_rt(rt).is_ok(), "rt {rt:?}");
    }
    let l = &req.limits;
    if pick(l.memory_max.is_some(), &["memory", "memory_max"]) {
        assert_eq!(merged.memory_max, l.memory_max);
    }
    if pick(l.cpu.is_some(), &["cpu"]) {
        assert_eq!(merged.cpu, l.cpu);
    }
    if pick(l.cpuset.is_some(), &["cpuset"]) {
        assert_eq!(merged.cpuset, l.cpuset);
    }
    for (names, is_none) in [
        (&["memory", "memory_max"][..], merged.memory_max.is_none()),
        (
            &["memory-high", "memory_high"][..],
            merged.memory_high.is_none(),
        ),
        (&["cpu"][..], merged.cpu.is_none()),
        (&["pids"][..], merged.pids.is_none()),
        (&["cpuset"][..], merged.cpuset.is_none()),
        (&["nice"][..], merged.nice.is_none()),
        (&["groups"][..], merged.groups.is_none()),
        (&["rt"][..], merged.rt.is_none()),
    ] {
        if cleared(names) {
            assert!(is_none, "{names:?} cleared but still set: {merged:?}");
        }
    }
}
