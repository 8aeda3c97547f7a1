//! Text that cannot deceive: no invisible or direction-changing characters, no look-alike mixes of
//! scripts, and no user name in the form of another kind of reference (email, number, id).

/// Unicode's format characters (general category Cf): zero-width spaces and joiners, direction
/// marks, embeddings, overrides and isolates, the byte-order mark, soft hyphen and the like. They
/// show as nothing (or reorder what follows), so `adm\u{200B}in` looks like `admin`.
pub fn is_format_char(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{0600}'..='\u{0605}' | '\u{061C}' | '\u{06DD}' | '\u{070F}' | '\u{0890}'..='\u{0891}'
        | '\u{08E2}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{110BD}' | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0001}'
        | '\u{E0020}'..='\u{E007F}')
}

/// The first format character of `text`, as `U+XXXX`, if it has one.
fn format_char_in(text: &str) -> Option<String> {
    text.chars().find(|&c| is_format_char(c)).map(|c| format!("U+{:04X}", c as u32))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Script {
    Latin,
    Greek,
    Cyrillic,
}

/// The look-alike scripts (a Cyrillic "а" is a Latin "a" to the eye); other letters have none here.
fn script_of(c: char) -> Option<Script> {
    match c {
        'A'..='Z' | 'a'..='z' | '\u{00C0}'..='\u{024F}' | '\u{1E00}'..='\u{1EFF}' => Some(Script::Latin),
        '\u{0370}'..='\u{03FF}' | '\u{1F00}'..='\u{1FFF}' => Some(Script::Greek),
        '\u{0400}'..='\u{052F}' | '\u{1C80}'..='\u{1C8F}' | '\u{2DE0}'..='\u{2DFF}' | '\u{A640}'..='\u{A69F}' => {
            Some(Script::Cyrillic)
        }
        _ => None,
    }
}

/// The first word of `text` that mixes Latin, Greek and Cyrillic letters, if one does.
fn mixed_script_word(text: &str) -> Option<&str> {
    text.split(|c: char| c.is_whitespace() || c == '-' || c == '.').find(|word| {
        let mut scripts = word.chars().filter_map(script_of);
        scripts.next().is_some_and(|first| scripts.any(|s| s != first))
    })
}

/// Display names (and org names): any script, but no format characters and no word that mixes
/// look-alike scripts.
pub fn check_display_text(what: &str, text: &str) -> Result<(), String> {
    if let Some(c) = format_char_in(text) {
        return Err(format!("{what} {text:?} contains the invisible character {c}: type it again without it"));
    }
    if let Some(word) = mixed_script_word(text) {
        return Err(format!("{what} {text:?} mixes Latin, Greek or Cyrillic letters in the word {word:?}: write each word in one script"));
    }
    Ok(())
}

/// Reasons: free text, but nothing invisible or reordering (they are shown in audit views).
pub fn check_reason_text(text: &str) -> Result<(), String> {
    match format_char_in(text) {
        Some(c) => Err(format!("the reason contains the invisible character {c}: type it again without it")),
        None => Ok(()),
    }
}

/// Emails: ASCII only, so no look-alike letter or invisible character can make a second "same" address.
pub fn check_email_text(email: &str) -> Result<(), String> {
    if email.is_ascii() {
        Ok(())
    } else {
        Err(format!("the email {email:?} has characters outside ASCII; write it in plain ASCII (an IDN domain in its xn-- form)"))
    }
}

/// User names are references too: one that looks like an email, a user number or a user id could
/// stand in for (squat) another user's reference. Such a name is refused.
pub fn check_username_form(name: &str) -> Result<(), String> {
    let name = name.trim();
    if name.contains('@') {
        return Err(format!("user name {name:?} may not contain '@': it would read as an email address"));
    }
    let digits = name.strip_prefix('#').unwrap_or(name);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("user name {name:?} may not be all digits: it would read as a user number"));
    }
    if uuid::Uuid::try_parse(name).is_ok() {
        return Err(format!("user name {name:?} may not have the form of a user id"));
    }
    if !name.is_ascii() {
        return Err(format!("user name {name:?} must be plain ASCII"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_deception_is_named() {
        assert!(check_display_text("display name", "Ann\u{200B}").unwrap_err().contains("U+200B"));
        assert!(check_display_text("display name", "Pаypal").unwrap_err().contains("\"Pаypal\""));
        assert!(check_display_text("display name", "Dmitri Дмитрий").is_ok());
        assert!(check_reason_text("lost \u{202E}phone").is_err());
        assert!(check_email_text("аnn@acme.example").is_err());
        for name in ["ann@acme", "2005", "#12", "0b8f2a0e-3c5d-4d6e-8f70-112233445566", "0b8f2a0e3c5d4d6e8f70112233445566"] {
            assert!(check_username_form(name).is_err(), "{name}");
        }
        assert!(check_username_form("ann.2005").is_ok());
    }
}
