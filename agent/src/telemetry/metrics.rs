//! `/metrics` in the Prometheus text exposition format (version 0.0.4), written by hand: a few
//! dozen lines instead of a crate (see docs/dashboard.md for the measured alternative). The
//! dyno numbers are the engine's own `ps` values, so `/metrics` and `roboku ps --json` agree.

use super::host::HostSample;
use roboku_wire::{DynoInfo, DynoState, Status};
use std::collections::BTreeMap;
use std::fmt::Write;

/// One app's part of the page.
#[derive(Debug, Clone, Default)]
pub struct AppMetrics {
    pub app: String,
    pub release: Option<u32>,
    pub dynos: Vec<DynoInfo>,
    /// `memory_max` by process type.
    pub memory_limits: BTreeMap<String, u64>,
}

pub struct Input<'a> {
    pub status: &'a Status,
    pub apps: &'a [AppMetrics],
    pub host: Option<&'a HostSample>,
    pub dropped_rounds: u64,
}

/// The content type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family being written: its `# HELP`/`# TYPE` header comes once, before its first
/// sample, and a family with no samples writes nothing.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    started: bool,
}

impl Family<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        if !value.is_finite() {
            return;
        }
        if !self.started {
            self.started = true;
            let _ = writeln!(self.out, "# HELP {} {}", self.name, self.help);
            let _ = writeln!(self.out, "# TYPE {} {}", self.name, self.kind);
        }
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Label values escape backslash, double quote and newline.
pub fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

pub fn render(input: &Input) -> String {
    let mut out = String::with_capacity(4096 + input.apps.len() * 2048);
    macro_rules! family {
        ($name:literal, $kind:literal, $help:literal, |$f:ident| $body:block) => {{
            let mut $f = Family {
                out: &mut out,
                name: $name,
                help: $help,
                kind: $kind,
                started: false,
            };
            $body
        }};
    }
    let s = input.status;
    family!(
        "roboku_agent_info",
        "gauge",
        "The agent's version (always 1).",
        |f| { f.sample(&[("version", &s.version), ("cgroup", &s.cgroup.mode)], 1.0) }
    );
    family!(
        "roboku_agent_resident_memory_bytes",
        "gauge",
        "Resident memory of robokud.",
        |f| { f.sample(&[], s.agent_rss as f64) }
    );
    family!(
        "roboku_agent_limits_enforced",
        "gauge",
        "1 when cgroups enforce dyno limits.",
        |f| { f.sample(&[], if s.cgroup.enforced { 1.0 } else { 0.0 }) }
    );
    family!(
        "roboku_telemetry_dropped_rounds_total",
        "counter",
        "Sampling rounds the telemetry history dropped because it was behind.",
        |f| { f.sample(&[], input.dropped_rounds as f64) }
    );
    family!(
        "roboku_app_release",
        "gauge",
        "Current release version of the app.",
        |f| {
            for a in input.apps {
                if let Some(v) = a.release {
                    f.sample(&[("app", &a.app)], v as f64);
                }
            }
        }
    );
    let dynos = || {
        input
            .apps
            .iter()
            .flat_map(|a| a.dynos.iter().map(move |d| (a, d)))
    };
    family!(
        "roboku_dyno_up",
        "gauge",
        "1 when the dyno's state is up.",
        |f| {
            for (a, d) in dynos() {
                let up = if d.state == DynoState::Up { 1.0 } else { 0.0 };
                f.sample(
                    &[
                        ("app", &a.app),
                        ("dyno", &d.name),
                        ("state", d.state.as_str()),
                    ],
                    up,
                );
            }
        }
    );
    family!(
        "roboku_dyno_cpu_percent",
        "gauge",
        "CPU use over the last sampling interval, percent of one core.",
        |f| {
            for (a, d) in dynos() {
                if let Some(c) = d.cpu_percent {
                    f.sample(&[("app", &a.app), ("dyno", &d.name)], c);
                }
            }
        }
    );
    family!(
        "roboku_dyno_memory_bytes",
        "gauge",
        "Memory of the dyno's cgroup (or its RSS without cgroups).",
        |f| {
            for (a, d) in dynos() {
                if let Some(m) = d.memory_bytes {
                    f.sample(&[("app", &a.app), ("dyno", &d.name)], m as f64);
                }
            }
        }
    );
    family!(
        "roboku_dyno_memory_limit_bytes",
        "gauge",
        "memory_max of the dyno's process type.",
        |f| {
            for (a, d) in dynos() {
                if let Some(m) = a.memory_limits.get(&d.ptype) {
                    f.sample(&[("app", &a.app), ("dyno", &d.name)], *m as f64);
                }
            }
        }
    );
    family!(
        "roboku_dyno_pids",
        "gauge",
        "Processes in the dyno's cgroup.",
        |f| {
            for (a, d) in dynos() {
                if let Some(p) = d.pids {
                    f.sample(&[("app", &a.app), ("dyno", &d.name)], p as f64);
                }
            }
        }
    );
    family!(
        "roboku_dyno_restarts_total",
        "counter",
        "Restarts of the dyno.",
        |f| {
            for (a, d) in dynos() {
                f.sample(&[("app", &a.app), ("dyno", &d.name)], d.restarts as f64);
            }
        }
    );
    family!(
        "roboku_dyno_oom_kills_total",
        "counter",
        "OOM kills inside the dyno's cgroups.",
        |f| {
            for (a, d) in dynos() {
                f.sample(&[("app", &a.app), ("dyno", &d.name)], d.oom_kills as f64);
            }
        }
    );
    if let Some(h) = input.host {
        host(&mut out, h);
    }
    out
}

