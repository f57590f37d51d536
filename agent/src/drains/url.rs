//! Drain URLs, pure: what `drains:add` accepts, and why it refuses the rest.
//!
//! `syslog+tcp://host:port` (and `syslog://`, as Heroku), `syslog+tls://host:port`,
//! `syslog+udp://host:port`, `https://[user:password@]host[:port]/path`,
//! `mqtt://[user[:password]@]host[:port]/topic` (and `mqtts://`, TLS).

use std::fmt;

/// Longest URL accepted.
const MAX_LEN: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
    Udp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Syslog {
        transport: Transport,
        host: String,
        port: u16,
    },
    Https {
        host: String,
        port: u16,
        /// Path and query, starting with `/`.
        path: String,
        /// `user:password` from the URL, sent as HTTP basic auth.
        basic: Option<String>,
    },
    /// One QoS 1 message per line on `topic`, confirmed by the broker's PUBACK.
    Mqtt {
        tls: bool,
        host: String,
        port: u16,
        topic: String,
        user: Option<String>,
        password: Option<String>,
    },
}

impl Target {
    pub fn host(&self) -> &str {
        match self {
            Target::Syslog { host, .. }
            | Target::Https { host, .. }
            | Target::Mqtt { host, .. } => host,
        }
    }
    pub fn port(&self) -> u16 {
        match self {
            Target::Syslog { port, .. }
            | Target::Https { port, .. }
            | Target::Mqtt { port, .. } => *port,
        }
    }
}

/// Why a URL was refused; the message names the part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(pub String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UrlError {}

const SCHEMES: &str =
    "syslog+tcp://, syslog+tls://, syslog+udp://, syslog://, https://, mqtt:// or mqtts://";

pub fn parse(url: &str) -> Result<Target, UrlError> {
    let err = |why: String| Err(UrlError(format!("drain URL {}: {why}", shown(url))));
    if url.len() > MAX_LEN {
        return err(format!("longer than {MAX_LEN} bytes"));
    }
    if let Some(c) = url.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return err(format!(
            "contains {c:?}; URLs have no spaces or control characters"
        ));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return err(format!("no scheme; use {SCHEMES}"));
    };
    let transport = match scheme.to_ascii_lowercase().as_str() {
        "syslog" | "syslog+tcp" => Some(Transport::Tcp),
        "syslog+tls" => Some(Transport::Tls),
        "syslog+udp" => Some(Transport::Udp),
        "https" => None,
        "http" => {
            return err(
                "plain http:// would send the logs (and any credentials) in clear; \
                 use https://"
                    .into(),
            )
        }
        "mqtt" | "mqtts" => return mqtt(url, scheme.eq_ignore_ascii_case("mqtts"), rest),
        other => return err(format!("unknown scheme {other:?}; use {SCHEMES}")),
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if path.contains('#') {
        return err("a #fragment means nothing to a drain; remove it".into());
    }
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = split_host_port(hostport)
        .map_err(|why| UrlError(format!("drain URL {}: {why}", shown(url))))?;
    match transport {
        Some(transport) => {
            if userinfo.is_some() {
                return err(
                    "syslog drains take no user or password (syslog has no login); \
                     remove the part before @"
                        .into(),
                );
            }
            if !(path.is_empty() || path == "/") {
                // Not echoed: a query may hold a token (shown() has hidden its values above).
                return err(
                    "syslog drains have no path or query; remove what follows the port".into(),
                );
            }
            let Some(port) = port else {
                return err(
                    "syslog drains need a port, e.g. syslog+tls://logs.example:6514".into(),
                );
            };
            Ok(Target::Syslog {
                transport,
                host,
                port,
            })
        }
        None => {
            if let Some(u) = userinfo {
                if !u.contains(':') || u.starts_with(':') {
                    return err("credentials must be user:password".into());
                }
            }
            let path = match path {
                "" => "/".to_string(),
                p if p.starts_with('?') => format!("/{p}"),
                p => p.to_string(),
            };
            Ok(Target::Https {
                host,
                port: port.unwrap_or(443),
                path,
                basic: userinfo.map(str::to_string),
            })
        }
    }
}

