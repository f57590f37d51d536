use super::*;
use sha2::Digest;

fn slug_of(data: &[u8]) -> SlugRef {
    SlugRef {
        sha256: hex(&sha2::Sha256::digest(data)),
        size: data.len() as u64,
    }
}

fn manifest(slugs: &[(&str, &[u8])]) -> Manifest {
    Manifest {
        bundle: FORMAT,
        id: "b1".into(),
        ts: 1,
        expires: 2,
        to: "d/r1".into(),
        apps: slugs
            .iter()
            .map(|(app, data)| {
                (
                    app.to_string(),
                    BundleApp {
                        version: 7,
                        slug: Some(slug_of(data)),
                        ..BundleApp::default()
                    },
                )
            })
            .collect(),
    }
}

/// A bundle of the given apps' slugs, with `sealed` as the manifest member.
fn bundle(sealed: &[u8], m: &Manifest, datas: &[&[u8]]) -> Vec<u8> {
    let mut w = BundleWriter::new(Vec::new(), sealed).unwrap();
    for (s, d) in m.slugs().iter().zip(datas) {
        w.slug(s, &mut &d[..]).unwrap();
    }
    w.finish().unwrap()
}

/// Reads it all; returns the manifest bytes and the members' data.
fn read_all(bytes: &[u8], m: &Manifest) -> Result<(Vec<u8>, Vec<Vec<u8>>), BundleError> {
    let mut r = BundleReader::new(bytes);
    let sealed = r.manifest()?;
    let mut out = Vec::new();
    for s in m.slugs() {
        let mut sink = Vec::new();
        r.slug(&s, &mut sink)?;
        out.push(sink);
    }
    r.end()?;
    Ok((sealed, out))
}

#[test]
fn a_bundle_reads_back_member_by_member() {
    let (a, b) = (b"slug a".as_slice(), vec![7u8; 70_000]);
    let m = manifest(&[("nav", a), ("arm", &b)]);
    // Apps by name: arm's slug comes first.
    assert_eq!(m.slugs()[0], slug_of(&b));
    let bytes = bundle(b"{\"env\":\"x\"}", &m, &[&b, a]);
    assert_eq!(bytes.len() % 512, 0);
    let (sealed, data) = read_all(&bytes, &m).unwrap();
    assert_eq!(sealed, b"{\"env\":\"x\"}");
    assert_eq!(data, vec![b.clone(), a.to_vec()]);
    m.check().unwrap();
}

#[test]
fn one_slug_shared_by_two_apps_is_stored_once() {
    let m = manifest(&[("nav", b"same"), ("arm", b"same")]);
    assert_eq!(m.slugs().len(), 1);
}

#[test]
fn every_flipped_byte_is_refused_or_lands_in_the_manifest() {
    // The manifest member's bytes are the signature's business; every other byte of the file
    // is checked by the format (headers, padding, digests, the end marker).
    let data = b"the slug".as_slice();
    let m = manifest(&[("nav", data)]);
    let sealed = b"MANIFEST".as_slice();
    let bytes = bundle(sealed, &m, &[data]);
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        match read_all(&bad, &m) {
            Err(_) => {}
            Ok((s, _)) => assert!(
                (512..512 + sealed.len()).contains(&i) && s != sealed,
                "byte {i} flipped and the bundle still reads the same"
            ),
        }
    }
}

#[test]
fn a_tampered_slug_is_named_with_both_digests() {
    let data = b"the slug".as_slice();
    let m = manifest(&[("nav", data)]);
    let mut bytes = bundle(b"M", &m, &[data]);
    bytes[1536] ^= 0x20;
    let err = read_all(&bytes, &m).unwrap_err();
    assert_eq!(err.code(), "tampered", "{err}");
    let text = err.to_string();
    assert!(text.contains(&m.slugs()[0].sha256), "{text}");
    assert!(text.contains("slugs/"), "{text}");
}

