//! Splitting a spool's byte stream into log lines. Pure: no IO, tested on its own.

/// Longer lines are cut into pieces of this size, so one runaway line cannot grow memory.
pub(super) const MAX_LINE: usize = 16 * 1024;

/// Lines in one buffer: the text of every line back to back plus where each ends, so a batch
/// of thousands of lines costs two growing buffers (kept across batches), not a `String` each.
#[derive(Debug, Default)]
pub(super) struct Lines {
    text: String,
    ends: Vec<usize>,
}

impl Lines {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Empties the batch, keeping the buffers.
    pub fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }

    /// Appends one line: a trailing `\r` is dropped, invalid UTF-8 replaced.
    pub fn push(&mut self, raw: &[u8]) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        match std::str::from_utf8(raw) {
            Ok(s) => self.text.push_str(s),
            Err(_) => self.text.push_str(&String::from_utf8_lossy(raw)),
        }
        self.ends.push(self.text.len());
    }

    /// The lines in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator + '_ {
        (0..self.ends.len()).map(|i| self.get(i))
    }

    /// Line `i` (`i < len()`).
    fn get(&self, i: usize) -> &str {
        let start = i.checked_sub(1).map_or(0, |j| self.ends[j]);
        &self.text[start..self.ends[i]]
    }
}

/// Splits a byte stream into lines: `\n` ends a line, a trailing `\r` is dropped, invalid UTF-8
/// is replaced, and a line longer than [`MAX_LINE`] is emitted in pieces.
#[derive(Debug, Default)]
pub(super) struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Bytes held back as an incomplete line.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Lines) {
        while !bytes.is_empty() {
            // Invariant: partial.len() <= MAX_LINE, so a newline at index `room` still fits.
            let room = MAX_LINE - self.partial.len();
            let window = &bytes[..bytes.len().min(room + 1)];
            if let Some(i) = window.iter().position(|&b| b == b'\n') {
                if self.partial.is_empty() {
                    // The common case: a whole line in the chunk, copied once into `out`.
                    out.push(&bytes[..i]);
                } else {
                    self.partial.extend_from_slice(&bytes[..i]);
                    out.push(&self.partial);
                    self.partial.clear();
                }
                bytes = &bytes[i + 1..];
            } else if bytes.len() > room {
                self.partial.extend_from_slice(&bytes[..room]);
                let cut = char_boundary(&self.partial);
                out.push(&self.partial[..cut]);
                self.partial.drain(..cut);
                bytes = &bytes[room..];
            } else {
                self.partial.extend_from_slice(bytes);
                break;
            }
        }
    }

    /// Emits whatever is held back (the writer is gone, nothing will complete it).
    pub fn finish(&mut self, out: &mut Lines) {
        if !self.partial.is_empty() {
            out.push(&self.partial);
            self.partial.clear();
        }
    }
}

/// The longest prefix of `buf` that does not end inside a UTF-8 character.
fn char_boundary(buf: &[u8]) -> usize {
    let len = buf.len();
    let mut start = len;
    while start > 0 && len - start < 4 {
        start -= 1;
        let b = buf[start];
        if b & 0xC0 != 0x80 {
            let width = match b {
                0xF0..=0xF7 => 4,
                0xE0..=0xEF => 3,
                0xC0..=0xDF => 2,
                _ => 1,
            };
            return if start + width > len && start > 0 {
                start
            } else {
                len
            };
        }
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> (Vec<String>, usize) {
        let mut s = LineSplitter::default();
        let mut out = Lines::default();
        for c in chunks {
            s.feed(c, &mut out);
        }
        (out.iter().map(str::to_owned).collect(), s.pending())
    }

    #[test]
    fn a_batch_keeps_empty_lines_invalid_utf8_and_reuses_its_buffers() {
        let mut out = Lines::default();
        let mut s = LineSplitter::default();
        s.feed(b"a\n\n\xffb\r\ntail", &mut out);
        assert_eq!(out.iter().collect::<Vec<_>>(), ["a", "", "\u{fffd}b"]);
        assert_eq!(out.iter().next_back(), Some("\u{fffd}b"));
        out.clear();
        assert!(out.is_empty());
        s.finish(&mut out);
        assert_eq!(out.iter().collect::<Vec<_>>(), ["tail"]);
        assert_eq!((out.len(), s.pending()), (1, 0));
    }

    #[test]
    fn splits_lines_across_chunks_and_strips_cr() {
        let (out, pending) = split(&[b"a\r\nb", b"c\n\nd"]);
        assert_eq!(out, ["a", "bc", ""]);
        assert_eq!(pending, 1);
    }

    #[test]
    fn long_lines_come_out_in_pieces_whatever_the_chunking() {
        let mut line = vec![b'x'; 2 * MAX_LINE + 10];
        line.push(b'\n');
        let (whole, _) = split(&[&line]);
        let pieces: Vec<&[u8]> = line.chunks(1000).collect();
        let (chunked, pending) = split(&pieces);
        assert_eq!(whole, chunked);
        assert_eq!(pending, 0);
        let lens: Vec<usize> = whole.iter().map(String::len).collect();
        assert_eq!(lens, [MAX_LINE, MAX_LINE, 10]);
        let mut exact = vec![b'y'; MAX_LINE];
        exact.push(b'\n');
        assert_eq!(
            split(&[&exact]).0.len(),
            1,
            "a line of exactly MAX_LINE stays whole"
        );
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let mut line = vec![b'x'; MAX_LINE - 1];
        line.extend_from_slice("é".as_bytes());
        line.push(b'\n');
        let (out, _) = split(&[&line]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), MAX_LINE - 1);
        assert_eq!(out[1], "é");
    }
}
