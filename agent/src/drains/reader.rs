//! Reading an app's log store (`app.log.1` + `app.log`, JSON lines) from a drain's cursor.
//!
//! A cursor is (inode, byte offset): the store rotates by renaming `app.log` to `app.log.1`,
//! which keeps the inode, so a cursor stays valid across a rotation. A cursor whose file is
//! neither of the two any more was rotated away by the quota: the lines after it are counted as
//! dropped (the reader keeps the files it read open, so it can still count them) and reading
//! goes on at the oldest stored line. Only whole lines are read; a line that does not parse (a
//! write torn by a full disk) is skipped.

use crate::logs::store_files;
use roboku_wire::LogLine;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;

/// Where a drain has got to in its app's log store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The inode of the file; 0: before the oldest stored line.
    pub file: u64,
    pub offset: u64,
}

impl Cursor {
    pub const START: Cursor = Cursor { file: 0, offset: 0 };
}

#[derive(Debug, Default, PartialEq)]
pub struct Batch {
    pub lines: Vec<LogLine>,
    /// Where the lines begin (after any dropped ones).
    pub start: Option<Cursor>,
    /// The cursor after the last line read.
    pub end: Option<Cursor>,
    /// Lines rotated away before they were read.
    pub dropped: u64,
}

pub struct Reader {
    dir: PathBuf,
    /// Files read from, by inode (at most the two stored and one rotated away).
    open: HashMap<u64, File>,
}

/// (inode, length) of each stored file, oldest first.
type Stat = [Option<(u64, u64)>; 2];

impl Reader {
    /// A reader of the store in `app_dir` (`<logs>/<app>`).
    pub fn new(app_dir: PathBuf) -> Self {
        Reader {
            dir: app_dir,
            open: HashMap::new(),
        }
    }

    fn stat(&self) -> Stat {
        store_files(&self.dir).map(|p| std::fs::metadata(p).ok().map(|m| (m.ino(), m.len())))
    }

    /// The cursor after the newest stored line (where a new drain starts).
    pub fn end(&self) -> Cursor {
        match self.stat() {
            [_, Some((ino, len))] | [Some((ino, len)), None] => Cursor {
                file: ino,
                offset: len,
            },
            [None, None] => Cursor::START,
        }
    }

    /// Up to about `max` bytes of whole lines after `from`.
    pub fn read(&mut self, from: Cursor, max: usize) -> io::Result<Batch> {
        let stat = self.stat();
        let mut batch = Batch::default();
        let mut from = self.resolve(from, &stat, &mut batch.dropped)?;
        batch.start = from;
        let mut budget = max;
        while let Some(at) = from {
            let idx = stat
                .iter()
                .position(|s| s.is_some_and(|(ino, _)| ino == at.file));
            let Some(idx) = idx else { break };
            let len = stat[idx].map_or(0, |(_, l)| l);
            let (read, next) = self.read_file(at, len, budget, budget == max, &mut batch.lines)?;
            // Everything up to the file's end was looked at, yet no whole line: a torn tail.
            let torn = next == at && (len - at.offset) as usize <= budget;
            budget = budget.saturating_sub(read);
            // The older file is done growing: past its end the newer one starts.
            let at_end = next.offset >= len;
            let newer = if idx == 0 { stat[1] } else { None };
            match newer {
                Some((ino, _)) if at_end || torn => {
                    // Whole, or only a torn tail left (it will never get its newline).
                    from = Some(Cursor {
                        file: ino,
                        offset: 0,
                    });
                    batch.end = from;
                    if budget == 0 {
                        break;
                    }
                }
                // More of the older file, room in the budget: go on reading it.
                Some(_) if budget > 0 && next != at => {
                    from = Some(next);
                    batch.end = from;
                }
                _ => {
                    batch.end = Some(next);
                    break;
                }
            }
        }
        if batch.end.is_none() {
            batch.end = batch.start;
        }
        self.open
            .retain(|ino, _| stat.iter().flatten().any(|(i, _)| i == ino));
        Ok(batch)
    }

