//! Pure parsers for command-line values: scale specs, sizes, CPU shares, config pairs, nice
//! values, release versions and `--clear` lists.
//!
//! Each returns `Result<_, String>` so clap can use it as a `value_parser` and report a bad value
//! as a usage error (exit 2) before anything is sent to the agent. Messages quote the offending
//! value and say what was expected.

/// `web=3` -> `("web", 3)`. Only `=` is accepted: relative changes (`web+1`) would race with
/// other doors changing the formation.
/// `30s`, `10m`, `2h`, `1d` (and `1500ms`) -> milliseconds.
pub fn duration_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 10m, 2h or 1d"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "{text:?} is not a duration like 30s, 10m, 2h or 1d"
            ))
        }
    };
    Ok(n.saturating_mul(ms))
}

pub fn scale_spec(spec: &str) -> Result<(String, u32), String> {
    let bad = || format!("bad scale spec {spec:?}: expected TYPE=COUNT");
    let (ptype, count) = spec.split_once('=').ok_or_else(bad)?;
    let type_ok = !ptype.is_empty()
        && ptype
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !type_ok {
        return Err(bad());
    }
    let count = count.parse::<u32>().map_err(|_| bad())?;
    Ok((ptype.to_string(), count))
}

/// `64M`, `512K`, `1G`, `2T`, `1048576`; binary units, case-insensitive, with an optional `B` or
/// `iB` suffix (`64MB`, `64MiB`, `64mb`). Whole numbers only.
pub fn size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("bad size {text:?}: expected bytes or a whole number with K, M, G or T (e.g. 64M)")
    };
    let lower = text.trim().to_ascii_lowercase();
    let unitless = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, shift) = match unitless.as_bytes().last() {
        Some(b'k') => (&unitless[..unitless.len() - 1], 10),
        Some(b'm') => (&unitless[..unitless.len() - 1], 20),
        Some(b'g') => (&unitless[..unitless.len() - 1], 30),
        Some(b't') => (&unitless[..unitless.len() - 1], 40),
        // `64iB` has no unit letter to go with the `i`.
        _ if lower.ends_with("ib") => return Err(bad()),
        _ => (unitless, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// CPU quota in cores: `0.5`, `2`. Must be finite and above zero.
pub fn cpu(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(c) if c.is_finite() && c > 0.0 => Ok(c),
        _ => Err(format!(
            "bad cpu {text:?}: expected a number of cores above 0 (e.g. 0.5)"
        )),
    }
}

/// `KEY=VALUE`; the value may itself contain `=` and may be empty.
pub fn config_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("bad config var {text:?}: expected KEY=VALUE")),
    }
}

/// A nice value, -20..=19.
pub fn nice(text: &str) -> Result<i32, String> {
    match text.trim().parse::<i32>() {
        Ok(n) if (-20..=19).contains(&n) => Ok(n),
        _ => Err(format!(
            "bad nice value {text:?}: expected a whole number from -20 to 19"
        )),
    }
}

/// A release version: `v3` or `3`.
pub fn version(text: &str) -> Result<u32, String> {
    let digits = text
        .strip_prefix('v')
        .or_else(|| text.strip_prefix('V'))
        .unwrap_or(text);
    match digits.parse::<u32>() {
        Ok(v) if v > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(v),
        _ => Err(format!("bad release version {text:?}: expected v3 or 3")),
    }
}

/// A real-time policy, `fifo:10` or `rr:5`, checked here and sent as written.
pub fn rt(text: &str) -> Result<String, String> {
    roboku_wire::parse_rt(text).map(|_| text.to_string())
}

/// One name of `--clear memory,cpu`, mapped to the wire's field name (`memory` ->
/// `memory_max`). clap splits the list on commas.
pub fn clear_field(text: &str) -> Result<String, String> {
    let field = match text.trim() {
        "memory" | "memory-max" | "memory_max" => "memory_max",
        "memory-high" | "memory_high" => "memory_high",
        "cpu" => "cpu",
        "pids" => "pids",
        "cpuset" => "cpuset",
        "nice" => "nice",
        "groups" => "groups",
        "rt" => "rt",
        _ => {
            return Err(format!(
                "bad limit name {text:?}: expected memory, memory-high, cpu, pids, cpuset, nice, groups or rt"
            ))
        }
    };
    Ok(field.to_string())
}

