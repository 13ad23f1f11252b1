//! `dsconv conv2d` end to end: the binary's results against `dsconv::reference` for several
//! geometries in both layouts, and every kind of bad input: exit code 2, exactly one
//! `dsconv: error:` line on stderr, no panic, and no output (or temporary) file left.

use assert_cmd::Command;
use dsconv::npy::{read_npy, write_npy};
use dsconv::rng::SplitMix64;
use dsconv::{Conv2dParams, Layout, Padding, PaddingMode, Tensor};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

fn dsconv() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dsconv"))
}

/// Writes an f32 array to `dir/name` and returns its path as a string.
fn save(dir: &Path, name: &str, shape: &[usize], data: &[f32]) -> String {
    let path = dir.join(name);
    write_npy(&path, shape, data).unwrap();
    path.to_str().unwrap().to_string()
}

/// Writes raw bytes to `dir/name`.
fn save_bytes(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------
// Correct results

/// One convolution: logical NCHW geometry, params, and the same options as CLI flags.
struct Case {
    name: &'static str,
    input: [usize; 4],
    weight: [usize; 4],
    bias: bool,
    params: Conv2dParams,
    flags: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    let p = Conv2dParams::default;
    vec![
        Case {
            name: "standard 3x3 stride 2 pad 1 with bias",
            input: [2, 3, 9, 8],
            weight: [5, 3, 3, 3],
            bias: true,
            params: p().with_stride(2).with_padding(Padding::symmetric(1)),
            flags: &["--stride", "2", "--padding", "1"],
        },
        Case {
            name: "depthwise x2 same stride 2 dilation 2 reflect",
            input: [1, 4, 11, 10],
            weight: [8, 1, 3, 3],
            bias: true,
            params: Conv2dParams {
                stride: [2, 2],
                dilation: [2, 2],
                padding: Padding::Same,
                padding_mode: PaddingMode::Reflect,
                groups: 4,
            },
            flags: &[
                "--stride",
                "2",
                "--dilation",
                "2",
                "--padding",
                "same",
                "--padding-mode",
                "reflect",
                "--groups",
                "4",
            ],
        },
        Case {
            name: "grouped asymmetric replicate per-axis stride and dilation",
            input: [1, 6, 7, 9],
            weight: [4, 3, 2, 3],
            bias: false,
            params: Conv2dParams {
                stride: [1, 2],
                dilation: [2, 1],
                padding: Padding::asymmetric(1, 0, 2, 1),
                padding_mode: PaddingMode::Replicate,
                groups: 2,
            },
            flags: &[
                "--stride",
                "1,2",
                "--dilation",
                "2,1",
                "--padding",
                "1,0,2,1",
                "--padding-mode",
                "replicate",
                "--groups",
                "2",
            ],
        },
        Case {
            name: "circular 5x5 per-axis padding",
            input: [1, 2, 6, 5],
            weight: [3, 2, 5, 5],
            bias: true,
            params: Conv2dParams::default()
                .with_padding(Padding::per_axis(2, 1))
                .with_padding_mode(PaddingMode::Circular),
            flags: &["--padding", "2,1", "--padding-mode", "circular"],
        },
        Case {
            name: "pointwise valid",
            input: [3, 17, 4, 5],
            weight: [19, 17, 1, 1],
            bias: true,
            params: p(),
            flags: &["--padding", "valid"],
        },
    ]
}

fn check_case(case: &Case, layout: Layout, threads: &str) {
    let dir = TempDir::new().unwrap();
    let mut rng = SplitMix64::new(0x5eed ^ case.input.iter().sum::<usize>() as u64);
    let x = Tensor::from_fn(case.input, Layout::Nchw, |_, _, _, _| {
        rng.uniform(-1.0, 1.0)
    })
    .unwrap()
    .to_layout(layout);
    let w = Tensor::from_nchw(
        rng.vec(case.weight.iter().product(), -1.0, 1.0),
        case.weight,
    )
    .unwrap();
    let b = case.bias.then(|| rng.vec(case.weight[0], -1.0, 1.0));
    let expected = dsconv::reference::conv2d(&x, &w, b.as_deref(), &case.params).unwrap();

    let xp = save(dir.path(), "x.npy", &x.dims(), x.data());
    let wp = save(dir.path(), "w.npy", &w.dims(), w.data());
    let yp = dir.path().join("y.npy");
    let mut cmd = dsconv();
    cmd.args(["conv2d", "--input", &xp, "--weight", &wp, "--output"])
        .arg(&yp)
        .args(["--layout", layout.name(), "--threads", threads])
        .args(case.flags);
    if let Some(b) = &b {
        cmd.args(["--bias", &save(dir.path(), "b.npy", &[b.len()], b)]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{} ({layout:?}): {}",
        case.name,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty() && out.stdout.is_empty());

    let y = read_npy(&yp).unwrap();
    assert_eq!(y.shape, expected.dims(), "{} ({layout:?})", case.name);
    let got = Tensor::new(y.data, expected.dims(), layout).unwrap();
    let err = got.max_abs_diff(&expected).unwrap();
    let tol = 1e-5 * expected.max_abs();
    assert!(
        err <= tol,
        "{} ({layout:?}): max error {err} > {tol}",
        case.name
    );
    // No temporary files next to the output.
    let mut want = vec!["w.npy", "x.npy", "y.npy"];
    if b.is_some() {
        want.insert(0, "b.npy");
    }
    assert_eq!(names_in(dir.path()), want);
}

#[test]
fn matches_reference_nchw() {
    for case in cases() {
        check_case(&case, Layout::Nchw, "1");
    }
}

#[test]
fn matches_reference_nhwc() {
    for case in cases() {
        check_case(&case, Layout::Nhwc, "2");
    }
}

#[test]
fn output_is_identical_for_any_thread_count() {
    let dir = TempDir::new().unwrap();
    let mut rng = SplitMix64::new(7);
    let xp = save(
        dir.path(),
        "x.npy",
        &[1, 16, 40, 40],
        &rng.vec(16 * 1600, -1.0, 1.0),
    );
    let wp = save(
        dir.path(),
        "w.npy",
        &[32, 16, 3, 3],
        &rng.vec(32 * 16 * 9, -1.0, 1.0),
    );
    let mut outputs = Vec::new();
    for threads in ["1", "2", "3"] {
        let yp = dir.path().join(format!("y{threads}.npy"));
        dsconv()
            .args(["conv2d", "--input", &xp, "--weight", &wp, "--padding", "1"])
            .args(["--threads", threads, "--output"])
            .arg(&yp)
            .assert()
            .success();
        outputs.push(std::fs::read(&yp).unwrap());
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
}

#[test]
fn reads_float64_inputs() {
    // A rank-4 float64 input, written by hand as NumPy would: header + f64 data.
    let dir = TempDir::new().unwrap();
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 2, 2), }";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    bytes.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(total - 1, b' ');
    bytes.push(b'\n');
    for v in [1.0f64, 2.0, 3.0, 4.0] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let xp = save_bytes(dir.path(), "x.npy", &bytes);
    let wp = save(
        dir.path(),
        "w.npy",
        &[1, 1, 2, 2],
        &[1.0, 10.0, 100.0, 1000.0],
    );
    let yp = dir.path().join("y.npy");
    dsconv()
        .args(["conv2d", "--input", &xp, "--weight", &wp, "--output"])
        .arg(&yp)
        .assert()
        .success();
    let y = read_npy(&yp).unwrap();
    assert_eq!((y.shape, y.data), (vec![1, 1, 1, 1], vec![4321.0]));
}

#[test]
fn help_is_complete() {
    let out = dsconv().args(["conv2d", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--input",
        "--weight",
        "--bias",
        "--stride",
        "--padding <P|PH,PW|T,B,L,R|same|valid>",
        "--dilation",
        "--groups",
        "--padding-mode",
        "--layout",
        "--threads",
        "--output",
        "Examples:",
        "dsconv conv2d --input x.npy",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}");
    }
}

#[test]
fn help_python_snippet_is_one_line_of_python() {
    // The snippet is pasted into a shell: inside double quotes bash removes each
    // backslash-newline, and what is left must be one line, or Python sees the next line's
    // indentation and fails (it did: "IndentationError: unexpected indent").
    let out = dsconv().args(["conv2d", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let start = help.find("python -c \"").expect("a python -c example");
    let rest = &help[start + "python -c \"".len()..];
    let program = &rest[..rest.find('"').expect("closing quote")];
    let as_bash_reads_it = program.replace("\\\n", "");
    assert!(
        !as_bash_reads_it.contains('\n'),
        "multi-line python -c program: {program:?}"
    );
    for file in ["x.npy", "w.npy", "b.npy"] {
        assert!(
            as_bash_reads_it.contains(file),
            "snippet does not make {file}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Bad input

/// A directory with a valid input x.npy [1, 3, 7, 7], weight w.npy [8, 3, 3, 3] and bias
/// b.npy [8], plus whatever a test adds.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = TempDir::new().unwrap();
        let mut rng = SplitMix64::new(11);
        save(dir.path(), "x.npy", &[1, 3, 7, 7], &rng.vec(147, -1.0, 1.0));
        save(dir.path(), "w.npy", &[8, 3, 3, 3], &rng.vec(216, -1.0, 1.0));
        save(dir.path(), "b.npy", &[8], &rng.vec(8, -1.0, 1.0));
        Fixture { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    fn save(&self, name: &str, shape: &[usize], n: usize) -> String {
        save(self.dir.path(), name, shape, &vec![0.5; n])
    }

    fn save_bytes(&self, name: &str, bytes: &[u8]) -> String {
        save_bytes(self.dir.path(), name, bytes)
    }

    fn output(&self) -> PathBuf {
        self.dir.path().join("y.npy")
    }

    /// Runs `dsconv conv2d` with `input`, `weight`, the output y.npy and `extra`, and
    /// checks the failure contract; returns the error line.
    fn fails(&self, input: &str, weight: &str, extra: &[&str]) -> String {
        let before = names_in(self.dir.path());
        let out = dsconv()
            .args(["conv2d", "--input", input, "--weight", weight, "--output"])
            .arg(self.output())
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        let context = format!("input {input}, weight {weight}, {extra:?}: stderr {stderr:?}");
        assert_eq!(out.status.code(), Some(2), "{context}");
        assert!(out.stdout.is_empty(), "{context}");
        assert_eq!(stderr.lines().count(), 1, "{context}");
        assert!(stderr.starts_with("dsconv: error: "), "{context}");
        assert!(stderr.ends_with('\n'), "{context}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
            "{context}"
        );
        assert!(!self.output().exists(), "{context}: output left behind");
        assert_eq!(names_in(self.dir.path()), before, "{context}: stray files");
        stderr.trim_end().to_string()
    }

    /// The default input and weight with extra flags.
    fn fails_with(&self, extra: &[&str]) -> String {
        self.fails(&self.path("x.npy"), &self.path("w.npy"), extra)
    }
}

fn assert_mentions(line: &str, words: &[&str]) {
    for w in words {
        assert!(line.contains(w), "{line:?} does not mention {w:?}");
    }
}

#[test]
fn wrong_ranks() {
    let f = Fixture::new();
    let x3 = f.save("x3.npy", &[3, 7, 7], 147);
    let w3 = f.save("w3.npy", &[8, 3, 9], 216);
    let b2 = f.save("b2.npy", &[8, 1], 8);
    let x0 = f.save("x0.npy", &[], 1);
    let line = f.fails(&x3, &f.path("w.npy"), &[]);
    assert_mentions(&line, &["--input", "rank-4", "[3, 7, 7]"]);
    let line = f.fails(&x0, &f.path("w.npy"), &[]);
    assert_mentions(&line, &["--input", "rank-4", "[]"]);
    let line = f.fails(&f.path("x.npy"), &w3, &[]);
    assert_mentions(&line, &["--weight", "rank-4"]);
    let line = f.fails_with(&["--bias", &b2]);
    assert_mentions(&line, &["--bias", "rank-1", "[8, 1]"]);
}

#[test]
fn empty_dimensions() {
    let f = Fixture::new();
    let x = f.save("x0.npy", &[1, 3, 0, 7], 0);
    assert_mentions(
        &f.fails(&x, &f.path("w.npy"), &[]),
        &["input", "at least 1"],
    );
    let w = f.save("w0.npy", &[0, 3, 3, 3], 0);
    assert_mentions(
        &f.fails(&f.path("x.npy"), &w, &[]),
        &["weight", "at least 1"],
    );
}

#[test]
fn channels_not_matching_weight() {
    let f = Fixture::new();
    let x4 = f.save("x4.npy", &[1, 4, 7, 7], 196);
    assert_mentions(
        &f.fails(&x4, &f.path("w.npy"), &[]),
        &["3 channels", "got 4"],
    );
    // The same input read as NHWC has 7 channels.
    assert_mentions(
        &f.fails_with(&["--layout", "nhwc"]),
        &["3 channels", "got 7"],
    );
}

#[test]
fn groups_not_dividing_channels() {
    let f = Fixture::new();
    // 3 input channels, 2 groups: C_in / groups is not an integer.
    let w = f.save("wg.npy", &[4, 1, 3, 3], 36);
    assert_mentions(
        &f.fails(&f.path("x.npy"), &w, &["--groups", "2"]),
        &["groups", "2", "3 input channels"],
    );
    // 5 output channels, groups 3 (input has 3 channels): C_out / groups is not an integer.
    let w = f.save("wo.npy", &[5, 1, 3, 3], 45);
    assert_mentions(
        &f.fails(&f.path("x.npy"), &w, &["--groups", "3"]),
        &["groups", "5 output channels"],
    );
    assert_mentions(&f.fails_with(&["--groups", "0"]), &["groups"]);
    assert_mentions(
        &f.fails_with(&["--groups", "-1"]),
        &["--groups", "negative"],
    );
    assert_mentions(&f.fails_with(&["--groups", "two"]), &["--groups", "'two'"]);
}

#[test]
fn zero_stride_or_dilation() {
    let f = Fixture::new();
    assert_mentions(&f.fails_with(&["--stride", "0"]), &["stride"]);
    assert_mentions(&f.fails_with(&["--stride", "1,0"]), &["stride"]);
    assert_mentions(&f.fails_with(&["--dilation", "0"]), &["dilation"]);
    assert_mentions(&f.fails_with(&["--dilation", "0,2"]), &["dilation"]);
    assert_mentions(
        &f.fails_with(&["--stride", "1,2,3"]),
        &["--stride", "3 values"],
    );
    assert_mentions(&f.fails_with(&["--stride", "x"]), &["--stride", "'x'"]);
    assert_mentions(
        &f.fails_with(&["--dilation", "-2"]),
        &["--dilation", "negative"],
    );
}

#[test]
fn invalid_counts_name_their_option() {
    // Before: "invalid groups: must be at least 1", and a bad --threads was noticed only
    // after every file had been read.
    let f = Fixture::new();
    assert_mentions(
        &f.fails_with(&["--groups", "0"]),
        &["--groups", "at least 1"],
    );
    assert_mentions(
        &f.fails_with(&["--stride", "0,1"]),
        &["--stride", "at least 1"],
    );
    assert_mentions(
        &f.fails_with(&["--dilation", "0,1"]),
        &["--dilation", "at least 1"],
    );
    assert_mentions(
        &f.fails_with(&["--threads", "100000"]),
        &["--threads", "1024"],
    );
    let line = f.fails(
        &f.path("missing.npy"),
        &f.path("w.npy"),
        &["--threads", "100000"],
    );
    assert_mentions(&line, &["--threads"]);
    assert_mentions(
        &f.fails_with(&["--threads", "-1"]),
        &["--threads", "negative"],
    );
}

#[test]
fn negative_or_unparsable_padding() {
    let f = Fixture::new();
    for (padding, words) in [
        ("-1", &["--padding", "'-1' is negative"][..]),
        ("1,-1", &["--padding", "'-1' is negative"]),
        ("0,0,0,-3", &["--padding", "'-3' is negative"]),
        ("abc", &["--padding", "'abc'"]),
        ("1,2,3", &["--padding", "3 values"]),
        ("1.5", &["--padding", "'1.5'"]),
        ("", &["--padding", "empty"]),
    ] {
        assert_mentions(&f.fails_with(&["--padding", padding]), words);
    }
    assert_mentions(
        &f.fails_with(&["--padding-mode", "mirror"]),
        &["--padding-mode", "'mirror'"],
    );
    assert_mentions(&f.fails_with(&["--layout", "chw"]), &["--layout", "'chw'"]);
}

#[test]
fn kernel_larger_than_padded_input() {
    let f = Fixture::new();
    let x = f.save("small.npy", &[1, 3, 2, 7], 42);
    assert_mentions(
        &f.fails(&x, &f.path("w.npy"), &[]),
        &["kernel height extent 3", "padded input height 2"],
    );
    // Dilation makes the 3x3 kernel span 7 rows: one too many for 5 + 0 + 1.
    let x = f.save("x5.npy", &[1, 3, 5, 7], 105);
    assert_mentions(
        &f.fails(
            &x,
            &f.path("w.npy"),
            &["--dilation", "3", "--padding", "0,1,0,0"],
        ),
        &["extent 7", "padded input height 6"],
    );
}

#[test]
fn padding_too_large_for_the_mode() {
    let f = Fixture::new();
    assert_mentions(
        &f.fails_with(&["--padding", "7", "--padding-mode", "reflect"]),
        &["reflect padding", "smaller than the input"],
    );
    assert_mentions(
        &f.fails_with(&["--padding", "0,0,7,0", "--padding-mode", "reflect"]),
        &["reflect padding"],
    );
    assert_mentions(
        &f.fails_with(&["--padding", "8", "--padding-mode", "circular"]),
        &["circular padding"],
    );
}

#[test]
fn bias_of_wrong_length() {
    let f = Fixture::new();
    let b = f.save("b7.npy", &[7], 7);
    assert_mentions(
        &f.fails_with(&["--bias", &b]),
        &["bias", "8 elements", "7 elements"],
    );
}

#[test]
fn absurd_output_size() {
    let f = Fixture::new();
    assert_mentions(
        &f.fails_with(&["--padding", "100000000"]),
        &["output", "GiB"],
    );
    assert_mentions(
        &f.fails_with(&["--padding", "18446744073709551615"]),
        &["overflow"],
    );
}

#[test]
fn output_that_is_an_input_file() {
    // Each of --input, --weight, --bias given again as --output (also through another
    // spelling of the path): refused, and the file is left as it was.
    let f = Fixture::new();
    for (option, name) in [
        ("--input", "x.npy"),
        ("--weight", "w.npy"),
        ("--bias", "b.npy"),
    ] {
        let before = std::fs::read(f.path(name)).unwrap();
        let other_spelling = f.dir.path().join(".").join(name);
        let out = dsconv()
            .args([
                "conv2d",
                "--input",
                &f.path("x.npy"),
                "--weight",
                &f.path("w.npy"),
            ])
            .args(["--bias", &f.path("b.npy"), "--output"])
            .arg(&other_spelling)
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{option}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert_mentions(
            &stderr,
            &["dsconv: error: --output", "same file as", option],
        );
        assert_eq!(std::fs::read(f.path(name)).unwrap(), before, "{option}");
        assert_eq!(names_in(f.dir.path()), ["b.npy", "w.npy", "x.npy"]);
    }
}

#[test]
fn output_under_a_file() {
    // "--output x.npy/y.npy" said "directory x.npy does not exist"; it exists, as a file.
    let f = Fixture::new();
    let out = dsconv()
        .args([
            "conv2d",
            "--input",
            &f.path("x.npy"),
            "--weight",
            &f.path("w.npy"),
        ])
        .arg("--output")
        .arg(f.dir.path().join("x.npy").join("y.npy"))
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_mentions(&stderr, &["--output", "x.npy is not a directory"]);
    assert_eq!(names_in(f.dir.path()), ["b.npy", "w.npy", "x.npy"]);
}

#[test]
fn output_that_is_a_directory() {
    let f = Fixture::new();
    let out = dsconv()
        .args([
            "conv2d",
            "--input",
            &f.path("x.npy"),
            "--weight",
            &f.path("w.npy"),
        ])
        .arg("--output")
        .arg(f.dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_mentions(&stderr, &["dsconv: error: --output", "is a directory"]);
    assert_eq!(names_in(f.dir.path()), ["b.npy", "w.npy", "x.npy"]);
}

#[cfg(unix)]
#[test]
fn output_to_a_device() {
    // /dev/null is written in place (useful for timing), never replaced by a file; a
    // device that fails to write (/dev/full) is exit 2 with one line.
    use std::os::unix::fs::FileTypeExt;
    let f = Fixture::new();
    let run = |output: &str| {
        dsconv()
            .args([
                "conv2d",
                "--input",
                &f.path("x.npy"),
                "--weight",
                &f.path("w.npy"),
            ])
            .args(["--output", output])
            .output()
            .unwrap()
    };
    let out = run("/dev/null");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let null = std::fs::metadata("/dev/null").unwrap();
    assert!(null.file_type().is_char_device());
    // /dev/stdout into a pipe: the array arrives on stdout.
    let out = run("/dev/stdout");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let y = dsconv::npy::read_npy_bytes(&out.stdout, "stdout").unwrap();
    assert_eq!(y.shape, [1, 8, 5, 5]);
    if Path::new("/dev/full").exists() {
        let out = run("/dev/full");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert_mentions(&stderr, &["dsconv: error: --output", "/dev/full"]);
        let full = std::fs::metadata("/dev/full").unwrap();
        assert!(full.file_type().is_char_device());
    }
    assert_eq!(names_in(f.dir.path()), ["b.npy", "w.npy", "x.npy"]);
}

#[test]
fn padding_beyond_the_address_space() {
    // Fits usize, not isize: input coordinates would overflow (a panic in debug builds).
    let f = Fixture::new();
    let half = "9223372036854775808"; // 2^63
    let padding = format!("{half},0,0,0");
    assert_mentions(
        &f.fails_with(&["--padding", &padding, "--stride", half]),
        &["overflow", "padded input size"],
    );
}

/// A version 1.0 .npy with `header` (padded like NumPy's) followed by `data`.
fn npy_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(total - 1, b' ');
    bytes.push(b'\n');
    bytes.extend_from_slice(data);
    bytes
}

#[test]
fn corrupt_npy_files() {
    let f = Fixture::new();
    let good = std::fs::read(f.path("x.npy")).unwrap();
    let shape = |s: &str| format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {s}, }}");
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("text.npy", b"just some text\n".to_vec(), &["magic"]),
        ("empty.npy", Vec::new(), &["magic"]),
        ("preamble.npy", good[..9].to_vec(), &["truncated"]),
        ("header.npy", good[..60].to_vec(), &["truncated header"]),
        (
            "data.npy",
            good[..good.len() - 4].to_vec(),
            &["truncated data"],
        ),
        (
            "trailing.npy",
            [&good[..], &[0u8; 4][..]].concat(),
            &["unexpected bytes"],
        ),
        (
            "headerlen.npy",
            {
                let mut b = good.clone();
                b[8..10].copy_from_slice(&u16::MAX.to_le_bytes());
                b
            },
            &["truncated header"],
        ),
        (
            "v2limit.npy",
            {
                let mut b = b"\x93NUMPY\x02\x00".to_vec();
                b.extend_from_slice(&u32::MAX.to_le_bytes());
                b
            },
            &["limit"],
        ),
        (
            "dict.npy",
            npy_bytes("{'descr': '<f4', 'fortran_order': False", &[]),
            &["bad .npy header"],
        ),
        (
            "absurd.npy",
            npy_bytes(&shape("(100000, 100000, 100000, 100000)"), &[0; 16]),
            &["too many elements"],
        ),
        (
            "huge.npy",
            npy_bytes(&shape("(1000000, 1000000, 1000, 3)"), &[0; 16]),
            &["truncated data", "needs 12000000000000000 bytes"],
        ),
        (
            "negative.npy",
            npy_bytes(&shape("(1, -3, 7, 7)"), &[]),
            &["negative dimension"],
        ),
        (
            "int.npy",
            npy_bytes(
                "{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }",
                &[0; 4],
            ),
            &["unsupported dtype"],
        ),
        (
            "fortran.npy",
            npy_bytes(
                "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 1, 1, 1), }",
                &[0; 4],
            ),
            &["Fortran"],
        ),
    ];
    for (name, bytes, words) in cases {
        let p = f.save_bytes(name, &bytes);
        let line = f.fails(&p, &f.path("w.npy"), &[]);
        assert_mentions(&line, &["--input", name]);
        assert_mentions(&line, words);
        // The same file as weight and as bias is caught the same way.
        let line = f.fails(&f.path("x.npy"), &p, &[]);
        assert_mentions(&line, &["--weight", name]);
        let line = f.fails_with(&["--bias", &p]);
        assert_mentions(&line, &["--bias", name]);
        std::fs::remove_file(&p).unwrap();
    }
}

#[test]
fn missing_files() {
    let f = Fixture::new();
    let missing = f.path("missing.npy");
    assert_mentions(
        &f.fails(&missing, &f.path("w.npy"), &[]),
        &["--input", "missing.npy", "No such file"],
    );
    assert_mentions(
        &f.fails(&f.path("x.npy"), &missing, &[]),
        &["--weight", "missing.npy"],
    );
    assert_mentions(
        &f.fails_with(&["--bias", &missing]),
        &["--bias", "missing.npy"],
    );
    // An input that is a directory.
    let sub = f.dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    assert_mentions(
        &f.fails(sub.to_str().unwrap(), &f.path("w.npy"), &[]),
        &["--input", "not a regular file"],
    );
    std::fs::remove_dir(&sub).unwrap();
}

#[test]
fn control_characters_in_messages_are_escaped() {
    // A path (or header text) quoted in the message must not split the one line.
    let f = Fixture::new();
    let line = f.fails(&f.path("two\nlines\u{1b}[31m.npy"), &f.path("w.npy"), &[]);
    assert_mentions(&line, &["--input", "two\\nlines\\u{1b}[31m.npy"]);
}

#[test]
fn output_in_a_missing_directory() {
    let f = Fixture::new();
    let out = f.dir.path().join("no/such/dir/y.npy");
    let result = dsconv()
        .args([
            "conv2d",
            "--input",
            &f.path("x.npy"),
            "--weight",
            &f.path("w.npy"),
        ])
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8(result.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1);
    assert_mentions(&stderr, &["dsconv: error: --output", "does not exist"]);
    assert_eq!(names_in(f.dir.path()), ["b.npy", "w.npy", "x.npy"]);
}
