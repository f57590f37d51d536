//! The checks of what robokud reports about itself (`GET /v1/doctor`): the fleet link, the
//! trusted-key files, systemd, the dashboard's address and the add-on servers. Pure: facts in,
//! one [`Check`] per line out.

use super::{Check, Level};
use roboku_wire::doctor::DoctorFacts;

pub fn judge(f: &DoctorFacts) -> Vec<Check> {
    let mut out = vec![fleet(f)];
    if !f.key_files.is_empty() {
        out.push(keys(f));
    }
    out.push(systemd(f));
    out.push(dashboard(f));
    out.push(addons(f));
    out
}

fn fleet(f: &DoctorFacts) -> Check {
    use Level::{Fail, Ok, Warn};
    let l = &f.fleet;
    let broker = l.broker.as_deref().unwrap_or("the broker");
    if !l.configured {
        return Check::new(
            "fleet",
            Ok,
            "no broker set: fleet control by offline bundles only".into(),
            None,
        );
    }
    if !l.connected {
        let why = l.last_error.as_deref().unwrap_or("no connection yet");
        return Check::new(
            "fleet",
            Fail,
            format!("not connected to {broker}: {why}"),
            Some("check `mqtt.broker`, its TLS files and the network to the broker (robokud retries by itself)"),
        );
    }
    if l.allow_unsigned {
        return Check::new(
            "fleet",
            Warn,
            format!("connected to {broker}, and UNSIGNED commands are accepted (dev mode)"),
            Some("turn `mqtt.allow_unsigned` off and set `mqtt.trusted_key_files`"),
        );
    }
    if l.keys == 0 {
        return Check::new(
            "fleet",
            Warn,
            format!("connected to {broker}, but no trusted key: every fleet command is refused"),
            Some("add the fleet's public key to `mqtt.trusted_key_files`"),
        );
    }
    Check::new(
        "fleet",
        Ok,
        format!("connected to {broker}, {} trusted keys", l.keys),
        None,
    )
}

fn keys(f: &DoctorFacts) -> Check {
    use Level::{Fail, Ok};
    for k in &f.key_files {
        if let Some(e) = &k.error {
            return Check::new(
                "keys",
                Fail,
                format!("{}: {e}", k.path),
                Some("put the fleet's public key there, or fix `mqtt.trusted_key_files`"),
            );
        }
        if let Some(mode) = k.mode.filter(|m| m & 0o022 != 0) {
            return Check::new(
                "keys",
                Fail,
                format!(
                    "{} is writable by group or others (mode {mode:o}): whoever writes it can sign fleet commands",
                    k.path
                ),
                Some(&format!("chmod go-w {}", k.path)),
            );
        }
        if let Some(uid) = k.uid.filter(|u| *u != 0) {
            return Check::new(
                "keys",
                Fail,
                format!(
                    "{} is owned by uid {uid}, not root: that user can replace it",
                    k.path
                ),
                Some(&format!("chown root {}", k.path)),
            );
        }
        if let Some(dir) = k.writable_parents.first() {
            return Check::new(
                "keys",
                Fail,
                format!(
                    "{dir} (holding {}) is writable by group or others: the key can be swapped",
                    k.path
                ),
                Some(&format!("chmod go-w {dir}")),
            );
        }
    }
    Check::new(
        "keys",
        Ok,
        format!(
            "{} trusted-key files, root's, not writable by others",
            f.key_files.len()
        ),
        None,
    )
}

fn systemd(f: &DoctorFacts) -> Check {
    use Level::{Ok, Warn};
    let s = &f.systemd;
    let pid1 = s.pid1.as_deref().unwrap_or("unknown");
    match (s.unit, s.notify, s.watchdog_usec) {
        (false, _, _) if pid1 == "systemd" => Check::new(
            "systemd",
            Warn,
            "robokud was not started by systemd, though systemd runs this host".into(),
            Some("systemctl enable --now robokud"),
        ),
        (false, _, _) => Check::new(
            "systemd",
            Warn,
            format!("no systemd here (pid 1 is {pid1}): nothing restarts robokud if it dies"),
            Some("run robokud under a supervisor (systemd/robokud.service)"),
        ),
        (true, false, _) => Check::new(
            "systemd",
            Warn,
            "a systemd unit without NOTIFY_SOCKET: systemd cannot tell when robokud is ready"
                .into(),
            Some("Type=notify and NotifyAccess=main in robokud.service (as systemd/ ships it)"),
        ),
        (true, true, None) => Check::new(
            "systemd",
            Warn,
            "a notify unit without a watchdog: a stuck robokud is not restarted".into(),
            Some("WatchdogSec=30 in robokud.service (as systemd/ ships it)"),
        ),
        (true, true, Some(us)) => Check::new(
            "systemd",
            Ok,
            format!("a notify unit, watchdog {}s", us / 1_000_000),
            None,
        ),
    }
}

fn dashboard(f: &DoctorFacts) -> Check {
    use Level::{Ok, Warn};
    match &f.dashboard {
        None => Check::new("dashboard", Ok, "off".into(), None),
        Some(d) if d.loopback => {
            Check::new("dashboard", Ok, format!("{} (loopback only)", d.addr), None)
        }
        Some(d) => Check::new(
            "dashboard",
            Warn,
            format!(
                "{} listens beyond loopback: the network reaches it (its token guards changes)",
                d.addr
            ),
            Some("bind it to 127.0.0.1:7070 unless this network is trusted (setting `dashboard`)"),
        ),
    }
}

