//! Scrubbing what may carry a secret before it goes into a support bundle: settings and URLs.

use serde_json::Value;

/// A URL without its user info, query and fragment (`https://u:p@host/x?token=1` ->
/// `https://host/x`). Text that is no URL comes back as is.
pub fn url(u: &str) -> String {
    let Some((scheme, rest)) = u.split_once("://") else {
        return u.to_string();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (auth, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

/// The parts of a URL that may be secret: the password of its user info and its query.
pub fn url_secrets(u: &str) -> Vec<String> {
    let Some((_, rest)) = u.split_once("://") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let auth = rest.split(['/', '?', '#']).next().unwrap_or("");
    if let Some((info, _)) = auth.rsplit_once('@') {
        out.push(info.split_once(':').map_or(info, |(_, pw)| pw).to_string());
    }
    if let Some((_, q)) = rest.split_once('?') {
        let q = q.split('#').next().unwrap_or("");
        out.extend(
            q.split('&')
                .filter_map(|kv| kv.split_once('=').map(|(_, v)| v.to_string())),
        );
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Keys whose values are never copied, wherever they are in the settings.
fn secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    ["password", "secret", "token", "trusted_keys", "test_clock"]
        .iter()
        .any(|s| k.contains(s))
}

/// The settings as JSON with secrets removed: keys that name a secret are replaced by
/// `"[removed]"` (a list by its length), and every string that is a URL loses its user info
/// and query.
pub fn settings(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let v = if secret_key(&k) {
                        match v {
                            Value::Null => Value::Null,
                            Value::Array(a) => Value::String(format!("[removed: {}]", a.len())),
                            _ => Value::String("[removed]".into()),
                        }
                    } else {
                        settings(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(settings).collect()),
        Value::String(s) if s.contains("://") => Value::String(url(&s)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_queries() {
        assert_eq!(
            url("https://user:pw@logs.example:443/x?token=1#f"),
            "https://logs.example:443/x"
        );
        assert_eq!(url("mqtt://a:b@h"), "mqtt://h");
        assert_eq!(url("syslog+tls://h:6514"), "syslog+tls://h:6514");
        assert_eq!(url("no url"), "no url");
        assert_eq!(
            url_secrets("https://ops:pw1@h/x?token=t2&a=b#f"),
            ["pw1", "t2", "b"]
        );
        assert!(url_secrets("https://h/x").is_empty());
    }

    #[test]
    fn settings_lose_keys_and_passwords() {
        let v = serde_json::json!({
            "data_dir": "/var/lib/roboku",
            "mqtt": {"broker": "mqtts://fleet:pw@gw:8883", "trusted_keys": ["AAAA", "BBBB"],
                     "trusted_key_files": ["/etc/roboku/fleet.pub"]},
            "test_clock": {"start": 1},
            "x_password": "p",
        });
        let out = settings(v).to_string();
        assert!(!out.contains("pw@") && !out.contains("AAAA"), "{out}");
        assert!(
            out.contains("mqtts://gw:8883") && out.contains("[removed: 2]"),
            "{out}"
        );
        assert!(out.contains("/etc/roboku/fleet.pub"), "{out}");
        assert!(!out.contains("\"start\""), "{out}");
    }
}
