//! Trainable parameters: enumeration under PyTorch keys, export as a state dict, and AdamW with global
//! gradient-norm clipping. dfdx's own optimisers only take compile-time-shaped modules, so this works on our
//! runtime-shaped layers through [`Parameters`].

use std::collections::BTreeMap;

use dfdx::prelude::*;
use dfdx::tensor::Gradients;
use tinyalign_weights::{Tensor as HostTensor, TensorMap};

use crate::{Device, NnDevice, Tensor1, Tensor2};

/// One trainable tensor as a layer stores it.
#[derive(Debug)]
pub enum ParamTensor<'a, D: NnDevice = Device> {
    /// A matrix; `transposed` when stored `(in, out)` for a PyTorch `(out, in)` weight.
    Matrix(&'a mut Tensor2<D>, bool),
    Vector(&'a mut Tensor1<D>),
}

impl<D: NnDevice> ParamTensor<'_, D> {
    pub fn numel(&self) -> usize {
        match self {
            ParamTensor::Matrix(t, _) => t.as_vec().len(),
            ParamTensor::Vector(t) => t.as_vec().len(),
        }
    }

    /// Values in PyTorch layout with their PyTorch shape.
    fn to_host(&self) -> HostTensor {
        match self {
            ParamTensor::Matrix(t, transposed) => {
                let (rows, cols) = crate::shape2(t);
                if *transposed {
                    HostTensor::new(
                        vec![cols, rows],
                        crate::transpose_host(&t.as_vec(), rows, cols),
                    )
                } else {
                    HostTensor::new(vec![rows, cols], t.as_vec())
                }
            }
            ParamTensor::Vector(t) => HostTensor::new(vec![t.as_vec().len()], t.as_vec()),
        }
    }

    /// Stored-layout values, and the gradient of this tensor in `grads` (zeros when it took no part).
    fn values_and_grad(&self, grads: &mut Gradients<f32, D>) -> (Vec<f32>, Vec<f32>) {
        match self {
            ParamTensor::Matrix(t, _) => (t.as_vec(), grad_of(grads, &**t)),
            ParamTensor::Vector(t) => (t.as_vec(), grad_of(grads, &**t)),
        }
    }

    fn set(&mut self, values: &[f32]) {
        match self {
            ParamTensor::Matrix(t, _) => t.copy_from(values),
            ParamTensor::Vector(t) => t.copy_from(values),
        }
    }

    /// The values as one flat device tensor, stored layout.
    fn flat(&self) -> Tensor1<D> {
        match self {
            ParamTensor::Matrix(t, _) => {
                let (rows, cols) = crate::shape2(t);
                (**t).clone().reshape_like(&(rows * cols,))
            }
            ParamTensor::Vector(t) => (*t).clone(),
        }
    }

    /// Replaces the values with `flat` (stored layout), on the device.
    fn set_flat(&mut self, flat: Tensor1<D>) {
        match self {
            ParamTensor::Matrix(t, _) => {
                let shape = crate::shape2(t);
                **t = flat.reshape_like(&shape);
            }
            ParamTensor::Vector(t) => **t = flat,
        }
    }

    /// This tensor's gradient as one flat device tensor (zeros when it took no part).
    fn flat_grad(&self, grads: &mut Gradients<f32, D>) -> Tensor1<D> {
        match self {
            ParamTensor::Matrix(t, _) => {
                let (rows, cols) = crate::shape2(t);
                match grads.get_or_alloc_mut(&**t) {
                    Ok(_) => grads.get(&**t).reshape_like(&(rows * cols,)),
                    Err(_) => t.device().zeros_like(&(rows * cols,)),
                }
            }
            ParamTensor::Vector(t) => match grads.get_or_alloc_mut(&**t) {
                Ok(_) => grads.get(&**t),
                Err(_) => t.device().zeros_like(&**t),
            },
        }
    }
}

/// The gradient of `t` on the host (zeros when it took no part).
pub(crate) fn grad_of<S: dfdx::shapes::Shape, D: NnDevice>(
    grads: &mut Gradients<f32, D>,
    t: &dfdx::tensor::Tensor<S, f32, D>,
) -> Vec<f32> {
    match grads.get_or_alloc_mut(t) {
        Ok(_) => grads.get(t).as_vec(),
        Err(_) => vec![0.0; t.as_vec().len()],
    }
}

