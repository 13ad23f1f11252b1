//! Standard output that goes away: `dsconv demo | head -1` is a normal thing to type and
//! must end quietly with success; a stdout that cannot be written (a full disk) is one
//! error line, not a panic. Both panicked ("failed printing to stdout") before.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn dsconv() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dsconv"))
}

#[test]
fn closed_pipe_is_a_quiet_success() {
    // The demo prints part 1, then spends time on part 2: by then the reader is gone.
    let mut child = dsconv()
        .args(["demo", "--quick"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("1. "), "{first:?}");
    // The reader (and with it the pipe) was dropped above.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "");
}

#[cfg(unix)]
#[test]
fn unwritable_stdout_is_one_line_and_exit_1() {
    if !std::path::Path::new("/dev/full").exists() {
        return;
    }
    for args in [
        &[
            "cost",
            "--input",
            "7x7x3",
            "--out-channels",
            "8",
            "--kernel",
            "3",
        ][..],
        &["cost", "--model", "mobilenet-v1", "--json"][..],
    ] {
        // Opened for writing only: never created or truncated.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = dsconv().args(args).stdout(full).output().unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("dsconv: error: writing to standard output"),
            "{stderr}"
        );
    }
}
