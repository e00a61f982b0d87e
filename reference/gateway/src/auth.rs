//! Sandbox credentials.
//!
//! Each sandbox gets its own bearer token: 256 random bits, hex encoded, handed to the driver
//! (and so to the supervisor) once and stored only as a SHA-256 hash, so it survives a gateway
//! restart without being readable from the store. No read API ever returns it.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// The metadata key the supervisor sends its token in.
pub const AUTHORIZATION: &str = "authorization";

/// A fresh token: 32 random bytes as 64 hex digits.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Whether `token` hashes to `stored`, compared in constant time.
pub fn token_matches(token: &str, stored: &[u8]) -> bool {
    let candidate = hash_token(token);
    candidate.len() == stored.len()
        && candidate
            .iter()
            .zip(stored)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The token of `authorization: Bearer <token>` metadata, if present and well formed.
pub fn bearer_token(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    let value = metadata.get(AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then(|| token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_and_distinct() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn only_the_issued_token_matches_its_hash() {
        let token = new_token();
        let stored = hash_token(&token);
        assert!(token_matches(&token, &stored));
        assert!(!token_matches(&new_token(), &stored));
        assert!(!token_matches("", &stored));
    }

    #[test]
    fn bearer_metadata_is_parsed_strictly() {
        let mut md = tonic::metadata::MetadataMap::new();
        assert_eq!(bearer_token(&md), None);
        md.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&md), None);
        md.insert(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&md).as_deref(), Some("abc"));
    }
}
