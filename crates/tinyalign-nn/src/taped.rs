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
/// gradients of `x` and of any parameter to `grads`; `grad_out` is its own copy, free to overwrite.
fn record<T: Tape<f32, Device>>(
    x: Taped2<T>,
    out: Vec<f32>,
    out_shape: (usize, usize),
    backward: impl 'static
    + FnOnce(&mut [f32], &mut Gradients<f32, Device>, &Tensor2) -> Result<(), CpuError>,
) -> Taped2<T> {
    // The backward writes row-major gradients into x's buffer: its layout must be the logical one.
    let (x, mut tape) = x.contiguous().split_tape();
    let out: Tensor2 = x.device().tensor_from_vec(out, out_shape);
    let out_id = out.clone();
    tape.add_backward_op(move |grads| {
        let mut grad_out = grads.get_or_alloc_mut(&out_id)?.to_vec();
        backward(&mut grad_out, grads, &x)
    });
    out.put_tape(tape)
}

/// `grads[t] += delta` in parallel, for `t` of any shape (a `(n, d)` input or a `(d)` parameter).
pub(crate) fn accumulate<S: Shape>(
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
    let (values, slope) = tinyalign_kernels::gelu_with_slope(crate::host_values(&x));
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
    let (gamma_host, beta_host) = (crate::host_values(gamma), crate::host_values(beta));
    let mut normed = crate::host_values(&x);
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
        let dx = normalized_rows_backward(grad_out, &normed, &inv, &gamma_host, true);
        accumulate(grads, x, &dx)?;
        let (dgamma, dbeta) = column_sums(grad_out, Some(&normed), d);
        accumulate(grads, &gamma, &dgamma)?;
        accumulate(grads, &beta, &dbeta)
    })
}

/// `x W + b` for `x` `(n, d_in)`, `weight_t` `(d_in, d_out)`, `bias` `(d_out)` as one recorded op: one gemm
/// onto rows that start as the bias forward; backward accumulates `dX += dY Wᵀ` and `dW += Xᵀ dY` by gemm
/// straight into the gradient buffers, and `db += Σ_rows dY`. dfdx's matmul and a separate bias op cost two
/// zero-filled outputs, a bias pass and two more gradient buffers.
pub(crate) fn linear<T: Tape<f32, Device>>(
    x: Taped2<T>,
    weight_t: &Tensor2,
    bias: Option<&Tensor1>,
) -> Taped2<T> {
    let (n, d_in) = *x.shape();
    let d_out = weight_t.shape().1;
    let x_host = crate::host_values(&x);
    let w_host = crate::host_values(weight_t);
    let out = tinyalign_kernels::linear(
        &x_host,
        &w_host,
        bias.map(crate::host_values).as_deref(),
        d_in,
        d_out,
    );
    let (weight_t, bias) = (weight_t.clone(), bias.cloned());
    record(x, out, (n, d_out), move |grad_out, grads, x| {
        // dX (n, d_in) += dY (n, d_out) · Wᵀ (d_out, d_in).
        tinyalign_kernels::matmul_accumulate(
            (n, d_out, d_in),
            grads.get_or_alloc_mut(x)?,
            (&*grad_out, d_out, 1),
            (&w_host, 1, d_out),
        );
        // dW (d_in, d_out) += Xᵀ (d_in, n) · dY (n, d_out).
        tinyalign_kernels::matmul_accumulate(
            (d_in, n, d_out),
            grads.get_or_alloc_mut(&weight_t)?,
            (&x_host, 1, d_in),
            (&*grad_out, d_out, 1),
        );
        match &bias {
            Some(bias) => accumulate(grads, bias, &column_sums(grad_out, None, d_out).1),
            None => Ok(()),
        }
    })
}

/// RMSNorm over rows with weight `w` `(d)`: `y = x̂ ⊙ w`, `x̂ = x · inv`, `inv = 1/√(mean(x²) + eps)`.
/// Backward per row with `ĝ = g ⊙ w`: `dx = inv · (ĝ − x̂ · mean(ĝ ⊙ x̂))`; `dw = Σ_rows g ⊙ x̂`.
pub(crate) fn rms_norm<T: Tape<f32, Device>>(
    x: Taped2<T>,
    weight: &Tensor1,
    eps: f32,
) -> Taped2<T> {
    let (n, d) = *x.shape();
    let weight_host = crate::host_values(weight);
    let mut normed = crate::host_values(&x);
    let mut inv = vec![0.0f32; n];
    normed
        .par_chunks_mut(ROWS_PER_TASK * d)
        .zip(inv.par_chunks_mut(ROWS_PER_TASK))
        .for_each(|(rows, inv)| {
            for (row, inv) in rows.chunks_exact_mut(d).zip(inv) {
                let mean_square = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
                *inv = 1.0 / (mean_square + eps).sqrt();
                row.iter_mut().for_each(|v| *v *= *inv);
            }
        });
    let out: Vec<f32> = normed
        .par_chunks(d)
        .flat_map_iter(|row| row.iter().zip(&weight_host).map(|(v, w)| v * w))
        .collect();
    let weight = weight.clone();
    record(x, out, (n, d), move |grad_out, grads, x| {
        let dx = normalized_rows_backward(grad_out, &normed, &inv, &weight_host, false);
        accumulate(grads, x, &dx)?;
        accumulate(grads, &weight, &column_sums(grad_out, Some(&normed), d).0)
    })
}

