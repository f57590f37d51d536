//! `doctor`: what a field engineer checks first, one line each, with what to do when a check
//! fails. The facts come from robokud (`/v1/status`, `/v1/disk`, and `/v1/doctor` for what only
//! it can see: fleet link, trusted keys, systemd, dashboard, add-on servers; an older robokud
//! without it gets the other checks) and from this host (the clock, the data dir's mode); the
//! judgement ([`judge`], [`agent::judge`]) is pure and tested without a host.
//! Exit 0 when nothing failed (warnings allowed), 1 otherwise.

mod agent;

use super::Ctx;
use crate::output::outln;
use roboku_wire::{DiskReport, Status, API_PREFIX};
use serde::Serialize;
use std::os::unix::fs::MetadataExt;

/// What to do when cgroup joins wait a grace period (docs/supervision.md, favordynmods).
const JOINS_FIX: &str = "a crashed dyno's replacement waits an RCU grace period to join its \
    cgroup: on Linux 6.1+ with robokud as root, leave favordynmods on (`favordynmods = true` in \
    /etc/roboku/robokud.toml, no --no-favordynmods or ROBOKU_NO_FAVORDYNMODS) and restart robokud";
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &'static str, level: Level, detail: String, fix: Option<&str>) -> Check {
        Check {
            name,
            level,
            detail,
            fix: fix.map(str::to_string),
        }
    }

    fn line(&self) -> String {
        let level = match self.level {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        };
        let mut s = format!("{level:<5} {:<9} {}", self.name, self.detail);
        if let Some(fix) = &self.fix {
            s.push_str(&format!("  (fix: {fix})"));
        }
        s
    }
}

/// What the checks look at.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// robokud's status, or why it did not answer.
    pub status: Option<Result<Status, String>>,
    pub disk: Option<DiskReport>,
    /// The data dir's mode bits and owner uid, when it could be read from here.
    pub data_dir: Option<Result<(u32, u32), String>>,
    /// `Some(true)` when the kernel says the clock is synchronised.
    pub clock_synced: Option<bool>,
    pub now_unix: u64,
    /// What robokud says about itself (`None` from an agent older than `/v1/doctor`).
    pub agent: Option<roboku_wire::doctor::DoctorFacts>,
}

/// 2024-01-01: a clock before this has never been set (a board without an RTC boots in 1970).
const CLOCK_FLOOR: u64 = 1_704_067_200;

