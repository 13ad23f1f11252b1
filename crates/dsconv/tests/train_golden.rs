//! dsconv's training against PyTorch autograd and `torch.optim` (fixtures from
//! `scripts/train_reference.py`, PyTorch 2.9.1): BatchNorm2d in train mode, cross-entropy
//! with label smoothing, and four optimizer steps of a small ds-cnn with SGD (plain;
//! momentum + dampening + weight decay; Nesterov) and AdamW from the same init and data.
//! Each tensor's tolerance comes from PyTorch float32's own distance to its float64 run.

mod common;

use dsconv::npy::{read_npy, read_npy_typed, NpyValues};
use dsconv::train::{
    cross_entropy, AdamW, Arch, BatchNorm2d, CnnConfig, Layer, Mode, Model, Optimizer, Sgd,
    StateValue,
};
use dsconv::weights::StateDict;
use dsconv::{Executor, Layout, Tensor};

fn fixture(name: &str) -> std::path::PathBuf {
    common::fixture("train", name)
}

fn npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    let a = read_npy(&fixture(name)).unwrap();
    (a.shape, a.data)
}

fn labels(name: &str) -> Vec<usize> {
    match read_npy_typed(&fixture(name)).unwrap().values {
        NpyValues::I64(v) => v.iter().map(|&l| l as usize).collect(),
        other => panic!("{name}: {other:?}"),
    }
}

fn close(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let err = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (f64::from(g) - f64::from(w)).abs())
        .fold(0.0, f64::max);
    assert!(err <= tol, "{what}: max |diff| {err:.3e} > {tol:.3e}");
}

fn scale(v: &[f32]) -> f64 {
    v.iter().map(|x| f64::from(x.abs())).fold(1.0, f64::max)
}

fn nchw_to_nhwc(dims: &[usize], data: Vec<f32>) -> Tensor {
    Tensor::from_nchw(data, [dims[0], dims[1], dims[2], dims[3]])
        .unwrap()
        .to_layout(Layout::Nhwc)
}

#[test]
fn batchnorm_train_forward_backward_and_running_stats() {
    let (dims, x) = npy("bn_x.npy");
    let x = nchw_to_nhwc(&dims, x);
    let dy = nchw_to_nhwc(&dims, npy("bn_dy.npy").1);
    let mut bn = BatchNorm2d::new(3);
    bn.visit("", &mut |name, slot| {
        if let dsconv::train::Slot::Param(p) = slot {
            match name {
                "weight" => p.value = vec![1.5, -0.7, 0.3],
                "bias" => p.value = vec![0.1, 0.2, -0.3],
                _ => {}
            }
        }
    });
    for threads in [1, 2] {
        let exec = Executor::new(threads).unwrap();
        let mut bn_t = BatchNorm2d::new(3);
        std::mem::swap(&mut bn_t, &mut bn);
        let y = bn_t.forward(x.clone(), Mode::Train, &exec).unwrap();
        let want_y = nchw_to_nhwc(&dims, npy("bn_y.npy").1);
        close("bn y", y.data(), want_y.data(), 1e-5 * scale(want_y.data()));
        let dx = bn_t.backward(dy.clone(), true, &exec).unwrap().unwrap();
        let want_dx = nchw_to_nhwc(&dims, npy("bn_dx.npy").1);
        close(
            "bn dx",
            dx.data(),
            want_dx.data(),
            1e-5 * scale(want_dx.data()),
        );
        let mut grads = Vec::new();
        bn_t.visit("", &mut |name, slot| {
            if let dsconv::train::Slot::Param(p) = slot {
                if p.trainable() {
                    grads.push((name.to_string(), p.grad.clone()));
                }
            }
        });
        let dg = npy("bn_dgamma.npy").1;
        let db = npy("bn_dbeta.npy").1;
        close("bn dgamma", &grads[0].1, &dg, 1e-5 * scale(&dg));
        close("bn dbeta", &grads[1].1, &db, 1e-5 * scale(&db));
        let mut x2 = x.clone();
        x2.data_mut().iter_mut().for_each(|v| *v = *v * 0.5 + 1.0);
        bn_t.forward(x2, Mode::Train, &exec).unwrap();
        let (rm, rv, count) = bn_t.running_stats();
        close("running_mean", rm, &npy("bn_running_mean.npy").1, 1e-6);
        close("running_var", rv, &npy("bn_running_var.npy").1, 1e-5);
        assert_eq!(count, 2);
        // Put the configured layer back for the next thread count (its stats restart).
        let mut fresh = BatchNorm2d::new(3);
        std::mem::swap(&mut fresh, &mut bn_t);
        bn = BatchNorm2d::new(3);
        bn.visit("", &mut |name, slot| {
            if let dsconv::train::Slot::Param(p) = slot {
                match name {
                    "weight" => p.value = vec![1.5, -0.7, 0.3],
                    "bias" => p.value = vec![0.1, 0.2, -0.3],
                    _ => {}
                }
            }
        });
    }
}

