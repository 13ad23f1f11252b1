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
pub mod demo;
pub mod info;
pub mod parse;
pub mod run;
pub mod table;

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

/// Prints one line for `err` and picks the exit code: a library error or a [`UserError`]
/// anywhere in the chain is the user's input (2); a broken pipe is success (0); anything
/// else is an internal failure (1).
pub fn report(err: &anyhow::Error) -> ExitCode {
    for cause in err.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return ExitCode::SUCCESS;
            }
        }
    }
    let line = err
        .chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    eprintln!("dsconv: error: {}", one_line(&line));
    let is_user = err
        .chain()
        .any(|c| c.is::<UserError>() || c.is::<dsconv::Error>());
    if is_user {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
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
