//! `dsconv --help`: names only commands that exist, shows examples, and every command's
//! own `--help` shows one too.

use assert_cmd::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_dsconv"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands listed under "Commands:", without clap's own `help`.
fn commands(top: &str) -> Vec<String> {
    top.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn top_level_help_shows_examples_of_existing_commands() {
    let top = help(&["--help"]);
    let listed = commands(&top);
    assert!(listed.len() >= 3, "{top}");
    assert!(top.contains("Examples:"), "{top}");
    // Every example runs a listed command (the about line once named commands that did
    // not exist: bench, classify, run).
    for line in top
        .lines()
        .filter(|l| l.trim_start().starts_with("dsconv "))
    {
        let command = line.split_whitespace().nth(1).unwrap();
        assert!(
            listed.iter().any(|c| c == command),
            "example {line:?} runs a command that is not listed: {listed:?}"
        );
    }
    let about = top.lines().next().unwrap();
    for missing in ["bench", "classify", "run"] {
        if !listed.iter().any(|c| c == missing) {
            assert!(!about.contains(missing), "about names {missing}: {about}");
        }
    }
}

#[test]
fn every_command_help_shows_an_example() {
    for command in commands(&help(&["--help"])) {
        let text = help(&[&command, "--help"]);
        assert!(text.contains("Example"), "dsconv {command} --help: {text}");
        assert!(
            text.contains(&format!("dsconv {command}")),
            "dsconv {command} --help shows no invocation: {text}"
        );
    }
}

#[test]
fn help_fits_a_100_column_terminal() {
    // clap does not wrap (no wrap_help feature): conv2d's --padding and --padding-mode
    // help were single lines of 222 and 187 columns.
    let mut pages = vec![help(&["--help"])];
    for command in commands(&pages[0]) {
        pages.push(help(&[&command, "--help"]));
    }
    for page in pages {
        for line in page.lines() {
            let width = line.chars().count();
            assert!(width <= 100, "{width} columns: {line}");
        }
    }
}
