//! One dyno's spool as the log task sees it: where reading has got to, the partial last line,
//! the persisted offset, and reclaiming consumed space while the dyno keeps appending.
//!
//! Reclaiming: the dyno holds the spool `O_APPEND` and never waits for us, so the file cannot be
//! rotated under it. Instead consumed ranges are punched out (`FALLOC_FL_PUNCH_HOLE`), which
//! frees the blocks but keeps offsets stable. Where the filesystem cannot punch holes the spool
//! is truncated to zero once fully consumed; a line the dyno writes between our size check and
//! the truncate is lost (a window of microseconds, accepted only on such filesystems).
//!
//! Ordering that keeps lines safe across an agent crash: lines are stored first, then the offset
//! is persisted, then the range is punched (never past the persisted offset). A crash in between
//! duplicates lines, never loses them.
//!
//! The offset is persisted in batches ([`save_due`]): once [`SAVE_BYTES`] were stored past it or
//! [`SAVE_AFTER`] after the first line stored past it, whichever comes first (the task's timer
//! sees to the second). So a kill -9 re-delivers at most that much output (4 MiB or 100 ms of
//! it, plus one read budget) when the next agent starts, instead of costing a
//! write-and-rename per read while a chatty dyno writes in small pieces.
//!
//! Times: a line is stamped when it is read, which is within milliseconds of its write while the
//! agent is tailing. What a spool already holds when it is opened (output written while robokud
//! was down, or before it started tailing a new dyno) is the [`Backlog`]: its lines are stamped
//! with the spool's mtime at opening instead, the time of its last write, so a line is never
//! stamped before it was written and never later than the last write before robokud came back
//! (the dyno writes the spool itself; no write time is kept per line).

use super::lines::{LineSplitter, Lines};
use super::LogError;
use crate::util::{IoContext, PathError};
use nix::errno::Errno;
use nix::fcntl::{fallocate, FallocateFlags};
use nix::unistd::{lseek, Whence};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Consumed space is given back in steps of this size.
const RECLAIM_STEP: u64 = 1024 * 1024;
/// Bytes read per `read` call.
const CHUNK: usize = 64 * 1024;
/// Filesystem block size punches are aligned to, so no consumed-but-unpunched block holds zeros.
const BLOCK: u64 = 4096;
/// The offset is persisted once this much was stored past it...
pub(super) const SAVE_BYTES: u64 = 4 * 1024 * 1024;
/// ... or this long after the first line stored past it, whichever comes first.
pub(super) const SAVE_AFTER: Duration = Duration::from_millis(100);

/// Whether an offset with `unsaved` bytes stored past it, the first of them `dirty_for` ago, is
/// to be persisted now (see the module docs).
pub(super) fn save_due(unsaved: u64, dirty_for: Duration) -> bool {
    unsaved >= SAVE_BYTES || (unsaved > 0 && dirty_for >= SAVE_AFTER)
}

/// A spool being tailed.
pub(super) struct Spool {
    path: PathBuf,
    offset_path: PathBuf,
    /// Read-write (fallocate and truncate need a writable fd); we never write data.
    file: File,
    /// Next byte to read.
    read_pos: u64,
    splitter: LineSplitter,
    /// `[0, punched)` has been given back already.
    punched: u64,
    punch_unsupported: bool,
    /// The offset last written to `offset_path`.
    saved: Option<u64>,
    /// Since when lines past `saved` have been handed out (`None`: the offset is up to date).
    dirty_since: Option<Instant>,
    /// What the spool held when it was opened and has not been read yet.
    backlog: Option<Backlog>,
}

/// Output that was in the spool before this reader opened it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Backlog {
    /// It ends here (the spool's size at opening).
    end: u64,
    /// The spool's mtime at opening, unix ms: no backlog line was written later.
    pub written_by: u64,
    /// When it was found (the spool opened), unix ms.
    pub found_at: u64,
    /// The offset file's mtime, unix ms: when the previous reader last stored lines of this
    /// spool (a complete backlog line was written after it). `None` when nobody read it yet.
    pub read_before: Option<u64>,
    /// Lines handed out from it so far.
    pub lines: usize,
}

/// What one read produced.
pub(super) struct Batch {
    /// The read stopped at its budget (or at the end of the backlog) before the end of the spool.
    pub more: bool,
    /// The lines are backlog: written no later than this (unix ms), not just now.
    pub written_by: Option<u64>,
    /// The backlog was read to its end with this read.
    pub backlog_done: Option<Backlog>,
}