#[test]
fn truncation_anywhere_is_refused_and_says_where() {
    let data = vec![1u8; 3000];
    let m = manifest(&[("nav", &data)]);
    let bytes = bundle(b"M", &m, &[&data]);
    for cut in (0..bytes.len()).step_by(97) {
        let err = read_all(&bytes[..cut], &m).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err.code(), "truncated" | "not_a_bundle"),
            "cut at {cut}: {text}"
        );
        if cut > 512 {
            assert!(text.contains("byte"), "names the offset: {text}");
        }
    }
    let err = read_all(&bytes[..1600], &m).unwrap_err();
    assert!(
        err.to_string().contains("ends after 64 of its 3000 bytes"),
        "{err}"
    );
}

#[test]
fn extra_members_other_names_and_trailing_data_are_refused() {
    let data = b"s".as_slice();
    let m = manifest(&[("nav", data)]);
    // An extra member the manifest does not name.
    let mut w = BundleWriter::new(Vec::new(), b"M").unwrap();
    w.slug(&m.slugs()[0], &mut &data[..]).unwrap();
    let extra = slug_of(b"evil");
    w.slug(&extra, &mut &b"evil"[..]).unwrap();
    let err = read_all(&w.finish().unwrap(), &m).unwrap_err();
    assert!(err.to_string().contains("after the last one"), "{err}");
    // Another member where the slug should be.
    let mut w = BundleWriter::new(Vec::new(), b"M").unwrap();
    w.slug(&extra, &mut &b"evil"[..]).unwrap();
    let err = read_all(&w.finish().unwrap(), &m).unwrap_err();
    assert!(err.to_string().contains("unexpected member"), "{err}");
    // Bytes after the end.
    let mut bytes = bundle(b"M", &m, &[data]);
    bytes.extend_from_slice(b"junk");
    let err = read_all(&bytes, &m).unwrap_err();
    assert!(err.to_string().contains("after the end"), "{err}");
    // Something else entirely.
    let err = read_all(b"PK\x03\x04 a zip file", &m).unwrap_err();
    assert_eq!(err.code(), "truncated", "{err}");
    let err = read_all(&[b'x'; 2048], &m).unwrap_err();
    assert_eq!(err.code(), "not_a_bundle", "{err}");
    let err = read_all(b"", &m).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn a_symlink_member_is_refused_by_type() {
    let data = b"s".as_slice();
    let m = manifest(&[("nav", data)]);
    let mut bytes = bundle(b"M", &m, &[data]);
    // Turn the slug member into a symlink to /etc/shadow (and fix the checksum, as an
    // attacker would).
    let h = &mut bytes[1024..1536];
    h[156] = b'2';
    h[157..168].copy_from_slice(b"/etc/shadow");
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as u32
            }
        })
        .sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let err = read_all(&bytes, &m).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(err.to_string().contains("byte 1024"), "{err}");
}

#[test]
fn manifest_checks() {
    let mut m = manifest(&[("nav", b"x")]);
    m.check().unwrap();
    m.bundle = 2;
    assert!(m.check().unwrap_err().contains("format 2"));
    let mut m = manifest(&[("nav", b"x")]);
    m.apps.get_mut("nav").unwrap().slug.as_mut().unwrap().sha256 = "../../etc/passwd".into();
    assert!(m.check().unwrap_err().contains("hex"));
    let mut m = manifest(&[("nav", b"x")]);
    m.apps.insert("Bad/Name".into(), BundleApp::default());
    assert!(m.check().is_err());
    let mut m = manifest(&[("nav", b"x")]);
    m.apps.insert("idle".into(), BundleApp::default());
    assert!(m.check().unwrap_err().contains("asks for nothing"));
    let text = r#"{"bundle":1,"id":"a","ts":1,"expires":2,"to":"d/x","apps":{},"extra":1}"#;
    assert!(serde_json::from_str::<Manifest>(text).is_err());
}
