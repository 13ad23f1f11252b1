//! The one list of the networks dsconv can build, as data: canonical name and aliases,
//! default input resolution, whether a width multiplier applies, the preprocessing its
//! ImageNet weights expect, the checkpoint naming, what builds it (seeded random weights or
//! a state_dict) and its cost table. Every `dsconv` subcommand that takes `--model` looks
//! the name up here ([`lookup`]); [`Network`] and [`NAMES`](super::NAMES) are built on it.
//!
//! Random weights, here and in the CLI's demos and benchmarks, come from the crate's one
//! initialiser, [`SplitMix64::weights`](crate::rng::SplitMix64::weights).
//!
//! ```
//! use dsconv::models::registry::{lookup, Family};
//! let spec = lookup("MobileNetV2")?; // case-insensitive, aliases accepted
//! assert_eq!(spec.name, "mobilenet-v2");
//! assert_eq!(spec.family, Family::MobileNetV2);
//! assert_eq!(spec.preprocess.unwrap().crop, Some([224, 224]));
//! let net = spec.random(0.25, spec.resolution, 7)?;
//! let table = spec.cost_table(0.25, 224, 1, Default::default())?;
//! assert_eq!(net.cost([1, 3, 224, 224])?.macs, table.total().macs);
//! assert!(lookup("resnet-50").unwrap_err().to_string().contains("mobilenet-v1"));
//! # Ok::<(), dsconv::Error>(())
//! ```

use super::efficientnet_lite::EfficientNetLite;
use super::mobilenet_v1::{self, MobileNetV1, Variant};
use super::mobilenet_v2::MobileNetV2;
use super::network::Network;
use crate::cost::NetworkCost;
use crate::error::{Error, Result};
use crate::weights::StateDict;

pub use crate::preprocess::{Preprocess, Resampling, Resize, IMAGENET_MEAN, IMAGENET_STD};

/// torchvision's ImageNet evaluation transform (`ImageClassification(crop_size=224)`, as
/// for its MobileNetV2 weights, and the classic PyTorch MobileNetV1 scripts): bilinear
/// resize to 256, centre crop 224, ImageNet mean and std (checked against torchvision on
/// two photos with the real MobileNetV2, `crates/dsconv/tests/mobilenet_v2_imagenet.rs`).
pub const TORCHVISION_IMAGENET: Preprocess = Preprocess::TORCHVISION_IMAGENET;

/// The EfficientNet-Lite0 ImageNet weights (lukemelas / ml-illustrated): bicubic resize to
/// 256, centre crop 224, `(x − 0.5) / 0.5` (checked against PyTorch on two photos,
/// `crates/dsconv/tests/efficientnet_lite0.rs`).
pub const EFFICIENTNET_LITE0_IMAGENET: Preprocess = Preprocess {
    resize: Resize::ShorterSide(256),
    crop: Some([224, 224]),
    resampling: Resampling::Bicubic,
    mean: [0.5; 3],
    std: [0.5; 3],
};

/// Which builder makes a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// [`MobileNetV1`]: width α, built for one input resolution.
    MobileNetV1,
    /// [`MobileNetV2`]: width α, any input size.
    MobileNetV2,
    /// [`EfficientNetLite`] Lite0 … Lite4 (the width is in the name), any input size.
    EfficientNetLite,
}

/// One network dsconv can build, as data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelSpec {
    /// Canonical name, e.g. `mobilenet-v2` (what reports and JSON print).
    pub name: &'static str,
    /// Other spellings [`lookup`] accepts (besides any letter case).
    pub aliases: &'static [&'static str],
    /// Which builder makes it.
    pub family: Family,
    /// Input resolution (height = width) of its ImageNet weights: the default of
    /// `--resolution`, and the size [`Network`] builds MobileNetV1 for.
    pub resolution: usize,
    /// Whether a width multiplier α applies (the MobileNets); the Lite models have theirs
    /// in their name.
    pub width_multiplier: bool,
    /// The preprocessing its ImageNet weights expect; `None` where no PyTorch weights with
    /// a documented pipeline exist (EfficientNet-Lite1 … Lite4).
    pub preprocess: Option<Preprocess>,
    /// Whose parameter names its checkpoints use.
    pub checkpoint_names: &'static str,
}

