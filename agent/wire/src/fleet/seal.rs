//! Sealing and opening signed payloads: ed25519 over the exact bytes, base64 around them.
//!
//! Keys are 32 raw bytes written as one line of standard base64: the private key file holds the
//! seed (keep it 0600), the public key file the verifying key. A key id (`kid`) is the first 16
//! hex digits of sha256 of the public key: it selects the key, it is not a secret.
//! Policy (which keys are trusted, expiry, replays) is the device's business, not this module's.

use super::Sealed;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::Digest;

pub use ed25519_dalek::{SigningKey as SecretKey, VerifyingKey as PublicKey};

/// The key id of a public key.
pub fn key_id(key: &VerifyingKey) -> String {
    let d = sha2::Sha256::digest(key.as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Signs `bytes` and wraps them: the payload to publish.
pub fn seal(bytes: &[u8], key: &SigningKey) -> Vec<u8> {
    let sig = key.sign(bytes);
    to_payload(&Sealed {
        env: B64.encode(bytes),
        sig: Some(B64.encode(sig.to_bytes())),
        kid: Some(key_id(&key.verifying_key())),
    })
}

/// Wraps `bytes` without a signature (accepted only by devices in dev mode).
pub fn seal_unsigned(bytes: &[u8]) -> Vec<u8> {
    to_payload(&Sealed {
        env: B64.encode(bytes),
        sig: None,
        kid: None,
    })
}

fn to_payload(s: &Sealed) -> Vec<u8> {
    // A struct of three strings always serialises.
    serde_json::to_vec(s).unwrap_or_default()
}

/// The decoded parts of a [`Sealed`] payload, not yet verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsealed {
    pub bytes: Vec<u8>,
    pub sig: Option<(String, Signature)>,
}

/// Reads the wrapper and decodes base64; says what is malformed.
pub fn unseal(payload: &[u8]) -> Result<Unsealed, String> {
    let sealed: Sealed = serde_json::from_slice(payload)
        .map_err(|e| format!("not a sealed payload ({{\"env\",\"sig\",\"kid\"}}): {e}"))?;
    let bytes = B64
        .decode(sealed.env.as_bytes())
        .map_err(|e| format!("env is not base64: {e}"))?;
    let sig = match (sealed.sig, sealed.kid) {
        (None, None) => None,
        (Some(sig), Some(kid)) => {
            let raw = B64
                .decode(sig.as_bytes())
                .map_err(|e| format!("sig is not base64: {e}"))?;
            let raw: [u8; 64] = raw
                .try_into()
                .map_err(|v: Vec<u8>| format!("sig is {} bytes, not 64", v.len()))?;
            Some((kid, Signature::from_bytes(&raw)))
        }
        (Some(_), None) => return Err("sig without kid".into()),
        (None, Some(_)) => return Err("kid without sig".into()),
    };
    Ok(Unsealed { bytes, sig })
}

/// Strict ed25519 verification (rejects small-order keys and non-canonical signatures).
pub fn verify(key: &VerifyingKey, bytes: &[u8], sig: &Signature) -> bool {
    key.verify_strict(bytes, sig).is_ok()
}

/// A key pair from 32 random bytes.
pub fn secret_from_seed(seed: [u8; 32]) -> SigningKey {
    SigningKey::from_bytes(&seed)
}

/// One line of base64 for a private key file.
pub fn encode_secret(key: &SigningKey) -> String {
    B64.encode(key.to_bytes())
}

/// One line of base64 for a public key file (or a `trusted_keys` entry).
pub fn encode_public(key: &VerifyingKey) -> String {
    B64.encode(key.as_bytes())
}

pub fn parse_secret(text: &str) -> Result<SigningKey, String> {
    Ok(SigningKey::from_bytes(&decode32(text, "private key")?))
}

pub fn parse_public(text: &str) -> Result<VerifyingKey, String> {
    VerifyingKey::from_bytes(&decode32(text, "public key")?)
        .map_err(|e| format!("public key is not a valid ed25519 point: {e}"))
}

fn decode32(text: &str, what: &str) -> Result<[u8; 32], String> {
    let raw = B64
        .decode(text.trim().as_bytes())
        .map_err(|e| format!("{what} is not base64: {e}"))?;
    raw.try_into()
        .map_err(|v: Vec<u8>| format!("{what} is {} bytes, not 32", v.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        secret_from_seed([n; 32])
    }

    #[test]
    fn sealed_bytes_verify_and_tampering_does_not() {
        let k = key(1);
        let payload = seal(br#"{"a":1}"#, &k);
        let u = unseal(&payload).unwrap();
        assert_eq!(u.bytes, br#"{"a":1}"#);
        let (kid, sig) = u.sig.unwrap();
        assert_eq!(kid, key_id(&k.verifying_key()));
        assert!(verify(&k.verifying_key(), &u.bytes, &sig));
        assert!(!verify(&k.verifying_key(), br#"{"a":2}"#, &sig));
        assert!(!verify(&key(2).verifying_key(), &u.bytes, &sig));
    }

    #[test]
    fn keys_round_trip_through_text() {
        let k = key(3);
        let back = parse_secret(&format!("{}\n", encode_secret(&k))).unwrap();
        assert_eq!(back.to_bytes(), k.to_bytes());
        let p = parse_public(&encode_public(&k.verifying_key())).unwrap();
        assert_eq!(p, k.verifying_key());
        assert!(parse_public("AAAA").unwrap_err().contains("not 32"));
    }

    #[test]
    fn malformed_wrappers_are_named() {
        assert!(unseal(b"nope")
            .unwrap_err()
            .contains("not a sealed payload"));
        assert!(unseal(br#"{"env":"***"}"#).unwrap_err().contains("base64"));
        assert!(unseal(br#"{"env":"","sig":"AAAA"}"#)
            .unwrap_err()
            .contains("without kid"));
        let u = unseal(&seal_unsigned(b"x")).unwrap();
        assert_eq!(u.sig, None);
    }
}
