//! The README's commands work as written: every ```sh block marked `<!-- runnable -->` (or
//! `<!-- runnable exit=N -->`) runs in bash from the repository root, must exit with N (default
//! 0) within a bound, and must print every whole-line `# …` comment it holds (the output the
//! README shows; a trailing `…` means "and more"). The block runs in its own process group,
//! killed afterwards, so a gateway it starts in the background never outlives the test.
//!
//! Needs what the README's main job needs: root and the workspace build (`cargo build --workspace
//! --all-targets`), as ci/test.sh provides.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Far above the ~15 s the slowest marked block (a process-lane run) takes.
const BLOCK_BOUND: Duration = Duration::from_secs(300);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A marked block: where it starts, its exit code, its lines.
#[derive(Debug)]
struct Block {
    line: usize,
    exit: i32,
    script: String,
    expected: Vec<String>,
}

/// The marked blocks of a Markdown text.
fn runnable_blocks(markdown: &str) -> Vec<Block> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(marker) = lines[i]
            .trim()
            .strip_prefix("<!-- runnable")
            .and_then(|m| m.strip_suffix("-->"))
        else {
            i += 1;
            continue;
        };
        let exit = marker
            .split_whitespace()
            .find_map(|w| w.strip_prefix("exit="))
            .map_or(0, |n| n.parse().expect("exit=N"));
        assert_eq!(
            lines.get(i + 1).map(|l| l.trim()),
            Some("```sh"),
            "README line {}: a runnable marker must precede a ```sh block",
            i + 1
        );
        let start = i + 2;
        let end = start
            + lines[start..]
                .iter()
                .position(|l| l.trim() == "```")
                .expect("an unterminated block");
        let body = &lines[start..end];
        blocks.push(Block {
            line: start + 1,
            exit,
            script: body.join("\n"),
            expected: body
                .iter()
                .filter_map(|l| l.trim().strip_prefix("# "))
                .map(|e| e.trim_end_matches('…').trim().to_string())
                .collect(),
        });
        i = end + 1;
    }
    blocks
}

fn run_block(block: &Block) {
    // Output into a file, not a pipe: a background process of the block keeps a pipe open.
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", &block.script])
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let group = child.id();
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(());
        status
    });
    let finished = rx.recv_timeout(BLOCK_BOUND).is_ok();
    // Whatever the block left running (a background gateway) goes with its group.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();
    let status = waiter.join().unwrap().unwrap();
    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
    assert!(
        finished,
        "README block at line {} still running after {BLOCK_BOUND:?}:\n{text}",
        block.line
    );
    assert_eq!(
        status.code(),
        Some(block.exit),
        "README block at line {} (took {:?}):\n{}\n---- output ----\n{text}",
        block.line,
        started.elapsed(),
        block.script
    );
    for expected in &block.expected {
        assert!(
            text.contains(expected.as_str()),
            "README block at line {}: the output lacks {expected:?}:\n{text}",
            block.line
        );
    }
}

#[test]
fn the_readme_marks_its_runnable_blocks_and_parses_them() {
    let blocks = runnable_blocks("x\n<!-- runnable exit=1 -->\n```sh\necho hi\n# hi\n```\n");
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].exit, 1);
    assert_eq!(blocks[0].expected, ["hi"]);
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    assert!(
        runnable_blocks(&readme).len() >= 2,
        "the main job and the by-hand walk-through are marked"
    );
}

#[test]
fn the_readme_runnable_blocks_work_as_written() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    for block in runnable_blocks(&readme) {
        assert!(
            !block.script.contains("sudo"),
            "README line {}: sudo is not installed here, and root needs none",
            block.line
        );
        run_block(&block);
    }
}
