//! Sealed messages: signed by one key, readable only by the holder of
//! another. Bundles carry their contents this way, so that a laptop that
//! passes a bundle on, or a lost USB stick, reveals nothing of it.
//!
//! The recipient's Ed25519 key is used as the X25519 key it maps to (the
//! map libsodium's `crypto_sign_ed25519_pk_to_curve25519` and age's
//! ssh-ed25519 recipients use), so a device has one key, bound once. The
//! construction is ECIES: a fresh X25519 key for each message; the shared
//! secret with the recipient's key; a ChaCha20-Poly1305 key that is the
//! SHA-256 of a tag, the purpose, both public keys and the secret; a zero
//! nonce, since each key seals one message. The purpose is authenticated
//! as well, so a message sealed for one use is never taken for another.
//! Inside the seal, the sender's signature (over the purpose, the
//! recipient and the payload) comes first: the recipient knows who wrote
//! it, and that it was written for it.

use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use curve25519_dalek::montgomery::MontgomeryPoint;
use ed25519_dalek::VerifyingKey;
use faenban_core::sync::sealed_signing_message;
use sha2::{Digest, Sha256};

use crate::{DeviceKey, PublicKey, Signature};

/// The first byte of every sealed message.
const VERSION: u8 = 1;

/// What sealing adds to a payload: version, ephemeral key, signature, tag.
pub const SEAL_OVERHEAD: usize = 1 + 32 + 64 + 16;

/// Why a message could not be sealed.
#[derive(Debug)]
pub enum SealError {
    /// The recipient's key is not one a message can be sealed to (a point
    /// of small order: every secret shared with it is known to all).
    WeakKey,
    /// The operating system gave no random numbers.
    Random(std::io::Error),
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealError::WeakKey => f.write_str("the recipient's key cannot receive sealed messages"),
            SealError::Random(error) => write!(f, "no random numbers: {error}"),
        }
    }
}

impl std::error::Error for SealError {}

/// A sealed message, opened: the payload and the sender's signature,
/// which the caller checks once it knows who the sender claims to be.
#[derive(Debug)]
pub struct Opened {
    /// What was sealed.
    pub payload: Vec<u8>,
    signature: Signature,
    recipient: PublicKey,
    purpose: &'static str,
}

impl Opened {
    /// True when `sender` signed this payload for this recipient and purpose.
    pub fn signed_by(&self, sender: &PublicKey) -> bool {
        sender.verifies(
            &sealed_signing_message(self.purpose, &self.recipient.0, &self.payload),
            &self.signature,
        )
    }
}

