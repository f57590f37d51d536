//! The chatty dyno the log benches share (`--bench logs` and the peer bench's chatty workload):
//! a writer of numbered 100-byte lines that times itself, and the count of which numbered lines
//! a capture kept (lost, stored twice), whatever the capturer wraps them in (JSON, a prefix).

use std::path::Path;

/// Writes `$LINES` numbered lines of exactly 100 bytes (`line NNNNNNNNN ` + 84 `x` + newline),
/// then appends to `$TIMES` its start (unix ns) and its own wall time (ns). (They were 96 bytes
/// once, so the spool never reached the 100-byte total the capture loop waited for: the first
/// figure, 0.26 MB/s, was the bench waiting, not robokud.)
pub const WRITER: &str = "import os, sys, time\n\
n = int(os.environ['LINES'])\n\
start = time.time_ns()\n\
t = time.monotonic_ns()\n\
w = sys.stdout.write\n\
pad = 'x' * 84\n\
for i in range(n): w('line %09d %s\\n' % (i, pad))\n\
sys.stdout.flush()\n\
open(os.environ['TIMES'], 'a').write('%d %d\\n' % (start, time.monotonic_ns() - t))\n";

/// Bytes of one writer line.
pub const LINE_BYTES: usize = 100;

/// The text of the writer's line `i` up to its padding (what a capture must contain).
pub fn tag(i: usize) -> String {
    format!("line {i:09}")
}

/// A log quota with room for `mb` MB of writer lines stored as JSON (about 170 bytes for a
/// 100-byte line; twice that for margin).
pub fn quota_for(mb: usize) -> u64 {
    (mb as u64 * 4 + 64) << 20
}

/// `(start unix ns, wall ns)` of the `nth` writer run recorded in `times`, once it is there.
pub fn writer_run(times: &Path, nth: usize) -> Option<(u128, f64)> {
    let text = std::fs::read_to_string(times).ok()?;
    let mut it = text.lines().nth(nth)?.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Which of the writer's lines `0..lines` the captured texts hold: every `line NNNNNNNNN ` seen
/// is counted, in any wrapping.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Count {
    pub lost: usize,
    pub twice: usize,
}

/// Counts the numbered lines in `texts` (e.g. `app.log.1` then `app.log`).
pub fn count(texts: &[&[u8]], lines: usize) -> Count {
    let mut seen = vec![0u8; lines];
    let mut twice = 0;
    for text in texts {
        let mut at = 0;
        while let Some(i) = find(&text[at..], b"line ") {
            let start = at + i + 5;
            at = start;
            let Some(digits) = text.get(start..start + 9) else {
                break;
            };
            if text.get(start + 9) != Some(&b' ') || !digits.iter().all(u8::is_ascii_digit) {
                continue;
            }
            let n = digits
                .iter()
                .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
            if let Some(s) = seen.get_mut(n) {
                if *s > 0 {
                    twice += 1;
                }
                *s = 1;
            }
            at = start + 9;
        }
    }
    Count {
        lost: seen.iter().filter(|&&s| s == 0).count(),
        twice,
    }
}

/// Whether `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &str) -> bool {
    find(hay, needle.as_bytes()).is_some()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether the last `tail` bytes of `path` contain `needle`.
pub fn tail_has(path: &Path, needle: &str, tail: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let n = tail.min(len);
    let mut buf = vec![0u8; n as usize];
    if f.read_exact_at(&mut buf, len - n).is_err() {
        return false;
    }
    find(&buf, needle.as_bytes()).is_some()
}
