//! `dsconv cost`: multiply-accumulates, FLOPs, parameters, bytes and arithmetic intensity
//! of one layer (standard vs depthwise separable, as in the seed) or of a whole model.

use super::parse::{number, positive, positive_pair};
use super::table::{hwc, millions, percent, thousands, Align, Table};
use super::user_error;
use anyhow::{Context, Result};
use dsconv::cost::{Cost, LayerCost, NetworkCost, SeparableComparison};
use dsconv::models::mobilenet_v1::Variant;
use dsconv::models::{registry, ModelSpec};
use dsconv::{Conv2dParams, ConvGeometry, Padding};
use serde_json::{json, Value};

const EXAMPLES: &str = "\
Examples:
  # The seed's example: a 7x7x3 input, 128 filters of 3x3, no padding
  dsconv cost --input 7x7x3 --out-channels 128 --kernel 3

  # A MobileNet layer: 112x112x64 -> 128 channels, 3x3 stride 2, TF-style same padding
  dsconv cost --input 112x112x64 --out-channels 128 --kernel 3 --stride 2 --padding same

  # MobileNetV1 (the paper's 569 M mult-adds, 4.2 M parameters), and as JSON
  dsconv cost --model mobilenet-v1
  dsconv cost --model mobilenet-v1 --width 0.5 --resolution 160 --json

  # The same network with every separable block as a standard 3x3 convolution
  dsconv cost --model mobilenet-v1 --as-standard