fn addons(f: &DoctorFacts) -> Check {
    use Level::{Fail, Ok};
    let down: Vec<_> = f.addon_servers.iter().filter(|a| a.state != "up").collect();
    if let Some(a) = down.first() {
        let mut detail = format!("{} ({} of {}) is {}", a.name, a.kind, a.app, a.state);
        if let Some(d) = &a.detail {
            detail.push_str(&format!(": {d}"));
        }
        if a.restarts > 0 {
            detail.push_str(&format!(", restarted {} times", a.restarts));
        }
        if down.len() > 1 {
            detail.push_str(&format!(" (and {} more)", down.len() - 1));
        }
        return Check::new(
            "add-ons",
            Fail,
            detail,
            Some(&format!(
                "see `roboku addons -a {}` and addons/{}/server.log in the data dir",
                a.app, a.name
            )),
        );
    }
    let names: Vec<_> = f.addon_servers.iter().map(|a| a.name.as_str()).collect();
    let detail = if names.is_empty() {
        "no add-on servers".to_string()
    } else {
        format!("{} up: {}", names.len(), names.join(", "))
    };
    Check::new("add-ons", Ok, detail, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use roboku_wire::doctor::{AddonServer, Dashboard, FleetLink, KeyFile, Systemd};

    fn healthy() -> DoctorFacts {
        DoctorFacts {
            fleet: FleetLink {
                configured: true,
                broker: Some("mqtts://fleet:8883".into()),
                connected: true,
                last_error: None,
                allow_unsigned: false,
                keys: 1,
            },
            key_files: vec![KeyFile {
                path: "/etc/roboku/fleet.pub".into(),
                mode: Some(0o644),
                uid: Some(0),
                error: None,
                writable_parents: vec![],
            }],
            systemd: Systemd {
                unit: true,
                notify: true,
                watchdog_usec: Some(30_000_000),
                pid1: Some("systemd".into()),
            },
            dashboard: Some(Dashboard {
                addr: "http://127.0.0.1:7070/".into(),
                loopback: true,
            }),
            addon_servers: vec![AddonServer {
                name: "nav-mqtt".into(),
                kind: "mqtt".into(),
                app: "nav".into(),
                state: "up".into(),
                detail: None,
                restarts: 0,
            }],
        }
    }

    fn find<'a>(c: &'a [Check], name: &str) -> &'a Check {
        c.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn a_robot_under_systemd_with_a_connected_fleet_is_all_ok() {
        let c = judge(&healthy());
        assert_eq!(
            c.iter().map(|c| c.name).collect::<Vec<_>>(),
            ["fleet", "keys", "systemd", "dashboard", "add-ons"]
        );
        assert!(c.iter().all(|c| c.level == Level::Ok), "{c:?}");
        assert!(find(&c, "systemd").detail.contains("watchdog 30s"));
    }

    #[test]
    fn each_problem_says_what_and_how_to_fix_it() {
        let mut f = healthy();
        f.fleet.connected = false;
        f.fleet.last_error = Some("connection refused".into());
        f.key_files[0].mode = Some(0o666);
        f.systemd.watchdog_usec = None;
        f.dashboard = Some(Dashboard {
            addr: "http://0.0.0.0:7070/".into(),
            loopback: false,
        });
        f.addon_servers[0].state = "backoff".into();
        f.addon_servers[0].restarts = 3;
        let c = judge(&f);
        let fleet = find(&c, "fleet");
        assert!(fleet.level == Level::Fail && fleet.detail.contains("connection refused"));
        let keys = find(&c, "keys");
        assert!(
            keys.level == Level::Fail
                && keys.fix.as_deref() == Some("chmod go-w /etc/roboku/fleet.pub")
        );
        assert_eq!(find(&c, "systemd").level, Level::Warn);
        assert_eq!(find(&c, "dashboard").level, Level::Warn);
        let a = find(&c, "add-ons");
        assert!(
            a.level == Level::Fail && a.detail.contains("nav-mqtt") && a.detail.contains("3 times")
        );
        assert!(c
            .iter()
            .filter(|c| c.level != Level::Ok)
            .all(|c| c.fix.is_some()));

        let mut f = healthy();
        f.key_files[0].uid = Some(1000);
        assert_eq!(find(&judge(&f), "keys").level, Level::Fail);
        f.key_files[0].uid = Some(0);
        f.key_files[0].writable_parents = vec!["/etc/roboku".into()];
        assert!(find(&judge(&f), "keys").detail.contains("/etc/roboku"));
        f.fleet.allow_unsigned = true;
        assert_eq!(find(&judge(&f), "fleet").level, Level::Warn);
        f.fleet = FleetLink::default();
        f.key_files.clear();
        f.systemd = Systemd {
            pid1: Some("bash".into()),
            ..Systemd::default()
        };
        let c = judge(&f);
        assert_eq!(find(&c, "fleet").level, Level::Ok, "no broker is fine");
        assert!(c.iter().all(|c| c.name != "keys"));
        assert!(find(&c, "systemd").detail.contains("pid 1 is bash"));
    }
}
