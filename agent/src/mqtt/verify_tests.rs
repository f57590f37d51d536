use super::*;
use roboku_wire::fleet::seal::{secret_from_seed, SecretKey};
use roboku_wire::fleet::{AppDesired, Artifact, ScaleBody};

const NOW: u64 = 1_700_000_000_000;
const SKEW: u64 = 60_000;

fn key(n: u8) -> SecretKey {
    secret_from_seed([n; 32])
}

fn trust() -> Trust {
    Trust::new([key(1).verifying_key()], false, SKEW)
}

fn lab() -> Address {
    Address::Group("lab".into())
}

fn scale(id: &str, version: Option<u64>) -> Envelope {
    let action = Action::Scale(ScaleBody {
        counts: [("web".to_string(), 2)].into(),
    });
    let mut env = Envelope::new(id.into(), NOW, 60_000, "g/lab".into(), "hello", &action);
    env.version = version;
    env
}

fn signed(env: &Envelope) -> Vec<u8> {
    seal::seal(&serde_json::to_vec(env).unwrap(), &key(1))
}

fn why(r: Result<Verified, Refused>) -> Rejection {
    r.unwrap_err().why
}

#[test]
fn a_signed_command_verifies_and_parses() {
    let v = verify_command(
        &signed(&scale("a", Some(5))),
        &lab(),
        NOW,
        &trust(),
        &ReplayGuard::default(),
    )
    .unwrap();
    assert_eq!(v.env.id, "a");
    assert!(matches!(v.action, Action::Scale(_)));
    assert_eq!(v.kid, Some(seal::key_id(&key(1).verifying_key())));
}

#[test]
fn oversized_payloads_are_refused_unread() {
    let big = vec![b' '; MAX_PAYLOAD + 1];
    let g = ReplayGuard::default();
    assert!(matches!(
        why(verify_command(&big, &lab(), NOW, &trust(), &g)),
        Rejection::TooLarge { .. }
    ));
}

#[test]
fn malformed_payloads_say_what_is_wrong() {
    let g = ReplayGuard::default();
    let r = why(verify_command(b"{not json", &lab(), NOW, &trust(), &g));
    assert_eq!(r.code(), "malformed");
    // Signed, but the body does not fit the type.
    let mut env = scale("a", None);
    env.body = serde_json::json!({"counts": "many"});
    let r = verify_command(&signed(&env), &lab(), NOW, &trust(), &g).unwrap_err();
    assert_eq!(r.id.as_deref(), Some("a"));
    assert!(r.why.to_string().contains("body of scale"), "{}", r.why);
    // Signed garbage that is not an envelope.
    let r = why(verify_command(
        &seal::seal(b"[1,2]", &key(1)),
        &lab(),
        NOW,
        &trust(),
        &g,
    ));
    assert_eq!(r.code(), "malformed");
}

/// Found by the envelope fuzz target: a signed command with an overlong id was refused with the
/// whole id echoed back (the ack grows with whatever the sender put there).
#[test]
fn an_overlong_id_is_echoed_short() {
    let g = ReplayGuard::default();
    let long = "x".repeat(1000);
    let r = verify_command(&signed(&scale(&long, None)), &lab(), NOW, &trust(), &g).unwrap_err();
    assert_eq!(r.why.code(), "malformed");
    assert_eq!(r.id.as_deref(), Some(&long[..64]));
    let doc = DesiredDoc {
        v: PROTOCOL_VERSION,
        id: long.clone(),
        ts: NOW,
        expires: NOW + 1,
        to: "d/other".into(),
        apps: Default::default(),
    };
    let payload = seal::seal(&serde_json::to_vec(&doc).unwrap(), &key(1));
    let r = verify_desired(&payload, &lab(), NOW, &trust()).unwrap_err();
    assert_eq!(r.why.code(), "wrong_address");
    assert_eq!(r.id.as_deref(), Some(&long[..64]));
}

#[test]
fn unsigned_is_refused_unless_dev_mode() {
    let payload = seal::seal_unsigned(&serde_json::to_vec(&scale("a", None)).unwrap());
    let g = ReplayGuard::default();
    let r = verify_command(&payload, &lab(), NOW, &trust(), &g).unwrap_err();
    assert_eq!(r.why, Rejection::Unsigned);
    assert_eq!(r.id.as_deref(), Some("a"));
    let dev = Trust::new([], true, SKEW);
    let v = verify_command(&payload, &lab(), NOW, &dev, &g).unwrap();
    assert_eq!(v.kid, None);
}

#[test]
fn wrong_key_and_altered_bytes_are_refused() {
    let g = ReplayGuard::default();
    let bytes = serde_json::to_vec(&scale("a", None)).unwrap();
    let other = seal::seal(&bytes, &key(2));
    assert_eq!(
        why(verify_command(&other, &lab(), NOW, &trust(), &g)).code(),
        "unknown_key"
    );
    // Right key id, signature over different bytes.
    let good: roboku_wire::fleet::Sealed =
        serde_json::from_slice(&signed(&scale("a", None))).unwrap();
    let evil: roboku_wire::fleet::Sealed =
        serde_json::from_slice(&signed(&scale("b", None))).unwrap();
    let forged = serde_json::to_vec(&roboku_wire::fleet::Sealed {
        sig: good.sig,
        ..evil
    })
    .unwrap();
    assert_eq!(
        why(verify_command(&forged, &lab(), NOW, &trust(), &g)).code(),
        "bad_signature"
    );
}

