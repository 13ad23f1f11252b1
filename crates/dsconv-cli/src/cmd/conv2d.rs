//! `dsconv conv2d`: one 2-D convolution on NumPy `.npy` files, with PyTorch's
//! `torch.nn.functional.conv2d` semantics (plus TF/ONNX `same` padding and PyTorch's
//! padding modes), for cross-checking against other frameworks and for scripting.
//!
//! Everything is validated before any output exists: options first, then each file's
//! header against its size, then the geometry. The result is written atomically, so a
//! failure at any step leaves no output file.

use super::{parse, user_error};
use anyhow::Context;
use dsconv::npy::{read_npy, write_npy, NpyArray};
use dsconv::{Conv2d, Conv2dParams, Executor, Layout, Tensor};
use std::path::{Path, PathBuf};

/// Largest output this command will compute, in bytes (16 GiB): beyond that the
/// allocation would fail or swap on any machine this tool is meant for, so an absurd
/// padding or input is refused with a message instead of an out-of-memory abort.
const MAX_OUTPUT_BYTES: u64 = 16 << 30;

/// Shown after the options: the semantics, then examples. (A subcommand's `long_about`
/// would be replaced by the one-line doc comment of its variant in `main.rs`.)
const AFTER_HELP: &str = "\
Semantics:
  One 2-D convolution, exactly as PyTorch's torch.nn.functional.conv2d (f32; within
  1e-5 x max|output| of an f64 reference), plus TF/ONNX 'same' padding at any stride.
  The input is rank 4, [N, C_in, H, W] with --layout nchw (the default) or
  [N, H, W, C_in] with --layout nhwc; the output has the same layout. The weight is
  always in PyTorch layout [C_out, C_in/groups, kH, kW]; the optional bias has C_out
  elements. Arrays are float32 ('<f4') or float64 ('<f8', converted to float32), in
  C order, .npy format versions 1 to 3.
  Bad input (a missing or malformed file, a wrong shape, an impossible geometry) prints
  one line starting with 'dsconv: error:' and exits with status 2; no output is written.

Examples:
  # 3x3 convolution, stride 2, one pixel of zero padding on every side
  dsconv conv2d --input x.npy --weight w.npy --bias b.npy --stride 2 --padding 1 --output y.npy

  # depthwise 3x3 on a channels-last input with TF-style 'same' padding
  dsconv conv2d --input x_nhwc.npy --weight dw.npy --groups 32 --padding same \\
                --layout nhwc --output y_nhwc.npy

  # the arrays of the first example, from Python
  python -c \"import numpy as np; np.save('x.npy', np.random.rand(1, 3, 7, 7).astype('f4')); \\
             np.save('w.npy', np.random.rand(8, 3, 3, 3).astype('f4')); \\
             np.save('b.npy', np.random.rand(8).astype('f4'))\"";

/// Arguments of `dsconv conv2d`, as typed (parsed by [`parse_options`], so that every bad
/// value is one line and exit code 2 rather than clap's multi-line usage error).
#[derive(clap::Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    #[arg(
        long,
        value_name = "X.npy",
        help = "Input array, rank 4: [N, C_in, H, W] (nchw) or [N, H, W, C_in] (nhwc)"
    )]
    input: PathBuf,
    #[arg(
        long,
        value_name = "W.npy",
        help = "Weight, rank 4, PyTorch layout [C_out, C_in/groups, kH, kW]"
    )]
    weight: PathBuf,
    #[arg(long, value_name = "B.npy", help = "Bias, rank 1, [C_out]")]
    bias: Option<PathBuf>,
    /// Stride: one value for both axes, or height,width
    #[arg(
        long,
        value_name = "S|SH,SW",
        default_value = "1",
        allow_hyphen_values = true
    )]
    stride: String,
    #[arg(
        long,
        help = "Padding: P on every side; PH,PW per axis; T,B,L,R (top, bottom, left, right);\n\
                'same' (output = ceil(input/stride), TF/ONNX SAME_UPPER: odd pixel\n\
                bottom/right, any stride and dilation); 'valid' (none)",
        value_name = "P|PH,PW|T,B,L,R|same|valid",
        default_value = "0",
        allow_hyphen_values = true
    )]
    padding: String,
    /// Dilation: one value for both axes, or height,width
    #[arg(
        long,
        value_name = "D|DH,DW",
        default_value = "1",
        allow_hyphen_values = true
    )]
    dilation: String,
    /// Groups: 1 (standard), C_in (depthwise), or any divisor of C_in and C_out
    #[arg(
        long,
        value_name = "G",
        default_value = "1",
        allow_hyphen_values = true
    )]
    groups: String,
    #[arg(
        long,
        value_name = "MODE",
        default_value = "zeros",
        help = "What the padded border holds: zeros, reflect, replicate or circular\n\
                (PyTorch's padding_mode; reflect needs padding < input size, circular\n\
                padding <= input size)"
    )]
    padding_mode: String,
    /// Memory layout of the input and the output: nchw or nhwc
    #[arg(long, value_name = "LAYOUT", default_value = "nchw")]
    layout: String,
    /// Threads; 0 means one per available core (results are identical for any count)
    #[arg(
        long,
        value_name = "N",
        default_value = "0",
        allow_hyphen_values = true
    )]
    threads: String,
    /// Where to write the result (same layout as the input, float32)
    #[arg(long, value_name = "Y.npy")]
    output: PathBuf,
}

