//! The disk reserve: free space on the data filesystem that deploys, builds, uploads and fleet
//! downloads never take, so the agent, its store and the running release keep room to live.
//! Work that would cross it is refused *before* it writes, with what it needs, what is free and
//! what is reserved. The setting (`disk_reserve`): bytes (`64M`, `1G`, `100000`), a percent of
//! the filesystem (`10%`), or `auto` (the default: 5 % of the filesystem, between 1 MiB and
//! 64 MiB, so a 30 MB data partition can still deploy).
//!
//! `usage.rs` next door says what uses the data dir (`roboku disk`); `pressure.rs` sheds logs
//! and runs slug GC early when free space runs low.

pub mod pressure;
pub mod usage;

use crate::engine::EngineError;
use std::path::Path;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reserve {
    #[default]
    Auto,
    Bytes(u64),
    Percent(u8),
}

impl Reserve {
    /// Bytes kept free on a filesystem of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            Reserve::Auto => (total / 20).clamp(1 << 20, 64 << 20),
            Reserve::Bytes(n) => n,
            Reserve::Percent(p) => total / 100 * u64::from(p),
        }
    }
}

impl std::str::FromStr for Reserve {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bad = || {
            format!("disk_reserve {s:?}: give bytes (64M, 1G, 1048576), a percent (10%) or auto")
        };
        if t == "auto" {
            return Ok(Reserve::Auto);
        }
        if let Some(p) = t.strip_suffix('%') {
            return match p.trim().parse::<u8>() {
                Ok(p) if p <= 90 => Ok(Reserve::Percent(p)),
                _ => Err(bad()),
            };
        }
        let t = t.strip_suffix("iB").or(t.strip_suffix('B')).unwrap_or(t);
        let (num, shift) = match t.char_indices().last() {
            Some((i, 'K' | 'k')) => (&t[..i], 10),
            Some((i, 'M' | 'm')) => (&t[..i], 20),
            Some((i, 'G' | 'g')) => (&t[..i], 30),
            _ => (t, 0),
        };
        let n: u64 = num.trim().parse().map_err(|_| bad())?;
        n.checked_mul(1 << shift)
            .map(Reserve::Bytes)
            .ok_or_else(bad)
    }
}

impl std::fmt::Display for Reserve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reserve::Auto => f.write_str("auto"),
            Reserve::Bytes(n) => write!(f, "{n}"),
            Reserve::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl serde::Serialize for Reserve {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reserve {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Reserve::Bytes(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Free (to unprivileged writers) and total bytes of the filesystem holding `dir`.
#[allow(clippy::unnecessary_cast)]
pub fn space(dir: &Path) -> Result<(u64, u64), EngineError> {
    let st = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| EngineError::Internal(format!("statvfs {}: {e}", dir.display())))?;
    let frag = st.fragment_size() as u64;
    Ok((
        (st.blocks_available() as u64).saturating_mul(frag),
        (st.blocks() as u64).saturating_mul(frag),
    ))
}

/// What may still be written on `dir`'s filesystem without crossing the reserve.
pub fn room(dir: &Path, reserve: Reserve) -> Result<u64, EngineError> {
    let (free, total) = space(dir)?;
    Ok(free.saturating_sub(reserve.bytes(total)))
}

/// Refuses `what` (a deploy, an upload, an artifact download) when writing `need` bytes on
/// `dir`'s filesystem would cross the reserve.
pub fn check(dir: &Path, reserve: Reserve, need: u64, what: &str) -> Result<(), EngineError> {
    let (free, total) = space(dir)?;
    let reserved = reserve.bytes(total);
    refusal(dir, what, need, free, reserved).map_or(Ok(()), |m| Err(EngineError::Conflict(m)))
}

/// The refusal message, when `need` does not fit above the reserve (pure).
pub fn refusal(dir: &Path, what: &str, need: u64, free: u64, reserved: u64) -> Option<String> {
    use roboku_wire::human_bytes as h;
    (free < need.saturating_add(reserved)).then(|| {
        format!(
            "not enough disk for {what} on {}: needs about {} ({need} bytes), {} free ({free}), {} reserved ({reserved}, disk_reserve); free space (`roboku disk`) or lower disk_reserve",
            dir.display(),
            h(need),
            h(free),
            h(reserved),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_parses_and_scales() {
        assert_eq!("auto".parse(), Ok(Reserve::Auto));
        assert_eq!("64M".parse(), Ok(Reserve::Bytes(64 << 20)));
        assert_eq!("64MiB".parse(), Ok(Reserve::Bytes(64 << 20)));
        assert_eq!("1G".parse(), Ok(Reserve::Bytes(1 << 30)));
        assert_eq!("1000".parse(), Ok(Reserve::Bytes(1000)));
        assert_eq!("10%".parse(), Ok(Reserve::Percent(10)));
        for bad in ["", "-1", "95%", "12X", "99999999999999G", "M"] {
            let e = bad.parse::<Reserve>().unwrap_err();
            assert!(e.contains("disk_reserve"), "{bad}: {e}");
        }
        assert_eq!(Reserve::Auto.bytes(30 << 20), 1536 * 1024);
        assert_eq!(Reserve::Auto.bytes(10 << 20), 1 << 20);
        assert_eq!(Reserve::Auto.bytes(100 << 30), 64 << 20);
        assert_eq!(Reserve::Percent(10).bytes(1000), 100);
        let r: Reserve = serde_json::from_str("\"8M\"").unwrap();
        assert_eq!(r, Reserve::Bytes(8 << 20));
        assert_eq!(
            serde_json::to_string(&Reserve::Percent(5)).unwrap(),
            "\"5%\""
        );
    }

    #[test]
    fn the_refusal_names_needed_free_and_reserved() {
        let p = Path::new("/data");
        assert!(refusal(p, "x", 10, 30, 20).is_none());
        let m = refusal(p, "a deploy", 11 << 20, 30 << 20, 20 << 20).unwrap();
        assert!(
            m.contains("needs about 11M") && m.contains("30M free") && m.contains("20M reserved"),
            "{m}"
        );
        assert!(m.contains("/data") && m.contains("a deploy"), "{m}");
    }
}
