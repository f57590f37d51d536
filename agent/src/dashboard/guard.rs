//! Who may ask the dashboard what: pure checks on a request's method, path, `Host`, `Origin`
//! and token, with no IO, so every case is a unit test.
//!
//! - `Host` must name this robot: a loopback name, an IP literal (when bound beyond loopback),
//!   or a name in `dashboard_hosts`, with our port. A page on `evil.example` whose name was
//!   re-pointed at the robot (DNS rebinding) sends `Host: evil.example` and is refused (403).
//! - `Origin`, when sent, must be this same host (a form or fetch from another site: 403).
//! - Requests that change something, logs and config need the token (401 without it), on every
//!   bind: dynos share the host's loopback with the operator, so "it came from 127.0.0.1" says
//!   nothing about who asked.

use std::net::IpAddr;

/// What the dashboard answers to.
#[derive(Debug, Clone)]
pub struct Policy {
    pub port: u16,
    /// Bound to a loopback address: only loopback names can reach it.
    pub loopback_only: bool,
    /// Extra names (lowercase) from `dashboard_hosts`.
    pub hosts: Vec<String>,
    pub token: String,
}

/// The parts of a request the checks look at.
#[derive(Debug, Clone, Default)]
pub struct Ask<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    /// From `Authorization: Bearer ...`.
    pub token: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 403: the request names another site.
    Forbidden(String),
    /// 401: the token is missing or wrong.
    Unauthorized(String),
}

/// `name[:port]` or `[v6]:port` -> (name, port).
fn split_host(host: &str) -> Option<(String, Option<u16>)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        (name, after.strip_prefix(':'))
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse().ok()?),
        None => None,
    };
    (!name.is_empty()).then(|| (name.to_ascii_lowercase(), port))
}

impl Policy {
    fn host_ok(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        if port.unwrap_or(80) != self.port {
            return false;
        }
        if name == "localhost" {
            return true;
        }
        match name.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback() || !self.loopback_only,
            Err(_) => self.hosts.contains(&name),
        }
    }

    /// Requests that must carry the token.
    pub fn needs_token(method: &str, path: &str) -> bool {
        if !matches!(method, "GET" | "HEAD") {
            return true;
        }
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        matches!(
            parts.as_slice(),
            ["v1", "apps", _, "logs"] | ["v1", "apps", _, "config"] | ["v1", "dashboard"]
        )
    }

    pub fn check(&self, ask: &Ask) -> Result<(), Refusal> {
        let host = ask
            .host
            .ok_or_else(|| Refusal::Forbidden("no Host header".into()))?;
        if !self.host_ok(host) {
            return Err(Refusal::Forbidden(format!(
                "Host {host:?} is not this robot (allowed: localhost, loopback and IP addresses \
                 on port {}, or a name in the dashboard_hosts setting)",
                self.port
            )));
        }
        if let Some(origin) = ask.origin {
            let same = origin
                .strip_prefix("http://")
                .is_some_and(|o| o.eq_ignore_ascii_case(host));
            if !same {
                return Err(Refusal::Forbidden(format!(
                    "Origin {origin:?} is not this dashboard (http://{host})"
                )));
            }
        }
        if Policy::needs_token(ask.method, ask.path) {
            match ask.token {
                Some(t) if same_token(t, &self.token) => {}
                Some(_) => return Err(Refusal::Unauthorized("wrong dashboard token".into())),
                None => {
                    return Err(Refusal::Unauthorized(format!(
                        "{} {} needs the dashboard token (`roboku dashboard:url` prints a URL \
                         with it)",
                        ask.method, ask.path
                    )))
                }
            }
        }
        Ok(())
    }
}

/// Compares in time independent of where the first difference is.
fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(loopback_only: bool) -> Policy {
        Policy {
            port: 7070,
            loopback_only,
            hosts: vec!["robot-7.local".into()],
            token: "s3cret".into(),
        }
    }

    fn get<'a>(path: &'a str, host: &'a str) -> Ask<'a> {
        Ask {
            method: "GET",
            path,
            host: Some(host),
            ..Default::default()
        }
    }

    #[test]
    fn host_must_name_this_robot_on_its_port() {
        let lo = policy(true);
        for ok in [
            "localhost:7070",
            "127.0.0.1:7070",
            "[::1]:7070",
            "LOCALHOST:7070",
        ] {
            assert_eq!(lo.check(&get("/", ok)), Ok(()), "{ok}");
        }
        for bad in [
            "evil.example:7070",
            "localhost:80",
            "localhost",
            "10.0.0.5:7070",
            ":7070",
            "[::1",
        ] {
            assert!(
                matches!(lo.check(&get("/", bad)), Err(Refusal::Forbidden(_))),
                "{bad}"
            );
        }
        let wide = policy(false);
        for ok in ["10.0.0.5:7070", "[fe80::1]:7070", "robot-7.local:7070"] {
            assert_eq!(wide.check(&get("/", ok)), Ok(()), "{ok}");
        }
        assert!(matches!(
            wide.check(&get("/", "evil.example:7070")),
            Err(Refusal::Forbidden(_))
        ));
        let none = Ask {
            method: "GET",
            path: "/",
            ..Default::default()
        };
        assert!(matches!(wide.check(&none), Err(Refusal::Forbidden(_))));
    }

    #[test]
    fn origin_must_be_the_same_host() {
        let p = policy(false);
        let mut a = get("/v1/status", "10.0.0.5:7070");
        a.origin = Some("http://10.0.0.5:7070");
        assert_eq!(p.check(&a), Ok(()));
        for bad in [
            "http://evil.example",
            "null",
            "https://10.0.0.5:7070",
            "http://10.0.0.5:7071",
        ] {
            a.origin = Some(bad);
            assert!(matches!(p.check(&a), Err(Refusal::Forbidden(_))), "{bad}");
        }
    }

    #[test]
    fn changes_logs_and_config_need_the_token() {
        let p = policy(true);
        let host = "127.0.0.1:7070";
        for (method, path) in [
            ("POST", "/v1/apps/demo/rollback"),
            ("PATCH", "/v1/apps/demo/config"),
            ("DELETE", "/v1/apps/demo"),
            ("GET", "/v1/apps/demo/logs"),
            ("GET", "/v1/apps/demo/config"),
            ("GET", "/v1/dashboard"),
        ] {
            let mut a = Ask {
                method,
                path,
                host: Some(host),
                ..Default::default()
            };
            assert!(
                matches!(p.check(&a), Err(Refusal::Unauthorized(_))),
                "{method} {path}"
            );
            a.token = Some("s3creT");
            assert!(
                matches!(p.check(&a), Err(Refusal::Unauthorized(_))),
                "wrong token"
            );
            a.token = Some("s3cret");
            assert_eq!(p.check(&a), Ok(()), "{method} {path}");
        }
        for path in [
            "/",
            "/metrics",
            "/healthz",
            "/v1/status",
            "/v1/apps/demo/ps",
            "/dash/snapshot",
        ] {
            assert_eq!(p.check(&get(path, host)), Ok(()), "{path}");
        }
        // The token never outweighs a forged Host.
        let mut a = Ask {
            method: "POST",
            path: "/v1/apps/demo/rollback",
            host: Some("evil:7070"),
            ..Default::default()
        };
        a.token = Some("s3cret");
        assert!(matches!(p.check(&a), Err(Refusal::Forbidden(_))));
    }
}
