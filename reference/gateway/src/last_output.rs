//! The backend's last output, made fit for an Error message.
//!
//! When a sandbox's top process (the supervisor, or whatever a vendor's image starts) exits
//! before any session or report, its exit code alone says nothing; its last output lines usually
//! say everything ("gateway unreachable", a panic, `exec format error`). They come from the watch
//! bus's kept tail, which every driver feeds through `DriverEvent::Output` (container log,
//! process stderr, a VM's console), so this works the same for any driver.
//!
//! What goes into the message: the last [`LINES`] lines, at most [`BYTES`] bytes, with
//! - any run whose SHA-256 equals the sandbox's token hash replaced by [`REDACTED`] (the gateway
//!   keeps only the hash, so it finds the token by hashing candidate runs);
//! - any run of 32 or more hex digits shortened to its first 12 digits and `…` (container ids,
//!   digests: a long hex run in a read API is what OSC-SEC-004 flags as a possible credential).

use std::sync::Arc;

use openshell_proto::v1::SandboxLogLine;

use crate::auth;

/// Lines of output kept for the message.
pub const LINES: usize = 20;
/// Bytes of output kept for the message.
pub const BYTES: usize = 2048;
/// What a run matching the token becomes.
pub const REDACTED: &str = "<redacted sandbox token>";
/// The shortest hex run that is shortened.
pub const LONG_HEX: usize = 32;
/// How many digits of a long hex run are kept.
const HEX_KEPT: usize = 12;

/// The tail of `lines` for a message: redacted, long hex shortened, bounded; empty when there
/// was no output.
pub fn for_message(lines: &[Arc<SandboxLogLine>], token_hash: &[u8]) -> String {
    let start = lines.len().saturating_sub(LINES);
    let cleaned: Vec<String> = lines[start..]
        .iter()
        .map(|line| shorten_hex(&redact_token(&line.message, token_hash)))
        .collect();
    let text = cleaned.join("\n");
    if text.len() <= BYTES {
        return text;
    }
    let mut cut = text.len() - BYTES;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    format!("…{}", &text[cut..])
}

/// Runs shorter than this are never a token (ours are 64 hex digits), so they are not hashed.
const MIN_TOKEN_CHARS: usize = 16;

/// Characters a token may be made of (hex, base64, base64url, JWT).
fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/')
}

/// Replaces every run of token characters (with or without base64 `=` padding) whose hash is
/// `token_hash`.
pub fn redact_token(text: &str, token_hash: &[u8]) -> String {
    if token_hash.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(token_char) {
        out.push_str(&rest[..start]);
        let run = &rest[start..];
        let len = run.find(|c| !token_char(c)).unwrap_or(run.len());
        let padded = len + run[len..].bytes().take_while(|&b| b == b'=').count();
        let candidates = [&run[..padded], &run[..len]];
        if padded >= MIN_TOKEN_CHARS
            && candidates
                .iter()
                .any(|c| auth::token_matches(c, token_hash))
        {
            out.push_str(REDACTED);
            rest = &run[padded..];
        } else {
            out.push_str(&run[..len]);
            rest = &run[len..];
        }
    }
    out.push_str(rest);
    out
}

/// Shortens every run of [`LONG_HEX`] or more hex digits to its first digits and `…`.
pub fn shorten_hex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_hexdigit()) {
        out.push_str(&rest[..start]);
        let run = &rest[start..];
        let len = run
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(run.len());
        if len >= LONG_HEX {
            out.push_str(&run[..HEX_KEPT]);
            out.push('…');
        } else {
            out.push_str(&run[..len]);
        }
        rest = &run[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(texts: &[&str]) -> Vec<Arc<SandboxLogLine>> {
        texts
            .iter()
            .map(|t| {
                Arc::new(SandboxLogLine {
                    message: t.to_string(),
                    ..Default::default()
                })
            })
            .collect()
    }

    #[test]
    fn the_token_is_redacted_by_its_hash_wherever_it_stands() {
        let token = auth::new_token();
        let hash = auth::hash_token(&token);
        let text = format!("env: OPENSHELL_SANDBOX_TOKEN={token} next\n\"{token}\"");
        let out = for_message(&lines(&[&text]), &hash);
        assert!(!out.contains(&token), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 2, "{out}");
        let b64 = "c2VjcmV0LXRva2Vu==";
        let out = redact_token(&format!("t={b64};"), &auth::hash_token(b64));
        assert_eq!(out, format!("t={REDACTED};"));
    }

    #[test]
    fn long_hex_runs_are_shortened_and_short_ones_kept() {
        let id = "0123456789abcdef".repeat(4);
        let out = shorten_hex(&format!("container {id} exited; uuid 3f2a-11 ok deadbeef"));
        assert_eq!(
            out,
            "container 0123456789ab… exited; uuid 3f2a-11 ok deadbeef"
        );
        assert!(!out
            .split(|c: char| !c.is_ascii_hexdigit())
            .any(|run| run.len() >= LONG_HEX));
    }

    #[test]
    fn the_tail_keeps_the_last_lines_within_the_byte_bound() {
        let many: Vec<String> = (0..100).map(|n| format!("line {n}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let out = for_message(&lines(&refs), &[]);
        assert!(
            out.starts_with("line 80\n") && out.ends_with("line 99"),
            "{out}"
        );
        let wide = "é".repeat(3000);
        let out = for_message(&lines(&[&wide]), &[]);
        assert!(out.len() <= BYTES + '…'.len_utf8(), "{}", out.len());
        assert!(out.ends_with('é'));
    }
}
