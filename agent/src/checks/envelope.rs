//! Fleet payloads (`cmd` and `desired` topics) through the device's verification
//! ([`crate::mqtt::verify`], the first thing the intake does with every payload):
//!
//! - a command or desired doc built from the fuzz bytes and signed with the trusted key is
//!   accepted exactly when its header is valid (version, address, times, id, app, body);
//! - no tampering verifies: a flipped byte of the wrapper, the signed bytes or the signature, a
//!   re-signature with another key, an edited envelope under the old signature, a truncation:
//!   whatever verifies after it carries exactly the bytes that were signed;
//! - an accepted command, once recorded, is refused as a duplicate, and a newer id with the same
//!   version as a replay; unsigned payloads pass only in dev mode;
//! - raw payloads never verify unless signed by the trusted key, and the id echoed in a refusal
//!   is short; topics parse back to themselves.

use super::Carver;
use crate::mqtt::verify::{
    verify_command, verify_desired, Refused, Rejection, ReplayGuard, Trust, MAX_COMMAND_LIFETIME_MS,
};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::Signer;
use roboku_wire::fleet::seal::{self, SecretKey};
use roboku_wire::fleet::topic::{self, Address, Topic};
use roboku_wire::fleet::{
    AppDesired, DesiredDoc, Envelope, Kind, Sealed, MAX_PAYLOAD, PROTOCOL_VERSION,
};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::LazyLock;

const SKEW_MS: u64 = 30_000;
const DEVICE: &str = "robot-1";
const GROUP: &str = "site-a";

// Keys and trust are made once: deriving a key is a scalar multiplication, and the checks
// sign and verify several times per input already.
static TRUSTED: LazyLock<SecretKey> = LazyLock::new(|| seal::secret_from_seed([7; 32]));
static STRANGER: LazyLock<SecretKey> = LazyLock::new(|| seal::secret_from_seed([8; 32]));
static STRICT: LazyLock<Trust> = LazyLock::new(|| make_trust(false));
static DEV: LazyLock<Trust> = LazyLock::new(|| make_trust(true));

fn trusted() -> &'static SecretKey {
    &TRUSTED
}

fn stranger() -> &'static SecretKey {
    &STRANGER
}

fn make_trust(allow_unsigned: bool) -> Trust {
    Trust::new([trusted().verifying_key()], allow_unsigned, SKEW_MS)
}

fn trust(allow_unsigned: bool) -> &'static Trust {
    if allow_unsigned {
        &DEV
    } else {
        &STRICT
    }
}

pub fn check(data: &[u8]) {
    let mut c = Carver::new(data);
    match c.u8() % 4 {
        0 => command(&mut c),
        1 => desired(&mut c),
        2 => raw(c.rest()),
        _ => topic_round_trip(c.rest()),
    }
}

/// The header fields both kinds of payload share, carved from the input.
struct Header {
    v: u32,
    id: String,
    ts: u64,
    expires: u64,
    to: String,
    arrived: Address,
    now: u64,
}

fn header(c: &mut Carver) -> Header {
    let flags = c.u8();
    let v = if flags & 1 != 0 {
        u32::from(c.u8())
    } else {
        PROTOCOL_VERSION
    };
    let id = c.text(80);
    let ts = c.u64();
    let ttl = if flags & 2 != 0 {
        c.u64()
    } else {
        u64::from(c.u16()) * 1000
    };
    let to = match c.u8() {
        0..=99 => format!("d/{DEVICE}"),
        100..=149 => format!("g/{GROUP}"),
        150..=199 => "d/robot-2".to_string(),
        _ => c.text(24),
    };
    let arrived = match flags & 4 {
        0 => Address::Device(DEVICE.into()),
        _ => Address::Group(GROUP.into()),
    };
    // Arrival relative to issue: early (from the future), on time, late (expired).
    let offset = u64::from(c.u16()) * 100;
    let now = if flags & 8 != 0 {
        ts.saturating_sub(offset)
    } else {
        ts.saturating_add(offset)
    };
    Header {
        v,
        id,
        ts,
        expires: ts.saturating_add(ttl),
        to,
        arrived,
        now,
    }
}

/// Whether the shared header checks pass, stated independently of `verify`.
fn header_ok(h: &Header) -> bool {
    h.v == PROTOCOL_VERSION
        && h.to == h.arrived.as_path()
        && h.ts <= h.now.saturating_add(SKEW_MS)
        && h.expires.saturating_add(SKEW_MS) >= h.now
}