/// The options, parsed and checked on their own (before any file is opened).
struct Options {
    params: Conv2dParams,
    layout: Layout,
    exec: Executor,
}

fn parse_options(args: &Args) -> anyhow::Result<Options> {
    let params = Conv2dParams {
        stride: parse::pair("--stride", &args.stride)?,
        dilation: parse::pair("--dilation", &args.dilation)?,
        padding: parse::padding("--padding", &args.padding)?,
        padding_mode: parse::padding_mode("--padding-mode", &args.padding_mode)?,
        groups: parse::count("--groups", &args.groups)?,
    };
    // The library's message names the parameter; the user typed the option.
    params.validate().map_err(|e| {
        let option = match &e {
            dsconv::Error::InvalidParam { param, .. } => format!("--{param}"),
            _ => "options".to_string(),
        };
        anyhow::Error::new(e).context(option)
    })?;
    let layout = parse::layout("--layout", &args.layout)?;
    // The pool is made now, so a bad --threads is refused before any file is read.
    let threads = parse::count("--threads", &args.threads)?;
    let exec = Executor::new(threads).context("--threads")?;
    Ok(Options {
        params,
        layout,
        exec,
    })
}

/// Reads a `.npy` and checks its rank; `role` names the option in messages.
fn read_rank(path: &Path, role: &str, rank: usize, meaning: &str) -> anyhow::Result<NpyArray> {
    let array = read_npy(path).context(role.to_string())?;
    if array.shape.len() != rank {
        return Err(user_error(format!(
            "{role} {}: expected a rank-{rank} array {meaning}, got shape {:?}",
            path.display(),
            array.shape
        )));
    }
    Ok(array)
}

fn dims4(shape: &[usize]) -> [usize; 4] {
    [shape[0], shape[1], shape[2], shape[3]]
}

/// Refuses an output path whose directory does not exist, before any work is done.
fn check_output_dir(output: &Path) -> anyhow::Result<()> {
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        let problem = if dir.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        return Err(user_error(format!(
            "--output {}: directory {} {problem}",
            output.display(),
            dir.display()
        )));
    }
    if output.is_dir() {
        return Err(user_error(format!(
            "--output {}: is a directory",
            output.display()
        )));
    }
    Ok(())
}

/// Refuses an output that is one of the input files: replacing the input with the result
/// is almost always a slip of the keyboard, and the data could not be had back.
fn check_output_not_an_input(args: &Args) -> anyhow::Result<()> {
    let Ok(output) = std::fs::canonicalize(&args.output) else {
        return Ok(()); // the output does not exist yet
    };
    let inputs = [
        ("--input", Some(&args.input)),
        ("--weight", Some(&args.weight)),
        ("--bias", args.bias.as_ref()),
    ];
    for (option, path) in inputs {
        let Some(path) = path else { continue };
        if std::fs::canonicalize(path).is_ok_and(|p| p == output) {
            return Err(user_error(format!(
                "--output {}: is the same file as {option}; choose another output path",
                args.output.display()
            )));
        }
    }
    Ok(())
}

/// Runs `dsconv conv2d`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let options = parse_options(&args)?;
    check_output_dir(&args.output)?;
    check_output_not_an_input(&args)?;
    let layout_dims = match options.layout {
        Layout::Nchw => "[N, C_in, H, W] (--layout nchw)",
        Layout::Nhwc => "[N, H, W, C_in] (--layout nhwc)",
    };
    let input = read_rank(&args.input, "--input", 4, layout_dims)?;
    let weight = read_rank(&args.weight, "--weight", 4, "[C_out, C_in/groups, kH, kW]")?;
    let bias = match &args.bias {
        Some(path) => Some(read_rank(path, "--bias", 1, "[C_out]")?.data),
        None => None,
    };

    let input = Tensor::new(input.data, dims4(&input.shape), options.layout)?;
    let in_channels = input.logical_dims()[1];
    let groups = options.params.groups; // at least 1: checked by parse_options
    if in_channels % groups != 0 {
        return Err(user_error(format!(
            "--groups {groups} does not divide the {in_channels} input channels"
        )));
    }
    let weight = Tensor::from_nchw(weight.data, dims4(&weight.shape))?;
    let conv = Conv2d::new(weight, bias, options.params)?;
    let geometry = conv.geometry(input.logical_dims())?;
    let output_bytes = geometry
        .output_dims()
        .iter()
        .try_fold(4u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&bytes| bytes <= MAX_OUTPUT_BYTES)
        .ok_or_else(|| {
            user_error(format!(
                "the output {:?} (N, C_out, H, W) would exceed {} GiB",
                geometry.output_dims(),
                MAX_OUTPUT_BYTES >> 30
            ))
        })?;
    debug_assert!(output_bytes <= MAX_OUTPUT_BYTES);

    let output = conv.forward_with(&input, &options.exec)?;
    write_npy(&args.output, &output.dims(), output.data()).context("--output")?;
    Ok(())
}
