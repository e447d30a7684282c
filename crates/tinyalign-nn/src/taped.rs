//! Training ops computed on host rows and recorded on dfdx's tape as one backward closure each: GELU,
//! LayerNorm and a bias add. Built from dfdx's own ops they cost many single-threaded passes forward and
//! backward (a LayerNorm is eleven ops, a broadcast bias add walks strided indices); here each is one
//! multi-threaded pass each way. Their gradients are checked against finite differences in the tests.

use dfdx::prelude::*;
use rayon::prelude::*;

use crate::Taped2;
use crate::{Device, Tensor1, Tensor2};

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 32;

/// Records `out` (computed from `x` off the tape) with `backward(grad_out, grads, x)`, which must add the
/// gradients of `x` and of any parameter to `grads`.
fn record<T: Tape<f32, Device>>(
    x: Taped2<T>,
    out: Vec<f32>,
    out_shape: (usize, usize),
    backward: impl 'static
    + FnOnce(&[f32], &mut Gradients<f32, Device>, &Tensor2) -> Result<(), CpuError>,
) -> Taped2<T> {
    let (x, mut tape) = x.split_tape();
    let out: Tensor2 = x.device().tensor_from_vec(out, out_shape);
    let out_id = out.clone();
    tape.add_backward_op(move |grads| {
        let grad_out = grads.get_or_alloc_mut(&out_id)?.to_vec();
        backward(&grad_out, grads, &x)
    });
    out.put_tape(tape)
}

/// `grads[t] += delta` in parallel, for `t` of any shape (a `(n, d)` input or a `(d)` parameter).
fn accumulate<S: Shape>(
    grads: &mut Gradients<f32, Device>,
    t: &Tensor<S, f32, Device>,
    delta: &[f32],
) -> Result<(), CpuError> {
    let g = grads.get_or_alloc_mut(t)?;
    g.par_chunks_mut(1 << 14)
        .zip(delta.par_chunks(1 << 14))
        .for_each(|(g, d)| g.iter_mut().zip(d).for_each(|(g, d)| *g += d));
    Ok(())
}

/// GELU (erf form): forward values and each element's derivative in one pass; backward `g · g′(x)`.
pub(crate) fn gelu<T: Tape<f32, Device>>(x: Taped2<T>) -> Taped2<T> {
    let shape = *x.shape();
    let (values, slope) = tinyalign_kernels::gelu_with_slope(&x.as_vec());
    record(x, values, shape, move |grad_out, grads, x| {
        let delta: Vec<f32> = grad_out
            .par_iter()
            .zip(slope.par_iter())
            .map(|(g, s)| g * s)
            .collect();
        accumulate(grads, x, &delta)
    })
}

/// LayerNorm over rows with affine `gamma`, `beta` (`(d)`). Backward, per row with `x̂` the normalised input
/// and `inv = 1/√(var + eps)`: `dx = inv · (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂))` with `ĝ = g ⊙ gamma`;
/// `dgamma = Σ g ⊙ x̂`, `dbeta = Σ g` over rows.
pub(crate) fn layer_norm<T: Tape<f32, Device>>(
    x: Taped2<T>,
    gamma: &Tensor1,
    beta: &Tensor1,
    eps: f32,
) -> Taped2<T> {
    let (n, d) = *x.shape();
    let (gamma_host, beta_host) = (gamma.as_vec(), beta.as_vec());
    let mut normed = x.as_vec();
    let inv = tinyalign_kernels::normalize_rows(&mut normed, d, eps);
    let out: Vec<f32> = normed
        .par_chunks(d)
        .flat_map_iter(|row| {
            row.iter()
                .zip(&gamma_host)
                .zip(&beta_host)
                .map(|((v, g), b)| v * g + b)
        })
        .collect();
    let (gamma, beta) = (gamma.clone(), beta.clone());
    record(x, out, (n, d), move |grad_out, grads, x| {
        let mut dx = vec![0.0f32; n * d];
        dx.par_chunks_mut(ROWS_PER_TASK * d)
            .zip(grad_out.par_chunks(ROWS_PER_TASK * d))
            .zip(normed.par_chunks(ROWS_PER_TASK * d))
            .zip(inv.par_chunks(ROWS_PER_TASK))
            .for_each(|(((dx, g), xhat), inv)| {
                for (((dx, g), xhat), inv) in dx
                    .chunks_exact_mut(d)
                    .zip(g.chunks_exact(d))
                    .zip(xhat.chunks_exact(d))
                    .zip(inv)
                {
                    let (mut mean_g, mut mean_gx) = (0.0f32, 0.0f32);
                    for ((g, xh), gm) in g.iter().zip(xhat).zip(&gamma_host) {
                        mean_g += g * gm;
                        mean_gx += g * gm * xh;
                    }
                    mean_g /= d as f32;
                    mean_gx /= d as f32;
                    for (((dx, g), xh), gm) in dx.iter_mut().zip(g).zip(xhat).zip(&gamma_host) {
                        *dx = inv * (g * gm - mean_g - xh * mean_gx);
                    }
                }
            });
        accumulate(grads, x, &dx)?;
        let (dgamma, dbeta) = column_sums(grad_out, Some(&normed), d);
        accumulate(grads, &gamma, &dgamma)?;
        accumulate(grads, &beta, &dbeta)
    })
}

