//! A named series of samples and its summary (median, p90, min, max), shared by the benches.

use serde_json::{json, Value};

pub struct Series {
    pub unit: &'static str,
    pub samples: Vec<f64>,
}

impl Series {
    pub fn new(unit: &'static str) -> Series {
        Series {
            unit,
            samples: Vec::new(),
        }
    }
    pub fn push(&mut self, v: f64) {
        self.samples.push(v);
    }
    pub fn sorted(&self) -> Vec<f64> {
        let mut s = self.samples.clone();
        s.sort_by(|a, b| a.total_cmp(b));
        s
    }
    pub fn median(&self) -> f64 {
        let s = self.sorted();
        match s.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => s[n / 2],
            n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        }
    }
    /// Nearest-rank 90th percentile.
    pub fn p90(&self) -> f64 {
        let s = self.sorted();
        if s.is_empty() {
            return f64::NAN;
        }
        let rank = (0.9 * s.len() as f64).ceil() as usize;
        s[rank.clamp(1, s.len()) - 1]
    }
    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }
    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }
    pub fn json(&self) -> Value {
        json!({
            "unit": self.unit,
            "median": round(self.median()),
            "p90": round(self.p90()),
            "min": round(self.min()),
            "max": round(self.max()),
            "samples": self.samples.iter().map(|v| round(*v)).collect::<Vec<_>>(),
        })
    }
    pub fn row(&self, label: &str) -> String {
        format!(
            "  {label:<44} {:>9.2} {:>9.2} {:>9.2}",
            self.median(),
            self.p90(),
            self.min()
        )
    }
}

pub fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