#[test]
fn cross_entropy_with_label_smoothing() {
    let logits = npy("ce_logits.npy").1;
    let y = labels("ce_labels.npy");
    let (loss, grad) = cross_entropy(&logits, 4, &y, 0.1).unwrap();
    let want = read_npy(&fixture("ce_loss.npy")).unwrap().data[0];
    assert!(
        (loss - f64::from(want)).abs() < 1e-6 * f64::from(want.abs()),
        "{loss} vs {want}"
    );
    let g = npy("ce_grad.npy").1;
    close("ce grad", &grad, &g, 1e-6 * scale(&g));
}

fn optimizer(name: &str) -> Optimizer {
    match name {
        "sgd_plain" => Optimizer::sgd(Sgd {
            lr: 0.1,
            ..Sgd::default()
        }),
        "sgd_momentum_wd" => Optimizer::sgd(Sgd {
            lr: 0.05,
            momentum: 0.9,
            dampening: 0.1,
            nesterov: false,
            weight_decay: 1e-2,
        }),
        "sgd_nesterov" => Optimizer::sgd(Sgd {
            lr: 0.05,
            momentum: 0.9,
            dampening: 0.0,
            nesterov: true,
            weight_decay: 5e-4,
        }),
        "adamw" => Optimizer::adamw(AdamW::default()),
        "adamw_3e-3" => Optimizer::adamw(AdamW {
            lr: 3e-3,
            weight_decay: 0.05,
            ..AdamW::default()
        }),
        _ => unreachable!(),
    }
}

fn steps_like_pytorch(name: &str, threads: usize) -> (Model, Vec<f64>) {
    let init = StateDict::load(fixture("init.safetensors")).unwrap();
    let mut model =
        Model::from_state_dict(Arch::DsCnn, &CnnConfig::new(2, 6, 6, 3), &init).unwrap();
    assert_eq!(model.config().widths, [4, 6, 8]);
    let (dims, x) = npy("x.npy");
    let y = labels("y.npy");
    let size = dims[1] * dims[2] * dims[3];
    let exec = Executor::new(threads).unwrap();
    let mut opt = optimizer(name);
    let smoothing = if name == "adamw" { 0.1 } else { 0.0 };
    let mut losses = Vec::new();
    for step in 0..4 {
        let lo = if step % 2 == 0 { 0 } else { 4 };
        let xb = Tensor::from_nchw(x[lo * size..(lo + 4) * size].to_vec(), [4, 2, 6, 6]).unwrap();
        let lr = opt.base_lr();
        let s = model
            .train_step(&xb, &y[lo..lo + 4], &mut opt, lr, smoothing, &exec)
            .unwrap();
        losses.push(s.loss);
    }
    (model, losses)
}