MACs are multiply-accumulates (the paper's \"mult-adds\"); FLOPs = 2 x MACs. Parameters are
convolution and fully connected weights and biases; a model's BatchNorm gamma/beta are
reported apart. Bytes: f32 input, parameters and output, each moved once.
Models: mobilenet-v1, mobilenet-v2 (--width), efficientnet-lite0 ... efficientnet-lite4
(mobilenet_v2, mobilenetv2 ... also accepted); --resolution defaults to the model's own
(224; Lite1..4: 240, 260, 280, 300).";

/// Arguments of `dsconv cost` (boxed: a dozen optional strings would make every
/// subcommand's enum variant as large).
#[derive(clap::Args)]
#[command(after_help = EXAMPLES, allow_negative_numbers = true)]
pub struct Args {
    #[command(flatten)]
    inner: Box<CostArgs>,
}

/// The options of `dsconv cost`, parsed by hand in [`run`] so every mistake is one line.
#[derive(clap::Args)]
struct CostArgs {
    /// Layer input as HxWxC (height x width x channels, as in the seed), e.g. 7x7x3.
    #[arg(long, value_name = "HxWxC")]
    input: Option<String>,
    /// Number of filters (output channels) of the layer.
    #[arg(long, value_name = "C_OUT")]
    out_channels: Option<String>,
    /// Kernel size: K (square) or KHxKW.
    #[arg(long, value_name = "K|KHxKW")]
    kernel: Option<String>,
    /// Stride: S or SH,SW [default: 1].
    #[arg(long, value_name = "S|SH,SW")]
    stride: Option<String>,
    /// Padding: P, PH,PW, T,B,L,R, `same` (TF SAME_UPPER) or `valid` [default: valid = 0].
    #[arg(long, value_name = "P|PH,PW|T,B,L,R|same|valid")]
    padding: Option<String>,
    /// Dilation: D or DH,DW [default: 1].
    #[arg(long, value_name = "D|DH,DW")]
    dilation: Option<String>,
    /// Give every convolution of the layer form a bias (counted in params and bytes).
    #[arg(long)]
    bias: bool,
    /// A whole model instead of a layer: mobilenet-v1, mobilenet-v2, efficientnet-lite0..4.
    #[arg(long, value_name = "NAME")]
    model: Option<String>,
    /// Width multiplier alpha of the model [default: 1].
    #[arg(long, value_name = "ALPHA")]
    width: Option<String>,
    /// Input resolution of the model (R x R) [default: the model's, e.g. 224].
    #[arg(long, value_name = "R")]
    resolution: Option<String>,
    /// Replace every depthwise separable block by a standard convolution of the same shape.
    #[arg(long)]
    as_standard: bool,
    /// Batch size N [default: 1].
    #[arg(long, value_name = "N")]
    batch: Option<String>,
    /// Input shape of an ONNX --model (FILE.onnx), e.g. 1x3x224x224.
    #[arg(long, value_name = "NxCxHxW")]
    input_shape: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `dsconv cost`.
pub fn run(args: Args) -> Result<()> {
    let args = *args.inner;
    let batch = match &args.batch {
        Some(b) => positive("--batch", b)?,
        None => 1,
    };
    if let Some(model) = args.model.as_deref().filter(|m| super::onnx::is_onnx(m)) {
        if args.input.is_some()
            || args.width.is_some()
            || args.resolution.is_some()
            || args.as_standard
        {
            return Err(user_error(
                "an ONNX --model takes --input-shape (and --batch), not the layer or network options",
            ));
        }
        let batch = args.batch.is_some().then_some(batch);
        let net = super::onnx::cost_table(model, args.input_shape.as_deref(), batch)?;
        return if args.json {
            print_json(&onnx_json(&net))
        } else {
            out!("{}", model_text(&net, 1, Variant::Separable))?;
            out!("{}", kinds_text(&net))?;
            Ok(())
        };
    }
    if args.input_shape.is_some() {
        return Err(user_error(
            "--input-shape applies to an ONNX --model (FILE.onnx)",
        ));
    }
    match &args.model {
        Some(model) => {
            let layer_flags = [
                ("--input", args.input.is_some()),
                ("--out-channels", args.out_channels.is_some()),
                ("--kernel", args.kernel.is_some()),
                ("--stride", args.stride.is_some()),
                ("--padding", args.padding.is_some()),
                ("--dilation", args.dilation.is_some()),
                ("--bias", args.bias),
            ];
            if let Some((flag, _)) = layer_flags.iter().find(|(_, set)| *set) {
                return Err(user_error(format!(
                    "{flag} describes a layer and cannot be combined with --model"
                )));
            }
            let spec = registry::lookup(model)?;
            let width = match &args.width {
                Some(w) => number::<f64>("--width", w)?,
                None => 1.0,
            };
            spec.check_width(width).context("--width")?;
            let resolution = match &args.resolution {
                Some(r) => positive("--resolution", r)?,
                None => spec.resolution,
            };
            let variant = if args.as_standard {
                Variant::Standard
            } else {
                Variant::Separable
            };
            let net = spec.cost_table(width, resolution, batch, variant);
            let net = if args.as_standard {
                net.context("--as-standard")?
            } else {
                net?
            };
            if args.json {
                print_json(&model_json(spec, width, resolution, batch, variant, &net))
            } else {
                out!("{}", model_text(&net, batch, variant))?;
                Ok(())
            }
        }
        None => {
            let model_flags = [
                ("--width", args.width.is_some()),
                ("--resolution", args.resolution.is_some()),
                ("--as-standard", args.as_standard),
            ];
            if let Some((flag, _)) = model_flags.iter().find(|(_, set)| *set) {
                return Err(user_error(format!("{flag} needs --model")));
            }
            let (Some(input), Some(out_channels), Some(kernel)) =
                (&args.input, &args.out_channels, &args.kernel)
            else {
                return Err(user_error(
                    "give a layer (--input HxWxC --out-channels C --kernel K) or --model NAME; \
                     see dsconv cost --help",
                ));
            };
            let [h, w, c] = super::parse::hwc("--input", input)?;
            let out_channels = positive("--out-channels", out_channels)?;
            let kernel = positive_pair("--kernel", kernel, &['x', 'X', ','])?;
            let mut params = Conv2dParams::default();
            if let Some(s) = &args.stride {
                params.stride = positive_pair("--stride", s, &[','])?;
            }
            if let Some(d) = &args.dilation {
                params.dilation = positive_pair("--dilation", d, &[','])?;
            }
            if let Some(p) = &args.padding {
                params.padding = super::parse::padding("--padding", p)?;
            }
            let cmp = SeparableComparison::new(
                [batch, c, h, w],
                out_channels,
                kernel,
                &params,
                args.bias,
            )?;
            if args.json {
                print_json(&layer_json(&cmp, &params)?)
            } else {
                out!("{}", layer_text(&cmp, &params, batch))?;
                Ok(())
            }
        }
    }
}

fn print_json(v: &Value) -> Result<()> {
    // Rendered first: a failed write is then an io::Error (a closed pipe is success, see
    // `report`), not an I/O error wrapped inside a serde_json one.
    let text = serde_json::to_string_pretty(v)?;
    outln!("{text}")
}

fn padding_words(p: &Padding) -> String {
    match p {
        Padding::Valid => "no padding".into(),
        Padding::Same => "same padding".into(),
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        } => {
            if top == bottom && left == right && top == left {
                format!("padding {top}")
            } else {
                format!("padding {top},{bottom},{left},{right} (top,bottom,left,right)")
            }
        }
    }
}

fn pair_words(name: &str, v: [usize; 2]) -> String {
    if v[0] == v[1] {
        format!("{name} {}", v[0])
    } else {
        format!("{name} {}x{}", v[0], v[1])
    }
}

fn cost_json(c: &Cost) -> Value {
    json!({
        "macs": c.macs,
        "flops": c.flops(),
        "params": c.params,
        "bytes_read": c.bytes_read,
        "bytes_written": c.bytes_written,
        "intensity": c.intensity(),
    })
}

fn layer_cost_json(l: &LayerCost) -> Value {
    let mut v = cost_json(&l.cost);
    let [_, c, h, w] = l.output;
    v["output"] = json!([h, w, c]);
    v
}

fn layer_json(cmp: &SeparableComparison, params: &Conv2dParams) -> Result<Value> {
    let [n, c, h, w] = cmp.standard.input;
    let sep = cmp.separable();
    let mut separable = cost_json(&sep);
    separable["output"] = layer_cost_json(&cmp.pointwise)["output"].clone();
    // The padding as resolved (for `same`): the standard convolution's geometry again.
    let [kh, kw] = cmp.standard.kernel;
    let g = ConvGeometry::new(
        cmp.standard.input,
        [cmp.standard.output[1], c, kh, kw],
        params,
    )?;
    Ok(json!({
        "batch": n,
        "input": [h, w, c],
        "out_channels": cmp.standard.output[1],
        "kernel": cmp.standard.kernel,
        "stride": params.stride,
        "dilation": params.dilation,
        "padding": [g.pad_top(), g.pad_bottom(), g.pad_left(), g.pad_right()],
        "standard": layer_cost_json(&cmp.standard),
        "depthwise": layer_cost_json(&cmp.depthwise),
        "pointwise": layer_cost_json(&cmp.pointwise),
        "separable": separable,
        "ratio": cmp.ratio(),
        "formula_ratio": cmp.formula_ratio(),
    }))
}

fn model_json(
    model: &ModelSpec,
    width: f64,
    resolution: usize,
    batch: usize,
    variant: Variant,
    net: &NetworkCost,
) -> Value {
    let total = net.total();
    let mut t = cost_json(&total);
    t["batchnorm_params"] = json!(net.batchnorm_params());
    let layers: Vec<Value> = net
        .layers
        .iter()
        .map(|l| {
            let [_, ci, hi, wi] = l.input;
            let [_, co, ho, wo] = l.output;
            let mut v = cost_json(&l.cost);
            v["name"] = json!(l.name);
            v["kind"] = json!(l.kind.name());
            v["input"] = json!([hi, wi, ci]);
            v["output"] = json!([ho, wo, co]);
            v["kernel"] = json!(l.kernel);
            v["stride"] = json!(l.stride);
            v["batchnorm_params"] = json!(l.batchnorm_params);
            v
        })
        .collect();
    json!({
        "model": model.name,
        "width": width,
        "resolution": resolution,
        "batch": batch,
        "variant": variant.name(),
        "total": t,
        "layers": layers,
    })
}

/// MACs and parameters by layer kind (depthwise / pointwise / dense ...).
fn kinds_text(net: &NetworkCost) -> String {
    use dsconv::cost::LayerKind as K;
    let mut s = String::from("By kind:");
    for k in [
        K::Depthwise,
        K::Pointwise,
        K::Standard,
        K::Grouped,
        K::FullyConnected,
        K::Pool,
    ] {
        let c = net.total_of(k);
        if c.macs > 0 || c.params > 0 {
            s.push_str(&format!(
                " {} {} MACs / {} params;",
                k.name(),
                millions(c.macs),
                millions(c.params)
            ));
        }
    }
    s.pop();
    s.push_str(".\n");
    s
}

fn onnx_json(net: &NetworkCost) -> Value {
    let mut t = cost_json(&net.total());
    t["batchnorm_params"] = json!(net.batchnorm_params());
    let layers: Vec<Value> = net
        .layers
        .iter()
        .map(|l| {
            let mut v = cost_json(&l.cost);
            v["name"] = json!(l.name);
            v["kind"] = json!(l.kind.name());
            v["input"] = json!(l.input);
            v["output"] = json!(l.output);
            v["kernel"] = json!(l.kernel);
            v["stride"] = json!(l.stride);
            v["batchnorm_params"] = json!(l.batchnorm_params);
            v
        })
        .collect();
    use dsconv::cost::LayerKind as K;
    let by_kind: serde_json::Map<String, Value> = [
        K::Depthwise,
        K::Pointwise,
        K::Standard,
        K::Grouped,
        K::FullyConnected,
        K::Pool,
    ]
    .into_iter()
    .map(|k| (k.name().to_string(), cost_json(&net.total_of(k))))
    .collect();
    json!({ "model": net.name, "total": t, "by_kind": by_kind, "layers": layers })
}

fn layer_text(cmp: &SeparableComparison, params: &Conv2dParams, batch: usize) -> String {
    let [_, c, h, w] = cmp.standard.input;
    let c_out = cmp.standard.output[1];
    let [kh, kw] = cmp.standard.kernel;
    let mut s = format!(
        "Input {h}x{w}x{c}, {c_out} filters of {kh}x{kw}, {}, {}{}{}\n\n",
        pair_words("stride", params.stride),
        padding_words(&params.padding),
        if params.dilation == [1, 1] {
            String::new()
        } else {
            format!(", {}", pair_words("dilation", params.dilation))
        },
        if batch == 1 {
            String::new()
        } else {
            format!(", batch {batch}")
        },
    );
    let mut t = Table::new(&[
        ("", Align::Left),
        ("weights", Align::Left),
        ("output", Align::Left),
        ("MACs", Align::Right),
        ("FLOPs", Align::Right),
        ("params", Align::Right),
        ("bytes read", Align::Right),
        ("bytes written", Align::Right),
        ("FLOP/byte", Align::Right),
    ]);
    let row = |name: &str, weights: String, output: String, cost: &Cost| {
        vec![
            name.to_string(),
            weights,
            output,
            thousands(cost.macs),
            thousands(cost.flops()),
            thousands(cost.params),
            thousands(cost.bytes_read),
            thousands(cost.bytes_written),
            format!("{:.2}", cost.intensity()),
        ]
    };
    t.row(row(
        "standard",
        format!("{c_out}x{c}x{kh}x{kw}"),
        hwc(cmp.standard.output),
        &cmp.standard.cost,
    ));
    t.row(row(
        "depthwise",
        format!("{c}x1x{kh}x{kw}"),
        hwc(cmp.depthwise.output),
        &cmp.depthwise.cost,
    ));
    t.row(row(
        "pointwise",
        format!("{c_out}x{c}x1x1"),
        hwc(cmp.pointwise.output),
        &cmp.pointwise.cost,
    ));
    t.rule();
    t.row(row(
        "separable",
        "depthwise + pointwise".into(),
        hwc(cmp.pointwise.output),
        &cmp.separable(),
    ));
    s.push_str(&t.render(2));
    s.push_str(&format!(
        "\nSeparable / standard: {} / {} MACs = {} ({:.1}x fewer); \
         formula 1/C_out + 1/(kH*kW) = 1/{c_out} + 1/{} = {}\n",
        thousands(cmp.separable().macs),
        thousands(cmp.standard.cost.macs),
        percent(cmp.ratio()),
        1.0 / cmp.ratio(),
        kh * kw,
        percent(cmp.formula_ratio()),
    ));
    s
}

fn model_text(net: &NetworkCost, batch: usize, variant: Variant) -> String {
    let mut s = format!(
        "{}{}\n\n",
        net.name,
        if batch == 1 {
            String::new()
        } else {
            format!(", batch {batch}")
        }
    );
    let mut t = Table::new(&[
        ("layer", Align::Left),
        ("kind", Align::Left),
        ("input", Align::Left),
        ("output", Align::Left),
        ("k/s", Align::Left),
        ("MACs", Align::Right),
        ("params", Align::Right),
        ("MB moved", Align::Right),
        ("FLOP/byte", Align::Right),
    ]);
    for l in &net.layers {
        t.row(vec![
            l.name.clone(),
            l.kind.name().into(),
            hwc(l.input),
            hwc(l.output),
            if l.kernel[0] == l.kernel[1] && l.stride[0] == l.stride[1] {
                format!("{}/{}", l.kernel[0], l.stride[0])
            } else {
                format!(
                    "{}x{}/{}x{}",
                    l.kernel[0], l.kernel[1], l.stride[0], l.stride[1]
                )
            },
            thousands(l.cost.macs),
            thousands(l.cost.params),
            format!("{:.2}", l.cost.bytes() as f64 / 1e6),
            format!("{:.1}", l.cost.intensity()),
        ]);
    }
    let total = net.total();
    t.rule();
    t.row(vec![
        "total".into(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        thousands(total.macs),
        thousands(total.params),
        format!("{:.2}", total.bytes() as f64 / 1e6),
        format!("{:.1}", total.intensity()),
    ]);
    s.push_str(&t.render(0));
    s.push_str(&format!(
        "\nTotal: {} MACs (mult-adds; {:.3} GFLOPs), {} parameters (convolution and FC weights \
         and biases);\nBatchNorm gamma/beta, not included: {}. {} form.\n",
        millions(total.macs),
        total.flops() as f64 / 1e9,
        millions(total.params),
        thousands(net.batchnorm_params()),
        match variant {
            Variant::Separable => "Depthwise separable",
            Variant::Standard => "All-standard (--as-standard)",
        }
    ));
    s
}
