//! Trainable parameters: enumeration under PyTorch keys and export as a state dict, for the optimiser
//! (src/adamw.rs) and checkpoints.

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
    pub(crate) fn values_and_grad(&self, grads: &mut Gradients<f32, D>) -> (Vec<f32>, Vec<f32>) {
        match self {
            ParamTensor::Matrix(t, _) => (crate::host_values(&**t), grad_of(grads, &**t)),
            ParamTensor::Vector(t) => (crate::host_values(&**t), grad_of(grads, &**t)),
        }
    }

    pub(crate) fn set(&mut self, values: &[f32]) {
        match self {
            ParamTensor::Matrix(t, _) => t.copy_from(values),
            ParamTensor::Vector(t) => t.copy_from(values),
        }
    }

    /// The values as one flat device tensor, stored layout.
    pub(crate) fn flat(&self) -> Tensor1<D> {
        match self {
            ParamTensor::Matrix(t, _) => {
                let (rows, cols) = crate::shape2(t);
                (**t).clone().reshape_like(&(rows * cols,))
            }
            ParamTensor::Vector(t) => (*t).clone(),
        }
    }

    /// Replaces the values with `flat` (stored layout), on the device.
    pub(crate) fn set_flat(&mut self, flat: Tensor1<D>) {
        match self {
            ParamTensor::Matrix(t, _) => {
                let shape = crate::shape2(t);
                **t = flat.reshape_like(&shape);
            }
            ParamTensor::Vector(t) => **t = flat,
        }
    }

    /// This tensor's gradient as one flat device tensor (zeros when it took no part).
    pub(crate) fn flat_grad(&self, grads: &mut Gradients<f32, D>) -> Tensor1<D> {
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
    D::host_grad(grads, t)
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
}
