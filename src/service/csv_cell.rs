//! Spreadsheet-safe CSV cells: what mfadmin writes cannot run as a formula, and import undoes it exactly.

use std::borrow::Cow;

/// Characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection").
const TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Whether `text`, after any leading single quotes, begins with a formula trigger. Counting the
/// quotes already there is what makes the escape reversible: `'=x` is written `''=x`, read `'=x`.
fn needs_quote(text: &str) -> bool {
    text.trim_start_matches('\'').starts_with(TRIGGERS)
}

/// A cell as mfadmin writes it: prefixed with a single quote when it could start a formula.
pub fn csv_cell(text: &str) -> Cow<'_, str> {
    if needs_quote(text) { Cow::Owned(format!("'{text}")) } else { Cow::Borrowed(text) }
}

/// A cell as import reads it: the quote [`csv_cell`] added is removed, and nothing else is.
pub fn csv_uncell(text: &str) -> &str {
    match text.strip_prefix('\'') {
        Some(rest) if needs_quote(rest) => rest,
        _ => text,
    }
}

/// A whole row through [`csv_cell`].
pub fn csv_row<I, S>(cells: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    cells.into_iter().map(|c| csv_cell(c.as_ref()).into_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_quoted_and_every_cell_comes_back_unchanged() {
        for (plain, written) in [
            ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("'=x", "''=x"),
            ("''-x", "'''-x"),
            ("'plain", "'plain"),
            ("Ann O'Neil", "Ann O'Neil"),
            ("'", "'"),
            ("", ""),
        ] {
            assert_eq!(csv_cell(plain), written, "{plain:?}");
            assert_eq!(csv_uncell(written), plain, "{written:?}");
        }
    }
}
