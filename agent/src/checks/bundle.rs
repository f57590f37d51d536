//! Offline bundle files through the reader robokud uses (`roboku_wire::bundle::BundleReader`)
//! and the verifier (`crate::mqtt::verify_bundle`):
//!
//! - raw bytes never verify (they carry no signature of the trusted key), and the reader never
//!   reads past its limits or panics;
//! - a bundle made from the fuzz bytes (a slug, a signed manifest for this device) reads back
//!   exactly: the same manifest bytes, the same slug bytes;
//! - the same bundle with one byte changed (where and how from the fuzz bytes) is refused by the
//!   reader, or the change is inside the manifest member and then whatever still verifies
//!   carries exactly the manifest that was signed.

use super::Carver;
use crate::mqtt::verify::{verify_bundle, Identity, ReplayGuard, Trust};
use roboku_wire::bundle::{hex, BundleApp, BundleReader, BundleWriter, Manifest, SlugRef, FORMAT};
use roboku_wire::fleet::seal::{self, SecretKey};
use sha2::Digest;
use std::sync::LazyLock;

const NOW: u64 = 1_760_000_000_000;

static KEY: LazyLock<SecretKey> = LazyLock::new(|| seal::secret_from_seed([9; 32]));
static TRUST: LazyLock<Trust> = LazyLock::new(|| Trust::new([KEY.verifying_key()], false, 0));

fn me() -> Identity {
    Identity {
        device: "robot-1".into(),
        groups: vec!["site-a".into()],
    }
}

pub fn check(data: &[u8]) {
    let mut c = Carver::new(data);
    match c.u8() % 2 {
        0 => raw(c.rest()),
        _ => mutated(&mut c),
    }
}

/// What a whole read gives: the manifest bytes and, per slug, its bytes.
type Read = (Vec<u8>, Vec<Vec<u8>>);

fn read_all(bytes: &[u8], m: Option<&Manifest>) -> Result<Read, String> {
    let mut r = BundleReader::new(bytes);
    let sealed = r.manifest().map_err(|e| e.to_string())?;
    let mut slugs = Vec::new();
    for s in m.map(Manifest::slugs).unwrap_or_default() {
        let mut sink = Vec::new();
        r.slug(&s, &mut sink).map_err(|e| e.to_string())?;
        slugs.push(sink);
    }
    r.end().map_err(|e| e.to_string())?;
    Ok((sealed, slugs))
}

fn raw(data: &[u8]) {
    let mut r = BundleReader::new(data);
    if let Ok(sealed) = r.manifest() {
        assert!(
            sealed.len() as u64 <= roboku_wire::bundle::MAX_MANIFEST,
            "manifest over its limit read"
        );
        let v = verify_bundle(&sealed, &me(), NOW, &TRUST, &ReplayGuard::default());
        assert!(v.is_err(), "unsigned fuzz bytes verified as a bundle");
    }
}

fn mutated(c: &mut Carver) {
    let slug = c.chunk(255).repeat(usize::from(c.u8() % 8) + 1);
    let flip_at = c.u64();
    let flip = c.u8() | 1;
    let s = SlugRef {
        sha256: hex(&sha2::Sha256::digest(&slug)),
        size: slug.len() as u64,
    };
    let m = Manifest {
        bundle: FORMAT,
        id: c.text(40).replace(char::is_control, "x") + "id",
        ts: NOW - 1000,
        expires: NOW + 1000,
        to: "d/robot-1".into(),
        apps: [(
            "nav".to_string(),
            BundleApp {
                version: 1 + u64::from(c.u16()),
                slug: (!slug.is_empty()).then(|| s.clone()),
                formation: [("web".to_string(), 1)].into(),
                ..BundleApp::default()
            },
        )]
        .into(),
    };
    let bytes = serde_json::to_vec(&m).expect("manifest serialises");
    let sealed = seal::seal(&bytes, &KEY);
    let mut w = BundleWriter::new(Vec::new(), &sealed).expect("write to memory");
    if !slug.is_empty() {
        w.slug(&s, &mut &slug[..]).expect("write to memory");
    }
    let file = w.finish().expect("write to memory");
    let (back, slugs) = read_all(&file, Some(&m)).expect("a bundle as written reads back");
    assert_eq!(back, sealed, "manifest bytes read back");
    assert_eq!(slugs.concat(), slug, "slug bytes read back");
    let v = verify_bundle(&back, &me(), NOW, &TRUST, &ReplayGuard::default());
    assert_eq!(
        v.map(|v| v.manifest).ok(),
        Some(m.clone()),
        "the bundle verifies"
    );

    let mut bad = file.clone();
    let at = (flip_at % bad.len() as u64) as usize;
    bad[at] ^= flip;
    if let Ok((changed, slugs)) = read_all(&bad, Some(&m)) {
        assert_eq!(
            slugs.concat(),
            slug,
            "a changed slug byte read back unnoticed"
        );
        assert!(
            (512..512 + sealed.len()).contains(&at),
            "byte {at} changed outside the manifest and the bundle still reads"
        );
        if let Ok(v) = verify_bundle(&changed, &me(), NOW, &TRUST, &ReplayGuard::default()) {
            assert_eq!(
                v.manifest, m,
                "a changed manifest verified as something else"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    /// The mutation property over many flip positions on stable (the fuzzer goes further).
    #[test]
    fn flips_anywhere_in_a_bundle_are_caught() {
        for i in 0..600u64 {
            let mut d = vec![1u8, 20];
            d.extend_from_slice(b"slug bytes, slug byt");
            d.push((i % 5) as u8);
            d.extend_from_slice(&i.wrapping_mul(7919).to_be_bytes());
            d.push((i % 255) as u8);
            d.extend_from_slice(b"\x04abcd\x00\x07");
            super::check(&d);
        }
        super::check(&[]);
        super::check(&[0, b'x', b'y']);
    }
}
