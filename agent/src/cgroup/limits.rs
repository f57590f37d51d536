//! Validates [`Limits`] once, before any file is written, so a bad value never leaves a cgroup
//! half-updated. `nice` is a process setting, not a cgroup one: the supervisor applies it.

use super::CgroupError;
use roboku_wire::Limits;

/// The CFS period both drivers use: quota = cores × period.
pub(crate) const CPU_PERIOD_US: u64 = 100_000;
/// The kernel refuses quotas below 1 ms.
const MIN_QUOTA_US: u64 = 1_000;

/// Limits as the drivers write them. `None` = unlimited.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Checked {
    pub memory_max: Option<u64>,
    pub memory_high: Option<u64>,
    /// CFS quota per [`CPU_PERIOD_US`].
    pub cpu_quota_us: Option<u64>,
    pub pids: Option<u64>,
    pub cpuset: Option<String>,
}

pub(crate) fn check(limits: &Limits) -> Result<Checked, CgroupError> {
    let invalid = |msg: String| Err(CgroupError::Invalid(msg));
    if limits.memory_max == Some(0) || limits.memory_high == Some(0) {
        return invalid("memory limits must be above 0 bytes".into());
    }
    if limits.pids == Some(0) {
        return invalid("pids limit must be at least 1".into());
    }
    let cpu_quota_us = match limits.cpu {
        None => None,
        Some(cores) if !cores.is_finite() || cores <= 0.0 => {
            return invalid(format!(
                "cpu must be a positive number of cores, got {cores}"
            ))
        }
        // `as` saturates on absurd values; the kernel then refuses them with EINVAL.
        Some(cores) => Some(((cores * CPU_PERIOD_US as f64).round() as u64).max(MIN_QUOTA_US)),
    };
    if let Some(set) = &limits.cpuset {
        let ok = !set.is_empty()
            && set
                .chars()
                .all(|c| c.is_ascii_digit() || c == ',' || c == '-');
        if !ok {
            return invalid(format!("cpuset must be a CPU list like 0-1,3, got {set:?}"));
        }
    }
    Ok(Checked {
        memory_max: limits.memory_max,
        memory_high: limits.memory_high,
        cpu_quota_us,
        pids: limits.pids,
        cpuset: limits.cpuset.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_cores_become_a_quota_with_a_floor() {
        let q = |cores| {
            check(&Limits {
                cpu: Some(cores),
                ..Limits::default()
            })
            .unwrap()
            .cpu_quota_us
        };
        assert_eq!(q(0.5), Some(50_000));
        assert_eq!(q(2.0), Some(200_000));
        assert_eq!(q(0.001), Some(1_000));
        assert_eq!(q(0.0001), Some(1_000), "below the kernel's 1 ms floor");
    }

    #[test]
    fn nonsense_is_refused_before_anything_is_written() {
        let bad = [
            Limits {
                cpu: Some(0.0),
                ..Limits::default()
            },
            Limits {
                cpu: Some(f64::NAN),
                ..Limits::default()
            },
            Limits {
                cpu: Some(-1.0),
                ..Limits::default()
            },
            Limits {
                memory_max: Some(0),
                ..Limits::default()
            },
            Limits {
                pids: Some(0),
                ..Limits::default()
            },
            Limits {
                cpuset: Some("0\n1".into()),
                ..Limits::default()
            },
            Limits {
                cpuset: Some(String::new()),
                ..Limits::default()
            },
        ];
        for limits in bad {
            assert!(
                matches!(check(&limits), Err(CgroupError::Invalid(_))),
                "{limits:?}"
            );
        }
        assert!(check(&Limits {
            cpuset: Some("0-1,3".into()),
            nice: Some(5),
            ..Limits::default()
        })
        .is_ok());
    }
}
