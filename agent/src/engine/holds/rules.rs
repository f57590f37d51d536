//! The pure part of apply gates: what a gate spec may say, whether the checks that need no
//! process (a dyno's reported health, a time window, a hold) pass, and how the outcome reads.
//! No IO and no clock: callers pass the time in.

use roboku_wire::gates::{DynoHealth, GateKind, HealthStatus};

/// The longest a hold may be taken for (a week): a lease nobody renews must end.
pub const MAX_HOLD_SECS: u64 = 7 * 24 * 3600;
/// Default and longest run of one command or file check.
pub const DEFAULT_CHECK_MS: u64 = 10_000;
pub const MAX_CHECK_MS: u64 = 600_000;

/// Gate and hold names: `[a-z0-9][a-z0-9._-]{0,63}`, as they appear in acks and logs.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "{what} name {name:?} is not valid: use up to 64 of a-z, 0-9, '.', '_', '-', \
             starting with a letter or digit"
        )),
    }
}

/// Checks a gate before it is stored, so a typo is refused now rather than blocking later.
pub fn check_gate(name: &str, kind: &GateKind) -> Result<(), String> {
    check_name("gate", name)?;
    match kind {
        GateKind::Command(c) if c.trim().is_empty() => Err("the gate's command is empty".into()),
        GateKind::File(p) if !p.starts_with('/') => Err(format!(
            "the gate's file {p:?} must be an absolute path (checks run in the slug dir)"
        )),
        GateKind::Health(t) if t.is_empty() || t.contains(|c: char| c.is_whitespace()) => {
            Err(format!("the gate's process type {t:?} is not valid"))
        }
        GateKind::Window(w) => parse_window(w).map(|_| ()),
        _ => Ok(()),
    }
}

/// `HH:MM-HH:MM` as minutes of the day; the window may wrap midnight (`22:00-06:00`).
pub fn parse_window(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("window {text:?} must look like 22:00-06:00 (local time, 24 h)");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let minute = |s: &str| -> Option<u16> {
        let (h, m) = s.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60 && s.trim().len() == 5).then_some(h * 60 + m)
    };
    let (start, end) = (minute(a).ok_or_else(bad)?, minute(b).ok_or_else(bad)?);
    if start == end {
        return Err(format!(
            "window {text:?} is empty (start and end are the same)"
        ));
    }
    Ok((start, end))
}

/// Whether `minute` (of the local day) is inside the window: from start, up to but not
/// including end.
pub fn in_window((start, end): (u16, u16), minute: u16) -> bool {
    match start < end {
        true => start <= minute && minute < end,
        false => minute >= start || minute < end,
    }
}

/// A window gate at `minute`: `Ok(detail)` open, `Err(why)` closed.
pub fn window_gate(spec: &str, minute: u16) -> Result<String, String> {
    let w = parse_window(spec)?;
    let now = format!("{:02}:{:02}", minute / 60, minute % 60);
    match in_window(w, minute) {
        true => Ok(format!("{now} is inside {spec}")),
        false => Err(format!("{now} is outside {spec}")),
    }
}

/// A health gate over the running dynos of its type, each with its report: open when every one
/// said `okay` (or none runs: then nothing can be interrupted).
pub fn health_gate(ptype: &str, dynos: &[(String, Option<DynoHealth>)]) -> Result<String, String> {
    if dynos.is_empty() {
        return Ok(format!("no {ptype} dyno runs"));
    }
    let mut why = Vec::new();
    for (name, health) in dynos {
        match health {
            Some(h) if h.status == HealthStatus::Okay => {}
            Some(h) if h.message.is_empty() => why.push(format!("{name} is {}", h.status.as_str())),
            Some(h) => why.push(format!("{name} is {}: {}", h.status.as_str(), h.message)),
            None => why.push(format!("{name} has not reported its health")),
        }
    }
    match why.is_empty() {
        true => Ok(format!("every {ptype} dyno is okay")),
        false => Err(why.join("; ")),
    }
}

/// Why a hold blocks, as `roboku gates` and the logs say it.
pub fn hold_why(holder: &str, reason: &str, until_ms: u64, now_ms: u64) -> String {
    let left = until_ms.saturating_sub(now_ms) / 1000;
    let reason = match reason.is_empty() {
        true => String::new(),
        false => format!(": {reason}"),
    };
    format!("held by {holder}{reason} (expires in {})", human_secs(left))
}

