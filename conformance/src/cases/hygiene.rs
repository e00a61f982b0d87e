//! Message hygiene (OSC-HYG-001/002), through the rogue probe.
//!
//! The `rogue-hygiene` fixture's entrypoint is `openshell-probe rogue hygiene`: with its own
//! token it reports one startup error (stage OTHER) whose message is about 10 KiB of text laced
//! with ESC sequences, BEL, DEL, NUL, the 8-bit CSI (U+009B) and multi-byte characters. The stored
//! message must have no raw control character left but newline and tab, keep the text (escaped,
//! not dropped), and be at most 4096 bytes.

use openshell_proto::v1::SandboxPhase as Phase;
use openshell_proto::ReadyReason;

use crate::cases::fixture::observed;
use crate::check::{ensure, fail, CaseResult};
use crate::harness::{status_text, CreateOpts, Harness};
use crate::spec::Req;

/// The first raw control character (other than `\n` and `\t`) in `s`: C0, DEL or C1.
pub fn raw_control(s: &str) -> Option<(usize, char)> {
    s.char_indices().find(|(_, c)| {
        let u = *c as u32;
        (*c != '\n' && *c != '\t' && u < 0x20) || u == 0x7f || (0x80..=0x9f).contains(&u)
    })
}

/// OSC-HYG-001/002.
pub async fn hostile_message(h: Harness) -> CaseResult {
    let rogue = h
        .create("hyg", "rogue-hygiene", CreateOpts::default(), Req::HYG_001)
        .await?;
    let last = h.wait_not_ready(&rogue, Req::HYG_001).await?;
    // Judge the message as first stored: the first Error the watch saw. A record changed later
    // is OSC-ERR-003's business, not this requirement's.
    let last = h
        .journal()
        .history()
        .into_iter()
        .find(|s| s.name == rogue.name && s.phase == Phase::Error)
        .unwrap_or(last);
    ensure(
        last.is(Phase::Error, ReadyReason::SupervisorError),
        Req::HYG_001,
        "the rogue's report to be stored (Error / SupervisorError)",
        || observed(&last),
    )?;
    h.get(&rogue.name).await.map_err(|s| {
        fail(
            Req::HYG_002,
            "GetSandbox to return a valid UTF-8 message",
            status_text(&s),
        )
    })?;
    let message = last.message();
    if let Some((at, c)) = raw_control(message) {
        return Err(fail(
            Req::HYG_001,
            "no raw control character but \\n and \\t in the stored message",
            format!("U+{:04X} at byte {at}", c as u32),
        ));
    }
    ensure(
        message.contains("[31m") && message.contains("bell") && message.contains("csi"),
        Req::HYG_001,
        "the hostile text kept, escaped (e.g. `[31m`, `bell`, `csi` still there)",
        || format!("{:?}", message.chars().take(200).collect::<String>()),
    )?;
    ensure(
        message.len() <= 4096,
        Req::HYG_002,
        "a stored message of at most 4096 bytes",
        || format!("{} bytes", message.len()),
    )?;
    ensure(
        message.len() >= 1024,
        Req::HYG_002,
        "the message cut near 4096 bytes, not dropped",
        || format!("{} bytes", message.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c0_del_and_c1_are_raw_controls_but_newline_and_tab_are_not() {
        assert_eq!(raw_control("a\x1b[31m"), Some((1, '\x1b')));
        assert_eq!(raw_control("x\u{9b}2J"), Some((1, '\u{9b}')));
        assert_eq!(raw_control("\x7f"), Some((0, '\x7f')));
        assert_eq!(raw_control("line\n\tindent é€"), None);
        assert_eq!(raw_control("\\x1b[31m \\u{9b}"), None);
    }
}
