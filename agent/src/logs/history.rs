//! Reading stored lines back from `app.log.1` + `app.log`, newest first, so "the last n" costs
//! about n lines of IO however large the files are. Lines that do not parse (a write torn by a
//! full disk) are skipped.

use super::LogFilter;
use roboku_wire::LogLine;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// Bytes read per step backwards.
const CHUNK: u64 = 64 * 1024;

/// The last `n` lines matching `filter` in `files` (given oldest first), oldest first.
pub(super) fn tail(
    files: &[PathBuf],
    n: usize,
    filter: &LogFilter,
) -> std::io::Result<Vec<LogLine>> {
    let mut newest_first = Vec::new();
    for path in files.iter().rev() {
        if newest_first.len() >= n {
            break;
        }
        if scan_back(path, n, filter, &mut newest_first)? == Scan::Older {
            break;
        }
    }
    newest_first.reverse();
    Ok(newest_first)
}

/// How a backwards scan of one file ended.
#[derive(Debug, PartialEq)]
enum Scan {
    /// At the file's start, or with `n` lines.
    Done,
    /// At a line older than the filter's `since`: everything before it is older too (lines are
    /// stamped as they are stored), so reading further back is wasted IO.
    Older,
}

/// Pushes matching lines of `path` onto `out`, newest first, until `out` holds `n`.
fn scan_back(
    path: &PathBuf,
    n: usize,
    filter: &LogFilter,
    out: &mut Vec<LogLine>,
) -> std::io::Result<Scan> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Scan::Done),
        Err(e) => return Err(e),
    };
    let mut end = file.metadata()?.len();
    // Bytes after `end` whose line starts somewhere before it.
    let mut carry: Vec<u8> = Vec::new();
    while end > 0 && out.len() < n {
        let start = end.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (end - start) as usize];
        file.read_exact_at(&mut chunk, start)?;
        chunk.extend_from_slice(&carry);
        end = start;
        // Unless at the file's start, the first line may begin in an earlier chunk.
        let first = if start == 0 {
            0
        } else {
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => {
                    carry = chunk;
                    continue;
                }
            }
        };
        for raw in chunk[first..].split(|&b| b == b'\n').rev() {
            if out.len() >= n {
                break;
            }
            if let Ok(line) = serde_json::from_slice::<LogLine>(raw) {
                if filter.since.is_some_and(|t| line.ts < t) {
                    return Ok(Scan::Older);
                }
                if filter.matches(&line) {
                    out.push(line);
                }
            }
        }
        chunk.truncate(first);
        carry = chunk;
    }
    Ok(Scan::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use roboku_wire::LogSource;
    use std::io::Write;

    fn line(i: usize, dyno: &str) -> LogLine {
        LogLine {
            ts: i as u64,
            app: "a".into(),
            dyno: dyno.into(),
            source: LogSource::App,
            line: format!("{i} {}", "z".repeat(i % 300)),
        }
    }

    #[test]
    fn reads_the_last_lines_across_chunks_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("app.log.1"), dir.path().join("app.log"));
        let mut all = Vec::new();
        for (path, range) in [(&old, 0..2000), (&new, 2000..3000)] {
            let mut f = File::create(path).unwrap();
            for i in range {
                let l = line(i, if i % 2 == 0 { "web.1" } else { "worker.1" });
                writeln!(f, "{}", serde_json::to_string(&l).unwrap()).unwrap();
                all.push(l);
            }
            if path == &old {
                f.write_all(b"{torn\n").unwrap();
            }
        }
        let files = [old, new];
        assert_eq!(
            tail(&files, 1500, &LogFilter::default()).unwrap(),
            all[1500..]
        );
        assert_eq!(tail(&files, 10_000, &LogFilter::default()).unwrap(), all);
        let web = LogFilter {
            dyno: Some("web".into()),
            ..LogFilter::default()
        };
        let want: Vec<LogLine> = all.iter().filter(|l| l.dyno == "web.1").cloned().collect();
        assert_eq!(tail(&files, 1200, &web).unwrap(), want[want.len() - 1200..]);
        assert!(tail(&files, 0, &web).unwrap().is_empty());
    }

    #[test]
    fn since_and_grep_filter_and_since_stops_the_scan_early() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("app.log.1"), dir.path().join("app.log"));
        let mut all = Vec::new();
        for (path, range) in [(&old, 0..2000), (&new, 2000..3000)] {
            let mut f = File::create(path).unwrap();
            for i in range {
                let l = line(i, "web.1");
                writeln!(f, "{}", serde_json::to_string(&l).unwrap()).unwrap();
                all.push(l);
            }
        }
        let files = [old.clone(), new];
        let since = LogFilter {
            since: Some(2500),
            ..LogFilter::default()
        };
        assert_eq!(tail(&files, 100_000, &since).unwrap(), all[2500..]);
        // Lines ending in 7, among the last 10 such lines since 1990.
        let grep = LogFilter {
            since: Some(1990),
            grep: Some(super::super::Grep::new(r"^\d*7 ").unwrap()),
            ..LogFilter::default()
        };
        let want: Vec<LogLine> = all[1990..]
            .iter()
            .filter(|l| l.ts % 10 == 7)
            .cloned()
            .collect();
        assert_eq!(tail(&files, 100_000, &grep).unwrap(), want);
        assert_eq!(tail(&files, 3, &grep).unwrap(), want[want.len() - 3..]);
        // The scan stops at the first older line: a (misplaced) newer line before it is not
        // read, which shows nothing before that point was.
        let mut bytes = serde_json::to_vec(&line(2999, "web.1")).unwrap();
        bytes.push(b'\n');
        bytes.extend(std::fs::read(&old).unwrap());
        std::fs::write(&old, bytes).unwrap();
        assert_eq!(tail(&files, 100_000, &since).unwrap(), all[2500..]);
    }
}
