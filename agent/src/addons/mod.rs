//! Add-ons: backing services an app gets with one command, as on Heroku (`addons:create sqlite`),
//! each reaching its apps through a config var (`DATABASE_URL`, `MQTT_URL`, `REDIS_URL`).
//!
//! This module owns what is pure or local to one add-on: names, URLs, the providers (what a kind
//! provisions, which vars it gives, how its server runs), the persistent data dirs (`data.rs`)
//! and the supervised server processes (`service.rs`). The engine (`engine/addons.rs`) owns the
//! records and the releases; nothing here touches the store.

pub mod backup;
pub mod data;
pub mod mqtt;
pub mod postgres;
pub mod provider;
pub mod redis;
pub mod service;
pub mod snapshot;
pub mod snapshot_copy;
pub mod sqlite_copy;
pub mod state;

pub use provider::{provider, Provider};

use std::fmt;

/// The kinds of add-on roboku can provision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Mqtt,
    Redis,
    Postgres,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Sqlite, Kind::Mqtt, Kind::Redis, Kind::Postgres];

    pub fn parse(s: &str) -> Result<Kind, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown add-on kind {s:?}: roboku provides {}",
                    Kind::ALL.map(Kind::as_str).join(", ")
                )
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::Mqtt => "mqtt",
            Kind::Redis => "redis",
            Kind::Postgres => "postgres",
        }
    }

    /// The attachment name a var is made of when `--as` is not given (`DATABASE` -> `DATABASE_URL`).
    pub fn default_attachment(self) -> &'static str {
        match self {
            Kind::Sqlite => "DATABASE",
            Kind::Mqtt => "MQTT",
            Kind::Redis => "REDIS",
            Kind::Postgres => "DATABASE",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first free add-on name for `app`'s add-on of `kind`: `nav-sqlite`, then `nav-sqlite-2`...
pub fn default_name(app: &str, kind: Kind, taken: &dyn Fn(&str) -> bool) -> String {
    let base = format!("{app}-{kind}");
    if !taken(&base) {
        return base;
    }
    let mut n: u64 = 2;
    loop {
        let name = format!("{base}-{n}");
        if !taken(&name) {
            return name;
        }
        n += 1;
    }
}

/// Add-on names follow app names (`[a-z][a-z0-9-]`), a little longer: `<app>-<kind>-N` fits.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "add-on name {name:?} is not valid: lowercase letters, digits and '-', starting with a \
             letter, at most 48 characters"
        ))
    }
}

/// `--as NAME`: the attachment name, upper-cased; the config var is `NAME_URL`.
pub fn attachment_var(name: &str) -> Result<String, String> {
    let upper = name.to_ascii_uppercase().replace('-', "_");
    let ok = !upper.is_empty()
        && upper.len() <= 40
        && upper.starts_with(|c: char| c.is_ascii_uppercase())
        && upper
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(format!(
            "attachment name {name:?} is not valid: letters, digits and '_', starting with a letter \
             (the config var is NAME_URL)"
        ));
    }
    let var = if upper.ends_with("_URL") {
        upper
    } else {
        format!("{upper}_URL")
    };
    if var.starts_with("ROBOKU_") {
        return Err(format!("{var} is roboku's own; pick another --as"));
    }
    Ok(var)
}

/// A user name or password made of `len` random letters and digits (URL-safe without escaping).
pub fn random_token(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    // 62 * 4 = 248: bytes at or above are dropped, so every character is equally likely.
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in secure_bytes::<64>() {
            if (b as usize) < CHARS.len() * 4 && out.len() < len {
                out.push(CHARS[b as usize % CHARS.len()] as char);
            }
        }
    }
    out
}

/// `N` bytes from the kernel's CSPRNG (passwords and salts; `rand` here is built without one).
pub fn secure_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // SAFETY: getrandom writes at most `N` bytes into the buffer it is given.
    let mut done = 0;
    while done < N {
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), N - done, 0) };
        if n > 0 {
            done += n as usize;
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_name_the_choices() {
        assert_eq!(Kind::parse("mqtt"), Ok(Kind::Mqtt));
        assert_eq!(Kind::parse("postgres"), Ok(Kind::Postgres));
        let e = Kind::parse("mysql").unwrap_err();
        assert!(
            e.contains("mysql") && e.contains("sqlite, mqtt, redis, postgres"),
            "{e}"
        );
    }

    #[test]
    fn default_names_skip_taken_ones() {
        assert_eq!(default_name("nav", Kind::Sqlite, &|_| false), "nav-sqlite");
        let taken = |n: &str| n == "nav-mqtt" || n == "nav-mqtt-2";
        assert_eq!(default_name("nav", Kind::Mqtt, &taken), "nav-mqtt-3");
        assert!(check_name("nav-mqtt-3").is_ok());
        assert!(check_name("Nav").is_err());
        assert!(check_name("nav/../x").is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn attachment_names_make_url_vars() {
        assert_eq!(attachment_var("DATABASE").unwrap(), "DATABASE_URL");
        assert_eq!(attachment_var("nav-db").unwrap(), "NAV_DB_URL");
        assert_eq!(attachment_var("BUS_URL").unwrap(), "BUS_URL");
        assert!(attachment_var("1X").is_err());
        assert!(attachment_var("a b").is_err());
        assert!(attachment_var("roboku_data").is_err());
    }

    #[test]
    fn tokens_are_url_safe_and_random() {
        let (a, b) = (random_token(24), random_token(24));
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
