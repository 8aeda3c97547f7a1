//! Bearer tokens and recovery codes: random values of which only a SHA-256 hash is stored.

use rand::Rng;
use sha2::{Digest, Sha256};

/// A fresh 256-bit token, as 64 hex characters. Only its hash is ever stored.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

const CODE_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

/// Ten recovery codes of 16 characters from a 31-letter alphabet (≈79 bits each), grouped
/// `xxxx-xxxx-xxxx-xxxx`. High entropy is what makes a plain SHA-256 a safe way to store them.
pub fn new_recovery_codes() -> Vec<String> {
    let mut rng = rand::rng();
    (0..10)
        .map(|_| {
            let chars: Vec<char> = (0..16)
                .map(|_| CODE_ALPHABET[(rng.next_u32() % CODE_ALPHABET.len() as u32) as usize] as char)
                .collect();
            chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("-")
        })
        .collect()
}

/// Recovery codes are compared without dashes, spaces or case, as people type them.
pub fn normalize_recovery_code(input: &str) -> Option<String> {
    let code: String = input.chars().filter(|c| !matches!(c, '-' | ' ')).collect::<String>().to_lowercase();
    (code.len() == 16 && code.bytes().all(|b| CODE_ALPHABET.contains(&b))).then(|| {
        code.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect::<Vec<_>>().join("-")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_stably() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
    }

    #[test]
    fn recovery_codes_normalise() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        let code = &codes[0];
        assert_eq!(normalize_recovery_code(&code.to_uppercase().replace('-', " ")).as_deref(), Some(code.as_str()));
        assert_eq!(normalize_recovery_code("123456"), None);
    }
}