/// `x + b` on every row (`b` `(d)`); backward passes `g` to `x` and `Σ_rows g` to `b`.
pub(crate) fn add_bias<T: Tape<f32, Device>>(x: Taped2<T>, bias: &Tensor1) -> Taped2<T> {
    let (n, d) = *x.shape();
    let bias_host = bias.as_vec();
    let mut out = x.as_vec();
    out.par_chunks_mut(ROWS_PER_TASK * d).for_each(|rows| {
        for row in rows.chunks_exact_mut(d) {
            row.iter_mut().zip(&bias_host).for_each(|(v, b)| *v += b);
        }
    });
    let bias = bias.clone();
    record(x, out, (n, d), move |grad_out, grads, x| {
        accumulate(grads, x, grad_out)?;
        accumulate(grads, &bias, &column_sums(grad_out, None, d).1)
    })
}

/// `(Σ_rows g ⊙ w, Σ_rows g)` over `d`-wide rows (the first is empty without `w`): partial sums per block of
/// rows in parallel, then added in block order, so the result does not depend on how rayon split the work
/// (training must replay exactly on resume).
fn column_sums(g: &[f32], w: Option<&[f32]>, d: usize) -> (Vec<f32>, Vec<f32>) {
    let block = ROWS_PER_TASK * d;
    let weighted_len = if w.is_some() { d } else { 0 };
    let partials: Vec<(Vec<f32>, Vec<f32>)> = g
        .par_chunks(block)
        .enumerate()
        .map(|(i, g)| {
            let mut weighted = vec![0.0f32; weighted_len];
            let mut plain = vec![0.0f32; d];
            for (r, row) in g.chunks_exact(d).enumerate() {
                plain.iter_mut().zip(row).for_each(|(s, v)| *s += v);
                if let Some(w) = w {
                    let w_row = &w[i * block + r * d..i * block + (r + 1) * d];
                    for ((s, v), wv) in weighted.iter_mut().zip(row).zip(w_row) {
                        *s += v * wv;
                    }
                }
            }
            (weighted, plain)
        })
        .collect();
    let mut total = (vec![0.0f32; weighted_len], vec![0.0f32; d]);
    for (weighted, plain) in &partials {
        total.0.iter_mut().zip(weighted).for_each(|(a, b)| *a += b);
        total.1.iter_mut().zip(plain).for_each(|(a, b)| *a += b);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinyalign_testkit::lcg;

    /// Gradients of the input and of each parameter.
    type Grads = (Vec<f32>, Vec<Vec<f32>>);

    /// Central finite differences of `Σ w ⊙ f(x)` against the taped gradient, for x and each parameter.
    fn check(
        f: &dyn Fn(&Tensor2, &[Tensor1]) -> Vec<f32>,
        traced: &dyn Fn(&Tensor2, &[Tensor1]) -> Grads,
        x: Vec<f32>,
        shape: (usize, usize),
        params: Vec<Vec<f32>>,
    ) {
        let dev = crate::cpu();
        let x_t = crate::from_vec2(&dev, x.clone(), shape.0, shape.1);
        let param_ts: Vec<Tensor1> = params
            .iter()
            .map(|p| dev.tensor_from_vec(p.clone(), (p.len(),)))
            .collect();
        let (gx, gp) = traced(&x_t, &param_ts);
        let h = 1e-2f32;
        let loss = |x: &[f32], ps: &[Vec<f32>]| -> f64 {
            let x_t = crate::from_vec2(&dev, x.to_vec(), shape.0, shape.1);
            let ps: Vec<Tensor1> = ps
                .iter()
                .map(|p| dev.tensor_from_vec(p.clone(), (p.len(),)))
                .collect();
            let out = f(&x_t, &ps);
            let w = lcg(out.len(), 99);
            out.iter()
                .zip(&w)
                .map(|(o, w)| (*o as f64) * (*w as f64))
                .sum()
        };
        for i in 0..x.len() {
            let (mut plus, mut minus) = (x.clone(), x.clone());
            plus[i] += h;
            minus[i] -= h;
            let numeric = (loss(&plus, &params) - loss(&minus, &params)) / (2.0 * h as f64);
            assert!(
                (gx[i] as f64 - numeric).abs() < 2e-3,
                "x[{i}]: {} vs {numeric}",
                gx[i]
            );
        }
        for (p, grad) in gp.iter().enumerate() {
            for i in 0..params[p].len() {
                let (mut plus, mut minus) = (params.clone(), params.clone());
                plus[p][i] += h;
                minus[p][i] -= h;
                let numeric = (loss(&x, &plus) - loss(&x, &minus)) / (2.0 * h as f64);
                assert!(
                    (grad[i] as f64 - numeric).abs() < 2e-3,
                    "param {p}[{i}]: {} vs {numeric}",
                    grad[i]
                );
            }
        }
    }

    /// Runs `op` on a traced `x` and returns `Σ w ⊙ op(x)` with the gradients of x and the parameters.
    fn traced_grads(
        op: &dyn Fn(crate::Traced2, &[Tensor1]) -> crate::Traced2,
        x: &Tensor2,
        params: &[Tensor1],
    ) -> Grads {
        let out = op(crate::traced(x), params);
        let (r, c) = crate::dims(&out);
        let w = crate::from_vec2(x.device(), lcg(r * c, 99), r, c);
        let mut grads = crate::backward(crate::weighted_sum(out, &w));
        let gx = grads.get_or_alloc_mut(x).expect("x grad").to_vec();
        let gp = params
            .iter()
            .map(|p| grads.get_or_alloc_mut(p).expect("param grad").to_vec())
            .collect();
        (gx, gp)
    }

    #[test]
    fn gelu_gradient_matches_finite_differences() {
        let x: Vec<f32> = lcg(3 * 7, 1).iter().map(|v| v * 6.0).collect();
        check(
            &|x, _| crate::gelu(x.clone()).as_vec(),
            &|x, ps| traced_grads(&|x, _| gelu(x), x, ps),
            x,
            (3, 7),
            vec![],
        );
    }

    #[test]
    fn layer_norm_gradient_matches_finite_differences() {
        let x: Vec<f32> = lcg(40 * 6, 2).iter().map(|v| v * 3.0).collect();
        let gamma: Vec<f32> = lcg(6, 3).iter().map(|v| 1.0 + v).collect();
        let beta = lcg(6, 4);
        let reference = |x: &Tensor2, ps: &[Tensor1]| {
            // dfdx's own ops: an independent forward.
            let shape = crate::shape2(x);
            (x.clone().normalize::<Axis<1>>(1e-5)
                * ps[0].clone().broadcast_like::<_, Axis<0>>(&shape)
                + ps[1].clone().broadcast_like::<_, Axis<0>>(&shape))
            .as_vec()
        };
        check(
            &reference,
            &|x, ps| traced_grads(&|x, ps| layer_norm(x, &ps[0], &ps[1], 1e-5), x, ps),
            x,
            (40, 6),
            vec![gamma, beta],
        );
    }

    #[test]
    fn bias_gradient_matches_finite_differences() {
        let x = lcg(35 * 4, 5);
        check(
            &|x, ps| {
                let shape = crate::shape2(x);
                (x.clone() + ps[0].clone().broadcast_like::<_, Axis<0>>(&shape)).as_vec()
            },
            &|x, ps| traced_grads(&|x, ps| add_bias(x, &ps[0]), x, ps),
            x,
            (35, 4),
            vec![lcg(4, 6)],
        );
    }
}
