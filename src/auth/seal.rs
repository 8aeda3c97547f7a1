//! Sealing secrets at rest with XChaCha20-Poly1305 under a key kept in its own file (mode 0600),
//! and keys for message authentication (the audit chain, backups) derived from the same file.

use crate::error::{Error, Result};
use chacha20poly1305::aead::{Aead, Generate, Key, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fs;
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

const HEADER: &str = "mfadmin-key-v1:";
const NONCE_LEN: usize = 24;

/// Seals and opens secrets. Each sealed value is bound to an `aad` (the owning user's id), so a
/// sealed secret copied onto another user's record does not open.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    /// The key file's key, kept to derive the keys of [`Sealer::mac`].
    key: Zeroizing<[u8; 32]>,
}

/// HMAC-SHA256, keyed by [`Sealer::mac`].
pub type MacSha256 = Hmac<Sha256>;

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key>)")
    }
}

impl Sealer {
    /// A sealer with a fresh random key that is not written anywhere (for tests and benchmarks).
    pub fn ephemeral() -> Sealer {
        Sealer::from_key(&Key::<XChaCha20Poly1305>::generate())
    }

    fn from_key(key: &Key<XChaCha20Poly1305>) -> Sealer {
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(key.as_slice());
        Sealer { cipher: XChaCha20Poly1305::new(key), key: bytes }
    }

    /// An HMAC-SHA256 keyed for one `purpose` (such as `"audit-chain"` or `"backup"`) by a key
    /// derived from the key file: whoever can write the store but not read the key file cannot
    /// forge what it authenticates, and a key for one purpose says nothing about another's.
    pub fn mac(&self, purpose: &str) -> MacSha256 {
        let mut derive = <MacSha256 as hmac::KeyInit>::new_from_slice(&self.key[..]).expect("HMAC takes a key of any length");
        derive.update(b"mfadmin mac key v1\0");
        derive.update(purpose.as_bytes());
        let mut derived = Zeroizing::new([0u8; 32]);
        derived.copy_from_slice(&derive.finalize().into_bytes());
        <MacSha256 as hmac::KeyInit>::new_from_slice(&derived[..]).expect("HMAC takes a key of any length")
    }

    /// Create a new key file at `path`, readable only by its owner. Refuses to overwrite one.
    pub fn create_key_file(path: &Path) -> Result<Sealer> {
        let key = Key::<XChaCha20Poly1305>::generate();
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Error::KeyFile(format!("cannot create {}: {e}", parent.display())))?;
        }
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::KeyFile(format!(
                "a key file already exists at {}; it may belong to another store. Move it away or choose another --key-file",
                path.display()
            )),
            _ => Error::KeyFile(format!("cannot create the key file {}: {e}", path.display())),
        })?;
        let text = Zeroizing::new(format!("{HEADER}{}\n", hex::encode(key.as_slice())));
        file.write_all(text.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|e| Error::KeyFile(format!("cannot write the key file {}: {e}", path.display())))?;
        Ok(Sealer::from_key(&key))
    }

    /// Load the key file at `path`.
    pub fn load(path: &Path) -> Result<Sealer> {
        let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::KeyFile(format!(
                "the key file {} is missing. The store's TOTP secrets cannot be opened without it: \
                 restore it from your backup, or point --key-file (MFADMIN_KEY_FILE) at it",
                path.display()
            )),
            _ => Error::KeyFile(format!("cannot read the key file {}: {e}", path.display())),
        })?);
        let hex_key = text
            .trim()
            .strip_prefix(HEADER)
            .ok_or_else(|| Error::KeyFile(format!("{} is not an mfadmin key file", path.display())))?;
        let bytes = Zeroizing::new(
            hex::decode(hex_key)
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| Error::KeyFile(format!("the key file {} is damaged", path.display())))?,
        );
        let key = Key::<XChaCha20Poly1305>::try_from(bytes.as_slice())
            .map_err(|_| Error::KeyFile(format!("the key file {} is damaged", path.display())))?;
        Ok(Sealer::from_key(&key))
    }

    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce = XNonce::generate();
        let ciphertext = self
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad })
            .expect("XChaCha20-Poly1305 encryption of a small buffer cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Open a sealed value. Fails, never returns garbage, when the key or the aad is wrong.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN {
            return Err(Error::Corrupt("a sealed secret is too short".into()));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| Error::Corrupt("a sealed secret has a bad nonce".into()))?;
        self.cipher.decrypt(&nonce, Payload { msg: ciphertext, aad }).map(Zeroizing::new).map_err(|_| {
            Error::KeyFile("a sealed secret does not open with this key file: the key file does not belong to this store".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_wrong_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let sealer = Sealer::create_key_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "created with mode 0600");
        }
        let sealed = sealer.seal(b"JBSWY3DPEHPK3PXP", b"user-1");
        assert!(!sealed.windows(16).any(|w| w == b"JBSWY3DPEHPK3PXP"));
        let loaded = Sealer::load(&path).unwrap();
        assert_eq!(&loaded.open(&sealed, b"user-1").unwrap()[..], b"JBSWY3DPEHPK3PXP");
        assert!(loaded.open(&sealed, b"user-2").is_err(), "bound to its owner");
        let other = Sealer::ephemeral();
        let err = other.open(&sealed, b"user-1").unwrap_err().to_string();
        assert!(err.contains("does not belong to this store"), "{err}");
    }

    #[test]
    fn mac_keys_follow_the_key_file_and_the_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let tag = |s: &Sealer, purpose: &str| s.mac(purpose).chain_update(b"event").finalize().into_bytes();
        let created = Sealer::create_key_file(&path).unwrap();
        let loaded = Sealer::load(&path).unwrap();
        assert_eq!(tag(&created, "audit-chain"), tag(&loaded, "audit-chain"), "the same key file gives the same key");
        assert_ne!(tag(&loaded, "audit-chain"), tag(&loaded, "backup"), "each purpose has its own key");
        assert_ne!(tag(&loaded, "audit-chain"), tag(&Sealer::ephemeral(), "audit-chain"), "another key file, another key");
    }

    #[test]
    fn missing_damaged_and_existing_key_files_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        assert!(Sealer::load(&path).unwrap_err().to_string().contains("is missing"));
        fs::write(&path, "hello").unwrap();
        assert!(Sealer::load(&path).unwrap_err().to_string().contains("not an mfadmin key file"));
        fs::write(&path, format!("{HEADER}abcd")).unwrap();
        assert!(Sealer::load(&path).unwrap_err().to_string().contains("damaged"));
        assert!(Sealer::create_key_file(&path).unwrap_err().to_string().contains("already exists"));
    }
}
