//! Reading a bundle front to back, pure of any runtime: the sealed manifest first (so the
//! caller verifies the signature before a single slug byte is written anywhere), then each slug
//! member the verified manifest names, checked against its size and sha256 while it is copied
//! into a sink the caller chose, then the end marker and nothing after it.
//!
//! Names are never turned into paths here: a member must carry exactly the name the manifest
//! gives it, and where its bytes go is the caller's own path.

use super::ustar::{self, BLOCK};
use super::{SlugRef, MANIFEST_MEMBER, MAX_MANIFEST};
use sha2::Digest;
use std::io::{Read, Write};

/// What is wrong with a bundle file, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BundleError {
    #[error("not a roboku bundle: {0}")]
    NotABundle(String),
    #[error("malformed bundle at byte {at}{}: {what}", member_part(member))]
    Malformed {
        at: u64,
        member: Option<String>,
        what: String,
    },
    #[error("truncated bundle: {what} (at byte {at}{})", member_part(member))]
    Truncated {
        at: u64,
        member: Option<String>,
        what: String,
    },
    #[error("tampered bundle: member {member} has sha256 {got}, the signed manifest says {want}")]
    Tampered {
        member: String,
        want: String,
        got: String,
    },
    /// Reading the file or writing a member out failed (not the bundle's fault).
    #[error("{0}")]
    Io(String),
}

fn member_part(m: &Option<String>) -> String {
    m.as_ref()
        .map(|m| format!(", member {m}"))
        .unwrap_or_default()
}

impl BundleError {
    /// A short machine-readable word.
    pub fn code(&self) -> &'static str {
        match self {
            BundleError::NotABundle(_) => "not_a_bundle",
            BundleError::Malformed { .. } => "malformed",
            BundleError::Truncated { .. } => "truncated",
            BundleError::Tampered { .. } => "tampered",
            BundleError::Io(_) => "io",
        }
    }
}

/// A bundle being read; see the module docs for the order of calls.
pub struct BundleReader<R> {
    r: R,
    /// Bytes consumed so far: the offset errors name.
    at: u64,
    /// Members read so far.
    members: usize,
}

impl<R: Read> BundleReader<R> {
    pub fn new(r: R) -> Self {
        BundleReader {
            r,
            at: 0,
            members: 0,
        }
    }

