//! The untrusted-clock rule through the whole verification (signature, replay guard), for
//! commands and bundles: a robot in 1970 after a trusted time.

use super::super::verify::{verify_bundle, verify_command, Identity, ReplayGuard, Trust};
use crate::clock::judge::{judge, Anchor, Boot, Reading};
use crate::clock::Judged;
use roboku_wire::bundle::{BundleApp, Manifest, FORMAT};
use roboku_wire::fleet::seal::{self, SecretKey};
use roboku_wire::fleet::topic::Address;
use roboku_wire::fleet::{Action, Envelope, ScaleBody};

const BUILD: u64 = 1_790_000_000_000;
/// The last trusted time.
const T: u64 = 1_796_000_000_000;
const SKEW: u64 = 300_000;
const HOUR: u64 = 3_600_000;

fn key() -> SecretKey {
    seal::secret_from_seed([1; 32])
}

fn trust() -> Trust {
    Trust::new([key().verifying_key()], false, SKEW)
}

/// Booted again, reading 1970, unsynchronised, after a trusted time `T` in an earlier boot.
fn in_1970() -> Judged {
    let anchor = Anchor {
        wall_ms: T,
        boot: Some(Boot {
            id: "old".into(),
            ms: 0,
        }),
    };
    let r = Reading {
        wall_ms: 40_000,
        synced: Some(false),
        boot: Some(Boot {
            id: "new".into(),
            ms: 40_000,
        }),
    };
    judge(&r, Some(&anchor), BUILD, SKEW)
}

fn scale(id: &str, ts: u64, version: u64) -> Vec<u8> {
    let action = Action::Scale(ScaleBody {
        counts: [("web".to_string(), 2)].into(),
    });
    let mut env = Envelope::new(id.into(), ts, HOUR, "g/lab".into(), "hello", &action);
    env.version = Some(version);
    seal::seal(&serde_json::to_vec(&env).unwrap(), &key())
}

#[test]
fn commands_in_1970_new_taken_replays_and_stale_refused() {
    let lab = Address::Group("lab".into());
    let now = in_1970();
    let mut guard = ReplayGuard::default();
    // Made a day after the last trusted time: taken (the wall clock says 1970).
    let fresh = scale("a", T + 24 * HOUR, 10);
    let v = verify_command(&fresh, &lab, now.clone(), &trust(), &guard).unwrap();
    guard.record(&v.env, now.now_ms, SKEW);
    // The same payload again: a duplicate.
    let e = verify_command(&fresh, &lab, now.clone(), &trust(), &guard).unwrap_err();
    assert_eq!(e.why.code(), "duplicate");
    // A new id with a version already seen: replayed.
    let e = verify_command(
        &scale("b", T + 25 * HOUR, 10),
        &lab,
        now.clone(),
        &trust(),
        &guard,
    )
    .unwrap_err();
    assert_eq!(e.why.code(), "replayed");
    // A newer version, but made before the last trusted time: refused.
    let e = verify_command(
        &scale("c", T - HOUR, 11),
        &lab,
        now.clone(),
        &trust(),
        &guard,
    )
    .unwrap_err();
    assert_eq!(e.why.code(), "before_trusted_time");
    // A signature that does not verify is refused whatever the clock.
    let mut forged = scale("d", T + 24 * HOUR, 12);
    let at = forged.len() / 2;
    forged[at] ^= 1;
    assert!(verify_command(&forged, &lab, now.clone(), &trust(), &guard).is_err());
    // The same command judged by the 1970 wall clock as if it were trusted: locked out.
    let e = verify_command(
        &scale("e", T + 24 * HOUR, 12),
        &lab,
        40_000,
        &trust(),
        &guard,
    )
    .unwrap_err();
    assert_eq!(e.why.code(), "from_future", "what the rule prevents");
}

fn bundle(id: &str, ts: u64, version: u64) -> Vec<u8> {
    let m = Manifest {
        bundle: FORMAT,
        id: id.into(),
        ts,
        expires: ts + 30 * 24 * HOUR,
        to: "d/r1".into(),
        apps: [(
            "nav".to_string(),
            BundleApp {
                version,
                formation: [("web".to_string(), 1)].into(),
                ..BundleApp::default()
            },
        )]
        .into(),
    };
    seal::seal(&serde_json::to_vec(&m).unwrap(), &key())
}

#[test]
fn bundles_in_1970_new_taken_replays_and_stale_refused() {
    let me = Identity {
        device: "r1".into(),
        groups: vec![],
    };
    let now = in_1970();
    let mut guard = ReplayGuard::default();
    let fresh = bundle("b1", T + HOUR, 5);
    let v = verify_bundle(&fresh, &me, now.clone(), &trust(), &guard).unwrap();
    guard.record_bundle(&v.manifest, now.now_ms, SKEW);
    let e = verify_bundle(&fresh, &me, now.clone(), &trust(), &guard).unwrap_err();
    assert_eq!(e.why.code(), "duplicate");
    let e = verify_bundle(
        &bundle("b2", T + 2 * HOUR, 4),
        &me,
        now.clone(),
        &trust(),
        &guard,
    )
    .unwrap_err();
    assert_eq!(e.why.code(), "downgraded");
    let e = verify_bundle(
        &bundle("b3", T - 24 * HOUR, 6),
        &me,
        now.clone(),
        &trust(),
        &guard,
    )
    .unwrap_err();
    assert_eq!(e.why.code(), "before_trusted_time");
    // Expired by the last trusted time: expired for sure.
    let mut m: Manifest =
        serde_json::from_slice(&seal::unseal(&bundle("b4", T - 10, 7)).unwrap().bytes).unwrap();
    m.expires = T - SKEW - 10;
    let sealed = seal::seal(&serde_json::to_vec(&m).unwrap(), &key());
    let e = verify_bundle(&sealed, &me, now, &trust(), &guard).unwrap_err();
    assert_eq!(e.why.code(), "expired");
}
