//! Several matrices times the same vectors as one parallel region: a decoding step's q, k and v (and gate
//! and up) from one normalised hidden state. Each product on its own forks and joins rayon's pool and
//! quantises the same activations again; a SmolLM2-135M token made seven such products per layer, 210 in
//! all, in ~6 ms.

use crate::acts::{Acts, Form};
use crate::row_dots::{RowDots, rows_per_task};
use crate::{Product, QMatrix, QuantError};

impl QMatrix {
    /// `out = matrix · xs` for each `(matrix, out)` of `products` and `n` vectors, as
    /// [`QMatrix::matmul_with`] gives each (the same values, bit for bit); every matrix takes the same
    /// number of inputs. One vector (a decoding step) runs all the matrices' row tasks in one parallel
    /// region with each activation form quantised once; more vectors run the products one after another,
    /// as they are long enough to amortise their own fork.
    pub fn matmul_group(
        product: Product,
        xs: &[f32],
        n: usize,
        products: &mut [(&QMatrix, &mut [f32])],
    ) -> Result<(), QuantError> {
        if n != 1 || products.len() < 2 {
            for (matrix, out) in products.iter_mut() {
                matrix.matmul_with(product, xs, n, out)?;
            }
            return Ok(());
        }
        for (matrix, out) in products.iter() {
            if xs.len() != matrix.cols || out.len() != matrix.rows {
                return Err(QuantError::Shape(format!(
                    "{matrix:?} times one vector needs {} inputs and {} outputs, got {} and {}",
                    matrix.cols,
                    matrix.rows,
                    xs.len(),
                    out.len()
                )));
            }
        }
        let kernel = product.kernel;
        // One `Acts` per activation form the group needs (Qwen2.5's Q5_0 q and k with a Q8_0 v: two), and
        // which of them each matrix takes.
        let mut forms: Vec<(Form, Acts)> = Vec::new();
        let mut form_of = Vec::with_capacity(products.len());
        for (matrix, _) in products.iter() {
            let form = matrix.activation_form(product);
            let index = match forms.iter().position(|(f, _)| *f == form) {
                Some(index) => index,
                None => {
                    let acts = Acts::new(xs, matrix.cols, form, kernel.reads_quads());
                    forms.push((form, acts));
                    forms.len() - 1
                }
            };
            form_of.push(index);
        }
        let mut tasks = Vec::new();
        for ((matrix, out), &index) in products.iter_mut().zip(&form_of) {
            let acts = &forms[index].1;
            let rows_per_task = rows_per_task(matrix.rows);
            for (task, chunk) in out.chunks_mut(rows_per_task).enumerate() {
                tasks.push(RowDots {
                    matrix,
                    first: task * rows_per_task,
                    acts,
                    out: chunk,
                    n: 1,
                });
            }
        }
        #[cfg(feature = "parallel")]
        {
            use rayon::prelude::*;
            tasks.into_par_iter().for_each(|task| kernel.run(task));
        }
        #[cfg(not(feature = "parallel"))]
        tasks.into_iter().for_each(|task| kernel.run(task));
        Ok(())
    }
}