/// An app name, checked locally so a typo is a usage error and never reaches a URL unescaped.
pub fn app_name(text: &str) -> Result<String, String> {
    roboku_wire::check_app_name(text)?;
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_ms("30s"), Ok(30_000));
        assert_eq!(duration_ms("10m"), Ok(600_000));
        assert_eq!(duration_ms("2h"), Ok(7_200_000));
        assert_eq!(duration_ms("1d"), Ok(86_400_000));
        assert_eq!(duration_ms("1500ms"), Ok(1500));
        for bad in ["10", "m", "10x", "-1m", "", "5mss"] {
            assert!(duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scale_specs() {
        assert_eq!(scale_spec("web=3"), Ok(("web".into(), 3)));
        assert_eq!(scale_spec("worker_2=0"), Ok(("worker_2".into(), 0)));
        assert_eq!(
            scale_spec("web=x").unwrap_err(),
            "bad scale spec \"web=x\": expected TYPE=COUNT"
        );
        for bad in ["web+1", "web", "=3", "web=-1", "web=", "we b=1", "web=1=2"] {
            assert!(scale_spec(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(size("1048576"), Ok(1_048_576));
        assert_eq!(size("512K"), Ok(512 * 1024));
        assert_eq!(size("64M"), Ok(64 << 20));
        assert_eq!(size("64m"), Ok(64 << 20));
        assert_eq!(size("64MB"), Ok(64 << 20));
        assert_eq!(size("64MiB"), Ok(64 << 20));
        assert_eq!(size("64mib"), Ok(64 << 20));
        assert_eq!(size("1G"), Ok(1 << 30));
        assert_eq!(size("2T"), Ok(2 << 40));
        assert_eq!(size("100B"), Ok(100));
        for bad in ["", "M", "64X", "1.5G", "-1M", "64iB", "64 M", "0x10"] {
            assert!(size(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(size("64X").unwrap_err().contains("\"64X\""));
        assert!(size("99999999999T").unwrap_err().contains("too large"));
    }

    #[test]
    fn cpus() {
        assert_eq!(cpu("0.5"), Ok(0.5));
        assert_eq!(cpu("2"), Ok(2.0));
        for bad in ["0", "-1", "nan", "inf", "half"] {
            assert!(cpu(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn config_pairs() {
        assert_eq!(config_pair("A=1"), Ok(("A".into(), "1".into())));
        assert_eq!(
            config_pair("URL=postgres://x?a=b"),
            Ok(("URL".into(), "postgres://x?a=b".into()))
        );
        assert_eq!(config_pair("EMPTY="), Ok(("EMPTY".into(), String::new())));
        assert!(config_pair("NOVALUE").unwrap_err().contains("NOVALUE"));
        assert!(config_pair("=x").is_err());
    }

    #[test]
    fn nice_values() {
        assert_eq!(nice("-20"), Ok(-20));
        assert_eq!(nice("19"), Ok(19));
        assert!(nice("20").is_err());
        assert!(nice("-21").is_err());
        assert!(nice("x").is_err());
    }

    #[test]
    fn versions() {
        assert_eq!(version("v3"), Ok(3));
        assert_eq!(version("3"), Ok(3));
        assert_eq!(version("V12"), Ok(12));
        for bad in ["v", "vv3", "0", "v-1", "+3", "three"] {
            assert!(version(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn clear_fields() {
        assert_eq!(clear_field("memory"), Ok("memory_max".into()));
        assert_eq!(clear_field("memory-high"), Ok("memory_high".into()));
        assert_eq!(clear_field("cpu"), Ok("cpu".into()));
        assert!(clear_field("disk").unwrap_err().contains("\"disk\""));
    }

    #[test]
    fn app_names() {
        assert_eq!(app_name("demo"), Ok("demo".into()));
        assert!(app_name("../etc").is_err());
    }
}