pub fn judge(f: &Facts) -> Vec<Check> {
    use Level::{Fail, Ok, Warn};
    let mut out = Vec::new();
    let status = match &f.status {
        Some(Result::Ok(s)) => {
            out.push(Check::new(
                "agent",
                Ok,
                format!("robokud {} answers (pid {})", s.version, s.pid),
                None,
            ));
            Some(s)
        }
        Some(Err(e)) => {
            out.push(Check::new(
                "agent",
                Fail,
                e.clone(),
                Some("start it (`systemctl start robokud`) or point ROBOKU_SOCKET at its socket"),
            ));
            None
        }
        None => None,
    };
    if let Some(s) = status {
        let c = &s.cgroup;
        let slow = c.joins.as_deref().and_then(|j| j.strip_prefix("slow: "));
        out.push(if let (true, Some(why)) = (c.enforced, slow) {
            Check::new(
                "cgroups",
                Warn,
                format!(
                    "{}, limits enforced ({}); joins slow: {why}",
                    c.mode, c.root
                ),
                Some(JOINS_FIX),
            )
        } else if c.enforced {
            let joins = c.joins.as_deref().map(|j| format!("; joins {j}"));
            Check::new(
                "cgroups",
                Ok,
                format!(
                    "{}, limits enforced ({}){}",
                    c.mode,
                    c.root,
                    joins.unwrap_or_default()
                ),
                None,
            )
        } else {
            Check::new(
                "cgroups",
                Warn,
                format!(
                    "{}, limits NOT enforced: {}",
                    c.mode,
                    c.reason.as_deref().unwrap_or("no reason given")
                ),
                Some("run robokud as root on a host with cgroup v1 or a delegated v2 subtree"),
            )
        });
        out.push(match &s.dyno_user_note {
            None => Check::new("user", Ok, format!("dynos run as {}", s.dyno_user), None),
            Some(note) => Check::new(
                "user",
                Warn,
                format!("dynos run as {}: {note}", s.dyno_user),
                Some("run robokud as root so each app gets its own uid"),
            ),
        });
    }
    match &f.data_dir {
        Some(Result::Ok((mode, uid))) if mode & 0o022 != 0 => out.push(Check::new(
            "data dir",
            Fail,
            format!(
                "mode {:o}: writable by group or others (owner uid {uid})",
                mode & 0o7777
            ),
            Some("chmod go-w the data dir"),
        )),
        Some(Result::Ok((mode, uid))) => out.push(Check::new(
            "data dir",
            Ok,
            format!("mode {:o}, owner uid {uid}", mode & 0o7777),
            None,
        )),
        Some(Err(e)) => out.push(Check::new(
            "data dir",
            Warn,
            e.clone(),
            Some("run doctor as root to see the data dir"),
        )),
        None => {}
    }
    if let Some(d) = &f.disk {
        let b = crate::output::bytes;
        let detail = format!(
            "{} free of {}, {} reserved",
            b(d.free),
            b(d.total),
            b(d.reserved)
        );
        out.push(if d.free <= d.reserved {
            Check::new(
                "disk",
                Fail,
                detail + ": deploys are refused",
                Some("free space (`roboku disk` shows what uses it)"),
            )
        } else if d.free < d.reserved.saturating_mul(2) {
            Check::new(
                "disk",
                Warn,
                detail + ": close to the reserve",
                Some("free space (`roboku disk` shows what uses it)"),
            )
        } else {
            Check::new("disk", Ok, detail, None)
        });
    }
    out.push(match (f.now_unix < CLOCK_FLOOR, f.clock_synced) {
        (true, _) => Check::new(
            "clock",
            Fail,
            format!("the clock reads {} (never set)", f.now_unix),
            Some("set the time or enable NTP (`timedatectl set-ntp true`)"),
        ),
        (false, Some(true)) => Check::new("clock", Ok, "synchronised".into(), None),
        (false, Some(false)) => Check::new(
            "clock",
            Warn,
            "not synchronised (the kernel's NTP state is unsynced)".into(),
            Some("enable NTP (`timedatectl set-ntp true`) or check chrony/systemd-timesyncd"),
        ),
        (false, None) => Check::new("clock", Warn, "sync state unknown".into(), None),
    });
    if let Some(Result::Ok(Status { clock: Some(c), .. })) = &f.status {
        agent_clock(out.last_mut(), c);
    }
    if let Some(a) = &f.agent {
        out.extend(agent::judge(a));
    }
    out
}

/// Adds robokud's own verdict to the host's clock check: which rule signed commands and
/// bundles are judged by (and the test knob, when one pretends the clock).
fn agent_clock(check: Option<&mut Check>, c: &roboku_wire::ClockStatus) {
    let Some(check) = check else {
        return;
    };
    if c.trusted {
        check.detail.push_str("; robokud trusts it");
    } else {
        check.detail.push_str(&format!(
            "; robokud: {} ({})",
            c.rule,
            c.reason.as_deref().unwrap_or("untrusted")
        ));
        if check.level == Level::Ok {
            check.level = Level::Warn;
            check.fix = Some("let the clock synchronise (NTP) or set it; robokud trusts it again by itself once it is synced".into());
        }
    }
    if let Some(k) = &c.test_knob {
        check.level = Level::Warn;
        check.detail.push_str(&format!(
            "; the clock is PRETENDED by the test knob --test-clock {k}"
        ));
        check.fix =
            Some("restart robokud without --test-clock (a test knob, never for a robot)".into());
    }
}