impl DeviceKey {
    /// Signs `payload` with this key and seals it to `recipient`.
    pub fn sign_and_seal(
        &self,
        recipient: &PublicKey,
        purpose: &'static str,
        payload: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let signature = self.sign(&sealed_signing_message(purpose, &recipient.0, payload));
        let recipient_point = montgomery(recipient).ok_or(SealError::WeakKey)?;
        let mut ephemeral = [0u8; 32];
        getrandom::fill(&mut ephemeral)
            .map_err(|error| SealError::Random(std::io::Error::other(error)))?;
        let ephemeral_public = MontgomeryPoint::mul_base_clamped(ephemeral);
        let shared = recipient_point.mul_clamped(ephemeral);
        let cipher = cipher(purpose, &ephemeral_public, &recipient_point, &shared)
            .ok_or(SealError::WeakKey)?;
        let mut inner = Vec::with_capacity(64 + payload.len());
        inner.extend_from_slice(&signature.0);
        inner.extend_from_slice(payload);
        let sealed = cipher
            .encrypt(
                &Default::default(),
                Payload {
                    msg: &inner,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| SealError::WeakKey)?;
        let mut out = Vec::with_capacity(1 + 32 + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(ephemeral_public.as_bytes());
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a message sealed to this key for `purpose`; `None` when it is
    /// not one (sealed to another key or for another use, or changed).
    pub fn open(&self, purpose: &'static str, sealed: &[u8]) -> Option<Opened> {
        if sealed.len() < SEAL_OVERHEAD || sealed[0] != VERSION {
            return None;
        }
        let ephemeral_public = MontgomeryPoint(sealed[1..33].try_into().ok()?);
        let own = self.public();
        let own_point = montgomery(&own)?;
        let shared = ephemeral_public.mul_clamped(self.0.to_scalar_bytes());
        let cipher = cipher(purpose, &ephemeral_public, &own_point, &shared)?;
        let mut inner = cipher
            .decrypt(
                &Default::default(),
                Payload {
                    msg: &sealed[33..],
                    aad: purpose.as_bytes(),
                },
            )
            .ok()?;
        let signature = Signature(inner.get(..64)?.try_into().ok()?);
        inner.drain(..64);
        Some(Opened {
            payload: inner,
            signature,
            recipient: own,
            purpose,
        })
    }
}

/// The X25519 form of an Ed25519 public key.
fn montgomery(key: &PublicKey) -> Option<MontgomeryPoint> {
    let point = VerifyingKey::from_bytes(&key.0).ok()?;
    if point.is_weak() {
        return None;
    }
    Some(point.to_montgomery())
}

fn cipher(
    purpose: &str,
    ephemeral: &MontgomeryPoint,
    recipient: &MontgomeryPoint,
    shared: &MontgomeryPoint,
) -> Option<ChaCha20Poly1305> {
    // A secret of all zeroes means a key of small order slipped through.
    if shared.as_bytes() == &[0u8; 32] {
        return None;
    }
    let key = Sha256::new()
        .chain_update(b"faenban seal v1\0")
        .chain_update((purpose.len() as u64).to_be_bytes())
        .chain_update(purpose.as_bytes())
        .chain_update(ephemeral.as_bytes())
        .chain_update(recipient.as_bytes())
        .chain_update(shared.as_bytes())
        .finalize();
    Some(ChaCha20Poly1305::new(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_recipient_opens_and_only_the_sender_signed() {
        let device = DeviceKey::from_seed([1; 32]);
        let server = DeviceKey::from_seed([2; 32]);
        let stranger = DeviceKey::from_seed([3; 32]);
        let sealed = device
            .sign_and_seal(&server.public(), "letter", b"outbox")
            .unwrap();
        assert_eq!(sealed.len(), b"outbox".len() + SEAL_OVERHEAD);
        assert!(!sealed.windows(6).any(|w| w == b"outbox"));
        let opened = server.open("letter", &sealed).unwrap();
        assert_eq!(opened.payload, b"outbox");
        assert!(opened.signed_by(&device.public()));
        assert!(!opened.signed_by(&stranger.public()));
        // Another key, another purpose, or any changed byte: nothing opens.
        assert!(stranger.open("letter", &sealed).is_none());
        assert!(device.open("letter", &sealed).is_none());
        assert!(server.open("reply", &sealed).is_none());
        for at in 0..sealed.len() {
            let mut changed = sealed.clone();
            changed[at] ^= 0x20;
            assert!(server.open("letter", &changed).is_none(), "byte {at}");
        }
        assert!(server.open("letter", &sealed[..sealed.len() - 1]).is_none());
        // Each seal is fresh: the same message twice looks unrelated.
        let again = device
            .sign_and_seal(&server.public(), "letter", b"outbox")
            .unwrap();
        assert_ne!(sealed, again);
    }

    #[test]
    fn a_signature_for_one_recipient_does_not_pass_for_another() {
        let device = DeviceKey::from_seed([4; 32]);
        let server = DeviceKey::from_seed([5; 32]);
        let other = DeviceKey::from_seed([6; 32]);
        // The server re-seals what the device sent it to another device:
        // the signature names the server as recipient, so it does not pass.
        let opened = server
            .open(
                "letter",
                &device
                    .sign_and_seal(&server.public(), "letter", b"x")
                    .unwrap(),
            )
            .unwrap();
        let forwarded = Opened {
            payload: opened.payload,
            signature: opened.signature,
            recipient: other.public(),
            purpose: "letter",
        };
        assert!(!forwarded.signed_by(&device.public()));
    }

    #[test]
    fn a_weak_key_receives_nothing() {
        // The identity point: a small-order key whose shared secret anyone knows.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = PublicKey(identity);
        let device = DeviceKey::from_seed([7; 32]);
        assert!(matches!(
            device.sign_and_seal(&weak, "letter", b"x"),
            Err(SealError::WeakKey)
        ));
    }
}
