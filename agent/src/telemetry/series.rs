//! Chart data out of the history: columns (times, cpu, memory) the way uPlot takes them,
//! thinned to at most `max_points` per series so a phone gets an hour in a few kilobytes.

use super::{History, HostPoint, Mark, Point};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DynoChart {
    pub dyno: String,
    pub memory_limit: Option<u64>,
    /// Unix seconds.
    pub t: Vec<u32>,
    /// Percent of one core.
    pub cpu: Vec<Option<f32>>,
    /// Bytes.
    pub mem: Vec<Option<u64>>,
    pub marks: Vec<Mark>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostChart {
    pub t: Vec<u32>,
    pub cpu: Vec<Option<f32>>,
    pub mem_used: Vec<Option<u64>>,
}

/// Every `stride`-th item of `len`, always ending with the newest.
fn picks(len: usize, max_points: usize) -> impl Iterator<Item = usize> {
    let stride = len.div_ceil(max_points.max(1)).max(1);
    // Anchored at the newest so the last point is always the latest sample.
    let first = (len.saturating_sub(1)) % stride;
    (first..len).step_by(stride)
}

fn cpu(c: f32) -> Option<f32> {
    (!c.is_nan()).then_some(c)
}

fn mem(kib: u32) -> Option<u64> {
    (kib != u32::MAX).then_some(kib as u64 * 1024)
}

/// The charts of `app`'s dynos, by dyno name.
pub fn app_charts(h: &History, app: &str, max_points: usize) -> Vec<DynoChart> {
    h.dynos
        .iter()
        .filter(|((a, _), _)| a == app)
        .map(|((_, dyno), s)| {
            let points: Vec<&Point> = s.points.iter().collect();
            let chosen: Vec<&Point> = picks(points.len(), max_points).map(|i| points[i]).collect();
            DynoChart {
                dyno: dyno.clone(),
                memory_limit: s.memory_limit,
                t: chosen.iter().map(|p| p.t).collect(),
                cpu: chosen.iter().map(|p| cpu(p.cpu)).collect(),
                mem: chosen.iter().map(|p| mem(p.mem_kib)).collect(),
                marks: s.marks.iter().cloned().collect(),
            }
        })
        .collect()
}

pub fn host_chart(h: &History, max_points: usize) -> HostChart {
    let points: Vec<&HostPoint> = h.host.iter().collect();
    let chosen: Vec<&HostPoint> = picks(points.len(), max_points).map(|i| points[i]).collect();
    HostChart {
        t: chosen.iter().map(|p| p.t).collect(),
        cpu: chosen.iter().map(|p| cpu(p.cpu)).collect(),
        mem_used: chosen.iter().map(|p| mem(p.mem_used_kib)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::picks;

    #[test]
    fn thinning_keeps_the_newest_and_stays_under_the_cap() {
        assert_eq!(picks(5, 10).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        let p: Vec<usize> = picks(3600, 720).collect();
        assert!(p.len() <= 720, "{}", p.len());
        assert_eq!(p.last(), Some(&3599));
        assert_eq!(picks(0, 10).count(), 0);
        assert_eq!(picks(7, 3).collect::<Vec<_>>(), vec![0, 3, 6]);
    }
}