/// `mqtt[s]://[user[:password]@]host[:port]/topic`: the topic is the path without its first `/`.
fn mqtt(url: &str, tls: bool, rest: &str) -> Result<Target, UrlError> {
    let err = |why: &str| Err(UrlError(format!("drain URL {}: {why}", shown(url))));
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if path.contains('#') || path.contains('+') {
        return err(
            "MQTT wildcards (+, #) cannot be published to; name one topic, \
             e.g. mqtt://broker:1883/robots/r17/logs",
        );
    }
    if path.contains('?') {
        return err("MQTT drains take no ?query");
    }
    let topic = path.strip_prefix('/').unwrap_or(path);
    if topic.is_empty() {
        return err("MQTT drains need a topic, e.g. mqtt://broker:1883/robots/r17/logs");
    }
    if topic.starts_with('$') {
        return err("topics starting with $ are the broker's own");
    }
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = split_host_port(hostport)
        .map_err(|why| UrlError(format!("drain URL {}: {why}", shown(url))))?;
    let (user, password) = match userinfo {
        None => (None, None),
        Some(u) => match u.split_once(':') {
            Some(("", _)) => return err("a password with no user"),
            Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
            None if u.is_empty() => return err("an empty user before @"),
            None => (Some(u.to_string()), None),
        },
    };
    Ok(Target::Mqtt {
        tls,
        host,
        port: port.unwrap_or(if tls { 8883 } else { 1883 }),
        topic: topic.to_string(),
        user,
        password,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return Err("unclosed [ in the host".into());
        };
        match after {
            "" => (h, None),
            a => match a.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err(format!("unexpected {a:?} after the host")),
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(format!("bad host {host:?}"));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("bad port {p:?} (1-65535)")),
        },
    };
    Ok((host.to_string(), port))
}

/// `url` with its secrets replaced by `***`, for listings and messages: the password, every
/// query parameter's value (tokens often ride there: `?api_key=...`; the names stay), a bare
/// query word and a fragment.
pub fn shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return without_query_values(url);
    };
    // The authority ends at the first '/': a '?', '#' or '@' a password holds raw (it should be
    // %-escaped, people paste it as it is) then hides more, never less.
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (user, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            (format!("{user}:***@"), host)
        }
        None => (String::new(), authority),
    };
    format!(
        "{scheme}://{user}{}",
        without_query_values(&format!("{host}{path}"))
    )
}

/// `s` with every query value and a fragment replaced by `***`.
fn without_query_values(s: &str) -> String {
    let (rest, fragment) = match s.split_once('#') {
        Some((r, f)) => (r, !f.is_empty()),
        None => (s, false),
    };
    let mut out = match rest.split_once('?') {
        Some((base, q)) => format!("{base}?{}", without_values(q)),
        None => rest.to_string(),
    };
    if fragment {
        out.push_str("#***");
    }
    out
}