/// A module with trainable tensors. `visit` lists them in a fixed order under the full dotted keys they were
/// loaded from (layers remember their keys), so a saved state dict loads back through the same constructors.
pub trait Parameters<D: NnDevice = Device> {
    fn visit(&mut self, f: &mut dyn FnMut(&str, ParamTensor<'_, D>));
}

/// Every parameter's gradient on the host, in stored layout, under its key (zeros for one that took no
/// part): for comparing devices and for debugging.
pub fn parameter_gradients<D: NnDevice>(
    module: &mut dyn Parameters<D>,
    grads: &mut Gradients<f32, D>,
) -> Vec<(String, Vec<f32>)> {
    let mut out = Vec::new();
    module.visit(&mut |key, t| out.push((key.to_string(), t.values_and_grad(grads).1)));
    out
}

/// Total trainable values.
pub fn parameter_count<D: NnDevice>(module: &mut dyn Parameters<D>) -> usize {
    let mut total = 0;
    module.visit(&mut |_, t| total += t.numel());
    total
}

/// Every parameter in PyTorch layout under its PyTorch key: what a checkpoint stores.
pub fn state_dict<D: NnDevice>(module: &mut dyn Parameters<D>, source_name: &str) -> TensorMap {
    let mut map = TensorMap::new(source_name);
    module.visit(&mut |key, t| map.insert(key.to_string(), t.to_host()));
    map
}

/// AdamW (Loshchilov & Hutter; PyTorch's `torch.optim.AdamW` update, bias-corrected) with the learning rate
/// given per step so schedules live with the caller. On the CPU the update is a host loop; on a device
/// without host kernels (CUDA) it is a few tensor ops per parameter on the device, so parameters, gradients
/// and moments stay there (the moments come to the host only for a checkpoint).
#[derive(Debug, Clone)]
pub struct AdamW<D: NnDevice = Device> {
    pub betas: (f32, f32),
    pub eps: f32,
    pub weight_decay: f32,
    /// Clip the global gradient norm to this before the update (None: no clipping).
    pub max_grad_norm: Option<f32>,
    step: u64,
    moments: BTreeMap<String, Moments<D>>,
}

/// First and second moments of one parameter, flat in its stored layout.
#[derive(Debug, Clone)]
enum Moments<D: NnDevice> {
    Host(Vec<f32>, Vec<f32>),
    Device(Tensor1<D>, Tensor1<D>),
}

impl<D: NnDevice> Moments<D> {
    fn to_host(&self) -> (Vec<f32>, Vec<f32>) {
        match self {
            Moments::Host(m, v) => (m.clone(), v.clone()),
            Moments::Device(m, v) => (m.as_vec(), v.as_vec()),
        }
    }
}

/// What one optimiser step saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// Global L2 norm of the gradient before clipping.
    pub grad_norm: f32,
    pub clipped: bool,
}

impl<D: NnDevice> AdamW<D> {
    pub fn new(weight_decay: f32, max_grad_norm: Option<f32>) -> Self {
        Self {
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay,
            max_grad_norm,
            step: 0,
            moments: BTreeMap::new(),
        }
    }

    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// Updates every parameter of `module` from `grads` (from `loss.backward()`). A non-finite gradient
    /// norm leaves the parameters untouched and is reported, so the caller can stop cleanly.
    pub fn step(
        &mut self,
        module: &mut dyn Parameters<D>,
        grads: &mut Gradients<f32, D>,
        lr: f32,
    ) -> StepReport {
        if D::HOST_KERNELS {
            self.step_on_host(module, grads, lr)
        } else {
            self.step_with_tensor_ops(module, grads, lr)
        }
    }

    /// Starts a step for a global gradient norm: counts it and returns the clipping scale and the two
    /// bias corrections, or `None` (no update, no step counted) when the norm is not finite.
    fn start_step(&mut self, norm: f32) -> Option<(f32, f32, f32)> {
        if !norm.is_finite() {
            return None;
        }
        let scale = match self.max_grad_norm {
            Some(max) if norm > max => max / (norm + 1e-6),
            _ => 1.0,
        };
        self.step += 1;
        let (b1, b2) = self.betas;
        Some((
            scale,
            1.0 - b1.powi(self.step as i32),
            1.0 - b2.powi(self.step as i32),
        ))
    }