fn host(out: &mut String, h: &HostSample) {
    let opt = |v: Option<u64>| v.map(|v| v as f64).unwrap_or(f64::NAN);
    let mut one = |name, help, value: f64| {
        Family {
            out: &mut *out,
            name,
            help,
            kind: "gauge",
            started: false,
        }
        .sample(&[], value)
    };
    one(
        "roboku_host_cpu_percent",
        "Busy share of all CPUs, percent.",
        h.cpu_percent.unwrap_or(f64::NAN),
    );
    one("roboku_host_cpus", "Online CPUs.", h.cpus as f64);
    one(
        "roboku_host_memory_total_bytes",
        "MemTotal.",
        opt(h.mem_total),
    );
    one(
        "roboku_host_memory_available_bytes",
        "MemAvailable.",
        opt(h.mem_available),
    );
    one(
        "roboku_host_disk_total_bytes",
        "Size of the data dir's filesystem.",
        opt(h.disk_total),
    );
    one(
        "roboku_host_disk_free_bytes",
        "Space available to robokud on the data dir's filesystem.",
        opt(h.disk_free),
    );
    one(
        "roboku_host_uptime_seconds",
        "Seconds since boot.",
        h.uptime_secs.unwrap_or(f64::NAN),
    );
    let mut f = Family {
        out: &mut *out,
        name: "roboku_host_load",
        help: "Load average.",
        kind: "gauge",
        started: false,
    };
    if let Some(l) = h.load {
        for (w, v) in ["1m", "5m", "15m"].iter().zip(l) {
            f.sample(&[("window", w)], v);
        }
    }
    let mut f = Family {
        out: &mut *out,
        name: "roboku_host_temperature_celsius",
        help: "Thermal zone temperatures.",
        kind: "gauge",
        started: false,
    };
    for t in &h.temps {
        f.sample(&[("zone", &t.zone)], t.celsius);
    }
    let mut f = Family {
        out: &mut *out,
        name: "roboku_host_pressure_percent",
        help: "Pressure stall information, avg10.",
        kind: "gauge",
        started: false,
    };
    if let Some(p) = &h.pressure {
        for (res, kind, v) in [
            ("cpu", "some", p.cpu_some),
            ("memory", "some", p.memory_some),
            ("memory", "full", p.memory_full),
            ("io", "some", p.io_some),
            ("io", "full", p.io_full),
        ] {
            if let Some(v) = v {
                f.sample(&[("resource", res), ("kind", kind)], v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roboku_wire::CgroupStatus;

    pub(crate) fn status() -> Status {
        Status {
            version: "0.1.0".into(),
            pid: 1,
            data_dir: "/d".into(),
            socket: "/d/s".into(),
            started_at: 0,
            cgroup: CgroupStatus {
                mode: "v1".into(),
                root: "roboku".into(),
                enforced: true,
                reason: None,
                joins: None,
            },
            dyno_user: "dynamic".into(),
            dyno_user_note: None,
            apps: 1,
            dynos_running: 1,
            dynos_desired: 1,
            agent_rss: 9_000_000,
            clock: None,
        }
    }

    fn dyno(name: &str, cpu: Option<f64>) -> DynoInfo {
        DynoInfo {
            name: name.into(),
            ptype: "web".into(),
            index: 1,
            state: DynoState::Up,
            pid: Some(7),
            port: 20000,
            release: 3,
            since: 0,
            restarts: 2,
            last_exit: None,
            next_retry_at: None,
            memory_bytes: Some(1048576),
            cpu_percent: cpu,
            pids: Some(2),
            oom_kills: 0,
            user: "u".into(),
            health: None,
        }
    }

    #[test]
    fn renders_families_once_with_escaped_labels_and_skips_unknowns() {
        let apps = vec![AppMetrics {
            app: "de\"mo".into(),
            release: Some(3),
            dynos: vec![dyno("web.1", Some(12.5)), dyno("web.2", None)],
            memory_limits: [("web".to_string(), 64u64 << 20)].into(),
        }];
        let host = HostSample {
            cpus: 2,
            load: Some([0.5, 1.0, 1.5]),
            ..Default::default()
        };
        let text = render(&Input {
            status: &status(),
            apps: &apps,
            host: Some(&host),
            dropped_rounds: 0,
        });
        assert_eq!(
            text.matches("# TYPE roboku_dyno_cpu_percent gauge").count(),
            1
        );
        assert!(
            text.contains("roboku_dyno_cpu_percent{app=\"de\\\"mo\",dyno=\"web.1\"} 12.5\n"),
            "{text}"
        );
        assert!(
            !text.contains("dyno=\"web.2\"} NaN"),
            "unknown cpu is left out"
        );
        assert!(text.contains(
            "roboku_dyno_memory_limit_bytes{app=\"de\\\"mo\",dyno=\"web.2\"} 67108864\n"
        ));
        assert!(text.contains("roboku_dyno_restarts_total{app=\"de\\\"mo\",dyno=\"web.1\"} 2\n"));
        assert!(text.contains("roboku_host_load{window=\"15m\"} 1.5\n"));
        assert!(
            !text.contains("roboku_host_memory_total_bytes"),
            "no meminfo, no family"
        );
        assert!(
            !text.contains("roboku_host_temperature_celsius"),
            "no zones, no header"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().unwrap().is_finite(), "{line}");
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
