//! What this robot has, for checking limits when they are set: a `--cpuset 7` on a 2-CPU host
//! or a memory limit above the RAM it has is refused with both numbers named, instead of being
//! stored and failing (or worse, being dropped) at the next dyno start.
//!
//! [`HostFacts::read`] reads `/sys` and `/proc`; [`HostFacts::check`] is pure.

use roboku_wire::Limits;
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq)]
pub struct HostFacts {
    /// Online CPUs (`/sys/devices/system/cpu/online`).
    pub cpus: BTreeSet<u32>,
    /// `MemTotal` in bytes.
    pub mem_total: u64,
    /// `/proc/sys/kernel/pid_max`.
    pub pid_max: u64,
}

impl HostFacts {
    /// Reads the facts; anything unreadable is left permissive (the kernel still says no).
    pub fn read() -> HostFacts {
        let cpus = std::fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|t| parse_cpu_list(t.trim()).ok())
            .unwrap_or_default();
        let mem_total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map(|kib| kib * 1024)
            .unwrap_or(u64::MAX);
        let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(u64::MAX);
        HostFacts {
            cpus,
            mem_total,
            pid_max,
        }
    }

    /// Refuses limits this robot cannot give, naming what was asked and what there is.
    pub fn check(&self, l: &Limits) -> Result<(), String> {
        if let Some(set) = &l.cpuset {
            let asked = parse_cpu_list(set)?;
            if !self.cpus.is_empty() {
                let missing: Vec<String> = asked
                    .difference(&self.cpus)
                    .map(|c| c.to_string())
                    .collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "cpuset {set}: this robot has no CPU {} (it has CPUs {})",
                        missing.join(", "),
                        render_cpu_list(&self.cpus)
                    ));
                }
            }
        }
        if let Some(cores) = l.cpu {
            let n = self.cpus.len();
            if n > 0 && cores > n as f64 {
                return Err(format!(
                    "cpu {cores} cores: this robot has {n} CPUs (a quota above that limits nothing)"
                ));
            }
        }
        for (name, v) in [("memory", l.memory_max), ("memory-high", l.memory_high)] {
            if let Some(v) = v.filter(|v| *v > self.mem_total) {
                return Err(format!(
                    "{name} {}: this robot has {} of RAM",
                    human_bytes(v),
                    human_bytes(self.mem_total)
                ));
            }
        }
        if let (Some(high), Some(max)) = (l.memory_high, l.memory_max) {
            if high > max {
                return Err(format!(
                    "memory-high {} is above memory {}: the soft limit must be the lower one",
                    human_bytes(high),
                    human_bytes(max)
                ));
            }
        }
        if let Some(p) = l.pids.filter(|p| *p > self.pid_max) {
            return Err(format!(
                "pids {p}: above this robot's kernel.pid_max ({})",
                self.pid_max
            ));
        }
        Ok(())
    }
}

/// `0-1,3` into {0, 1, 3}.
pub fn parse_cpu_list(text: &str) -> Result<BTreeSet<u32>, String> {
    let bad = || format!("cpuset {text:?} is not a CPU list like 0-1,3");
    let mut set = BTreeSet::new();
    for part in text.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u32, u32) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if a > b || b - a > 4096 {
            return Err(bad());
        }
        set.extend(a..=b);
    }
    Ok(set)
}

/// {0, 1, 3} into `0-1,3`.
fn render_cpu_list(set: &BTreeSet<u32>) -> String {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

fn human_bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)];
    for (unit, size) in UNITS {
        if b >= size {
            return format!("{:.1}{unit}", b as f64 / size as f64);
        }
    }
    format!("{b} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_cpus() -> HostFacts {
        HostFacts {
            cpus: [0, 1].into(),
            mem_total: 2 << 30,
            pid_max: 4_194_304,
        }
    }

    #[test]
    fn cpu_lists_parse_and_render() {
        assert_eq!(parse_cpu_list("0-1,3").unwrap(), [0, 1, 3].into());
        assert_eq!(render_cpu_list(&[0, 1, 3, 5, 6, 7].into()), "0-1,3,5-7");
        for bad in ["", "1-", "a", "3-1", "0-99999"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn what_the_host_lacks_is_refused_naming_both() {
        let h = two_cpus();
        let err = |l: Limits| h.check(&l).unwrap_err();
        let e = err(Limits {
            cpuset: Some("7".into()),
            ..Default::default()
        });
        assert_eq!(e, "cpuset 7: this robot has no CPU 7 (it has CPUs 0-1)");
        let e = err(Limits {
            cpu: Some(3.0),
            ..Default::default()
        });
        assert!(e.contains("2 CPUs"), "{e}");
        let e = err(Limits {
            memory_max: Some(64 << 30),
            ..Default::default()
        });
        assert_eq!(e, "memory 64.0G: this robot has 2.0G of RAM");
        let e = err(Limits {
            memory_max: Some(64 << 20),
            memory_high: Some(128 << 20),
            ..Default::default()
        });
        assert!(e.contains("soft limit"), "{e}");
        let e = err(Limits {
            pids: Some(1 << 40),
            ..Default::default()
        });
        assert!(e.contains("pid_max (4194304)"), "{e}");
        assert!(h
            .check(&Limits {
                cpuset: Some("0-1".into()),
                cpu: Some(1.5),
                memory_max: Some(1 << 30),
                pids: Some(100),
                ..Default::default()
            })
            .is_ok());
    }
}