/// A read (`logs`, `plan`) carries no version; a `logs` read a pattern that compiles.
fn logs_ok(env: &Envelope) -> bool {
    match env.action() {
        Ok(roboku_wire::fleet::Action::Plan(_) | roboku_wire::fleet::Action::Support(_)) => {
            env.version.is_none()
        }
        Ok(roboku_wire::fleet::Action::Logs(q)) => {
            env.version.is_none()
                && q.dyno.as_ref().is_none_or(|d| (1..=64).contains(&d.len()))
                && q.grep
                    .as_deref()
                    .is_none_or(|g| crate::logs::Grep::new(g).is_ok())
        }
        _ => true,
    }
}

fn default_body(kind: Kind) -> serde_json::Value {
    let text = match kind {
        Kind::Deploy | Kind::Plan => {
            r#"{"url":"http://gw/slugs/a.tar.gz","sha256":"00","size":10}"#
        }
        Kind::Scale => r#"{"counts":{"web":2}}"#,
        Kind::Config => r#"{"set":{"A":"1"},"unset":["B"]}"#,
        Kind::Rollback | Kind::Restart | Kind::Stop => "{}",
        Kind::Logs => r#"{"tail":10,"grep":"ERR"}"#,
        Kind::Support => r#"{"lines":10}"#,
    };
    serde_json::from_str(text).unwrap_or_default()
}

fn command(c: &mut Carver) {
    let ops = tamper_ops(c);
    let h = header(c);
    let kind = [
        Kind::Deploy,
        Kind::Scale,
        Kind::Config,
        Kind::Rollback,
        Kind::Restart,
        Kind::Stop,
        Kind::Logs,
        Kind::Plan,
        Kind::Support,
    ][usize::from(c.u8()) % 9];
    let app = Some(c.text(40))
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "demo".into());
    let version = (c.u8() & 1 != 0).then(|| c.u64());
    let body = serde_json::from_slice(c.rest()).unwrap_or_else(|_| default_body(kind));
    let env = Envelope {
        v: h.v,
        id: h.id.clone(),
        ts: h.ts,
        expires: h.expires,
        to: h.to.clone(),
        kind,
        app,
        body,
        version,
    };
    let bytes = serde_json::to_vec(&env).expect("an envelope encodes");
    let payload = seal::seal(&bytes, trusted());
    let guard = ReplayGuard::default();
    let verify = |p: &[u8], t: &Trust, g: &ReplayGuard| verify_command(p, &h.arrived, h.now, t, g);

    let want_ok = payload.len() <= MAX_PAYLOAD
        && header_ok(&h)
        && env.expires.saturating_sub(env.ts) <= MAX_COMMAND_LIFETIME_MS
        && (1..=64).contains(&env.id.len())
        && roboku_wire::check_app_name(&env.app).is_ok()
        && env.action().is_ok()
        && logs_ok(&env);
    let first = verify(&payload, trust(false), &guard);
    assert_eq!(
        first.is_ok(),
        want_ok,
        "verdict on {env:?}: {:?}",
        first.as_ref().err()
    );
    if let Err(r) = &first {
        echo_is_short(r);
    }
    if let Ok(v) = &first {
        assert_eq!(v.env, env);
        assert_eq!(Ok(v.action.clone()), env.action());
        assert_eq!(v.kid, Some(seal::key_id(&trusted().verifying_key())));
        // Recorded, the same command is a duplicate; another id with the same version a replay.
        let mut seen = guard.clone();
        seen.record(&v.env, h.now, SKEW_MS);
        let again = verify(&payload, trust(false), &seen).map(|_| ());
        assert!(
            matches!(&again, Err(r) if matches!(r.why, Rejection::Duplicate(_))),
            "{again:?}"
        );
        if env.version.is_some() {
            let mut other = env.clone();
            let mut id: String = String::new();
            for ch in other.id.chars() {
                if id.len() + ch.len_utf8() > 40 {
                    break;
                }
                id.push(ch);
            }
            other.id = format!("{id}~");
            let p = seal::seal(&serde_json::to_vec(&other).expect("encodes"), trusted());
            let replay = verify(&p, trust(false), &seen).map(|_| ());
            assert!(
                matches!(&replay, Err(r) if matches!(r.why, Rejection::Replayed { .. })),
                "{replay:?}"
            );
        }
    }
    unsigned(&bytes, first.is_ok(), |p, t| {
        verify(p, t, &guard).map(|_| ())
    });
    tampered(
        &payload,
        &bytes,
        &ops,
        |p| verify(p, trust(false), &guard).map(|v| v.env),
        &env,
    );
}

