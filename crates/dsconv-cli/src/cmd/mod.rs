//! One module per subcommand, plus the error-to-exit-code policy.

/// `print!` to standard output that returns an error instead of panicking when the
/// write fails: a closed pipe (`dsconv demo | head`, reported as success by [`report`])
/// or a full disk (one line, exit 1). Use as `out!(...)?`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout(), $($arg)*)
            .map_err(|e| anyhow::Error::new(e).context("writing to standard output"))
    }};
}

/// `println!` counterpart of [`out!`].
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)
            .map_err(|e| anyhow::Error::new(e).context("writing to standard output"))
    }};
}

pub mod bench;
pub mod classify;
pub mod conv2d;
pub mod cost;
pub mod data;
pub mod demo;
pub mod eval;
pub mod info;
pub mod onnx;
pub mod parse;
pub mod run;
pub mod table;
pub mod train;
mod values;

use std::process::ExitCode;

/// A mistake in what the user gave us (arguments, files): exit code 2.
#[derive(Debug)]
pub struct UserError(pub String);

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// Shorthand: a [`UserError`] as an `anyhow::Error`.
pub fn user_error(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UserError(msg.into()))
}

/// Prints one line for `err` and returns its exit code ([`exit_code`]).
pub fn report(err: &anyhow::Error) -> ExitCode {
    let code = exit_code(err);
    if code != 0 {
        let line = err
            .chain()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(": ");
        eprintln!("dsconv: error: {}", one_line(&line));
    }
    ExitCode::from(code)
}

/// The exit code of a failed command: a broken pipe anywhere in the chain is success (0);
/// a [`UserError`], or a library error about the input
/// ([`dsconv::Error::is_bad_input`]: arguments, shapes, files, checkpoints), is the
/// user's input (2); anything else, including the library's out-of-memory and
/// thread-creation failures, is an internal failure (1).
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let broken_pipe = err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return 0;
    }
    let bad_input = err.chain().any(|c| {
        c.is::<UserError>()
            || c.downcast_ref::<dsconv::Error>()
                .is_some_and(dsconv::Error::is_bad_input)
            || c.downcast_ref::<dsconv_onnx::Error>()
                .is_some_and(dsconv_onnx::Error::is_bad_input)
    });
    if bad_input {
        2
    } else {
        1
    }
}

/// `text` with control characters escaped (`\n`, `\u{1b}`): a message quotes paths and
/// file contents, and must stay one line that cannot drive the terminal.
pub fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// Handles a command-line parsing failure: `--help` and `--version` print in full and
/// succeed; a usage mistake becomes one line on stderr and exit code 2.
pub fn report_usage(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // Printing help can only fail on a closed pipe, which is success too.
            let _ = err.print();
            if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            // clap's first paragraph is the message (a list of missing arguments may
            // follow on indented lines); the usage and tips after it are left out.
            let rendered = err.to_string();
            let paragraph: Vec<&str> = rendered
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let joined = paragraph.join(" ");
            let message = joined.strip_prefix("error: ").unwrap_or(&joined);
            eprintln!("dsconv: error: {} (see --help)", one_line(message));
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_library_classification() {
        let lib = |e: dsconv::Error| exit_code(&anyhow::Error::new(e).context("--threads"));
        assert_eq!(lib(dsconv::Error::param("stride", "must be at least 1")), 2);
        assert_eq!(lib(dsconv::Error::Geometry("kernel too large".into())), 2);
        assert_eq!(lib(dsconv::Error::Overflow("tensor size")), 2);
        assert_eq!(
            lib(dsconv::Error::Io {
                path: "x.npy".into(),
                reason: "No such file or directory".into()
            }),
            2
        );
        assert_eq!(lib(dsconv::Error::Checkpoint("3 blocks".into())), 2);
        assert_eq!(
            lib(dsconv::Error::Threads(
                "Resource temporarily unavailable".into()
            )),
            1
        );
        assert_eq!(
            lib(dsconv::Error::Allocation {
                what: "conv2d output",
                bytes: 1 << 40
            }),
            1
        );
        assert_eq!(exit_code(&user_error("--top must be in 1..=1000")), 2);
        assert_eq!(exit_code(&anyhow::anyhow!("something internal")), 1);
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(exit_code(&anyhow::Error::new(pipe).context("writing")), 0);
    }
}
