//! Properties of everything robokud reads from outside, as plain functions over arbitrary bytes:
//! the cargo fuzz targets (`fuzz/`, nightly) call them, and so does the corpus test here, which
//! runs every file of `fuzz/corpus/<target>/` through the same function on stable, so CI keeps
//! exercising what the fuzzers found without a nightly toolchain.
//!
//! Each check panics, naming the property and the values, when robokud mishandles the input;
//! returning means the input was handled as it must be: accepted with sane values, or refused with
//! an error that names what and where. "No panic" alone is never the whole property: each check
//! states what must hold of what was accepted (round trips, bounds, nothing written outside the
//! extraction root, no tampered envelope verifying).
//!
//! Nothing here runs in the agent; it lives in the library only so fuzz targets and tests share it.

pub mod api_json;
pub mod app_json;
pub mod archive;
pub mod bundle;
pub mod envelope;
pub mod text;

#[cfg(test)]
mod corpus_tests;

/// A check: arbitrary bytes in, a panic naming the broken property out.
pub type Check = fn(&[u8]);

/// Every fuzz target: its name (the directory under `fuzz/corpus/` and the file under
/// `fuzz/fuzz_targets/`) and its check.
pub const TARGETS: [(&str, Check); 7] = [
    ("procfile", text::procfile),
    ("dotenv", text::dotenv),
    ("app_json", app_json::check),
    ("api_json", api_json::check),
    ("envelope", envelope::check),
    ("archive", archive::check),
    ("bundle", bundle::check),
];

/// Structured input carved out of fuzz bytes: every read succeeds (zeros once the bytes run
/// out), so each input decodes to something and the fuzzer's mutations stay meaningful.
pub struct Carver<'a> {
    rest: &'a [u8],
}

impl<'a> Carver<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Carver { rest: data }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    pub fn u16(&mut self) -> u16 {
        u16::from(self.u8()) << 8 | u16::from(self.u8())
    }

    pub fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| acc << 8 | u64::from(self.u8()))
    }

    /// At most `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = tail;
        head
    }

    /// A length byte, then that many bytes (at most `max`).
    pub fn chunk(&mut self, max: usize) -> &'a [u8] {
        let n = usize::from(self.u8()) % (max + 1);
        self.take(n)
    }

    pub fn text(&mut self, max: usize) -> String {
        String::from_utf8_lossy(self.chunk(max)).into_owned()
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
}
