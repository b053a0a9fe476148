//! Device keys: each laptop makes an Ed25519 key once, binds its public key
//! to its account at its first hello, and signs every run of its outbox it
//! sends, so that the server (and anyone passing the run on) can tell that
//! the run is that device's and nobody else's.
//!
//! A device made with a key takes its id from the key
//! ([`device_id_of`]): nobody can claim such an id without the key. What is
//! signed is decided by the core (`faenban_core::sync::RunSigning`,
//! `hello_signing_message`); this crate only signs and verifies.

use std::fmt;

mod seal;

pub use seal::{Opened, SealError, SEAL_OVERHEAD};

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use faenban_core::sync::{ack_signing_message, hello_signing_message, RunSigning};
use faenban_core::{Change, DeviceId, Stamp};
use sha2::{Digest, Sha256};

/// A device's secret signing key. Its `Debug` shows only the public half.
pub struct DeviceKey(SigningKey);

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DeviceKey").field(&self.public()).finish()
    }
}

impl DeviceKey {
    /// A new key from the operating system's random numbers.
    pub fn generate() -> std::io::Result<DeviceKey> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(std::io::Error::other)?;
        Ok(DeviceKey::from_seed(seed))
    }

    /// The key made from a 32-byte seed (what is stored).
    pub fn from_seed(seed: [u8; 32]) -> DeviceKey {
        DeviceKey(SigningKey::from_bytes(&seed))
    }

    /// The seed as 64 hex digits, to store.
    pub fn seed_hex(&self) -> String {
        hex(self.0.as_bytes())
    }

    /// The key from its stored seed.
    pub fn from_seed_hex(text: &str) -> Option<DeviceKey> {
        Some(DeviceKey::from_seed(unhex(text)?))
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// The device id this key makes.
    pub fn device_id(&self) -> DeviceId {
        device_id_of(&self.public())
    }

    /// Signs a run of `device`'s outbox in the newest form.
    pub fn sign_run(&self, device: DeviceId, first_sequence: u64, changes: &[Change]) -> Signature {
        self.sign_run_as(RunSigning::NEWEST, device, first_sequence, changes)
    }

    /// Signs a run of `device`'s outbox in `form`: the one the server
    /// named at hello, or, for a bundle, the one every server verifies.
    pub fn sign_run_as(
        &self,
        form: RunSigning,
        device: DeviceId,
        first_sequence: u64,
        changes: &[Change],
    ) -> Signature {
        self.sign(&form.message(device, first_sequence, changes))
    }

    /// Signs a hello: proof that the device holds the key, tied to the
    /// token it says hello with (so it cannot be replayed with another).
    pub fn sign_hello(&self, device: DeviceId, token: &str) -> Signature {
        self.sign(&hello_signing_message(
            device,
            &self.public().0,
            &token_digest(token),
        ))
    }

    /// Signs an acknowledgement (the server's key): `device`'s outbox is
    /// held through `held_through`, whose change is stamped `stamp`.
    pub fn sign_ack(&self, device: DeviceId, held_through: u64, stamp: &Stamp) -> Signature {
        self.sign(&ack_signing_message(device, held_through, stamp))
    }

    fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

/// A device's public key, written as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl PublicKey {
    /// Reads 64 hex digits.
    pub fn from_hex(text: &str) -> Option<PublicKey> {
        let bytes = unhex(text)?;
        // Only points on the curve are keys at all.
        VerifyingKey::from_bytes(&bytes).ok()?;
        Some(PublicKey(bytes))
    }

    /// True when `signature` is this key's over a run of `device`'s outbox,
    /// in either form. The compact form is tried first: it is what devices
    /// sign now, and the cheaper to write.
    pub fn verifies_run(
        &self,
        device: DeviceId,
        first_sequence: u64,
        changes: &[Change],
        signature: &Signature,
    ) -> bool {
        [RunSigning::Compact, RunSigning::Json]
            .into_iter()
            .any(|form| self.verifies(&form.message(device, first_sequence, changes), signature))
    }

    /// True when `signature` proves a hello of `device` with this key and
    /// the token whose digest is `token_digest`.
    pub fn verifies_hello(
        &self,
        device: DeviceId,
        token_digest: &[u8],
        signature: &Signature,
    ) -> bool {
        self.verifies(
            &hello_signing_message(device, &self.0, token_digest),
            signature,
        )
    }

    /// True when `signature` is this (server) key's acknowledgement that
    /// `device`'s outbox is held through `held_through`, stamped `stamp`.
    pub fn verifies_ack(
        &self,
        device: DeviceId,
        held_through: u64,
        stamp: &Stamp,
        signature: &Signature,
    ) -> bool {
        self.verifies(&ack_signing_message(device, held_through, stamp), signature)
    }

    fn verifies(&self, message: &[u8], signature: &Signature) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        // Strict: no weak keys, no malleable signatures.
        key.verify_strict(message, &signature).is_ok()
    }
}

