//! The host's own numbers, read from `/proc` and `/sys`: CPU (from `/proc/stat` deltas), memory,
//! free disk of the data dir, load, uptime, temperatures and pressure stall information (where
//! the kernel has it). The parsers take text so they are tested without the machine; a file
//! that is missing or unreadable leaves its field empty, it never fails the sample.

use serde::Serialize;
use std::path::Path;

/// One look at the host.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HostSample {
    /// Unix ms.
    pub t: u64,
    /// Busy share of all CPUs since the previous sample, percent of the whole machine.
    pub cpu_percent: Option<f64>,
    pub cpus: u32,
    pub mem_total: Option<u64>,
    pub mem_available: Option<u64>,
    pub disk_total: Option<u64>,
    pub disk_free: Option<u64>,
    pub load: Option<[f64; 3]>,
    pub uptime_secs: Option<f64>,
    pub temps: Vec<Temp>,
    /// `None` when the kernel has no PSI (`/proc/pressure` absent or turned off).
    pub pressure: Option<Pressure>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Temp {
    /// The zone's `type` (`x86_pkg_temp`, `cpu-thermal`), or its directory name.
    pub zone: String,
    pub celsius: f64,
}

/// `avg10` of each PSI line, percent.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Pressure {
    pub cpu_some: Option<f64>,
    pub memory_some: Option<f64>,
    pub memory_full: Option<f64>,
    pub io_some: Option<f64>,
    pub io_full: Option<f64>,
}

/// Busy and total jiffies of the `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    pub busy: u64,
    pub total: u64,
}

/// Reads the host, keeping the previous CPU times to turn counters into a percentage.
pub struct HostSampler {
    proc_dir: std::path::PathBuf,
    sys_thermal: std::path::PathBuf,
    data_dir: std::path::PathBuf,
    prev_cpu: Option<CpuTimes>,
}

impl HostSampler {
    pub fn new(data_dir: &Path) -> HostSampler {
        HostSampler::at(
            Path::new("/proc"),
            Path::new("/sys/class/thermal"),
            data_dir,
        )
    }

    /// Reads `proc_dir` and `sys_thermal` instead of the real ones (tests).
    pub fn at(proc_dir: &Path, sys_thermal: &Path, data_dir: &Path) -> HostSampler {
        HostSampler {
            proc_dir: proc_dir.to_path_buf(),
            sys_thermal: sys_thermal.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            prev_cpu: None,
        }
    }

    pub fn sample(&mut self, now_ms: u64) -> HostSample {
        let read = |name: &str| std::fs::read_to_string(self.proc_dir.join(name)).ok();
        let stat = read("stat");
        let cpu = stat.as_deref().and_then(parse_cpu_times);
        let cpu_percent = match (self.prev_cpu, cpu) {
            (Some(a), Some(b)) => cpu_percent(a, b),
            _ => None,
        };
        if cpu.is_some() {
            self.prev_cpu = cpu;
        }
        let mem = read("meminfo");
        let mem = mem.as_deref();
        let disk = disk_bytes(&self.data_dir);
        let pressure_of = |kind: &str| read(&format!("pressure/{kind}"));
        let pressure = {
            let (cpu, memory, io) = (pressure_of("cpu"), pressure_of("memory"), pressure_of("io"));
            if cpu.is_none() && memory.is_none() && io.is_none() {
                None
            } else {
                let (m, i) = (memory.as_deref(), io.as_deref());
                Some(Pressure {
                    cpu_some: cpu.as_deref().and_then(|t| psi_avg10(t, "some")),
                    memory_some: m.and_then(|t| psi_avg10(t, "some")),
                    memory_full: m.and_then(|t| psi_avg10(t, "full")),
                    io_some: i.and_then(|t| psi_avg10(t, "some")),
                    io_full: i.and_then(|t| psi_avg10(t, "full")),
                })
            }
        };
        HostSample {
            t: now_ms,
            cpu_percent,
            cpus: stat.as_deref().map(count_cpus).unwrap_or(0),
            mem_total: mem.and_then(|m| meminfo_bytes(m, "MemTotal")),
            mem_available: mem.and_then(|m| meminfo_bytes(m, "MemAvailable")),
            disk_total: disk.map(|d| d.0),
            disk_free: disk.map(|d| d.1),
            load: read("loadavg").as_deref().and_then(parse_loadavg),
            uptime_secs: read("uptime")
                .as_deref()
                .and_then(|u| u.split_whitespace().next()?.parse().ok()),
            temps: read_temps(&self.sys_thermal),
            pressure,
        }
    }
}

/// Size and space available to unprivileged writers of `dir`'s filesystem.
// The casts are no-ops on 64-bit targets only: armv7 robots have 32-bit block counts.
#[allow(clippy::unnecessary_cast)]
fn disk_bytes(dir: &Path) -> Option<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    let frag = s.fragment_size() as u64;
    Some((
        (s.blocks() as u64).saturating_mul(frag),
        (s.blocks_available() as u64).saturating_mul(frag),
    ))
}

/// The aggregate `cpu` line: busy = everything but idle and iowait.
pub fn parse_cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let nums: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    if nums.len() < 4 {
        return None;
    }
    // guest and guest_nice (9th, 10th) are already counted in user and nice.
    let total: u64 = nums.iter().take(8).sum();
    let idle = nums[3] + nums.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total - idle,
        total,
    })
}

fn count_cpus(stat: &str) -> u32 {
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u32
}

pub fn cpu_percent(a: CpuTimes, b: CpuTimes) -> Option<f64> {
    let total = b.total.checked_sub(a.total)?;
    let busy = b.busy.checked_sub(a.busy)?;
    (total > 0).then(|| busy as f64 * 100.0 / total as f64)
}