const LUKEMELAS: &str =
    "lukemelas / ml-illustrated EfficientNet-PyTorch (_conv_stem, _blocks.N._expand_conv, _fc)";

const fn lite(
    name: &'static str,
    aliases: &'static [&'static str],
    resolution: usize,
    preprocess: Option<Preprocess>,
) -> ModelSpec {
    ModelSpec {
        name,
        aliases,
        family: Family::EfficientNetLite,
        resolution,
        width_multiplier: false,
        preprocess,
        checkpoint_names: LUKEMELAS,
    }
}

/// Every network, in the order of [`NAMES`](super::NAMES). The Lite resolutions are the
/// TensorFlow repository's `efficientnet_lite_params` (also in
/// [`efficientnet_lite::LITE`](super::efficientnet_lite::LITE), checked by a test).
pub const MODELS: [ModelSpec; 7] = [
    lite(
        "efficientnet-lite0",
        &["efficientnet_lite0", "efficientnetlite0"],
        224,
        Some(EFFICIENTNET_LITE0_IMAGENET),
    ),
    lite(
        "efficientnet-lite1",
        &["efficientnet_lite1", "efficientnetlite1"],
        240,
        None,
    ),
    lite(
        "efficientnet-lite2",
        &["efficientnet_lite2", "efficientnetlite2"],
        260,
        None,
    ),
    lite(
        "efficientnet-lite3",
        &["efficientnet_lite3", "efficientnetlite3"],
        280,
        None,
    ),
    lite(
        "efficientnet-lite4",
        &["efficientnet_lite4", "efficientnetlite4"],
        300,
        None,
    ),
    ModelSpec {
        name: "mobilenet-v1",
        aliases: &["mobilenet_v1", "mobilenetv1"],
        family: Family::MobileNetV1,
        resolution: 224,
        width_multiplier: true,
        preprocess: Some(TORCHVISION_IMAGENET),
        checkpoint_names: "the classic PyTorch MobileNetV1 (model.N.M, fc; ReLU)",
    },
    ModelSpec {
        name: "mobilenet-v2",
        aliases: &["mobilenet_v2", "mobilenetv2"],
        family: Family::MobileNetV2,
        resolution: 224,
        width_multiplier: true,
        preprocess: Some(TORCHVISION_IMAGENET),
        checkpoint_names: "torchvision (features.N.conv.M, classifier.1)",
    },
];

/// The accepted names in one line, for messages: `a, b, … (also: x, y, …)`.
pub fn accepted_names() -> String {
    let names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
    let aliases: Vec<&str> = MODELS
        .iter()
        .flat_map(|m| m.aliases.iter().copied())
        .collect();
    format!("{} (also: {})", names.join(", "), aliases.join(", "))
}

/// The network called `name` (canonical or an alias, any letter case); an
/// [`Error::InvalidParam`] listing every accepted name otherwise.
pub fn lookup(name: &str) -> Result<&'static ModelSpec> {
    let wanted = name.trim();
    MODELS
        .iter()
        .find(|m| {
            m.name.eq_ignore_ascii_case(wanted)
                || m.aliases.iter().any(|a| a.eq_ignore_ascii_case(wanted))
        })
        .ok_or_else(|| {
            Error::param(
                "model",
                format!("unknown model '{name}': not one of {}", accepted_names()),
            )
        })
}

impl ModelSpec {
    /// An error for a width multiplier α ≠ 1 on a network without one (the Lite models);
    /// the builders themselves ignore α there.
    pub fn check_width(&self, width: f64) -> Result<()> {
        if self.width_multiplier || width == 1.0 {
            Ok(())
        } else {
            Err(Error::param(
                "width multiplier",
                format!(
                    "{} has a fixed width (it is in its name), so {width} does not apply",
                    self.name
                ),
            ))
        }
    }

