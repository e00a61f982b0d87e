//! Display hygiene: escape control characters in text that came from a gateway.
//!
//! The reference gateway already escapes stored condition messages, but a vendor's gateway may
//! not, and a reason or message is printed straight to a terminal. So every string the CLI shows
//! passes through [`escape_controls`] again: each C0 control except `\n` and `\t`, DEL and each
//! C1 control (U+0080..U+009F, the 8-bit CSI U+009B included) becomes a visible `\u{..}` escape.
//! Everything else, multi-byte characters included, is kept as it is.

use std::borrow::Cow;
use std::fmt::Write;

/// True for the characters [`escape_controls`] rewrites.
pub fn is_escaped(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// `text` with every C0 (except newline and tab), DEL and C1 control written as `\u{XX}`.
///
/// Borrows when there is nothing to escape.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_escaped(c) {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_colour_sequence_is_shown_not_executed() {
        assert_eq!(escape_controls("\u{1b}[31mred"), "\\u{1b}[31mred");
    }

    #[test]
    fn bell_is_escaped() {
        assert_eq!(escape_controls("ding\u{7}"), "ding\\u{7}");
    }

    #[test]
    fn delete_and_eight_bit_csi_are_escaped() {
        assert_eq!(escape_controls("a\u{7f}b\u{9b}2J"), "a\\u{7f}b\\u{9b}2J");
        assert_eq!(escape_controls("\u{80}\u{9f}"), "\\u{80}\\u{9f}");
    }

    #[test]
    fn newline_and_tab_are_kept() {
        assert_eq!(escape_controls("a\nb\tc"), "a\nb\tc");
    }

    #[test]
    fn multi_byte_characters_are_kept_intact() {
        let text = "héllo → 世界 🦀 \u{a0}";
        assert!(matches!(escape_controls(text), Cow::Borrowed(_)));
        assert_eq!(escape_controls(text), text);
        assert_eq!(escape_controls("🦀\u{1b}🦀"), "🦀\\u{1b}🦀");
    }

    #[test]
    fn nul_and_carriage_return_are_escaped() {
        assert_eq!(escape_controls("a\0b\rc"), "a\\u{0}b\\u{d}c");
    }
}