/// The input gradient of a row normalisation `y = x̂ ⊙ w`, from the normalised rows `x̂` `(n, d)` and each
/// row's `inv` (its 1/√(var + eps) or 1/√(mean(x²) + eps)): `dx = inv · (ĝ − [mean(ĝ)] − x̂ · mean(ĝ ⊙ x̂))`
/// with `ĝ = g ⊙ w`; the bracketed term only when the rows were `centred` (LayerNorm, not RMSNorm).
fn normalized_rows_backward(
    grad_out: &[f32],
    normed: &[f32],
    inv: &[f32],
    weight: &[f32],
    centred: bool,
) -> Vec<f32> {
    let d = weight.len();
    let mut dx = vec![0.0f32; normed.len()];
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
                for ((g, xh), w) in g.iter().zip(xhat).zip(weight) {
                    mean_g += g * w;
                    mean_gx += g * w * xh;
                }
                mean_g = if centred { mean_g / d as f32 } else { 0.0 };
                mean_gx /= d as f32;
                for (((dx, g), xh), w) in dx.iter_mut().zip(g).zip(xhat).zip(weight) {
                    *dx = inv * (g * w - mean_g - xh * mean_gx);
                }
            }
        });
    dx
}

/// `x + b` on every row (`b` `(d)`); backward passes `g` to `x` and `Σ_rows g` to `b`.
pub(crate) fn add_bias<T: Tape<f32, Device>>(x: Taped2<T>, bias: &Tensor1) -> Taped2<T> {
    let (n, d) = *x.shape();
    let bias_host = crate::host_values(bias);
    let mut out = crate::host_values(&x);
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

/// `x` with the rows whose `keep` is false set to zero (a batch's padding frames); backward passes `g` to the
/// kept rows only.
pub(crate) fn zero_rows<T: Tape<f32, Device>>(x: Taped2<T>, keep: &[bool]) -> Taped2<T> {
    let (n, d) = *x.shape();
    assert_eq!(keep.len(), n, "one keep flag per row");
    let keep = keep.to_vec();
    let mut out = crate::host_values(&x);
    zero_dropped_rows(&mut out, &keep, d);
    record(x, out, (n, d), move |grad_out, grads, x| {
        zero_dropped_rows(grad_out, &keep, d);
        accumulate(grads, x, grad_out)
    })
}

fn zero_dropped_rows(rows: &mut [f32], keep: &[bool], d: usize) {
    rows.par_chunks_mut(ROWS_PER_TASK * d)
        .zip(keep.par_chunks(ROWS_PER_TASK))
        .for_each(|(rows, keep)| {
            for (row, &keep) in rows.chunks_exact_mut(d).zip(keep) {
                if !keep {
                    row.fill(0.0);
                }
            }
        });
}

/// Multi-head attention `softmax(q kᵀ/√d_head + key_bias) v` over `b` sequences of `n` frames, `q`, `k`,
/// `v` `(b·n, d)` and `key_bias` `(b, n)`, as one recorded op: the forward keeps the probabilities
/// `(b, heads, n, n)` and the backward is tinyalign-kernels' exact one (checked there against finite
/// differences, and here against dfdx's own ops in `portable.rs`' tests).
pub(crate) fn attention<T: Tape<f32, Device> + Merge<T>>(
    (q, k, v): (Taped2<T>, Taped2<T>, Taped2<T>),
    key_bias: &Tensor2,
    (b, n, heads): (usize, usize, usize),
) -> Taped2<T> {
    use tinyalign_kernels::AttentionShape;
    let d = q.shape().1;
    let shape = AttentionShape { b, n, d, heads };
    let (q, tape_q) = q.contiguous().split_tape();
    let (k, tape_k) = k.contiguous().split_tape();
    let (v, tape_v) = v.contiguous().split_tape();
    let mut tape = tape_q.merge(tape_k).merge(tape_v);
    let inputs = (
        crate::host_values(&q),
        crate::host_values(&k),
        crate::host_values(&v),
    );
    let (out, probs) = tinyalign_kernels::attention_forward(
        (&inputs.0, &inputs.1, &inputs.2),
        &crate::host_values(key_bias),
        shape,
    );
    let out: Tensor2 = q.device().tensor_from_vec(out, (b * n, d));
    let out_id = out.clone();
    tape.add_backward_op(move |grads| {
        let grad_out = grads.get_or_alloc_mut(&out_id)?.to_vec();
        let (dq, dk, dv) = tinyalign_kernels::attention_backward(
            (&inputs.0, &inputs.1, &inputs.2),
            &probs,
            &grad_out,
            shape,
        );
        accumulate(grads, &q, &dq)?;
        accumulate(grads, &k, &dk)?;
        accumulate(grads, &v, &dv)
    });
    out.put_tape(tape)
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