#[test]
fn a_command_cannot_be_re_aimed_at_another_address() {
    let g = ReplayGuard::default();
    let r = why(verify_command(
        &signed(&scale("a", None)),
        &Address::Group("other".into()),
        NOW,
        &trust(),
        &g,
    ));
    assert_eq!(r.code(), "wrong_address");
}

#[test]
fn expiry_and_future_timestamps_use_the_skew_allowance() {
    let g = ReplayGuard::default();
    let env = scale("a", None); // valid NOW .. NOW+60s
    let p = signed(&env);
    assert!(verify_command(&p, &lab(), NOW + 60_000 + SKEW, &trust(), &g).is_ok());
    assert_eq!(
        why(verify_command(
            &p,
            &lab(),
            NOW + 60_001 + SKEW,
            &trust(),
            &g
        ))
        .code(),
        "expired"
    );
    assert!(verify_command(&p, &lab(), NOW - SKEW, &trust(), &g).is_ok());
    assert_eq!(
        why(verify_command(&p, &lab(), NOW - SKEW - 1, &trust(), &g)).code(),
        "from_future"
    );
    let mut long = scale("b", None);
    long.expires = NOW + MAX_COMMAND_LIFETIME_MS + 1;
    assert_eq!(
        why(verify_command(&signed(&long), &lab(), NOW, &trust(), &g)).code(),
        "too_long_lived"
    );
}

#[test]
fn duplicates_and_old_versions_are_replays() {
    let mut g = ReplayGuard::default();
    let first = scale("a", Some(10));
    let v = verify_command(&signed(&first), &lab(), NOW, &trust(), &g).unwrap();
    g.record(&v.env, NOW, SKEW);
    assert_eq!(
        why(verify_command(&signed(&first), &lab(), NOW, &trust(), &g)).code(),
        "duplicate"
    );
    // A new id with the same or an older version: replayed.
    for old in [10, 9] {
        let r = why(verify_command(
            &signed(&scale("b", Some(old))),
            &lab(),
            NOW,
            &trust(),
            &g,
        ));
        assert_eq!(r.code(), "replayed", "{old}");
    }
    assert!(verify_command(&signed(&scale("c", Some(11))), &lab(), NOW, &trust(), &g).is_ok());
    // Versions are per app.
    let mut other = scale("d", Some(1));
    other.app = "nav".into();
    assert!(verify_command(&signed(&other), &lab(), NOW, &trust(), &g).is_ok());
    // Survives a save and load.
    let back: ReplayGuard = serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
    assert_eq!(back, g);
}

#[test]
fn ids_are_bounded_but_unexpired_ones_are_kept() {
    let mut g = ReplayGuard::default();
    for i in 0..(KEEP_IDS + 500) {
        let env = scale(&format!("id{i}"), None);
        g.record(&env, NOW, SKEW);
    }
    // Nothing has expired yet: all kept.
    assert_eq!(g.ids_len(), KEEP_IDS + 500);
    // Much later: expired ones beyond the last KEEP_IDS go.
    g.record(&scale("late", None), NOW + 3_600_000, SKEW);
    assert_eq!(g.ids_len(), KEEP_IDS);
    assert!(g.check(&scale("late", None)).is_err());
    assert!(g.check(&scale("id0", None)).is_ok());
}

#[test]
fn desired_docs_verify_like_commands() {
    let doc = DesiredDoc {
        v: 1,
        id: "d1".into(),
        ts: NOW,
        expires: NOW + 86_400_000 * 30,
        to: "d/r1".into(),
        apps: [(
            "hello".to_string(),
            AppDesired {
                version: 3,
                release: Some(Artifact {
                    url: "http://x/a.tar.gz".into(),
                    sha256: "00".repeat(32),
                    size: 10,
                    delta: None,
                }),
                ..AppDesired::default()
            },
        )]
        .into(),
    };
    let bytes = serde_json::to_vec(&doc).unwrap();
    let r1 = Address::Device("r1".into());
    let (back, _) = verify_desired(&seal::seal(&bytes, &key(1)), &r1, NOW, &trust()).unwrap();
    assert_eq!(back, doc);
    let r = verify_desired(
        &seal::seal(&bytes, &key(1)),
        &Address::Device("r2".into()),
        NOW,
        &trust(),
    );
    assert_eq!(r.unwrap_err().why.code(), "wrong_address");
    let r = verify_desired(&seal::seal(&bytes, &key(9)), &r1, NOW, &trust());
    assert_eq!(r.unwrap_err().why.code(), "unknown_key");
    let mut bad = doc.clone();
    bad.apps.insert("Bad_Name".into(), AppDesired::default());
    let r = verify_desired(
        &seal::seal(&serde_json::to_vec(&bad).unwrap(), &key(1)),
        &r1,
        NOW,
        &trust(),
    );
    assert_eq!(r.unwrap_err().why.code(), "malformed");
}