    /// Where reading from `from` really starts: `None` when nothing is stored yet. Counts the
    /// lines of a rotated-away file after `from` into `dropped`.
    fn resolve(
        &mut self,
        from: Cursor,
        stat: &Stat,
        dropped: &mut u64,
    ) -> io::Result<Option<Cursor>> {
        let oldest = stat.iter().flatten().next().map(|&(ino, _)| Cursor {
            file: ino,
            offset: 0,
        });
        if from.file == Cursor::START.file {
            return Ok(oldest);
        }
        match stat.iter().flatten().find(|(ino, _)| *ino == from.file) {
            Some(&(_, len)) if from.offset <= len => Ok(Some(from)),
            // Shorter than the cursor: not the file it was (an inode used again).
            Some(_) => Ok(oldest),
            None if oldest.is_none() => Ok(Some(from)), // moved or not made yet: wait
            None => {
                if let Some(f) = self.open.get(&from.file) {
                    *dropped += count_lines(f, from.offset)?;
                }
                self.open.remove(&from.file);
                Ok(oldest)
            }
        }
    }

    /// Reads whole lines of the file at `at` (`len` bytes long) into `out`; returns the bytes
    /// consumed and the cursor after them.
    fn read_file(
        &mut self,
        at: Cursor,
        len: u64,
        budget: usize,
        whole_budget: bool,
        out: &mut Vec<LogLine>,
    ) -> io::Result<(usize, Cursor)> {
        let want = (len.saturating_sub(at.offset) as usize).min(budget);
        if want == 0 {
            return Ok((0, at));
        }
        let file = self.file(at.file)?;
        let Some(file) = file else {
            return Ok((0, at));
        };
        let mut buf = vec![0u8; want];
        let n = read_full_at(file, &mut buf, at.offset)?;
        buf.truncate(n);
        let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
            // No whole line: wait for its end, unless a whole budget cannot ever hold it.
            let skip = if whole_budget && n == budget { n } else { 0 };
            return Ok((
                skip,
                Cursor {
                    file: at.file,
                    offset: at.offset + skip as u64,
                },
            ));
        };
        for raw in buf[..last_nl].split(|&b| b == b'\n') {
            if let Ok(line) = serde_json::from_slice::<LogLine>(raw) {
                out.push(line);
            }
        }
        let used = last_nl + 1;
        Ok((
            used,
            Cursor {
                file: at.file,
                offset: at.offset + used as u64,
            },
        ))
    }

    /// The open file of inode `ino`, opening it by name if it is one of the stored files.
    fn file(&mut self, ino: u64) -> io::Result<Option<&File>> {
        if !self.open.contains_key(&ino) {
            for path in store_files(&self.dir) {
                match File::open(&path) {
                    Ok(f) if f.metadata()?.ino() == ino => {
                        self.open.insert(ino, f);
                        break;
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(self.open.get(&ino))
    }

    /// Whole lines stored after `from` (what a drain still has to deliver).
    pub fn pending(&mut self, from: Cursor) -> io::Result<u64> {
        let stat = self.stat();
        let mut n = 0;
        let mut counting = from.file == Cursor::START.file
            || !stat.iter().flatten().any(|(ino, _)| *ino == from.file);
        for (ino, _) in stat.iter().flatten() {
            let offset = if *ino == from.file {
                counting = true;
                from.offset
            } else {
                0
            };
            if counting {
                if let Some(f) = self.file(*ino)? {
                    n += count_lines(f, offset)?;
                }
            }
        }
        Ok(n)
    }
}

/// Newlines in `f` from `offset` to its end.
fn count_lines(f: &File, mut offset: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0;
    loop {
        let got = f.read_at(&mut buf, offset)?;
        if got == 0 {
            return Ok(n);
        }
        n += buf[..got].iter().filter(|&&b| b == b'\n').count() as u64;
        offset += got as u64;
    }
}

fn read_full_at(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use roboku_wire::LogSource;
    use std::io::Write;

    fn line(i: usize) -> LogLine {
        LogLine {
            ts: i as u64,
            app: "a".into(),
            dyno: "web.1".into(),
            source: LogSource::App,
            line: format!("line {i}"),
        }
    }

    fn append(dir: &std::path::Path, range: std::ops::Range<usize>) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.join("app.log"))
            .unwrap();
        for i in range {
            writeln!(f, "{}", serde_json::to_string(&line(i)).unwrap()).unwrap();
        }
    }

    fn rotate(dir: &std::path::Path) {
        std::fs::rename(dir.join("app.log"), dir.join("app.log.1")).unwrap();
    }

    fn nums(b: &Batch) -> Vec<u64> {
        b.lines.iter().map(|l| l.ts).collect()
    }

    #[test]
    fn follows_across_a_rotation_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Reader::new(dir.path().to_owned());
        assert_eq!(r.read(Cursor::START, 1 << 20).unwrap().lines, []);
        append(dir.path(), 0..10);
        let b = r.read(Cursor::START, 1 << 20).unwrap();
        assert_eq!(nums(&b), (0..10).collect::<Vec<_>>());
        let at = b.end.unwrap();
        append(dir.path(), 10..20);
        rotate(dir.path());
        append(dir.path(), 20..25);
        assert_eq!(r.pending(at).unwrap(), 15);
        let b = r.read(at, 1 << 20).unwrap();
        assert_eq!(nums(&b), (10..25).collect::<Vec<_>>());
        assert_eq!(b.dropped, 0);
        assert_eq!(r.pending(b.end.unwrap()).unwrap(), 0);
        // A new drain starts after the newest line.
        assert_eq!(r.end(), b.end.unwrap());
    }

    #[test]
    fn a_small_budget_reads_in_pieces_and_never_half_a_line() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), 0..50);
        rotate(dir.path());
        append(dir.path(), 50..100);
        let mut r = Reader::new(dir.path().to_owned());
        let (mut at, mut got) = (Cursor::START, Vec::new());
        for _ in 0..200 {
            let b = r.read(at, 300).unwrap();
            got.extend(nums(&b));
            at = b.end.unwrap();
        }
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        // A partial last line waits for its newline.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("app.log"))
            .unwrap();
        let json = serde_json::to_string(&line(100)).unwrap();
        f.write_all(&json.as_bytes()[..10]).unwrap();
        assert!(r.read(at, 1 << 20).unwrap().lines.is_empty());
        writeln!(f, "{}", &json[10..]).unwrap();
        assert_eq!(nums(&r.read(at, 1 << 20).unwrap()), [100]);
    }

    #[test]
    fn lines_rotated_away_are_counted_as_dropped() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), 0..10);
        let mut r = Reader::new(dir.path().to_owned());
        let b = r.read(Cursor::START, 1 << 20).unwrap();
        // Read 0..10, delivered 0..4 only: the cursor stays at line 4's end.
        let at = Cursor {
            file: b.end.unwrap().file,
            offset: {
                let one = serde_json::to_string(&line(0)).unwrap().len() as u64 + 1;
                one * 4
            },
        };
        // Two rotations: the cursor's file is gone.
        rotate(dir.path());
        append(dir.path(), 10..20);
        rotate(dir.path());
        append(dir.path(), 20..30);
        let b = r.read(at, 1 << 20).unwrap();
        assert_eq!(b.dropped, 6, "lines 4..10 never delivered");
        assert_eq!(nums(&b), (10..30).collect::<Vec<_>>());
    }

    #[test]
    fn a_torn_tail_of_the_rotated_file_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), 0..3);
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("app.log"))
            .unwrap()
            .write_all(b"{\"torn")
            .unwrap();
        rotate(dir.path());
        append(dir.path(), 3..5);
        let mut r = Reader::new(dir.path().to_owned());
        let b = r.read(Cursor::START, 1 << 20).unwrap();
        assert_eq!(nums(&b), [0, 1, 2, 3, 4]);
    }
}
