use super::*;
use roboku_wire::bundle::{BundleApp, SlugRef};
use roboku_wire::fleet::seal::{self, SecretKey};

const NOW: u64 = 1_760_000_000_000;
const DAY: u64 = 24 * 3600 * 1000;

fn key(n: u8) -> SecretKey {
    seal::secret_from_seed([n; 32])
}

fn trust() -> Trust {
    Trust::new([key(1).verifying_key()], false, 300_000)
}

fn me() -> Identity {
    Identity {
        device: "r1".into(),
        groups: vec!["field".into()],
    }
}

fn manifest(to: &str, version: u64) -> Manifest {
    Manifest {
        bundle: FORMAT,
        id: format!("id-{version}-{to}"),
        ts: NOW - 1000,
        expires: NOW + 30 * DAY,
        to: to.into(),
        apps: [(
            "nav".to_string(),
            BundleApp {
                version,
                slug: Some(SlugRef {
                    sha256: "ab".repeat(32),
                    size: 10,
                }),
                ..BundleApp::default()
            },
        )]
        .into(),
    }
}

fn seal_with(m: &Manifest, k: &SecretKey) -> Vec<u8> {
    seal::seal(&serde_json::to_vec(m).unwrap(), k)
}

fn check(m: &Manifest, guard: &ReplayGuard) -> Result<VerifiedBundle, Refused> {
    verify_bundle(&seal_with(m, &key(1)), &me(), NOW, &trust(), guard)
}

fn code(r: Result<VerifiedBundle, Refused>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(r) => r.why.code(),
    }
}

#[test]
fn a_bundle_for_this_device_or_its_group_verifies() {
    let g = ReplayGuard::default();
    let v = check(&manifest("d/r1", 12), &g).unwrap();
    assert_eq!(v.kid, Some(seal::key_id(&key(1).verifying_key())));
    assert_eq!(code(check(&manifest("g/field", 12), &g)), "ok");
}

#[test]
fn foreign_devices_and_groups_are_refused_by_name() {
    let g = ReplayGuard::default();
    for to in ["d/r2", "g/lab", "r1", "x/r1", "d/", ""] {
        let err = check(&manifest(to, 1), &g).unwrap_err();
        assert_eq!(err.why.code(), "foreign", "{to}: {}", err.why);
    }
    let err = check(&manifest("d/r2", 1), &g).unwrap_err().why.to_string();
    assert!(
        err.contains("\"d/r2\"") && err.contains("\"r1\"") && err.contains("field"),
        "{err}"
    );
}

#[test]
fn untrusted_keys_tampering_and_junk_are_refused() {
    let g = ReplayGuard::default();
    let m = manifest("d/r1", 1);
    let other = verify_bundle(&seal_with(&m, &key(2)), &me(), NOW, &trust(), &g);
    assert_eq!(code(other), "unknown_key");
    // The manifest edited under the old signature.
    let sealed = seal_with(&m, &key(1));
    let mut wrapper: roboku_wire::fleet::Sealed = serde_json::from_slice(&sealed).unwrap();
    let mut edited = m.clone();
    edited.to = "g/field".into();
    use base64::Engine as _;
    wrapper.env =
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&edited).unwrap());
    let tampered = serde_json::to_vec(&wrapper).unwrap();
    assert_eq!(
        code(verify_bundle(&tampered, &me(), NOW, &trust(), &g)),
        "bad_signature"
    );
    assert_eq!(
        code(verify_bundle(b"not json", &me(), NOW, &trust(), &g)),
        "malformed"
    );
    let unsigned = seal::seal_unsigned(&serde_json::to_vec(&m).unwrap());
    assert_eq!(
        code(verify_bundle(&unsigned, &me(), NOW, &trust(), &g)),
        "unsigned"
    );
    let dev = Trust::new([], true, 0);
    assert_eq!(code(verify_bundle(&unsigned, &me(), NOW, &dev, &g)), "ok");
    // A signed command is not a bundle.
    let mut bad = m.clone();
    bad.bundle = 2;
    assert_eq!(code(check(&bad, &g)), "format");
}

#[test]
fn expiry_issue_time_and_lifetime() {
    let g = ReplayGuard::default();
    let mut m = manifest("d/r1", 1);
    m.expires = NOW - 301_000;
    assert_eq!(code(check(&m, &g)), "expired");
    m.expires = NOW - 100_000;
    assert_eq!(code(check(&m, &g)), "ok", "within the skew allowance");
    let mut m = manifest("d/r1", 1);
    m.ts = NOW + 3_600_000;
    m.expires = m.ts + DAY;
    assert_eq!(code(check(&m, &g)), "from_future");
    let mut m = manifest("d/r1", 1);
    m.expires = m.ts + 400 * DAY;
    assert_eq!(code(check(&m, &g)), "too_long_lived");
}

#[test]
fn replays_downgrades_and_rollbacks() {
    let mut g = ReplayGuard::default();
    let v12 = manifest("d/r1", 12);
    check(&v12, &g).unwrap();
    g.record_bundle(&v12, NOW, 0);
    assert_eq!(code(check(&v12, &g)), "duplicate", "the same bundle again");
    let mut again = manifest("d/r1", 12);
    again.id = "another id".into();
    assert_eq!(
        code(check(&again, &g)),
        "replayed",
        "the same version again"
    );
    let v11 = manifest("d/r1", 11);
    assert_eq!(code(check(&v11, &g)), "downgraded");
    // A rollback made before v12 was: refused, it would undo a newer change.
    let mut old_rollback = manifest("d/r1", 11);
    old_rollback.apps.get_mut("nav").unwrap().rollback = true;
    old_rollback.ts = v12.ts - 1;
    assert_eq!(code(check(&old_rollback, &g)), "stale_rollback");
    // Made after it: accepted, and then it cannot be played again either.
    let mut rollback = old_rollback.clone();
    rollback.id = "rb".into();
    rollback.ts = v12.ts + 1;
    check(&rollback, &g).unwrap();
    g.record_bundle(&rollback, NOW, 0);
    assert_eq!(
        g.version("nav"),
        Some(12),
        "a rollback never lowers the version"
    );
    let mut replay = rollback.clone();
    replay.id = "rb2".into();
    assert_eq!(code(check(&replay, &g)), "stale_rollback");
    assert_eq!(code(check(&manifest("d/r1", 13), &g)), "ok");
}

#[test]
fn a_command_version_counts_for_bundles_too() {
    use roboku_wire::fleet::{Action, Envelope, ScaleBody};
    let mut g = ReplayGuard::default();
    let action = Action::Scale(ScaleBody {
        counts: [("web".to_string(), 1)].into(),
    });
    let mut env = Envelope::new("c".into(), NOW, 1000, "d/r1".into(), "nav", &action);
    env.version = Some(20);
    g.record(&env, NOW, 0);
    assert_eq!(code(check(&manifest("d/r1", 20), &g)), "replayed");
    assert_eq!(code(check(&manifest("d/r1", 21), &g)), "ok");
}