    /// Fills `buf` completely; `Ok(n < len)` only at the end of the file.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, BundleError> {
        let mut n = 0;
        while n < buf.len() {
            match self.r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(BundleError::Io(format!(
                        "reading the bundle at byte {}: {e}",
                        self.at + n as u64
                    )))
                }
            }
        }
        self.at += n as u64;
        Ok(n)
    }

    /// The next header: `None` at the end marker.
    fn header(&mut self, expect: &str) -> Result<Option<ustar::Member>, BundleError> {
        let start = self.at;
        let mut h = [0u8; BLOCK];
        let n = self.fill(&mut h)?;
        if n < BLOCK {
            if self.members == 0 && n == 0 {
                return Err(BundleError::NotABundle("the file is empty".into()));
            }
            return Err(BundleError::Truncated {
                at: start + n as u64,
                member: None,
                what: format!("the file ends inside the header where {expect} should be"),
            });
        }
        let parsed = ustar::parse(&h);
        if self.members == 0 {
            return match parsed {
                Ok(Some(m)) if m.name == MANIFEST_MEMBER => Ok(Some(m)),
                Ok(Some(m)) => Err(BundleError::NotABundle(format!(
                    "its first member is {:?}, not {MANIFEST_MEMBER}",
                    m.name
                ))),
                Ok(None) => Err(BundleError::NotABundle(
                    "it starts with an empty archive".into(),
                )),
                Err(e) => Err(BundleError::NotABundle(format!(
                    "no bundle header at byte 0 ({e})"
                ))),
            };
        }
        parsed.map_err(|what| BundleError::Malformed {
            at: start,
            member: None,
            what,
        })
    }

    /// Reads `size` bytes of the current member into `sink` and its padding; returns the
    /// sha256 of the data.
    fn data(&mut self, name: &str, size: u64, sink: &mut dyn Write) -> Result<String, BundleError> {
        let start = self.at;
        let mut hash = sha2::Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = size;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = self.fill(&mut buf[..want])?;
            hash.update(&buf[..n]);
            sink.write_all(&buf[..n])
                .map_err(|e| BundleError::Io(format!("writing out member {name}: {e}")))?;
            left -= n as u64;
            if n < want {
                return Err(BundleError::Truncated {
                    at: self.at,
                    member: Some(name.to_string()),
                    what: format!(
                        "member {name} ends after {} of its {size} bytes",
                        size - left
                    ),
                });
            }
        }
        let pad = ustar::padding(size);
        let mut p = [0u8; BLOCK];
        let n = self.fill(&mut p[..pad])?;
        if n < pad {
            return Err(BundleError::Truncated {
                at: self.at,
                member: Some(name.to_string()),
                what: format!("the file ends inside the padding after member {name}"),
            });
        }
        if let Some(i) = p[..pad].iter().position(|b| *b != 0) {
            return Err(BundleError::Malformed {
                at: start + size + i as u64,
                member: Some(name.to_string()),
                what: "non-zero padding after the member's data".into(),
            });
        }
        self.members += 1;
        Ok(super::hex(&hash.finalize()))
    }

    /// The first member: the sealed manifest's bytes (not yet verified).
    pub fn manifest(&mut self) -> Result<Vec<u8>, BundleError> {
        if self.members != 0 {
            return Err(BundleError::Io("the manifest was read already".into()));
        }
        let m = self
            .header(MANIFEST_MEMBER)?
            .ok_or_else(|| BundleError::NotABundle("no manifest".into()))?;
        if m.size > MAX_MANIFEST {
            return Err(BundleError::Malformed {
                at: 0,
                member: Some(m.name),
                what: format!(
                    "the manifest is {} bytes, more than the {MAX_MANIFEST} allowed",
                    m.size
                ),
            });
        }
        let mut bytes = Vec::with_capacity(m.size as usize);
        self.data(MANIFEST_MEMBER, m.size, &mut bytes)?;
        Ok(bytes)
    }

    /// The next member, which must be `slug`: its data goes to `sink`, and it must have the
    /// size and sha256 the manifest gives. On an error `sink` may hold part of it: the caller
    /// throws it away.
    pub fn slug(&mut self, slug: &SlugRef, sink: &mut dyn Write) -> Result<(), BundleError> {
        let name = slug.member();
        let start = self.at;
        let Some(m) = self.header(&name)? else {
            return Err(BundleError::Truncated {
                at: start,
                member: Some(name.clone()),
                what: format!("the archive ends where member {name} should be"),
            });
        };
        if m.name != name {
            return Err(BundleError::Malformed {
                at: start,
                member: Some(m.name.clone()),
                what: format!(
                    "unexpected member {:?}; the manifest says {name} comes next",
                    m.name
                ),
            });
        }
        if m.size != slug.size {
            return Err(BundleError::Malformed {
                at: start,
                member: Some(name),
                what: format!(
                    "the member is {} bytes, the signed manifest says {}",
                    m.size, slug.size
                ),
            });
        }
        let got = self.data(&name, m.size, sink)?;
        if got != slug.sha256 {
            return Err(BundleError::Tampered {
                member: name,
                want: slug.sha256.clone(),
                got,
            });
        }
        Ok(())
    }

    /// The end: two zero blocks, then the end of the file.
    pub fn end(&mut self) -> Result<(), BundleError> {
        let start = self.at;
        if let Some(m) = self.header("the end of the archive")? {
            return Err(BundleError::Malformed {
                at: start,
                member: Some(m.name.clone()),
                what: format!(
                    "unexpected member {:?} after the last one the manifest names",
                    m.name
                ),
            });
        }
        let mut second = [0u8; BLOCK];
        let n = self.fill(&mut second)?;
        if n < BLOCK {
            return Err(BundleError::Truncated {
                at: self.at,
                member: None,
                what: "the end-of-archive marker is cut short".into(),
            });
        }
        if second.iter().any(|b| *b != 0) {
            return Err(BundleError::Malformed {
                at: start + BLOCK as u64,
                member: None,
                what: "the end-of-archive marker is not all zero".into(),
            });
        }
        let mut extra = [0u8; 1];
        if self.fill(&mut extra)? > 0 {
            return Err(BundleError::Malformed {
                at: self.at - 1,
                member: None,
                what: "data after the end of the archive".into(),
            });
        }
        Ok(())
    }
}
