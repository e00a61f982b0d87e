//! Message hygiene: what the gateway stores of any text a supervisor or backend sends.
//!
//! A condition message ends up on operators' terminals, so it must not carry terminal control
//! sequences, and it must stay small. Every control character except newline and tab is
//! escaped (C0, DEL and C1, so the 8-bit CSI U+009B too), then the text is cut to at most
//! [`MAX_MESSAGE_BYTES`] on a UTF-8 boundary, the truncation marker included.

use std::fmt::Write;

/// The largest stored message, in bytes, marker included.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Appended to a message that was cut.
pub const TRUNCATION_MARKER: &str = "… [truncated]";

/// Escapes control characters, then bounds the length.
pub fn sanitize(message: &str) -> String {
    if crate::mutants::active("raw-messages") {
        return truncate(message, MAX_MESSAGE_BYTES);
    }
    if crate::mutants::active("no-truncate") {
        return escape_controls(message);
    }
    truncate(&escape_controls(message), MAX_MESSAGE_BYTES)
}

/// `\x1b`-style escapes for C0 (but `\n`, `\t`) and DEL; `\u{9b}`-style for C1.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            '\u{80}'..='\u{9f}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            _ => out.push(c),
        }
    }
    out
}

/// Cuts `text` to at most `max` bytes on a character boundary, marker included.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max.saturating_sub(TRUNCATION_MARKER.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{TRUNCATION_MARKER}", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c0_del_and_c1_are_escaped_newline_and_tab_kept() {
        let raw = "a\x1b[31mred\x07\x7f\u{9b}2J\u{85}\n\tend";
        let clean = sanitize(raw);
        assert_eq!(clean, "a\\x1b[31mred\\x07\\x7f\\u{9b}2J\\u{85}\n\tend");
        assert!(!clean
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t'));
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary_with_the_marker() {
        // 'é' is two bytes: an odd budget must not split it.
        let raw = "é".repeat(5000);
        let clean = sanitize(&raw);
        assert!(clean.len() <= MAX_MESSAGE_BYTES, "{}", clean.len());
        assert!(clean.ends_with(TRUNCATION_MARKER));
        assert!(clean
            .trim_end_matches(TRUNCATION_MARKER)
            .chars()
            .all(|c| c == 'é'));
    }

    #[test]
    fn escaping_counts_toward_the_bound() {
        let clean = sanitize(&"\x1b".repeat(4096));
        assert!(clean.len() <= MAX_MESSAGE_BYTES);
        assert!(clean.starts_with("\\x1b\\x1b"));
    }

    #[test]
    fn short_clean_messages_are_unchanged() {
        assert_eq!(
            sanitize("policy: bad field `inference`"),
            "policy: bad field `inference`"
        );
    }
}
