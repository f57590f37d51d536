//! How things look on a terminal: aligned tables, relative ages, ISO-8601 timestamps, byte sizes,
//! shell quoting and the Heroku log line format.
//!
//! Everything here is pure (the clock is passed in) so it can be tested; the one exception is
//! [`outln!`], which writes to stdout and returns the IO error instead of panicking on a closed
//! pipe (`roboku logs | head`).

use roboku_wire::{LogLine, LogSource};
use std::time::{SystemTime, UNIX_EPOCH};

/// `println!` that returns `io::Result` instead of panicking when stdout is closed.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}
pub(crate) use outln;

/// Writes already-terminated text to stdout, returning the error on a closed pipe.
pub fn print(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    std::io::stdout().lock().write_all(text.as_bytes())
}

/// Now, in unix milliseconds (the wire's unit).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A duration in ms as one short unit: `12s`, `3m`, `2h`, `4d`.
pub fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// How long ago `then` was (`0s` for a time in the future: clocks drift).
pub fn age(now: u64, then: u64) -> String {
    duration(now.saturating_sub(then))
}

/// Unix ms as ISO-8601 UTC (the formatter agent and CLI share).
pub use roboku_wire::iso8601;

/// Bytes in binary units (the formatter agent and CLI share).
pub use roboku_wire::human_bytes as bytes;

/// Rows as columns separated by two spaces, each column as wide as its widest cell; no trailing
/// spaces. Every line ends with `\n`.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths[c].saturating_sub(cell.chars().count());
            line.push_str(&" ".repeat(pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Single-quotes `s` for a POSIX shell: `it's` -> `'it'\''s'`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Heroku's log format: `2026-11-29T22:10:03.123Z app[web.1]: line`.
pub fn log_line(l: &LogLine) -> String {
    let source = match l.source {
        LogSource::App => "app",
        LogSource::Roboku => "roboku",
    };
    format!("{} {source}[{}]: {}", iso8601(l.ts), l.dyno, l.line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(12_999), "12s");
        assert_eq!(duration(59_999), "59s");
        assert_eq!(duration(60_000), "1m");
        assert_eq!(duration(3 * 60_000 + 59_000), "3m");
        assert_eq!(duration(2 * 3_600_000 + 1), "2h");
        assert_eq!(duration(86_399_999), "23h");
        assert_eq!(duration(4 * 86_400_000), "4d");
        assert_eq!(age(1_000, 5_000), "0s");
        assert_eq!(age(75_000, 3_000), "1m");
    }

    #[test]
    fn iso_timestamps() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(iso8601(1_709_164_800_000), "2024-02-29T00:00:00.000Z");
        assert_eq!(iso8601(1_795_990_203_123), "2026-11-29T22:10:03.123Z");
        // 2000-03-01: the day after a leap day in a century year divisible by 400.
        assert_eq!(iso8601(951_868_800_000), "2000-03-01T00:00:00.000Z");
    }

    #[test]
    fn tables_align_without_trailing_space() {
        let rows = vec![
            vec!["web.1".to_string(), "up 12s".into(), "x".into()],
            vec!["worker.10".to_string(), "up".into(), String::new()],
        ];
        assert_eq!(table(&rows), "web.1      up 12s  x\nworker.10  up\n");
        assert_eq!(table(&[]), "");
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("plain"), "'plain'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn heroku_log_format() {
        let mut l = LogLine {
            ts: 1_795_990_203_123,
            app: "demo".into(),
            dyno: "web.1".into(),
            source: LogSource::App,
            line: "listening".into(),
        };
        assert_eq!(
            log_line(&l),
            "2026-11-29T22:10:03.123Z app[web.1]: listening"
        );
        l.source = LogSource::Roboku;
        assert!(log_line(&l).contains(" roboku[web.1]: "));
    }
}