/// The kernel's view of clock synchronisation (adjtimex, read only).
fn clock_synced() -> Option<bool> {
    // SAFETY: a zeroed timex with modes 0 only reads; ntp_adjtime writes into it.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::ntp_adjtime(&mut tx) };
    (state >= 0).then_some(state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0)
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<i32> {
    let status = ctx
        .client
        .get::<Status>(&format!("{API_PREFIX}/status"))
        .await
        .map_err(|e| e.to_string());
    let disk = match &status {
        Ok(_) => ctx
            .client
            .get::<DiskReport>(&format!("{API_PREFIX}/disk"))
            .await
            .ok(),
        Err(_) => None,
    };
    let agent = match &status {
        Ok(_) => ctx
            .client
            .get::<roboku_wire::doctor::DoctorFacts>(&format!("{API_PREFIX}/doctor"))
            .await
            .ok(),
        Err(_) => None,
    };
    let data_dir = status.as_ref().ok().map(|s| {
        std::fs::metadata(&s.data_dir)
            .map(|m| (m.mode(), m.uid()))
            .map_err(|e| format!("{}: {e}", s.data_dir))
    });
    let facts = Facts {
        status: Some(status),
        disk,
        data_dir,
        clock_synced: clock_synced(),
        now_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        agent,
    };
    let checks = judge(&facts);
    if ctx.json {
        outln!("{}", serde_json::to_string_pretty(&checks)?)?;
    } else {
        for c in &checks {
            outln!("{}", c.line())?;
        }
    }
    Ok(i32::from(checks.iter().any(|c| c.level == Level::Fail)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use roboku_wire::CgroupStatus;

    fn status(enforced: bool) -> Status {
        Status {
            version: "0.1.0".into(),
            pid: 7,
            data_dir: "/var/lib/roboku".into(),
            socket: "/var/lib/roboku/robokud.sock".into(),
            started_at: 0,
            cgroup: CgroupStatus {
                mode: "v2".into(),
                root: "/sys/fs/cgroup/roboku".into(),
                enforced,
                reason: (!enforced).then(|| "not root".into()),
                joins: None,
            },
            dyno_user: "nobody".into(),
            dyno_user_note: None,
            apps: 0,
            dynos_running: 0,
            dynos_desired: 0,
            agent_rss: 0,
            clock: None,
        }
    }

    fn disk(free: u64, reserved: u64) -> DiskReport {
        DiskReport {
            data_dir: "/var/lib/roboku".into(),
            total: 100 << 30,
            free,
            reserve: "auto".into(),
            reserved,
            rows: vec![],
            gc_slugs: 0,
            gc_bytes: 0,
        }
    }

    fn level(checks: &[Check], name: &str) -> Level {
        checks.iter().find(|c| c.name == name).unwrap().level
    }

    #[test]
    fn a_healthy_robot_has_no_failures() {
        let c = judge(&Facts {
            status: Some(Ok(status(true))),
            disk: Some(disk(10 << 30, 64 << 20)),
            data_dir: Some(Ok((0o40755, 0))),
            clock_synced: Some(true),
            now_unix: CLOCK_FLOOR + 1,
            agent: None,
        });
        assert!(c.iter().all(|c| c.level == Level::Ok), "{c:?}");
        assert_eq!(
            c.iter().map(|c| c.name).collect::<Vec<_>>(),
            ["agent", "cgroups", "user", "data dir", "disk", "clock"]
        );
    }

    #[test]
    fn each_problem_names_itself_and_its_fix() {
        let c = judge(&Facts {
            status: Some(Ok(status(false))),
            disk: Some(disk(60 << 20, 64 << 20)),
            data_dir: Some(Ok((0o40777, 0))),
            clock_synced: Some(false),
            now_unix: 3600,
            agent: None,
        });
        assert_eq!(level(&c, "cgroups"), Level::Warn);
        assert_eq!(level(&c, "disk"), Level::Fail);
        assert_eq!(level(&c, "data dir"), Level::Fail);
        assert_eq!(level(&c, "clock"), Level::Fail);
        assert!(c
            .iter()
            .filter(|c| c.level != Level::Ok)
            .all(|c| c.fix.is_some()));
        let near = judge(&Facts {
            disk: Some(disk(100 << 20, 64 << 20)),
            clock_synced: Some(false),
            now_unix: CLOCK_FLOOR + 1,
            ..Facts::default()
        });
        assert_eq!(level(&near, "disk"), Level::Warn);
        assert_eq!(level(&near, "clock"), Level::Warn);
    }

    #[test]
    fn an_unreachable_agent_fails_and_host_checks_still_run() {
        let c = judge(&Facts {
            status: Some(Err("robokud is not running at /x.sock".into())),
            clock_synced: Some(true),
            now_unix: CLOCK_FLOOR + 1,
            ..Facts::default()
        });
        assert_eq!(level(&c, "agent"), Level::Fail);
        assert_eq!(level(&c, "clock"), Level::Ok);
        assert!(c[0].line().starts_with("fail  agent"), "{}", c[0].line());
    }

    #[test]
    fn the_clock_check_says_which_rule_robokud_applies() {
        let mut st = status(true);
        st.clock = Some(roboku_wire::ClockStatus {
            trusted: false,
            synced: Some(false),
            wall_ms: 3_600_000,
            judged_ms: 1_796_000_000_000,
            last_trusted_ms: Some(1_796_000_000_000),
            rule: "untrusted clock: signed commands and bundles are taken when newer".into(),
            reason: Some("the kernel says the clock is not synchronised".into()),
            test_knob: None,
        });
        let c = judge(&Facts {
            status: Some(Ok(st.clone())),
            clock_synced: Some(false),
            now_unix: 3600,
            ..Facts::default()
        });
        let clock = c.iter().find(|c| c.name == "clock").unwrap();
        assert_eq!(clock.level, Level::Fail);
        assert!(
            clock
                .detail
                .contains("robokud: untrusted clock: signed commands"),
            "{}",
            clock.detail
        );
        // A pretended clock is always a warning at least, and says so.
        st.clock.as_mut().unwrap().test_knob = Some("unsynced:0".into());
        st.clock.as_mut().unwrap().trusted = true;
        let c = judge(&Facts {
            status: Some(Ok(st)),
            clock_synced: Some(true),
            now_unix: CLOCK_FLOOR + 1,
            ..Facts::default()
        });
        let clock = c.iter().find(|c| c.name == "clock").unwrap();
        assert_eq!(clock.level, Level::Warn);
        assert!(clock.detail.contains("test knob"), "{}", clock.detail);
    }

    #[test]
    fn slow_joins_warn_with_the_fix_and_fast_ones_are_shown() {
        let mut s = status(true);
        s.cgroup.joins = Some("slow: robokud is not root".into());
        let facts = |s: &Status| Facts {
            status: Some(Ok(s.clone())),
            ..Facts::default()
        };
        let c = judge(&facts(&s));
        let cg = c.iter().find(|c| c.name == "cgroups").unwrap();
        assert_eq!(cg.level, Level::Warn, "{cg:?}");
        assert!(
            cg.detail.ends_with("; joins slow: robokud is not root"),
            "{cg:?}"
        );
        assert!(
            cg.fix
                .as_deref()
                .is_some_and(|f| f.contains("favordynmods")),
            "{cg:?}"
        );
        s.cgroup.joins = Some("fast (favordynmods, /run/roboku-favordynmods)".into());
        let c = judge(&facts(&s));
        let cg = c.iter().find(|c| c.name == "cgroups").unwrap();
        assert_eq!(cg.level, Level::Ok, "{cg:?}");
        assert!(cg
            .detail
            .ends_with("; joins fast (favordynmods, /run/roboku-favordynmods)"));
    }
}
