//! TOTP per RFC 6238 (SHA-1, 6 digits, 30 s steps) on top of totp-rs, and the QR code drawn as text.

use totp_rs::{Algorithm, Builder, Secret, Totp};
use zeroize::Zeroizing;

pub const DIGITS: u8 = 6;
pub const STEP_SECS: u64 = 30;
const SECRET_LEN: usize = 20;

/// A fresh 160-bit secret.
pub fn new_secret() -> Zeroizing<Vec<u8>> {
    let mut bytes = Zeroizing::new(vec![0u8; SECRET_LEN]);
    rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
    bytes
}

fn totp(secret: &[u8], skew: u16, issuer: Option<&str>, account: &str) -> Totp {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_step_duration(STEP_SECS)
        .with_skew(skew)
        .with_secret(Secret::from(secret.to_vec()))
        .with_issuer(issuer)
        .with_account_name(account)
        // Our secrets are 160 bits; the RFC test vectors' is too. Names are validated without ':'.
        .build_noncompliant()
}

/// The base32 form a person types into an authenticator app.
pub fn base32(secret: &[u8]) -> String {
    Secret::from(secret.to_vec()).to_base32()
}

/// The `otpauth://totp/...` URI an authenticator app scans.
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    totp(secret, 1, Some(issuer), account)
        .to_url()
        .unwrap_or_else(|_| format!("otpauth://totp/{issuer}?secret={}&issuer={issuer}", base32(secret)))
}

/// The code for `time` (Unix seconds).
pub fn code_at(secret: &[u8], time: u64) -> String {
    totp(secret, 0, None, "").generate(time).to_string()
}

/// If `code` is valid at `time` within `skew` steps, the time step it matched. Spaces are ignored;
/// anything but six digits never matches.
pub fn check(secret: &[u8], code: &str, time: u64, skew: u16) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp(secret, skew, None, "").check(&code, time)
}

/// Does this look like a TOTP code (as opposed to a recovery code)?
pub fn looks_like_code(input: &str) -> bool {
    let digits: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    digits.len() == DIGITS as usize && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The QR code of `data`, drawn with Unicode half blocks (two rows a line) and a quiet zone.
pub fn qr_text(data: &str) -> String {
    match qrcode::QrCode::new(data.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
        Err(e) => format!("(cannot draw a QR code: {e}; type the secret instead)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows, seed "12345678901234567890", last six digits.
    #[test]
    fn rfc6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59, "287082"),
            (1111111109, "081804"),
            (1111111111, "050471"),
            (1234567890, "005924"),
            (2000000000, "279037"),
            (20000000000, "353130"),
        ] {
            assert_eq!(code_at(secret, time), code, "at {time}");
            assert_eq!(check(secret, code, time, 1), Some(time / 30));
        }
    }

    #[test]
    fn skew_is_one_step_either_side() {
        let secret = new_secret();
        let now = 1_700_000_000;
        let code = code_at(&secret, now);
        assert!(check(&secret, &code, now + 30, 1).is_some());
        assert!(check(&secret, &code, now - 30, 1).is_some());
        assert!(check(&secret, &code, now + 60, 1).is_none());
        assert!(check(&secret, &code, now + 30, 0).is_none());
        assert!(check(&secret, "12345", now, 1).is_none());
        assert!(check(&secret, "abcdef", now, 1).is_none());
    }

    #[test]
    fn uri_names_issuer_and_account() {
        let secret = new_secret();
        let uri = otpauth_uri(&secret, "mfadmin", "alice");
        assert!(uri.starts_with("otpauth://totp/mfadmin:alice?"), "{uri}");
        assert!(uri.contains(&format!("secret={}", base32(&secret))));
        assert!(qr_text(&uri).lines().count() > 10);
    }
}