/// What one gate (or hold) found, kept between checks for `roboku gates`.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub open: bool,
    pub detail: String,
    /// Since when it has been open (or closed), unix ms.
    pub since: u64,
    pub checked_at: u64,
}

impl Seen {
    /// The next observation: `since` moves only when open/closed flips.
    pub fn next(prev: Option<&Seen>, result: &Result<String, String>, now: u64) -> Seen {
        let open = result.is_ok();
        let detail = match result {
            Ok(d) | Err(d) => d.clone(),
        };
        let since = match prev {
            Some(p) if p.open == open => p.since,
            _ => now,
        };
        Seen {
            open,
            detail,
            since,
            checked_at: now,
        }
    }
}

/// `90` -> `1m30s`; `3600` -> `1h`.
pub fn human_secs(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(status: HealthStatus, message: &str) -> Option<DynoHealth> {
        Some(DynoHealth {
            status,
            message: message.into(),
            at: 1,
        })
    }

    #[test]
    fn windows_parse_and_may_wrap_midnight() {
        assert_eq!(parse_window("22:00-06:00"), Ok((1320, 360)));
        assert_eq!(parse_window("09:30-17:00"), Ok((570, 1020)));
        for bad in [
            "9:30-17:00",
            "25:00-01:00",
            "10:00",
            "10:00-10:00",
            "aa:bb-cc:dd",
        ] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
        let night = (1320, 360);
        assert!(in_window(night, 23 * 60));
        assert!(in_window(night, 0));
        assert!(in_window(night, 359));
        assert!(!in_window(night, 360), "the end is not inside");
        assert!(!in_window(night, 12 * 60));
        let day = (570, 1020);
        assert!(in_window(day, 570) && !in_window(day, 1020) && !in_window(day, 0));
        assert_eq!(
            window_gate("22:00-06:00", 12 * 60 + 5),
            Err("12:05 is outside 22:00-06:00".into())
        );
    }

    #[test]
    fn a_health_gate_wants_every_running_dyno_of_its_type_okay() {
        assert!(
            health_gate("nav", &[]).is_ok(),
            "none runs: nothing to disturb"
        );
        let dynos = vec![
            ("nav.1".to_string(), health(HealthStatus::Okay, "ready")),
            (
                "nav.2".to_string(),
                health(HealthStatus::Blocked, "mission 42"),
            ),
            ("nav.3".to_string(), None),
        ];
        assert_eq!(
            health_gate("nav", &dynos),
            Err("nav.2 is blocked: mission 42; nav.3 has not reported its health".into())
        );
        assert_eq!(
            health_gate("nav", &dynos[..1]),
            Ok("every nav dyno is okay".into())
        );
    }

    #[test]
    fn names_and_specs_are_checked_before_they_are_stored() {
        assert!(check_gate("mission-idle", &GateKind::Command("test -e /x".into())).is_ok());
        assert!(check_gate("Mission", &GateKind::Command("x".into())).is_err());
        assert!(check_gate("a b", &GateKind::Command("x".into())).is_err());
        assert!(check_gate("idle", &GateKind::Command("  ".into())).is_err());
        assert!(check_gate("idle", &GateKind::File("run/idle".into())).is_err());
        assert!(check_gate("night", &GateKind::Window("22-06".into())).is_err());
        assert!(check_gate("nav", &GateKind::Health("nav".into())).is_ok());
    }

    #[test]
    fn since_moves_only_when_a_gate_flips() {
        let a = Seen::next(None, &Err("exit 1".into()), 10);
        let b = Seen::next(Some(&a), &Err("exit 2".into()), 20);
        assert_eq!(
            (b.since, b.checked_at, b.detail.as_str()),
            (10, 20, "exit 2")
        );
        let c = Seen::next(Some(&b), &Ok("exit 0".into()), 30);
        assert_eq!((c.open, c.since), (true, 30));
        assert_eq!(
            hold_why("cli", "mission 42", 100_000, 10_000),
            "held by cli: mission 42 (expires in 1m30s)"
        );
        assert_eq!(human_secs(7200), "2h");
    }
}