    fn step_on_host(
        &mut self,
        module: &mut dyn Parameters<D>,
        grads: &mut Gradients<f32, D>,
        lr: f32,
    ) -> StepReport {
        let mut params: Vec<(String, Vec<f32>, Vec<f32>)> = Vec::new();
        module.visit(&mut |key, t| {
            let (values, grad) = t.values_and_grad(grads);
            params.push((key.to_string(), values, grad));
        });
        let norm = params
            .iter()
            .flat_map(|p| p.2.iter())
            .map(|g| f64::from(*g) * f64::from(*g))
            .sum::<f64>()
            .sqrt() as f32;
        let Some((scale, correction1, correction2)) = self.start_step(norm) else {
            return StepReport {
                grad_norm: norm,
                clipped: false,
            };
        };
        let (b1, b2) = self.betas;
        let mut updated: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        for (key, mut values, grad) in params {
            let (mut m, mut v) = match self.moments.remove(&key) {
                Some(Moments::Host(m, v)) => (m, v),
                Some(device) => device.to_host(),
                None => (vec![0.0; grad.len()], vec![0.0; grad.len()]),
            };
            for i in 0..values.len() {
                let g = grad[i] * scale;
                m[i] = b1 * m[i] + (1.0 - b1) * g;
                v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                let m_hat = m[i] / correction1;
                let v_hat = v[i] / correction2;
                values[i] -=
                    lr * (self.weight_decay * values[i] + m_hat / (v_hat.sqrt() + self.eps));
            }
            self.moments.insert(key.clone(), Moments::Host(m, v));
            updated.insert(key, values);
        }
        module.visit(&mut |key, mut t| {
            if let Some(values) = updated.get(key) {
                t.set(values);
            }
        });
        StepReport {
            grad_norm: norm,
            clipped: scale < 1.0,
        }
    }

    /// The same update as [`Self::step_on_host`] in dfdx tensor ops, on the parameters' device: one scalar
    /// per parameter (its squared gradient norm) comes to the host.
    fn step_with_tensor_ops(
        &mut self,
        module: &mut dyn Parameters<D>,
        grads: &mut Gradients<f32, D>,
        lr: f32,
    ) -> StepReport {
        let mut flat_grads: Vec<(String, Tensor1<D>)> = Vec::new();
        let mut sum_of_squares = 0.0f64;
        module.visit(&mut |key, t| {
            let g = t.flat_grad(grads);
            sum_of_squares += f64::from(g.clone().square().sum::<(), _>().as_vec()[0]);
            flat_grads.push((key.to_string(), g));
        });
        let norm = sum_of_squares.sqrt() as f32;
        let Some((scale, correction1, correction2)) = self.start_step(norm) else {
            return StepReport {
                grad_norm: norm,
                clipped: false,
            };
        };
        let (b1, b2) = self.betas;
        let mut directions: BTreeMap<String, Tensor1<D>> = BTreeMap::new();
        for (key, g) in flat_grads {
            let dev = g.device().clone();
            let (m, v) = match self.moments.remove(&key) {
                Some(Moments::Device(m, v)) => (m, v),
                Some(Moments::Host(m, v)) => {
                    let n = m.len();
                    (dev.tensor_from_vec(m, (n,)), dev.tensor_from_vec(v, (n,)))
                }
                None => (dev.zeros_like(&g), dev.zeros_like(&g)),
            };
            let g = g * scale;
            let m = m * b1 + g.clone() * (1.0 - b1);
            let v = v * b2 + g.square() * (1.0 - b2);
            let direction =
                (m.clone() / correction1) / ((v.clone() / correction2).sqrt() + self.eps);
            self.moments.insert(key.clone(), Moments::Device(m, v));
            directions.insert(key, direction);
        }
        let weight_decay = self.weight_decay;
        module.visit(&mut |key, mut t| {
            if let Some(direction) = directions.remove(key) {
                let values = t.flat();
                let decay = values.clone() * weight_decay;
                t.set_flat(values - (decay + direction) * lr);
            }
        });
        StepReport {
            grad_norm: norm,
            clipped: scale < 1.0,
        }
    }