impl Spool {
    /// Opens `<dir>/<dyno>.out` (creating it if the dyno has not yet), resuming at the persisted
    /// offset, or at its first data when there is none.
    pub fn open(dir: &Path, dyno: &str) -> Result<Self, LogError> {
        let path = dir.join(format!("{dyno}.out"));
        let offset_path = dir.join(format!("{dyno}.offset"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false) // the dyno may have written already
            .mode(0o640)
            .open(&path)
            .at("open spool", &path)?;
        let meta = file.metadata().at("stat spool", &path)?;
        let size = meta.len();
        let saved = read_offset(&offset_path)?;
        let read_pos = match saved {
            Some(off) if off <= size => off,
            Some(_) => 0, // truncated by someone: what is there now is all new
            None => first_data(&file, size).at("find data in", &path)?,
        };
        let backlog = (size > read_pos).then(|| Backlog {
            end: size,
            written_by: mtime_ms(&meta),
            found_at: crate::util::now_ms(),
            read_before: std::fs::metadata(&offset_path).ok().map(|m| mtime_ms(&m)),
            lines: 0,
        });
        Ok(Spool {
            path,
            offset_path,
            file,
            read_pos,
            splitter: LineSplitter::default(),
            punched: 0,
            punch_unsupported: false,
            saved,
            dirty_since: None,
            backlog,
        })
    }

    /// Offset up to which every line has been handed out.
    pub fn committed(&self) -> u64 {
        self.read_pos - self.splitter.pending() as u64
    }

    /// Reads new data, at most about `budget` bytes, and splits it into lines appended to
    /// `lines`. The backlog is read on its own (its batches carry its time), the rest after it.
    /// `buf` is the caller's read buffer, shared by every spool (one per task, not one per
    /// dyno: 500 dynos would keep 32 MiB of buffers otherwise); it is grown to [`CHUNK`].
    pub fn read(
        &mut self,
        budget: u64,
        lines: &mut Lines,
        buf: &mut Vec<u8>,
    ) -> Result<Batch, LogError> {
        let before = lines.len();
        let size = self.file.metadata().at("stat spool", &self.path)?.len();
        if size < self.read_pos {
            // Truncated under us: keep what we held, then start over at the new beginning.
            self.splitter.finish(lines);
            self.read_pos = 0;
            self.punched = 0;
            self.backlog = None;
        }
        let start = self.read_pos;
        let end = self.backlog.as_ref().map(|b| b.end);
        if buf.len() < CHUNK {
            buf.resize(CHUNK, 0);
        }
        let mut more = true;
        while self.read_pos - start < budget {
            let want = match end {
                Some(end) => CHUNK.min(usize::try_from(end - self.read_pos).unwrap_or(CHUNK)),
                None => CHUNK,
            };
            if want == 0 {
                break;
            }
            let n = match read_at(&self.file, &mut buf[..want], self.read_pos) {
                Ok(n) => n,
                Err(e) => {
                    return Err(PathError {
                        op: "read spool",
                        path: self.path.clone(),
                        source: e,
                    }
                    .into());
                }
            };
            if n == 0 {
                more = false;
                break;
            }
            self.splitter.feed(&buf[..n], lines);
            self.read_pos += n as u64;
        }
        let Some(backlog) = &mut self.backlog else {
            return Ok(Batch {
                more,
                written_by: None,
                backlog_done: None,
            });
        };
        backlog.lines += lines.len() - before;
        let written_by = Some(backlog.written_by);
        let backlog_done = if self.read_pos >= backlog.end || !more {
            // The rest (if any) is new: read it on the next turn, stamped as it is read.
            more = true;
            self.backlog.take()
        } else {
            None
        };
        Ok(Batch {
            more,
            written_by,
            backlog_done,
        })
    }

    /// The dyno is gone: hand out a final incomplete line too.
    pub fn finish(&mut self, lines: &mut Lines) {
        self.splitter.finish(lines);
    }

    /// Notes that lines were stored; returns whether the offset is due to be persisted now
    /// ([`save_due`]). When it is not, it is due at [`Spool::save_deadline`] at the latest.
    pub fn stored(&mut self, now: Instant) -> bool {
        let unsaved = self.committed().saturating_sub(self.saved.unwrap_or(0));
        if self.saved == Some(self.committed()) {
            self.dirty_since = None;
            return false;
        }
        let since = *self.dirty_since.get_or_insert(now);
        save_due(unsaved.max(1), now.saturating_duration_since(since))
    }

    /// When the offset must be persisted at the latest (`None`: it is up to date).
    pub fn save_deadline(&self) -> Option<Instant> {
        self.dirty_since.map(|t| t + SAVE_AFTER)
    }

    /// Persists the committed offset if it moved (write-then-rename, so it is never torn).
    pub fn save_offset(&mut self) -> Result<(), LogError> {
        let off = self.committed();
        // Nothing read from a spool without an offset file: opening it again finds the same
        // place (its first data), so there is nothing to persist (a scale to 500 would write
        // and rename 500 files).
        if self.saved == Some(off) || (self.saved.is_none() && off == 0) {
            return Ok(());
        }
        let tmp = self.offset_path.with_extension("offset.tmp");
        std::fs::write(&tmp, off.to_string()).at("write", &tmp)?;
        std::fs::rename(&tmp, &self.offset_path).at("rename", &self.offset_path)?;
        self.saved = Some(off);
        self.dirty_since = None;
        Ok(())
    }

    /// Gives back consumed space up to the persisted offset (a crash re-reads from there, so
    /// nothing after it may be punched); call after [`Spool::save_offset`].
    pub fn reclaim(&mut self) -> Result<(), LogError> {
        let Some(saved) = self.saved else {
            return Ok(());
        };
        let committed = self.committed();
        if !self.punch_unsupported {
            let end = saved / BLOCK * BLOCK;
            if end.saturating_sub(self.punched) < RECLAIM_STEP {
                return Ok(());
            }
            let mode = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
            let (off, len) = (
                self.punched as libc::off_t,
                (end - self.punched) as libc::off_t,
            );
            match fallocate(self.file.as_raw_fd(), mode, off, len) {
                Ok(()) => {
                    self.punched = end;
                    return Ok(());
                }
                Err(Errno::EOPNOTSUPP) => self.punch_unsupported = true,
                Err(source) => {
                    return Err(LogError::Sys {
                        op: "punch hole in",
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        }
        let size = self.file.metadata().at("stat spool", &self.path)?.len();
        if committed >= RECLAIM_STEP && committed == size && saved == committed {
            self.file.set_len(0).at("truncate spool", &self.path)?;
            self.read_pos = 0;
            self.save_offset()?;
        }
        Ok(())
    }
}

/// The persisted offset, if there is a readable one.
fn read_offset(path: &Path) -> Result<Option<u64>, LogError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().parse().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PathError {
            op: "read",
            path: path.to_owned(),
            source,
        }
        .into()),
    }
}

/// A file's mtime in unix ms.
fn mtime_ms(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// `read_at` that retries when interrupted by a signal.
fn read_at(file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    loop {
        match file.read_at(buf, pos) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Where the data of a spool nobody has read (or whose offset was lost) starts: past holes and
/// past NUL bytes that a punch left in a partial block.
fn first_data(file: &File, size: u64) -> std::io::Result<u64> {
    let mut pos = match lseek(file.as_raw_fd(), 0, Whence::SeekData) {
        Ok(p) => p as u64,
        Err(Errno::ENXIO) => return Ok(size), // no data at all
        Err(e) => return Err(e.into()),
    };
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = read_at(file, &mut buf, pos)?;
        match buf[..n].iter().position(|&b| b != 0) {
            Some(i) => return Ok(pos + i as u64),
            None if n == 0 => return Ok(pos),
            None => pos += n as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn an_offset_is_due_after_enough_bytes_or_time() {
        assert!(!save_due(0, SAVE_AFTER * 10), "nothing to save");
        assert!(!save_due(SAVE_BYTES - 1, SAVE_AFTER / 2));
        assert!(save_due(SAVE_BYTES, Duration::ZERO));
        assert!(save_due(1, SAVE_AFTER));
    }

    fn read_all(spool: &mut Spool, lines: &mut Lines) {
        let mut buf = Vec::new();
        while spool.read(1 << 20, lines, &mut buf).unwrap().more {}
    }

    fn allocated(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().blocks() * 512
    }

    /// The batching of offset saves, without timers: not due, due by time, due by size; a
    /// reader dropped with its offset behind (a kill -9) is resumed from the persisted offset,
    /// and nothing past it was punched, so every line not persisted comes again.
    #[test]
    fn offsets_are_saved_in_batches_and_nothing_past_them_is_punched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.1.out");
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .unwrap();
        let line = format!("{}\n", "x".repeat(99));
        let write = |f: &mut File, n: usize| f.write_all(line.repeat(n).as_bytes()).unwrap();
        write(&mut f, 30_000); // 3 MB
        let mut spool = Spool::open(dir.path(), "web.1").unwrap();
        let mut lines = Lines::default();
        read_all(&mut spool, &mut lines);
        assert_eq!(lines.len(), 30_000);
        let t0 = Instant::now();
        assert!(!spool.stored(t0), "3 MB stored just now: not due");
        assert_eq!(spool.save_deadline(), Some(t0 + SAVE_AFTER));
        let full = allocated(&path);
        spool.reclaim().unwrap();
        assert_eq!(allocated(&path), full, "nothing punched before a save");
        assert!(spool.stored(t0 + SAVE_AFTER), "due 100 ms later");
        spool.save_offset().unwrap();
        spool.reclaim().unwrap();
        assert_eq!(spool.save_deadline(), None);
        assert!(
            allocated(&path) < full / 2,
            "punched up to the saved offset"
        );
        let punched = allocated(&path);

        // 2 MB more, stored, not due; reclaim gives nothing back; then the reader dies.
        write(&mut f, 20_000);
        lines.clear();
        read_all(&mut spool, &mut lines);
        assert_eq!(lines.len(), 20_000);
        assert!(!spool.stored(Instant::now()));
        spool.reclaim().unwrap();
        assert!(allocated(&path) >= punched + 2_000_000 / 4096 * 4096);
        drop(spool);
        let mut again = Spool::open(dir.path(), "web.1").unwrap();
        lines.clear();
        read_all(&mut again, &mut lines);
        assert_eq!(
            lines.len(),
            20_000,
            "the lines after the saved offset, again"
        );
        assert!(lines.iter().all(|l| l == &line[..99]));

        // More than SAVE_BYTES stored past the offset: due at once.
        write(&mut f, 30_000);
        read_all(&mut again, &mut lines);
        assert!(again.stored(Instant::now()));
    }
}