/// `Key:   1234 kB` of `/proc/meminfo`, in bytes.
pub fn meminfo_bytes(meminfo: &str, key: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.split(':').next() == Some(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_whitespace().map(|n| n.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// `avg10` of the `some` or `full` line of a `/proc/pressure/*` file.
pub fn psi_avg10(text: &str, kind: &str) -> Option<f64> {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(kind))?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?
        .parse()
        .ok()
}

/// Every `thermal_zone*/temp` (millidegrees), named by the zone's `type`.
fn read_temps(dir: &Path) -> Vec<Temp> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut temps: Vec<Temp> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("thermal_zone"))
        .filter_map(|e| {
            let p = e.path();
            let milli: f64 = std::fs::read_to_string(p.join("temp"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let zone = std::fs::read_to_string(p.join("type"))
                .map(|t| t.trim().to_string())
                .unwrap_or_else(|_| e.file_name().to_string_lossy().into_owned());
            Some(Temp {
                zone,
                celsius: milli / 1000.0,
            })
        })
        .collect();
    temps.sort_by(|a, b| a.zone.cmp(&b.zone));
    temps
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n\
                        cpu1 50 0 25 400 25 0 0 0 0 0\nintr 1 2 3\n";

    #[test]
    fn cpu_times_count_iowait_as_idle() {
        let t = parse_cpu_times(STAT).unwrap();
        assert_eq!(
            t,
            CpuTimes {
                busy: 150,
                total: 1000
            }
        );
        assert_eq!(count_cpus(STAT), 2);
        let later = CpuTimes {
            busy: 200,
            total: 1100,
        };
        assert_eq!(cpu_percent(t, later), Some(50.0));
        assert_eq!(
            cpu_percent(later, t),
            None,
            "counters going back are no number"
        );
        assert_eq!(parse_cpu_times("intr 1\n"), None);
    }

    #[test]
    fn meminfo_loadavg_and_psi() {
        let m = "MemTotal:       2048 kB\nMemFree: 10 kB\nMemAvailable:   1024 kB\n";
        assert_eq!(meminfo_bytes(m, "MemTotal"), Some(2048 * 1024));
        assert_eq!(meminfo_bytes(m, "MemAvailable"), Some(1024 * 1024));
        assert_eq!(meminfo_bytes(m, "Mem"), None);
        assert_eq!(
            parse_loadavg("0.50 1.25 2.00 1/234 5678\n"),
            Some([0.5, 1.25, 2.0])
        );
        assert_eq!(parse_loadavg("0.5 x"), None);
        let psi = "some avg10=1.50 avg60=0.00 avg300=0.00 total=12\n\
                   full avg10=0.25 avg60=0.00 avg300=0.00 total=3\n";
        assert_eq!(psi_avg10(psi, "some"), Some(1.5));
        assert_eq!(psi_avg10(psi, "full"), Some(0.25));
        assert_eq!(psi_avg10("garbage", "some"), None);
    }

    #[test]
    fn samples_a_fake_proc_and_thermal_tree() {
        let dir = tempfile::tempdir().unwrap();
        let proc_dir = dir.path().join("proc");
        let thermal = dir.path().join("thermal");
        std::fs::create_dir_all(proc_dir.join("pressure")).unwrap();
        std::fs::create_dir_all(thermal.join("thermal_zone0")).unwrap();
        std::fs::write(proc_dir.join("stat"), STAT).unwrap();
        std::fs::write(
            proc_dir.join("meminfo"),
            "MemTotal: 4 kB\nMemAvailable: 2 kB\n",
        )
        .unwrap();
        std::fs::write(proc_dir.join("loadavg"), "1.00 2.00 3.00 1/2 3\n").unwrap();
        std::fs::write(proc_dir.join("uptime"), "123.45 200.00\n").unwrap();
        std::fs::write(
            proc_dir.join("pressure/memory"),
            "some avg10=2.00 avg60=0 avg300=0 total=0\nfull avg10=1.00 avg60=0 avg300=0 total=0\n",
        )
        .unwrap();
        std::fs::write(thermal.join("thermal_zone0/temp"), "45500\n").unwrap();
        std::fs::write(thermal.join("thermal_zone0/type"), "cpu-thermal\n").unwrap();
        let mut s = HostSampler::at(&proc_dir, &thermal, dir.path());
        let first = s.sample(1);
        assert_eq!(first.cpu_percent, None, "one reading is no rate");
        assert_eq!(first.cpus, 2);
        assert_eq!(first.mem_total, Some(4096));
        assert_eq!(first.load, Some([1.0, 2.0, 3.0]));
        assert_eq!(first.uptime_secs, Some(123.45));
        assert!(first.disk_total.unwrap() > 0);
        assert_eq!(
            first.temps,
            vec![Temp {
                zone: "cpu-thermal".into(),
                celsius: 45.5
            }]
        );
        let p = first.pressure.unwrap();
        assert_eq!(
            (p.memory_some, p.memory_full, p.cpu_some),
            (Some(2.0), Some(1.0), None)
        );
        std::fs::write(proc_dir.join("stat"), "cpu  200 0 50 850 50 0 0 0 0 0\n").unwrap();
        let pct = s.sample(2).cpu_percent.unwrap();
        assert!((pct - 100.0 * 100.0 / 150.0).abs() < 1e-9, "{pct}");
        std::fs::remove_dir_all(proc_dir.join("pressure")).unwrap();
        assert_eq!(
            s.sample(3).pressure,
            None,
            "no PSI is no pressure, not zeros"
        );
    }

    #[test]
    fn samples_this_host() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = HostSampler::new(dir.path());
        let h = s.sample(0);
        assert!(h.cpus > 0 && h.mem_total.is_some() && h.load.is_some());
    }
}
