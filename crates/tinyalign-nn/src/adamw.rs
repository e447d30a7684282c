//! AdamW with global gradient-norm clipping over any [`Parameters`] module: dfdx's own optimisers only take
//! compile-time-shaped modules, so this walks our runtime-shaped layers' tensors by key.

use std::collections::BTreeMap;

use dfdx::prelude::*;
use dfdx::tensor::Gradients;
use rayon::prelude::*;

use tinyalign_weights::{Tensor as HostTensor, TensorMap};

use crate::params::Parameters;
use crate::{Device, NnDevice, Tensor1};

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

/// Values per parallel task of the host update.
const UPDATE_CHUNK: usize = 1 << 14;

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
            let (weight_decay, eps) = (self.weight_decay, self.eps);
            // Element-wise, so splitting across threads changes no bit of the result.
            values
                .par_chunks_mut(UPDATE_CHUNK)
                .zip(m.par_chunks_mut(UPDATE_CHUNK))
                .zip(v.par_chunks_mut(UPDATE_CHUNK))
                .zip(grad.par_chunks(UPDATE_CHUNK))
                .for_each(|(((values, m), v), grad)| {
                    for (((value, m), v), g) in values.iter_mut().zip(m).zip(v).zip(grad) {
                        let g = g * scale;
                        *m = b1 * *m + (1.0 - b1) * g;
                        *v = b2 * *v + (1.0 - b2) * g * g;
                        let m_hat = *m / correction1;
                        let v_hat = *v / correction2;
                        *value -= lr * (weight_decay * *value + m_hat / (v_hat.sqrt() + eps));
                    }
                });
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
    use crate::params::state_dict;
    use crate::{Initializer, Linear, Weights};
    use tinyalign_testkit::lcg;

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
}