#[test]
fn optimizer_steps_match_pytorch() {
    for name in [
        "sgd_plain",
        "sgd_momentum_wd",
        "sgd_nesterov",
        "adamw",
        "adamw_3e-3",
    ] {
        let (mut model, losses) = steps_like_pytorch(name, 1);
        let want_losses = read_npy(&fixture(&format!("{name}.losses.npy")))
            .unwrap()
            .data;
        for (i, (l, w)) in losses.iter().zip(&want_losses).enumerate() {
            assert!(
                (l - f64::from(*w)).abs() < 2e-5 * f64::from(w.abs()),
                "{name} step {i}: loss {l} vs PyTorch {w}"
            );
        }
        let f32_sd = StateDict::load(fixture(&format!("{name}.f32.safetensors"))).unwrap();
        let f64_sd = StateDict::load(fixture(&format!("{name}.f64.safetensors"))).unwrap();
        let mut checked = 0;
        for (key, _, value) in model.state_dict() {
            let want = f64_sd
                .get(&key)
                .unwrap_or_else(|| panic!("{name}: {key} missing"));
            match value {
                StateValue::F32(got) => {
                    let torch32 = &f32_sd.get(&key).unwrap().data;
                    let own = torch32
                        .iter()
                        .zip(&want.data)
                        .map(|(a, b)| f64::from((a - b).abs()))
                        .fold(0.0, f64::max);
                    let tol = (8.0 * own).max(2e-6 * scale(&want.data));
                    close(&format!("{name} {key}"), &got, &want.data, tol);
                }
                StateValue::I64(c) => assert_eq!(c as f32, want.data[0], "{name} {key}"),
            }
            checked += 1;
        }
        assert_eq!(checked, f64_sd.len(), "{name}: every tensor compared");
    }
}

#[test]
fn training_is_bitwise_identical_for_any_thread_count() {
    for name in ["sgd_momentum_wd", "adamw"] {
        let (mut one, l1) = steps_like_pytorch(name, 1);
        let (mut two, l2) = steps_like_pytorch(name, 2);
        assert_eq!(l1, l2);
        assert_eq!(one.state_dict(), two.state_dict(), "{name}");
    }
}

#[test]
fn checkpoint_round_trip_of_a_file_pytorch_wrote() {
    let (mut model, _) = steps_like_pytorch("adamw", 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    dsconv::train::save_checkpoint(&path, &mut model, &[]).unwrap();
    let sd = StateDict::load(&path).unwrap();
    let nbt = sd.get("features.2.4.num_batches_tracked").unwrap();
    assert_eq!(
        (nbt.dtype, nbt.dims.len(), nbt.data[0]),
        (dsconv::weights::DType::I64, 0, 4.0)
    );
    let mut back = Model::from_state_dict(Arch::DsCnn, &CnnConfig::new(2, 6, 6, 3), &sd).unwrap();
    assert_eq!(back.state_dict(), model.state_dict());
    // The optimizer state too, and a model of another architecture is refused.
    let (mut m2, _) = steps_like_pytorch("sgd_momentum_wd", 1);
    let mut opt = optimizer("sgd_momentum_wd");
    let (dims, x) = npy("x.npy");
    let xb = Tensor::from_nchw(x[..4 * 72].to_vec(), [4, dims[1], dims[2], dims[3]]).unwrap();
    let exec = Executor::single();
    m2.train_step(&xb, &[0, 1, 2, 0], &mut opt, 0.05, 0.0, &exec)
        .unwrap();
    let opt_path = dir.path().join("m.optim.safetensors");
    dsconv::train::save_optimizer(&opt_path, &opt).unwrap();
    let mut restored = optimizer("sgd_momentum_wd");
    dsconv::train::load_optimizer(&opt_path, &mut restored, &mut m2).unwrap();
    assert_eq!(restored.state_tensors(), opt.state_tensors());
    let mut wrong = optimizer("adamw");
    assert!(dsconv::train::load_optimizer(&opt_path, &mut wrong, &mut m2).is_err());
    let err = Model::from_state_dict(Arch::StdCnn, &CnnConfig::new(2, 6, 6, 3), &sd).unwrap_err();
    assert!(err.is_bad_input(), "{err}");
}
