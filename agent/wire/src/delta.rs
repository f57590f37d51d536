//! Slug deltas: a new slug written as copies from a slug the robot already has plus the bytes
//! that are new, the whole stream zstd-compressed (ruzstd, already a dependency).
//!
//! Both sides work on the *decoded* tar (a `.tar.gz` slug is gunzipped first): one changed line
//! of a compressed tar changes every compressed byte after it, while in the tar it changes one
//! file's bytes and its header.
//!
//! Format of the decompressed stream (all integers LEB128 varints):
//! `"RKD1" base_len target_len op*`, where an op is `(len << 1) | 0` followed by `len` literal
//! bytes, or `(len << 1) | 1` followed by a base offset to copy `len` bytes from. The ops must
//! produce exactly `target_len` bytes and the stream must end there.
//!
//! [`apply`] trusts nothing in a delta: the base length must be the base's, the target length
//! must be the one the caller expects (the signed size), every copy must lie inside the base,
//! every op inside the target, the zstd window is capped, memory is a fixed buffer, and output
//! goes to the caller's writer (a file robokud created), never to a path named by the delta.

use std::collections::HashMap;
use std::io::{self, Read, Write};

const MAGIC: &[u8; 4] = b"RKD1";
/// Bytes hashed per index entry: shorter matches are sent as literals.
const BLOCK: usize = 32;
/// Largest zstd window a delta may ask for (the encoder uses far less).
const MAX_WINDOW: u64 = 8 << 20;
/// Copy buffer.
const CHUNK: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("not a roboku delta (bad magic)")]
    Magic,
    #[error("delta is for a base of {want} bytes, this base has {have}")]
    BaseLen { want: u64, have: u64 },
    #[error("delta makes {got} bytes, the signed size is {want}")]
    TargetLen { got: u64, want: u64 },
    #[error("delta op at output byte {at}: {what}")]
    Op { at: u64, what: &'static str },
    #[error("delta stream: {0}")]
    Io(#[from] io::Error),
}

/// A base the delta copies from: random access by offset (a file, or bytes in memory).
pub trait Base {
    fn size(&self) -> u64;
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl Base for [u8] {
    fn size(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let src = self
            .get(start..start + buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl Base for std::fs::File {
    fn size(&self) -> u64 {
        self.metadata().map(|m| m.len()).unwrap_or(0)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

/// Polynomial rolling hash over `BLOCK` bytes.
const P: u64 = 0x100_0000_01b3;

fn hash(block: &[u8]) -> u64 {
    block.iter().fold(0u64, |h, &b| {
        h.wrapping_mul(P).wrapping_add(u64::from(b) + 1)
    })
}

/// Makes the delta that turns `base` into `target` (both decoded tars, in memory).
pub fn encode(base: &[u8], target: &[u8]) -> Vec<u8> {
    let mut ops = Vec::with_capacity(target.len() / 64 + 64);
    ops.extend_from_slice(MAGIC);
    put(&mut ops, base.len() as u64);
    put(&mut ops, target.len() as u64);
    let mut index: HashMap<u64, usize> = HashMap::with_capacity(base.len() / BLOCK + 1);
    if base.len() >= BLOCK {
        for at in (0..=base.len() - BLOCK).step_by(BLOCK) {
            index.entry(hash(&base[at..at + BLOCK])).or_insert(at);
        }
    }
    // P^(BLOCK-1), to roll the oldest byte out.
    let top = (1..BLOCK).fold(1u64, |x, _| x.wrapping_mul(P));
    let (mut lit, mut p) = (0usize, 0usize);
    let mut h = (target.len() >= BLOCK).then(|| hash(&target[..BLOCK]));
    while let Some(cur) = h {
        if let Some(&c) = index.get(&cur) {
            if base[c..c + BLOCK] == target[p..p + BLOCK] {
                let (mut s, mut b) = (p, c);
                while s > lit && b > 0 && base[b - 1] == target[s - 1] {
                    s -= 1;
                    b -= 1;
                }
                let mut n = p + BLOCK - s;
                while s + n < target.len() && b + n < base.len() && base[b + n] == target[s + n] {
                    n += 1;
                }
                insert(&mut ops, &target[lit..s]);
                put(&mut ops, ((n as u64) << 1) | 1);
                put(&mut ops, b as u64);
                p = s + n;
                lit = p;
                h = (p + BLOCK <= target.len()).then(|| hash(&target[p..p + BLOCK]));
                continue;
            }
        }
        if p + BLOCK >= target.len() {
            break;
        }
        let out = u64::from(target[p]) + 1;
        let inn = u64::from(target[p + BLOCK]) + 1;
        h = Some(
            cur.wrapping_sub(out.wrapping_mul(top))
                .wrapping_mul(P)
                .wrapping_add(inn),
        );
        p += 1;
    }
    insert(&mut ops, &target[lit..]);
    ruzstd::encoding::compress_to_vec(&ops[..], ruzstd::encoding::CompressionLevel::Fastest)
}

fn insert(ops: &mut Vec<u8>, bytes: &[u8]) {
    if !bytes.is_empty() {
        put(ops, (bytes.len() as u64) << 1);
        ops.extend_from_slice(bytes);
    }
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get(r: &mut impl Read, at: u64) -> Result<u64, DeltaError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let mut b = [0u8];
        r.read_exact(&mut b)?;
        if shift == 63 && b[0] > 1 {
            break;
        }
        v |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DeltaError::Op {
        at,
        what: "integer longer than 64 bits",
    })
}

/// Applies `delta` to `base`, writing exactly `target_len` bytes to `out`; returns the count.
pub fn apply(
    base: &(impl Base + ?Sized),
    delta: impl Read,
    target_len: u64,
    out: &mut impl Write,
) -> Result<u64, DeltaError> {
    let mut r = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(delta, MAX_WINDOW)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic).map_err(|_| DeltaError::Magic)?;
    if &magic != MAGIC {
        return Err(DeltaError::Magic);
    }
    let (base_len, want) = (get(&mut r, 0)?, get(&mut r, 0)?);
    if base_len != base.size() {
        return Err(DeltaError::BaseLen {
            want: base_len,
            have: base.size(),
        });
    }
    if want != target_len {
        return Err(DeltaError::TargetLen {
            got: want,
            want: target_len,
        });
    }
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < target_len {
        let op = get(&mut r, done)?;
        let (n, copy) = (op >> 1, op & 1 == 1);
        if n == 0 || n > target_len - done {
            return Err(DeltaError::Op {
                at: done,
                what: "length empty or past the end of the target",
            });
        }
        let from = if copy {
            let off = get(&mut r, done)?;
            if off.checked_add(n).is_none_or(|end| end > base_len) {
                return Err(DeltaError::Op {
                    at: done,
                    what: "copy from outside the base",
                });
            }
            Some(off)
        } else {
            None
        };
        let mut left = n;
        while left > 0 {
            let k = left.min(CHUNK as u64) as usize;
            match from {
                Some(off) => base.read_at(&mut buf[..k], off + (n - left))?,
                None => r.read_exact(&mut buf[..k])?,
            }
            out.write_all(&buf[..k])?;
            left -= k as u64;
        }
        done += n;
    }
    if r.read(&mut [0u8])? != 0 {
        return Err(DeltaError::Op {
            at: done,
            what: "bytes after the end of the target",
        });
    }
    Ok(done)
}

/// A slug file's decoded tar bytes as a stream: gunzipped, un-zstd'ed, or as is.
pub fn decoded(file: std::fs::File) -> io::Result<Box<dyn Read>> {
    let mut head = [0u8; 4];
    let n = std::os::unix::fs::FileExt::read_at(&file, &mut head, 0)?;
    let head = &head[..n];
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(file)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let d = ruzstd::decoding::StreamingDecoder::new(io::BufReader::new(file))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        Box::new(d)
    } else {
        Box::new(io::BufReader::new(file))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(base: &[u8], target: &[u8]) -> usize {
        let d = encode(base, target);
        let mut out = Vec::new();
        let n = apply(base, &d[..], target.len() as u64, &mut out).unwrap();
        assert_eq!(n, target.len() as u64);
        assert!(out == target, "roundtrip differs");
        d.len()
    }

    /// xorshift, so the tests need no rand.
    fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn edges_roundtrip() {
        roundtrip(b"", b"");
        roundtrip(b"", b"hello");
        roundtrip(b"hello", b"");
        roundtrip(b"short", b"short");
        let big = noise(1, 10_000);
        roundtrip(&big, &big[..BLOCK]);
        roundtrip(&big[..BLOCK], &big);
    }

    #[test]
    fn a_one_line_change_costs_a_few_bytes() {
        let base = noise(7, 1 << 20);
        let mut target = base.clone();
        target.splice(500_000..500_010, *b"a changed line!\n");
        let n = roundtrip(&base, &target);
        assert!(n < 200, "{n} bytes");
        // New bytes cost what they are; nothing matched is sent twice.
        let other = noise(9, 1 << 16);
        assert!(roundtrip(&base, &other) > other.len());
    }

    #[test]
    fn fuzz_like_edits_roundtrip() {
        for seed in 1..40u64 {
            let mut base = noise(seed, 3000 + (seed as usize * 337) % 5000);
            // Repetitive parts too, where many blocks hash alike.
            base.extend(std::iter::repeat_n(b'x', (seed as usize * 31) % 700));
            let mut t = base.clone();
            let r = noise(seed * 77, 64);
            for k in 0..(seed % 6) {
                let at = (r[k as usize] as usize * 97 + k as usize * 13) % t.len().max(1);
                match (r[k as usize + 8] % 3, t.is_empty()) {
                    (0, false) => {
                        t.remove(at);
                    }
                    (1, _) => {
                        t.splice(at..at, noise(seed + k, 50));
                    }
                    _ => t.truncate(at.max(1)),
                };
            }
            roundtrip(&base, &t);
        }
    }

    fn raw(ops: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(ops, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn hostile(ops: &[u8], base: &[u8], want: u64) -> String {
        let mut out = Vec::new();
        let e = apply(base, &raw(ops)[..], want, &mut out).unwrap_err();
        assert!(out.len() as u64 <= want, "wrote past the target");
        e.to_string()
    }

    #[test]
    fn hostile_deltas_are_refused_with_the_reason() {
        let base = b"0123456789";
        let head = |b: u64, t: u64| {
            let mut v = MAGIC.to_vec();
            put(&mut v, b);
            put(&mut v, t);
            v
        };
        assert!(hostile(b"XXXX", base, 1).contains("bad magic"));
        assert!(hostile(&head(11, 5), base, 5).contains("base of 11 bytes"));
        // A target bigger than signed: refused before a byte is written.
        assert!(hostile(&head(10, 1 << 40), base, 5).contains("signed size is 5"));
        // A copy outside the base, and one whose end overflows.
        let mut v = head(10, 5);
        put(&mut v, (5 << 1) | 1);
        put(&mut v, 8);
        assert!(hostile(&v, base, 5).contains("outside the base"));
        let mut v = head(10, 5);
        put(&mut v, (5 << 1) | 1);
        put(&mut v, u64::MAX - 1);
        assert!(hostile(&v, base, 5).contains("outside the base"));
        // An op running past the target.
        let mut v = head(10, 5);
        put(&mut v, 6 << 1);
        v.extend_from_slice(b"abcdef");
        assert!(hostile(&v, base, 5).contains("past the end"));
        // Literal bytes missing: a cut stream.
        let mut v = head(10, 5);
        put(&mut v, 5 << 1);
        v.extend_from_slice(b"ab");
        assert!(hostile(&v, base, 5).contains("delta stream"));
        // Trailing bytes after the target.
        let mut v = head(10, 2);
        put(&mut v, 2 << 1);
        v.extend_from_slice(b"abzz");
        assert!(hostile(&v, base, 2).contains("after the end"));
        // An endless varint.
        let mut v = head(10, 2);
        v.extend_from_slice(&[0xff; 12]);
        assert!(hostile(&v, base, 2).contains("64 bits"));
        // Not zstd at all.
        let mut out = Vec::new();
        assert!(apply(&base[..], &b"garbage!"[..], 1, &mut out).is_err());
    }
}
