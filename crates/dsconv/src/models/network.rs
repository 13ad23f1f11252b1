//! One handle over the networks, chosen by name through [`registry`]: what `dsconv run`,
//! `classify`, `bench` and `cost` need without matching on each type.

use super::efficientnet_lite::EfficientNetLite;
use super::mobilenet_v1::MobileNetV1;
use super::mobilenet_v2::MobileNetV2;
use super::registry::{self, MODELS};
use crate::cost::{Cost, NetworkCost};
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::tensor::Tensor;
use crate::weights::StateDict;

/// A network that loads from a PyTorch state_dict.
///
/// ```
/// use dsconv::models::Network;
/// use dsconv::{Executor, Tensor};
/// // Random weights (a checkpoint would come from `Network::from_state_dict`).
/// let net = Network::random("efficientnet-lite0", 1.0, 7)?;
/// let x = Tensor::from_nchw(vec![0.1; 3 * 64 * 48], [1, 3, 64, 48])?;
/// let logits = net.forward_with(&x, &Executor::single())?;
/// assert_eq!(logits.dims(), [1, 1000, 1, 1]);
/// assert_eq!(net.cost_table([1, 3, 224, 224])?.layers[0].name, "_conv_stem");
/// # Ok::<(), dsconv::Error>(())
/// ```
#[derive(Debug, Clone)]
pub enum Network {
    /// EfficientNet-Lite0 … Lite4 (lukemelas / ml-illustrated names).
    EfficientNetLite(Box<EfficientNetLite>),
    /// MobileNetV2 at some width (torchvision names).
    MobileNetV2(Box<MobileNetV2>),
    /// MobileNetV1 at some width (classic PyTorch names, see
    /// [`MobileNetV1Weights::from_state_dict`](super::mobilenet_v1::MobileNetV1Weights::from_state_dict)),
    /// for 224×224 inputs.
    MobileNetV1(Box<MobileNetV1>),
}

/// The input size of a [`Network::MobileNetV1`] built by name (its layers are built for
/// one size): the registry's resolution of `mobilenet-v1`.
pub const MOBILENET_V1_RESOLUTION: usize = 224;

/// Canonical names accepted by [`Network::from_state_dict`] and [`Network::random`] (and
/// every `--model` of the CLI), in the order of [`registry::MODELS`]; the aliases are
/// there too.
pub const NAMES: [&str; MODELS.len()] = {
    let mut names = [""; MODELS.len()];
    let mut i = 0;
    while i < MODELS.len() {
        names[i] = MODELS[i].name;
        i += 1;
    }
    names
};

impl Network {
    /// Builds network `name` (one of [`NAMES`] or an alias, see [`registry::lookup`]) from
    /// a state_dict; `alpha` is the width multiplier of the MobileNets (ignored by
    /// EfficientNet-Lite, whose width is in its name). MobileNetV1 is built for
    /// [`MOBILENET_V1_RESOLUTION`]; [`ModelSpec::from_state_dict`](registry::ModelSpec::from_state_dict)
    /// takes any.
    pub fn from_state_dict(name: &str, sd: &StateDict, alpha: f64) -> Result<Self> {
        registry::lookup(name)?.from_state_dict(sd, alpha, MOBILENET_V1_RESOLUTION)
    }

    /// Network `name` with seeded random weights and 1000 classes.
    pub fn random(name: &str, alpha: f64, seed: u64) -> Result<Self> {
        registry::lookup(name)?.random(alpha, MOBILENET_V1_RESOLUTION, seed)
    }

    /// Logits `[N, classes, 1, 1]` (NCHW) for an input of logical dims `[N, 3, H, W]`.
    pub fn forward_with(&self, input: &Tensor, exec: &Executor) -> Result<Tensor> {
        if input.logical_dims()[1] != 3 {
            return Err(Error::shape(
                "network input",
                "3 channels (RGB), logical dims [N, 3, H, W]",
                format!("logical dims {:?}", input.logical_dims()),
            ));
        }
        match self {
            Network::EfficientNetLite(n) => n.forward_with(input, exec),
            Network::MobileNetV2(n) => n.forward_with(input, exec),
            Network::MobileNetV1(n) => n.forward_with(input, exec),
        }
    }

    /// Per-layer cost table on an input of logical dims `[N, 3, H, W]`.
    pub fn cost_table(&self, input: [usize; 4]) -> Result<NetworkCost> {
        match self {
            Network::EfficientNetLite(n) => n.cost_table(input),
            Network::MobileNetV2(n) => n.cost_table(input),
            Network::MobileNetV1(n) => v1_resolution(n, input).and_then(|()| n.cost(input[0])),
        }
    }

    /// Total cost on an input of logical dims `[N, 3, H, W]`.
    pub fn cost(&self, input: [usize; 4]) -> Result<Cost> {
        match self {
            Network::EfficientNetLite(n) => n.cost(input),
            Network::MobileNetV2(n) => n.cost(input),
            Network::MobileNetV1(n) => {
                v1_resolution(n, input).and_then(|()| Ok(n.cost(input[0])?.total()))
            }
        }
    }
}

/// MobileNetV1's cost tables are for the resolution it was built for.
fn v1_resolution(net: &MobileNetV1, [_, _, h, w]: [usize; 4]) -> Result<()> {
    let r = net.resolution();
    if h == r && w == r {
        Ok(())
    } else {
        Err(Error::shape(
            "mobilenet-v1 input",
            format!("{r}×{r}"),
            format!("{h}×{w}"),
        ))
    }
}