    /// The network with seeded random weights and 1000 classes. `width` is α (ignored by
    /// the Lite models); `resolution` is the input size MobileNetV1 is built for (its
    /// layers are made for one size; the others run any size and ignore it).
    pub fn random(&self, width: f64, resolution: usize, seed: u64) -> Result<Network> {
        Ok(match self.family {
            Family::MobileNetV1 => {
                Network::MobileNetV1(Box::new(MobileNetV1::random(width, resolution, seed)?))
            }
            Family::MobileNetV2 => {
                Network::MobileNetV2(Box::new(MobileNetV2::random(width, seed)?))
            }
            Family::EfficientNetLite => {
                Network::EfficientNetLite(Box::new(EfficientNetLite::random(self.name, seed)?))
            }
        })
    }

    /// The network from a state_dict in [`checkpoint_names`](Self::checkpoint_names);
    /// `width` and `resolution` as for [`random`](Self::random). Every missing,
    /// unexpected or mismatched key is reported at once.
    pub fn from_state_dict(
        &self,
        sd: &StateDict,
        width: f64,
        resolution: usize,
    ) -> Result<Network> {
        Ok(match self.family {
            Family::MobileNetV1 => Network::MobileNetV1(Box::new(MobileNetV1::from_state_dict(
                sd, width, resolution,
            )?)),
            Family::MobileNetV2 => {
                Network::MobileNetV2(Box::new(MobileNetV2::from_state_dict(sd, width)?))
            }
            Family::EfficientNetLite => Network::EfficientNetLite(Box::new(
                EfficientNetLite::from_state_dict(self.name, sd)?,
            )),
        })
    }

    /// The per-layer cost table (PyTorch module names) of a batch of `batch`
    /// `resolution`×`resolution` images at width `width`. [`Variant::Standard`] (every
    /// separable block as a dense 3×3 convolution) is defined for MobileNetV1 only.
    pub fn cost_table(
        &self,
        width: f64,
        resolution: usize,
        batch: usize,
        variant: Variant,
    ) -> Result<NetworkCost> {
        if variant == Variant::Standard && self.family != Family::MobileNetV1 {
            return Err(Error::param(
                "variant",
                format!(
                    "the all-standard variant is defined for mobilenet-v1 only, not {}",
                    self.name
                ),
            ));
        }
        match self.family {
            Family::MobileNetV1 => mobilenet_v1::cost(width, resolution, batch, variant),
            // The tables only need the shapes; any seed builds them.
            _ => self
                .random(width, resolution, 0)?
                .cost_table([batch, 3, resolution, resolution]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::efficientnet_lite::LITE;

    #[test]
    fn names_aliases_and_lite_resolutions_are_consistent() {
        let mut seen = std::collections::HashSet::new();
        for m in &MODELS {
            for n in std::iter::once(&m.name).chain(m.aliases) {
                assert!(seen.insert(n.to_ascii_lowercase()), "{n} twice");
                assert_eq!(lookup(&n.to_ascii_uppercase()).unwrap().name, m.name);
            }
        }
        for (m, s) in MODELS.iter().zip(&LITE) {
            assert_eq!((m.name, m.resolution), (s.name, s.resolution));
        }
        assert_eq!(
            super::super::NAMES.to_vec(),
            MODELS.map(|m| m.name).to_vec()
        );
        let e = lookup("resnet-50").unwrap_err();
        assert!(e.is_bad_input());
        for m in &MODELS {
            assert!(e.to_string().contains(m.name), "{e}");
        }
    }

    #[test]
    fn width_applies_to_the_mobilenets_only() {
        assert!(lookup("mobilenet-v2").unwrap().check_width(0.5).is_ok());
        assert!(lookup("efficientnet-lite0")
            .unwrap()
            .check_width(1.0)
            .is_ok());
        let e = lookup("efficientnet-lite0")
            .unwrap()
            .check_width(0.5)
            .unwrap_err();
        assert!(e.to_string().contains("fixed width"), "{e}");
        let v2 = lookup("mobilenet-v2").unwrap();
        assert!(v2.cost_table(1.0, 224, 1, Variant::Standard).is_err());
    }
}