/// A signature, written as 128 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl Signature {
    /// Reads 128 hex digits.
    pub fn from_hex(text: &str) -> Option<Signature> {
        Some(Signature(unhex(text)?))
    }
}

/// The device id a public key makes: the first 16 bytes of its SHA-256
/// (with a domain tag), as a UUID of version 8.
pub fn device_id_of(key: &PublicKey) -> DeviceId {
    let digest = Sha256::new()
        .chain_update(b"faenban device id\0")
        .chain_update(key.0)
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    DeviceId(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

/// What a hello's proof is tied to: the SHA-256 of the token (the server
/// keeps only that).
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Bytes as lowercase hex digits.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
    text
}

/// Lowercase hex digits as bytes, `None` when they are not.
pub fn unhex_vec(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    unhex_vec(text)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use faenban_core::{Hlc, RecordKey, RecordKind, Stamp};
    use serde_json::json;

    fn change(device: DeviceId, value: serde_json::Value) -> Change {
        Change {
            stamp: Stamp::new(Hlc::at(1_700_000_000_000), device),
            record: RecordKey::new(RecordKind::Household, uuid::Uuid::from_u128(1)),
            field: "notes".into(),
            value,
            supersedes: Default::default(),
            observed: Vec::new(),
            previous_stamps: Vec::new(),
        }
    }

    #[test]
    fn a_run_verifies_with_its_devices_key_only_and_only_as_signed() {
        let key = DeviceKey::from_seed([7; 32]);
        let device = key.device_id();
        let changes = [change(device, json!({"b": 1, "a": [1.5, "ก"]}))];
        let signature = key.sign_run(device, 3, &changes);
        assert!(key.public().verifies_run(device, 3, &changes, &signature));
        assert!(!key.public().verifies_run(device, 4, &changes, &signature));
        let other = [change(device, json!("x"))];
        assert!(!key.public().verifies_run(device, 3, &other, &signature));
        let stranger = DeviceKey::from_seed([8; 32]);
        assert!(!stranger
            .public()
            .verifies_run(device, 3, &changes, &signature));
        // Through the wire form and back, it still verifies.
        let wire = faenban_core::sync::ChangeSet::encode(&changes);
        let text = serde_json::to_string(&wire).unwrap();
        let back: faenban_core::sync::ChangeSet = serde_json::from_str(&text).unwrap();
        let decoded = back.decode().unwrap();
        assert!(key.public().verifies_run(device, 3, &decoded, &signature));
    }

    #[test]
    fn a_run_signed_in_the_json_form_of_older_devices_still_verifies_and_only_as_signed() {
        let key = DeviceKey::from_seed([7; 32]);
        let device = key.device_id();
        let changes = [change(device, json!({"b": 1, "a": [1.5, "ก"]}))];
        let json = key.sign_run_as(RunSigning::Json, device, 3, &changes);
        let compact = key.sign_run(device, 3, &changes);
        assert_ne!(json.to_string(), compact.to_string());
        for signature in [&json, &compact] {
            assert!(key.public().verifies_run(device, 3, &changes, signature));
            assert!(!key.public().verifies_run(device, 4, &changes, signature));
            let other = [change(device, json!({"b": 1, "a": [1.5, "ข"]}))];
            assert!(!key.public().verifies_run(device, 3, &other, signature));
        }
    }

    #[test]
    fn ids_come_from_keys_and_everything_round_trips_as_hex() {
        let key = DeviceKey::from_seed([9; 32]);
        assert_eq!(key.device_id(), device_id_of(&key.public()));
        assert_ne!(key.device_id(), DeviceKey::from_seed([10; 32]).device_id());
        assert_eq!(key.device_id().0.get_version_num(), 8);
        let again = DeviceKey::from_seed_hex(&key.seed_hex()).unwrap();
        assert_eq!(again.public(), key.public());
        assert_eq!(
            PublicKey::from_hex(&key.public().to_string()),
            Some(key.public())
        );
        assert_eq!(PublicKey::from_hex("zz"), None);
        let proof = key.sign_hello(key.device_id(), "fbn_token");
        assert_eq!(Signature::from_hex(&proof.to_string()), Some(proof));
        assert!(key
            .public()
            .verifies_hello(key.device_id(), &token_digest("fbn_token"), &proof));
        assert!(!key
            .public()
            .verifies_hello(key.device_id(), &token_digest("fbn_other"), &proof));
        assert!(!format!("{key:?}").contains(&key.seed_hex()));
    }
}