fn desired(c: &mut Carver) {
    let ops = tamper_ops(c);
    let h = header(c);
    let mut apps = BTreeMap::new();
    for _ in 0..c.u8() % 3 {
        let name = Some(c.text(40))
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "demo".into());
        let entry = AppDesired {
            version: c.u64(),
            formation: [("web".to_string(), u32::from(c.u8()))].into(),
            ..AppDesired::default()
        };
        apps.insert(name, entry);
    }
    if let Ok(more) = serde_json::from_slice::<BTreeMap<String, AppDesired>>(c.rest()) {
        apps.extend(more);
    }
    let doc = DesiredDoc {
        v: h.v,
        id: h.id.clone(),
        ts: h.ts,
        expires: h.expires,
        to: h.to.clone(),
        apps,
    };
    let bytes = serde_json::to_vec(&doc).expect("a desired doc encodes");
    let payload = seal::seal(&bytes, trusted());
    let verify = |p: &[u8], t: &Trust| verify_desired(p, &h.arrived, h.now, t);
    let want_ok = payload.len() <= MAX_PAYLOAD
        && header_ok(&h)
        && doc
            .apps
            .keys()
            .all(|a| roboku_wire::check_app_name(a).is_ok());
    let first = verify(&payload, trust(false));
    assert_eq!(
        first.is_ok(),
        want_ok,
        "verdict on {doc:?}: {:?}",
        first.as_ref().err()
    );
    match &first {
        Ok((got, kid)) => {
            assert_eq!(got, &doc);
            assert_eq!(
                kid.as_deref(),
                Some(seal::key_id(&trusted().verifying_key())).as_deref()
            );
        }
        Err(r) => echo_is_short(r),
    }
    unsigned(&bytes, first.is_ok(), |p, t| verify(p, t).map(|_| ()));
    tampered(
        &payload,
        &bytes,
        &ops,
        |p| verify(p, trust(false)).map(|(d, _)| d),
        &doc,
    );
}

/// Unsigned, the same bytes are refused as unsigned, and pass in dev mode exactly when signed
/// they pass.
fn unsigned(bytes: &[u8], signed_ok: bool, verify: impl Fn(&[u8], &Trust) -> Result<(), Refused>) {
    let p = seal::seal_unsigned(bytes);
    if p.len() > MAX_PAYLOAD {
        return;
    }
    let strict = verify(&p, trust(false));
    assert!(
        matches!(&strict, Err(r) if r.why == Rejection::Unsigned),
        "{strict:?}"
    );
    assert_eq!(
        verify(&p, trust(true)).is_ok(),
        signed_ok,
        "dev mode verdict"
    );
}

fn echo_is_short(r: &Refused) {
    if let Some(id) = &r.id {
        assert!(
            id.chars().count() <= 64,
            "echoed id of {} chars",
            id.chars().count()
        );
    }
}

type Op = [u8; 4];

fn tamper_ops(c: &mut Carver) -> Vec<Op> {
    (0..c.u8() % 5)
        .map(|_| [c.u8(), c.u8(), c.u8(), c.u8()])
        .collect()
}

/// The wrapper of `payload` with `env` bytes and `sig`/`kid` replaced.
fn rewrap(env: &[u8], sig: Option<String>, kid: Option<String>) -> Vec<u8> {
    serde_json::to_vec(&Sealed {
        env: B64.encode(env),
        sig,
        kid,
    })
    .expect("a wrapper encodes")
}