    /// Moments and step count as tensors (`exp_avg.KEY`, `exp_avg_sq.KEY`, `step`), for exact resumption.
    pub fn state(&self) -> TensorMap {
        let mut map = TensorMap::new("adamw state");
        for (key, moments) in &self.moments {
            let (m, v) = moments.to_host();
            map.insert(format!("exp_avg.{key}"), HostTensor::new(vec![m.len()], m));
            map.insert(
                format!("exp_avg_sq.{key}"),
                HostTensor::new(vec![v.len()], v),
            );
        }
        // f32 holds integers exactly up to 2^24 steps, far beyond any run here.
        map.insert("step", HostTensor::new(vec![1], vec![self.step as f32]));
        map
    }

    /// Restores what [`Self::state`] saved.
    pub fn load_state(&mut self, state: &TensorMap) -> Result<(), crate::NnError> {
        let step = state.get("step").map_err(crate::NnError::Weights)?;
        self.step = step.data.first().copied().unwrap_or(0.0) as u64;
        self.moments.clear();
        for (name, tensor) in state.iter() {
            if let Some(key) = name.strip_prefix("exp_avg.") {
                let m = tensor.data.clone();
                let v = state.get(&format!("exp_avg_sq.{key}"))?.data.clone();
                self.moments.insert(key.to_string(), Moments::Host(m, v));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Initializer, Linear, MultiHeadAttention, Weights};
    use tinyalign_testkit::lcg;

    #[test]
    fn initialisation_is_seeded_per_key_and_round_trips_through_a_state_dict() {
        let dev = crate::cpu();
        let make = |seed| {
            let init = Initializer::new(seed);
            Linear::load(&Weights::init(&init, dev.clone()).pp("proj"), 8, 4, true).unwrap()
        };
        let (mut a, mut b, mut c) = (make(1), make(1), make(2));
        let (sa, sb, sc) = (
            state_dict(&mut a, "a"),
            state_dict(&mut b, "b"),
            state_dict(&mut c, "c"),
        );
        let w = &sa.get("proj.weight").unwrap();
        assert_eq!(w.shape, [4, 8], "PyTorch layout (out, in)");
        assert_eq!(w.data, sb.get("proj.weight").unwrap().data);
        assert_ne!(w.data, sc.get("proj.weight").unwrap().data);
        let bound = 1.0 / 8f32.sqrt();
        assert!(
            w.data.iter().all(|v| v.abs() <= bound) && w.data.iter().any(|v| v.abs() > bound / 2.0)
        );
        // Loading the state dict rebuilds the same layer.
        let mut loaded =
            Linear::load(&Weights::new(&sa, dev.clone()).pp("proj"), 8, 4, true).unwrap();
        let x = crate::from_vec2(&dev, lcg(16, 3), 2, 8);
        assert_eq!(
            crate::to_vec2(&a.forward(x.clone())),
            crate::to_vec2(&loaded.forward(x))
        );
        assert_eq!(parameter_count(&mut loaded), 8 * 4 + 4);
    }

    /// The first AdamW step moves every parameter by lr·sign(g) (m̂ = g, v̂ = g²), minus decoupled decay.
    #[test]
    fn first_adamw_step_is_the_sign_of_the_gradient() {
        let dev = crate::cpu();
        let init = Initializer::new(5);
        let mut layer =
            Linear::load(&Weights::init(&init, dev.clone()).pp("l"), 3, 2, true).unwrap();
        let before = state_dict(&mut layer, "before");
        let x = crate::from_vec2(&dev, lcg(6, 7), 2, 3);
        let target = crate::from_vec2(&dev, lcg(4, 8), 2, 2);
        let diff = layer.forward(crate::traced(&x)) - target;
        let mut grads =
            dfdx::tensor_ops::Backward::backward(dfdx::tensor_ops::SumTo::sum(diff.square()));
        let mut opt = AdamW::new(0.1, None);
        let (lr, wd) = (0.01, 0.1);
        let report = opt.step(&mut layer, &mut grads, lr);
        assert!(report.grad_norm > 0.0 && !report.clipped);
        let after = state_dict(&mut layer, "after");
        let grad_w = crate::transpose_host(&grads.get(&layer.weight_t_for_tests()).as_vec(), 3, 2);
        for (i, (&p0, &p1)) in before
            .get("l.weight")
            .unwrap()
            .data
            .iter()
            .zip(&after.get("l.weight").unwrap().data)
            .enumerate()
        {
            let want = p0 - lr * (wd * p0 + grad_w[i].signum());
            assert!((p1 - want).abs() < 1e-6, "weight {i}: {p1} vs {want}");
        }
    }

    #[test]
    fn adamw_fits_a_linear_map_and_resumes_exactly() {
        let dev = crate::cpu();
        let x = crate::from_vec2(&dev, lcg(64 * 4, 11), 64, 4);
        let true_w: Vec<f32> = lcg(4 * 3, 12);
        let y_host: Vec<f32> = (0..64)
            .flat_map(|r| {
                let xr = crate::to_vec2(&x)[r * 4..(r + 1) * 4].to_vec();
                let tw = true_w.clone();
                (0..3).map(move |o| (0..4).map(|i| xr[i] * tw[o * 4 + i]).sum::<f32>())
            })
            .collect();
        let y = crate::from_vec2(&dev, y_host, 64, 3);
        let loss_after = |steps: usize, layer: &mut Linear, opt: &mut AdamW| {
            let mut last = 0.0;
            for _ in 0..steps {
                let loss = dfdx::tensor_ops::MeanTo::mean(
                    (layer.forward(crate::traced(&x)) - y.clone()).square(),
                );
                last = crate::scalar_value(&loss);
                let mut grads = dfdx::tensor_ops::Backward::backward(loss);
                opt.step(layer, &mut grads, 0.05);
            }
            last
        };
        let init = Initializer::new(1);
        let mut layer =
            Linear::load(&Weights::init(&init, dev.clone()).pp("l"), 4, 3, false).unwrap();
        let mut opt = AdamW::new(0.0, Some(1.0));
        let first = loss_after(1, &mut layer, &mut opt);
        let mid = loss_after(99, &mut layer, &mut opt);
        // Snapshot (weights + optimiser state), continue; a restored copy must follow the same path.
        let (weights, state) = (state_dict(&mut layer, "snap"), opt.state());
        let continued = loss_after(200, &mut layer, &mut opt);
        let mut restored =
            Linear::load(&Weights::new(&weights, dev.clone()).pp("l"), 4, 3, false).unwrap();
        let mut restored_opt = AdamW::new(0.0, Some(1.0));
        restored_opt.load_state(&state).unwrap();
        assert_eq!(restored_opt.steps_taken(), 100);
        let resumed = loss_after(200, &mut restored, &mut restored_opt);
        assert!(
            mid < first / 10.0 && continued < 1e-4,
            "loss {first} → {mid} → {continued}"
        );
        assert_eq!(
            continued, resumed,
            "resuming from the snapshot reproduces the run exactly"
        );
    }

    /// The tensor-op update (what CUDA runs) against the host loop, on the CPU: same weights after steps
    /// with clipping and weight decay, and moments that move between the two through a checkpoint.
    #[test]
    fn tensor_op_adamw_matches_the_host_loop() {
        let dev = crate::cpu();
        let x = crate::from_vec2(
            &dev,
            lcg(32 * 5, 21).iter().map(|v| v * 4.0).collect(),
            32,
            5,
        );
        let y = crate::from_vec2(&dev, lcg(32 * 3, 22), 32, 3);
        let make = || {
            let init = Initializer::new(9);
            Linear::load(&Weights::init(&init, dev.clone()).pp("l"), 5, 3, true).unwrap()
        };
        let grads_of = |layer: &Linear| {
            let loss = dfdx::tensor_ops::SumTo::sum(
                (layer.forward(crate::traced(&x)) - y.clone()).square(),
            );
            dfdx::tensor_ops::Backward::backward(loss)
        };
        let (mut host_layer, mut op_layer) = (make(), make());
        let (mut host_opt, mut op_opt) = (AdamW::new(0.1, Some(0.5)), AdamW::new(0.1, Some(0.5)));
        let close = |a: &mut Linear, b: &mut Linear, what: &str| {
            let (sa, sb) = (state_dict(a, "a"), state_dict(b, "b"));
            for (key, t) in sa.iter() {
                let worst = t
                    .data
                    .iter()
                    .zip(&sb.get(key).unwrap().data)
                    .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
                assert!(worst < 1e-6, "{what} {key}: differs by {worst}");
            }
        };
        for step in 0..4 {
            let report = {
                let mut g = grads_of(&host_layer);
                host_opt.step_on_host(&mut host_layer, &mut g, 0.02)
            };
            let op_report = {
                let mut g = grads_of(&op_layer);
                op_opt.step_with_tensor_ops(&mut op_layer, &mut g, 0.02)
            };
            assert!(
                report.clipped && op_report.clipped,
                "the clipping path is exercised"
            );
            assert!((report.grad_norm - op_report.grad_norm).abs() <= 1e-5 * report.grad_norm);
            close(&mut host_layer, &mut op_layer, &format!("step {step}"));
        }
        // Device moments through a checkpoint into a host-loop optimiser, and on: still the same path.
        let mut resumed_opt = AdamW::new(0.1, Some(0.5));
        resumed_opt.load_state(&op_opt.state()).unwrap();
        let mut resumed_layer = Linear::load(
            &Weights::new(&state_dict(&mut op_layer, "w"), dev.clone()).pp("l"),
            5,
            3,
            true,
        )
        .unwrap();
        for step in 4..6 {
            let mut g = grads_of(&resumed_layer);
            resumed_opt.step_on_host(&mut resumed_layer, &mut g, 0.02);
            let mut g = grads_of(&host_layer);
            host_opt.step_on_host(&mut host_layer, &mut g, 0.02);
            close(
                &mut host_layer,
                &mut resumed_layer,
                &format!("resumed step {step}"),
            );
        }
    }

    #[test]
    fn inference_weight_copies_follow_parameter_updates() {
        let dev = crate::cpu();
        let (n, d, heads) = (6, 8, 2);
        let mut mha = MultiHeadAttention::load(
            &Weights::init(&Initializer::new(4), dev.clone()).pp("a"),
            d,
            heads,
            true,
        )
        .unwrap();
        let x = lcg(n * d, 31);
        let before = mha.forward_self_rows(&x);
        // Overwrite every parameter, as an optimiser step or a state-dict load does (both go through visit).
        let mut seed = 40;
        mha.visit(&mut |_, mut t| {
            seed += 1;
            let values = lcg(t.numel(), seed);
            t.set(&values);
        });
        let after = mha.forward_self_rows(&x);
        let taped = mha
            .forward_batch(
                crate::traced(&crate::from_vec2(&dev, x.clone(), n, d)),
                1,
                n,
                &crate::from_vec2(&dev, vec![0.0; n], 1, n),
            )
            .as_vec();
        assert_ne!(before, after, "the host copies were refreshed");
        for (a, r) in after.iter().zip(&taped) {
            assert!((a - r).abs() < 1e-5, "host {a} vs taped {r}");
        }
    }

    #[test]
    fn batched_attention_ignores_padding_and_matches_single_sequences() {
        let dev = crate::cpu();
        let init = Initializer::new(9);
        let (d, heads) = (8, 2);
        let mha =
            MultiHeadAttention::load(&Weights::init(&init, dev.clone()).pp("a"), d, heads, true)
                .unwrap();
        let (b, n, lengths) = (2, 5, [5usize, 3]);
        let mut x = lcg(b * n * d, 21);
        let bias: Vec<f32> = (0..b * n)
            .map(|i| if i % n < lengths[i / n] { 0.0 } else { -1e9 })
            .collect();
        let bias = crate::from_vec2(&dev, bias, b, n);
        let run = |x: &[f32]| {
            crate::to_vec2(&mha.forward_batch(
                crate::from_vec2(&dev, x.to_vec(), b * n, d),
                b,
                n,
                &bias,
            ))
        };
        let batched = run(&x);
        // The fused inference kernel and the taped dfdx graph agree, padding rows included.
        let taped = mha
            .forward_batch(
                crate::traced(&crate::from_vec2(&dev, x.clone(), b * n, d)),
                b,
                n,
                &bias,
            )
            .as_vec();
        for (a, r) in batched.iter().zip(&taped) {
            assert!((a - r).abs() < 1e-5, "fused {a} vs taped {r}");
        }
        for (s, &len) in lengths.iter().enumerate() {
            let single = crate::to_vec2(&mha.forward_self(crate::from_vec2(
                &dev,
                x[s * n * d..(s * n + len) * d].to_vec(),
                len,
                d,
            )));
            for (a, r) in batched[s * n * d..(s * n + len) * d].iter().zip(&single) {
                assert!((a - r).abs() < 1e-5, "sequence {s}: {a} vs {r}");
            }
        }
        // Garbage in the padding frames changes nothing in the real frames.
        for v in &mut x[(n + 3) * d..2 * n * d] {
            *v = 1e3;
        }
        let again = run(&x);
        assert_eq!(&batched[..(n + 3) * d], &again[..(n + 3) * d]);
    }

    #[test]
    fn mix_frames_is_a_batched_product() {
        let dev = crate::cpu();
        let (b, n, t, d) = (2, 4, 3, 5);
        let (x, w) = (lcg(b * n * d, 1), lcg(b * t * n, 2));
        let ours = crate::to_vec2(&crate::mix_frames(
            crate::from_vec2(&dev, x.clone(), b * n, d),
            &crate::from_vec3(&dev, w.clone(), (b, t, n)),
            b,
            n,
        ));
        for s in 0..b {
            for j in 0..t {
                for c in 0..d {
                    let want: f32 = (0..n)
                        .map(|i| w[(s * t + j) * n + i] * x[(s * n + i) * d + c])
                        .sum();
                    assert!((ours[(s * t + j) * d + c] - want).abs() < 1e-5);
                }
            }
        }
    }

    /// Loss values against plain-Rust formulas, and their gradients against central differences.
    #[test]
    fn losses_match_reference_values_and_gradients() {
        let dev = crate::cpu();
        let (n, d) = (3, 4);
        let (p0, t0) = (lcg(n * d, 31), lcg(n * d, 32));
        let weights = [1.0, 0.0, 0.5];
        let mask: Vec<f32> = (0..n * d).map(|i| weights[i / d]).collect();
        let target = crate::from_vec2(&dev, t0.clone(), n, d);
        let mask_t = crate::from_vec2(&dev, mask.clone(), n, d);
        let value = |p: &[f32]| {
            let x = crate::from_vec2(&dev, p.to_vec(), n, d);
            let cos = crate::scalar_value(&crate::weighted_cosine_distance(
                crate::traced(&x),
                &target,
                &weights,
            ));
            let mse = crate::scalar_value(&crate::masked_mse(crate::traced(&x), &target, &mask_t));
            (cos, mse)
        };
        let (cos, mse) = value(&p0);
        let mut want_cos = 0.0;
        for r in 0..n {
            let (a, b) = (&p0[r * d..(r + 1) * d], &t0[r * d..(r + 1) * d]);
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
            want_cos += weights[r] * (1.0 - dot / (norm(a) * norm(b)));
        }
        want_cos /= weights.iter().sum::<f32>();
        let want_mse = p0
            .iter()
            .zip(&t0)
            .zip(&mask)
            .map(|((a, b), m)| m * (a - b) * (a - b))
            .sum::<f32>()
            / mask.iter().sum::<f32>();
        assert!(
            (cos - want_cos).abs() < 1e-6 && (mse - want_mse).abs() < 1e-6,
            "{cos} {want_cos} {mse} {want_mse}"
        );

        let x = crate::from_vec2(&dev, p0.clone(), n, d);
        let loss = crate::weighted_cosine_distance(crate::traced(&x), &target, &weights)
            + crate::masked_mse(crate::traced(&x), &target, &mask_t);
        let analytic = crate::gradient(loss, &x);
        for idx in 0..n * d {
            let eps = 1e-3;
            let at = |delta: f32| {
                let mut p = p0.clone();
                p[idx] += delta;
                let (c, m) = value(&p);
                c + m
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!(
                (numeric - analytic[idx]).abs() < 2e-3,
                "d/dp[{idx}]: {numeric} vs {}",
                analytic[idx]
            );
        }
    }
}
