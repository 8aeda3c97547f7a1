//! Cryptography: password hashing, TOTP, sealing secrets at rest, and random tokens.

pub mod password;
pub mod seal;
pub mod token;
pub mod totp;