/// `a=1&b=&c` -> `a=***&b=&***`.
fn without_values(query: &str) -> String {
    query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, "")) => format!("{k}="),
            Some((k, _)) => format!("{k}=***"),
            None if p.is_empty() => String::new(),
            None => "***".to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> String {
        parse(url).expect_err(url).0
    }

    #[test]
    fn syslog_schemes() {
        let tcp = |transport, port| Target::Syslog {
            transport,
            host: "logs.example".into(),
            port,
        };
        assert_eq!(
            parse("syslog://logs.example:514"),
            Ok(tcp(Transport::Tcp, 514))
        );
        assert_eq!(
            parse("syslog+tcp://logs.example:514/"),
            Ok(tcp(Transport::Tcp, 514))
        );
        assert_eq!(
            parse("syslog+tls://logs.example:6514"),
            Ok(tcp(Transport::Tls, 6514))
        );
        assert_eq!(
            parse("SYSLOG+UDP://logs.example:514"),
            Ok(tcp(Transport::Udp, 514))
        );
        assert_eq!(
            parse("syslog://[::1]:514"),
            Ok(Target::Syslog {
                transport: Transport::Tcp,
                host: "::1".into(),
                port: 514
            })
        );
    }

    #[test]
    fn https_with_path_port_and_credentials() {
        assert_eq!(
            parse("https://u:p%40ss@logs.example:8443/drain?app=nav"),
            Ok(Target::Https {
                host: "logs.example".into(),
                port: 8443,
                path: "/drain?app=nav".into(),
                basic: Some("u:p%40ss".into()),
            })
        );
        assert_eq!(
            parse("https://logs.example"),
            Ok(Target::Https {
                host: "logs.example".into(),
                port: 443,
                path: "/".into(),
                basic: None,
            })
        );
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        assert!(refused("http://u:p@logs.example/x").contains("use https://"));
        assert!(
            refused("http://u:p@logs.example/x").contains("u:***@"),
            "password hidden"
        );
        assert!(refused("mqtt://broker:1883").contains("need a topic"));
        assert!(refused("mqtt://broker/a/+/b").contains("wildcards"));
        assert!(refused("mqtt://broker/a/#").contains("wildcards"));
        assert!(refused("mqtt://broker/$SYS/x").contains("broker's own"));
        assert!(refused("mqtt://:pw@broker/t").contains("no user"));
        assert!(refused("mqtts://u:secret@broker/t?x=1").contains("u:***@"));
        assert!(refused("ftp://x:1").contains("unknown scheme \"ftp\""));
        assert!(refused("logs.example:514").contains("no scheme"));
        assert!(refused("syslog://logs.example").contains("need a port"));
        assert!(refused("syslog://logs.example:0").contains("bad port \"0\""));
        assert!(refused("syslog://logs.example:99999").contains("bad port"));
        assert!(refused("syslog://u:p@logs.example:514").contains("no user or password"));
        assert!(refused("syslog://logs.example:514/x").contains("no path"));
        assert!(refused("https://:514").contains("no host"));
        assert!(refused("https://ev il:1/").contains("' '"));
        assert!(refused("https://h/\n").contains("control"));
        assert!(refused("https://user@h/").contains("user:password"));
        assert!(refused("https://h/x#frag").contains("fragment"));
        assert!(refused("https://h$x/").contains("bad host"));
        assert!(refused(&format!("https://h/{}", "a".repeat(3000))).contains("longer"));
    }

    #[test]
    fn mqtt_topics_ports_and_credentials() {
        assert_eq!(
            parse("mqtt://broker/robots/r17/logs"),
            Ok(Target::Mqtt {
                tls: false,
                host: "broker".into(),
                port: 1883,
                topic: "robots/r17/logs".into(),
                user: None,
                password: None,
            })
        );
        assert_eq!(
            parse("MQTTS://nav:pw@broker:9883/logs"),
            Ok(Target::Mqtt {
                tls: true,
                host: "broker".into(),
                port: 9883,
                topic: "logs".into(),
                user: Some("nav".into()),
                password: Some("pw".into()),
            })
        );
        assert_eq!(
            parse("mqtts://broker/l").map(|t| t.port()),
            Ok(8883),
            "MQTT over TLS's port"
        );
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(shown("https://u:secret@h/p@x"), "https://u:***@h/p@x");
        assert_eq!(shown("https://h/p"), "https://h/p");
        assert_eq!(shown("syslog://h:1"), "syslog://h:1");
    }

    #[test]
    fn query_values_and_fragments_are_not_shown() {
        assert_eq!(
            shown("https://logs.example/in?api_key=s3cret&app=nav"),
            "https://logs.example/in?api_key=***&app=***"
        );
        assert_eq!(
            shown("https://u:pw@h:8443/p?token=abc&empty=&bare"),
            "https://u:***@h:8443/p?token=***&empty=&***"
        );
        assert_eq!(shown("https://h/p?"), "https://h/p?");
        assert_eq!(shown("https://h/p?a=1&&b=2"), "https://h/p?a=***&&b=***");
        assert_eq!(shown("https://h/p#s3cret"), "https://h/p#***");
        assert_eq!(shown("https://h/p?k=v=w#"), "https://h/p?k=***");
        // A '?' or '#' inside a password no longer hides where the host starts.
        assert_eq!(shown("https://u:p?ss=x@h/"), "https://u:***@h/");
        let s = shown("mqtts://u:secret@broker/t?x=secret");
        assert!(!s.contains("secret"), "{s}");
        // A refusal message shows the URL the same way.
        assert!(!refused("https://h/x?token=s3cret#frag").contains("s3cret"));
    }

    #[test]
    fn a_refused_syslog_url_does_not_echo_its_query() {
        let why = refused("syslog+tcp://127.0.0.1:1514/?token=SECRET123");
        assert!(!why.contains("SECRET123"), "{why}");
        assert!(why.contains("no path or query"), "{why}");
    }
}
