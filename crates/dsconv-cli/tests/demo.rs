//! `dsconv demo` end to end. The full demo times MobileNetV1-224 and is meant for release
//! builds; tests run the hidden `--quick` form (a width-0.25, 128x128 MobileNet and a short
//! time budget) so a debug build finishes in seconds. Part 1 is identical in both.

use assert_cmd::Command;
use predicates::prelude::*;

#[test]
fn quick_demo_walks_the_seed_and_compares_mobilenets() {
    Command::cargo_bin("dsconv")
        .unwrap()
        .args(["demo", "--quick"])
        .assert()
        .success()
        // Part 1: each step's shape and count, the right total and the seed's slip.
        .stdout(predicate::str::contains("7x7x3"))
        .stdout(predicate::str::contains("128*3*3*3*5*5 = 86,400"))
        .stdout(predicate::str::contains("3*3*3*1*5*5 = 675"))
        .stdout(predicate::str::contains("128*1*1*3*5*5 = 9,600"))
        .stdout(predicate::str::contains("675 + 9,600 = 10,275"))
        .stdout(predicate::str::contains("5x5x3"))
        .stdout(predicate::str::contains("5x5x128"))
        .stdout(predicate::str::contains("11.9%"))
        .stdout(predicate::str::contains("\"= 9600\""))
        // Part 2: counts from the cost model, measured latencies, the two ratios.
        .stdout(predicate::str::contains("MobileNetV1 128x128, width 0.25"))
        .stdout(predicate::str::contains("mult-adds (MACs)"))
        .stdout(predicate::str::contains("forward latency"))
        .stdout(predicate::str::contains("x theoretical"))
        // Part 3: both networks trained on the digits, with their counts.
        .stdout(predicate::str::contains("Part 3"))
        .stdout(predicate::str::contains("31,370"))
        .stdout(predicate::str::contains("241,898"))
        .stdout(predicate::str::contains("test accuracy"));
}

#[test]
fn quick_demo_fits_a_100_column_terminal() {
    // Two lines were 108 and 118 columns wide and wrapped mid-sentence in a terminal.
    let out = Command::cargo_bin("dsconv")
        .unwrap()
        .args(["demo", "--quick"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for line in text.lines() {
        assert!(
            line.chars().count() <= 100,
            "{} columns: {line}",
            line.chars().count()
        );
    }
}

#[test]
fn demo_help_shows_the_example() {
    Command::cargo_bin("dsconv")
        .unwrap()
        .args(["demo", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("dsconv demo"))
        .stdout(predicate::str::contains("--quick").not());
}
