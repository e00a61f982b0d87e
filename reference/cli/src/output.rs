//! Writing to stdout and stderr without ever panicking.
//!
//! `println!` panics when stdout is a closed pipe (`openshell sandbox list | head -1`); these
//! helpers drop the write error instead, as there is nobody left to tell.

use std::io::Write;

/// Writes `text` to stdout and flushes.
pub fn stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Writes `text` to stderr.
pub fn stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
