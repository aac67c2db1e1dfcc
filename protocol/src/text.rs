//! The rules every text field follows (SPEC §1.1, "Text"): what a character is, which
//! characters are refused, and what makes a title or a name visible.
//!
//! - A *character* is a Unicode code point (scalar value); "at most N characters" counts code
//!   points, never graphemes (which change with Unicode versions).
//! - *White space* is the Unicode `White_Space` property (Rust's `char::is_whitespace`), so
//!   U+00A0 and U+3000 count as much as U+0020.
//! - *Control characters* are general category `Cc` (U+0000–U+001F, U+007F–U+009F).
//! - *Bidirectional controls* U+202A–U+202E and U+2066–U+2069 (embeddings, overrides,
//!   isolates) are refused in every text field: they can make a title read differently from
//!   what it is.
//! - A title or a name must hold at least one *visible* code point: one that is not white
//!   space, not a control, not a default-ignorable code point (zero-width characters, fillers,
//!   variation selectors, tags) and not a mark (general category `M`).
//!
//! Pure functions over `&str`; this module imports only the crate's errors.

use crate::error::FieldError;

/// Whether `c` is one of the bidirectional embedding, override or isolate controls.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether `c` has the Unicode `Default_Ignorable_Code_Point` property (the list of SPEC
/// §1.1): zero-width characters, fillers, variation selectors, tags.
pub fn is_default_ignorable(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}'..='\u{1160}' | '\u{17B4}'..='\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// Whether `c` shows as something on its own: not white space, not a control, not default
/// ignorable, not a (combining) mark.
pub fn is_visible(c: char) -> bool {
    !c.is_whitespace()
        && !c.is_control()
        && !is_default_ignorable(c)
        && !unicode_normalization::char::is_combining_mark(c)
}

/// A one-line text that names something (a listing's title, a profile's name): 1 to
/// `max_chars` code points, no white space at either end, no control or bidirectional
/// control characters, and at least one visible code point.
pub fn check_line(field: &'static str, s: &str, max_chars: usize) -> Result<(), FieldError> {
    if s.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if s.chars().count() > max_chars {
        return Err(FieldError::new(
            field,
            format!("longer than {max_chars} characters (code points)"),
        ));
    }
    if s.trim() != s {
        return Err(FieldError::new(
            field,
            "must not start or end with white space (any Unicode White_Space, U+00A0 and U+3000 included)",
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    if s.chars().any(is_bidi_control) {
        return Err(FieldError::new(
            field,
            "must not contain bidirectional controls (U+202A-U+202E, U+2066-U+2069)",
        ));
    }
    if !s.chars().any(is_visible) {
        return Err(FieldError::new(
            field,
            "must contain a visible character (not only zero-width characters or marks)",
        ));
    }
    Ok(())
}

/// Free text (a description, a bio, a note, a comment): at most `max_bytes` of UTF-8, no
/// control characters but those in `allowed`, no bidirectional controls.
pub fn check_free_text(
    field: &'static str,
    s: &str,
    max_bytes: usize,
    allowed: &[char],
) -> Result<(), FieldError> {
    if s.len() > max_bytes {
        return Err(FieldError::new(
            field,
            format!("longer than {max_bytes} bytes"),
        ));
    }
    if s.chars().any(|c| c.is_control() && !allowed.contains(&c)) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    if s.chars().any(is_bidi_control) {
        return Err(FieldError::new(
            field,
            "must not contain bidirectional controls (U+202A-U+202E, U+2066-U+2069)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        for ok in [
            "중고 자전거",
            "🚲",
            "a",
            "Ñandú",
            "x\u{0301}",
            "가\u{200B}나",
        ] {
            check_line("title", ok, 120).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for bad in [
            "",
            " lead",
            "trail ",
            "\u{00A0}nbsp",
            "ideographic\u{3000}",
            "tab\tinside",
            "bell\u{7}",
            "\u{202E}override",
            "iso\u{2066}late",
            "\u{200B}\u{200B}",
            "\u{0301}\u{0302}",
            "\u{3164}",
            "\u{115F}\u{1160}",
        ] {
            assert!(check_line("title", bad, 120).is_err(), "{bad:?}");
        }
        // Code points, not graphemes and not bytes: 120 four-byte characters fit.
        check_line("title", &"😀".repeat(120), 120).expect("120 code points");
        assert!(check_line("title", &"가".repeat(121), 120).is_err());
    }

    #[test]
    fn free_text() {
        check_free_text("desc", "line\n\ttab", 100, &['\n', '\t']).expect("allowed");
        assert!(check_free_text("note", "tab\t", 100, &['\n']).is_err());
        assert!(check_free_text("note", "\u{202D}x", 100, &['\n']).is_err());
        assert!(check_free_text("note", "xx", 1, &['\n']).is_err());
    }
}
