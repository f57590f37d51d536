//! Writing a bundle: the sealed manifest, the slugs in [`Manifest::slugs`](super::Manifest::slugs)
//! order, the end marker. Each member's data must be exactly as long as its header says (a slug
//! file that changes while it is copied is an error, not a bundle that fails on the robot).

use super::ustar::{self, BLOCK};
use super::{SlugRef, MANIFEST_MEMBER};
use std::io::{Read, Write};

pub struct BundleWriter<W> {
    out: W,
}

impl<W: Write> BundleWriter<W> {
    /// Starts a bundle with its sealed manifest.
    pub fn new(mut out: W, sealed_manifest: &[u8]) -> std::io::Result<Self> {
        member(
            &mut out,
            MANIFEST_MEMBER,
            sealed_manifest.len() as u64,
            &mut &sealed_manifest[..],
        )?;
        Ok(BundleWriter { out })
    }

    /// Appends a slug member read from `data` (exactly `slug.size` bytes).
    pub fn slug(&mut self, slug: &SlugRef, data: &mut dyn Read) -> std::io::Result<()> {
        member(&mut self.out, &slug.member(), slug.size, data)
    }

    /// Writes the end marker and hands the writer back.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn member(out: &mut dyn Write, name: &str, size: u64, data: &mut dyn Read) -> std::io::Result<()> {
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let h =
        ustar::header(name, size).ok_or_else(|| bad(format!("member {name}: no header for it")))?;
    out.write_all(&h)?;
    let copied = std::io::copy(&mut data.take(size), out)?;
    if copied != size {
        return Err(bad(format!(
            "member {name}: read {copied} bytes, expected {size} (did the file change?)"
        )));
    }
    let mut probe = [0u8; 1];
    if data.read(&mut probe)? != 0 {
        return Err(bad(format!(
            "member {name}: longer than the {size} bytes expected (did the file change?)"
        )));
    }
    out.write_all(&[0u8; BLOCK][..ustar::padding(size)])
}
