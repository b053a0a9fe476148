//! Account tokens: made from the operating system's random numbers, shown
//! once, and stored only as their SHA-256.

use sha2::{Digest, Sha256};

/// Every token starts with this, so that a pasted token is recognizable.
const PREFIX: &str = "fbn_";

/// 32 random bytes, hex: 64 characters after the prefix.
const HEX_LEN: usize = 64;

/// A new token.
pub fn generate() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    let mut token = String::with_capacity(PREFIX.len() + HEX_LEN);
    token.push_str(PREFIX);
    for byte in bytes {
        token.push_str(&format!("{byte:02x}"));
    }
    Ok(token)
}

/// True when `token` has the shape of one this server issues.
pub fn looks_valid(token: &str) -> bool {
    token.strip_prefix(PREFIX).is_some_and(|hex| {
        hex.len() == HEX_LEN && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// What is stored instead of the token.
pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_well_formed_and_hashed() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert!(looks_valid(&a));
        assert!(!looks_valid("fbn_1234"));
        assert!(!looks_valid(&a.replace("fbn_", "xyz_")));
        assert_eq!(hash(&a).len(), 32);
        assert_ne!(hash(&a), hash(&b));
    }
}