/// One tampering step; `None` when it does not apply to this payload.
fn tamper(p: &[u8], op: Op) -> Option<Vec<u8>> {
    let [what, hi, lo, val] = op;
    let pos = usize::from(u16::from_be_bytes([hi, lo]));
    let mut out = p.to_vec();
    let unsealed = || serde_json::from_slice::<Sealed>(p).ok();
    match what % 8 {
        0 if !out.is_empty() => {
            let i = pos % out.len();
            out[i] ^= val | 1;
        }
        1 => {
            let s = unsealed()?;
            let mut env = B64.decode(&s.env).ok()?;
            let i = pos % env.len().max(1);
            *env.get_mut(i)? ^= 1 << (val % 8);
            out = rewrap(&env, s.sig, s.kid);
        }
        2 => {
            let s = unsealed()?;
            let mut sig = B64.decode(s.sig.as_deref()?).ok()?;
            let i = pos % sig.len().max(1);
            *sig.get_mut(i)? ^= 1 << (val % 8);
            out = rewrap(&B64.decode(&s.env).ok()?, Some(B64.encode(sig)), s.kid);
        }
        3 | 4 => {
            let s = unsealed()?;
            let env = B64.decode(&s.env).ok()?;
            let sig = B64.encode(stranger().sign(&env).to_bytes());
            let kid = match what % 8 {
                3 => s.kid,
                _ => Some(seal::key_id(&stranger().verifying_key())),
            };
            out = rewrap(&env, Some(sig), kid);
        }
        5 => {
            // Edit one field of the signed JSON, keep the old signature.
            let s = unsealed()?;
            let mut doc: serde_json::Value =
                serde_json::from_slice(&B64.decode(&s.env).ok()?).ok()?;
            let obj = doc.as_object_mut()?;
            let key = ["id", "ts", "expires", "to", "app", "version"][pos % 6];
            let new = match obj.get(key) {
                Some(serde_json::Value::Number(n)) => {
                    serde_json::json!(n.as_u64()?.wrapping_add(u64::from(val) + 1))
                }
                Some(serde_json::Value::String(t)) => serde_json::json!(format!("{t}{}", val % 10)),
                _ => serde_json::json!(u64::from(val)),
            };
            obj.insert(key.to_string(), new);
            out = rewrap(&serde_json::to_vec(&doc).ok()?, s.sig, s.kid);
        }
        6 => out.truncate(pos % (out.len() + 1)),
        7 => out.insert(pos % (out.len() + 1), val),
        _ => return None,
    }
    Some(out)
}

/// Whatever verifies after tampering carries exactly the signed bytes (and so the same content).
fn tampered<T: PartialEq + Debug>(
    payload: &[u8],
    signed: &[u8],
    ops: &[Op],
    verify: impl Fn(&[u8]) -> Result<T, Refused>,
    original: &T,
) {
    let mut p = payload.to_vec();
    for &op in ops {
        let Some(next) = tamper(&p, op) else { continue };
        p = next;
        if let Ok(got) = verify(&p) {
            let inner = seal::unseal(&p).expect("a verified payload unseals").bytes;
            assert_eq!(
                inner,
                signed,
                "tampered payload {} verified",
                String::from_utf8_lossy(&p)
            );
            assert_eq!(&got, original);
        }
    }
}

/// Arbitrary bytes: nothing verifies that the trusted key did not sign.
fn raw(payload: &[u8]) {
    let guard = ReplayGuard::default();
    let now = 1_700_000_000_000;
    let me = Address::Device(DEVICE.into());
    let signed_by_us = || {
        let u = seal::unseal(payload).expect("a verified payload unseals");
        let (kid, sig) = u.sig.expect("verified without dev mode: signed");
        assert_eq!(kid, seal::key_id(&trusted().verifying_key()));
        assert!(seal::verify(&trusted().verifying_key(), &u.bytes, &sig));
    };
    match verify_command(payload, &me, now, trust(false), &guard) {
        Ok(_) => signed_by_us(),
        Err(r) => echo_is_short(&r),
    }
    match verify_desired(payload, &me, now, trust(false)) {
        Ok(_) => signed_by_us(),
        Err(r) => echo_is_short(&r),
    }
}

fn topic_round_trip(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let Some(t) = topic::parse(&text) else { return };
    let back = match &t {
        Topic::Cmd(a) => a.cmd(),
        Topic::Desired(a) => a.desired(),
        Topic::Ack(d) => topic::ack(d),
        Topic::Reported(d) => topic::reported(d),
        Topic::Status(d) => topic::status(d),
        Topic::Telemetry(d) => topic::telemetry(d),
        Topic::Logs(d) => topic::logs(d),
    };
    assert_eq!(back, text, "topic {t:?}");
}
