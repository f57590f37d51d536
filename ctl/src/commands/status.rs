//! `status`: the agent's own health: version, cgroup enforcement, dyno user, counts, memory.

use super::Ctx;
use crate::output;
use roboku_wire::{Status, API_PREFIX};
use serde_json::Value;

pub async fn run(ctx: &Ctx) -> anyhow::Result<()> {
    let v: Value = ctx.client.get(&format!("{API_PREFIX}/status")).await?;
    let Some(status) = ctx.typed::<Status>(v)? else {
        return Ok(());
    };
    Ok(output::print(&render(&status, output::now_ms()))?)
}

fn render(s: &Status, now: u64) -> String {
    let cgroup = match (&s.cgroup.enforced, &s.cgroup.reason) {
        (true, _) => format!("{}, limits enforced ({})", s.cgroup.mode, s.cgroup.root),
        (false, Some(reason)) => format!("{}, limits NOT enforced: {reason}", s.cgroup.mode),
        (false, None) => format!("{}, limits NOT enforced", s.cgroup.mode),
    };
    let cgroup = match &s.cgroup.joins {
        Some(j) => format!("{cgroup}; joins {j}"),
        None => cgroup,
    };
    let user = match &s.dyno_user_note {
        Some(note) => format!("{} ({note})", s.dyno_user),
        None => s.dyno_user.clone(),
    };
    let field = |k: &str, v: String| vec![k.to_string(), v];
    let rows = vec![
        field("Data dir:", s.data_dir.clone()),
        field("Socket:", s.socket.clone()),
        field("Cgroups:", cgroup),
        field("Dyno user:", user),
        field("Apps:", s.apps.to_string()),
        field(
            "Dynos:",
            format!("{}/{} running", s.dynos_running, s.dynos_desired),
        ),
        field("Agent RSS:", output::bytes(s.agent_rss)),
    ];
    let mut rows = rows;
    if let Some(c) = &s.clock {
        rows.push(field("Clock:", clock_line(c)));
    }
    format!(
        "robokud {} (pid {}, up {})\n{}",
        s.version,
        s.pid,
        output::age(now, s.started_at),
        output::table(&rows)
    )
}

/// `synced (2026-12-03T08:00:00Z)`, or `UNTRUSTED: why; the rule in force; last trusted ...`.
pub fn clock_line(c: &roboku_wire::ClockStatus) -> String {
    let knob = match &c.test_knob {
        Some(k) => format!(" [test knob --test-clock {k}]"),
        None => String::new(),
    };
    if c.trusted {
        return format!("synced ({}){knob}", roboku_wire::iso8601(c.wall_ms));
    }
    let last = match c.last_trusted_ms {
        Some(t) => format!("last trusted time {}", roboku_wire::iso8601(t)),
        None => "no trusted time yet".to_string(),
    };
    format!(
        "UNTRUSTED: {}; reads {}, {last}; {}{knob}",
        c.reason.as_deref().unwrap_or("unsynchronised"),
        roboku_wire::iso8601(c.wall_ms),
        c.rule
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use roboku_wire::CgroupStatus;

    #[test]
    fn shows_why_limits_are_not_enforced() {
        let s = Status {
            version: "0.1.0".into(),
            pid: 42,
            data_dir: "/var/lib/roboku".into(),
            socket: "/var/lib/roboku/robokud.sock".into(),
            started_at: 0,
            cgroup: CgroupStatus {
                mode: "none".into(),
                root: String::new(),
                enforced: false,
                reason: Some("no writable cgroup".into()),
                joins: None,
            },
            dyno_user: "root".into(),
            dyno_user_note: Some("no user dyno".into()),
            apps: 2,
            dynos_running: 3,
            dynos_desired: 4,
            agent_rss: 12 << 20,
            clock: None,
        };
        let text = render(&s, 7_200_000);
        assert!(
            text.starts_with("robokud 0.1.0 (pid 42, up 2h)\n"),
            "{text}"
        );
        assert!(
            text.contains("Cgroups:    none, limits NOT enforced: no writable cgroup\n"),
            "{text}"
        );
        assert!(text.contains("Dyno user:  root (no user dyno)\n"), "{text}");
        assert!(text.contains("Dynos:      3/4 running\n"), "{text}");
        assert!(text.contains("Agent RSS:  12M\n"), "{text}");
        let mut fast = s.clone();
        fast.cgroup = CgroupStatus {
            mode: "v1".into(),
            root: "roboku".into(),
            enforced: true,
            reason: None,
            joins: Some("fast (favordynmods, /run/roboku-favordynmods)".into()),
        };
        let text = render(&fast, 0);
        assert!(
            text.contains(
                "Cgroups:    v1, limits enforced (roboku); joins fast (favordynmods, \
                 /run/roboku-favordynmods)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn says_when_the_clock_is_untrusted_and_the_rule() {
        let c = roboku_wire::ClockStatus {
            trusted: false,
            synced: Some(false),
            wall_ms: 5_000,
            judged_ms: 1_796_000_000_000,
            last_trusted_ms: Some(1_796_000_000_000),
            rule: "untrusted clock: signed commands ...".into(),
            reason: Some("the kernel says the clock is not synchronised".into()),
            test_knob: Some("unsynced:0".into()),
        };
        let line = clock_line(&c);
        assert!(line.starts_with("UNTRUSTED: the kernel says"), "{line}");
        assert!(line.contains("reads 1970-01-01T00:00:05.000Z"), "{line}");
        assert!(line.contains("last trusted time 2026-"), "{line}");
        assert!(line.contains("untrusted clock: signed commands"), "{line}");
        assert!(
            line.ends_with("[test knob --test-clock unsynced:0]"),
            "{line}"
        );
        let ok = roboku_wire::ClockStatus {
            trusted: true,
            test_knob: None,
            ..c
        };
        assert!(
            clock_line(&ok).starts_with("synced (1970"),
            "{}",
            clock_line(&ok)
        );
    }
}
