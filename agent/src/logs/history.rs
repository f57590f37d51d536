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
        scan_back(path, n, filter, &mut newest_first)?;
    }
    newest_first.reverse();
    Ok(newest_first)
}

/// Pushes matching lines of `path` onto `out`, newest first, until `out` holds `n`.
fn scan_back(
    path: &PathBuf,
    n: usize,
    filter: &LogFilter,
    out: &mut Vec<LogLine>,
) -> std::io::Result<()> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
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
                if filter.matches(&line) {
                    out.push(line);
                }
            }
        }
        chunk.truncate(first);
        carry = chunk;
    }
    Ok(())
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
            source: None,
        };
        let want: Vec<LogLine> = all.iter().filter(|l| l.dyno == "web.1").cloned().collect();
        assert_eq!(tail(&files, 1200, &web).unwrap(), want[want.len() - 1200..]);
        assert!(tail(&files, 0, &web).unwrap().is_empty());
    }
}
