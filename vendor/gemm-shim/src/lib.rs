//! dfdx 0.13 pins gemm 0.15. gemm 0.19 keeps the same `gemm` entry point (dimensions, strided pointers,
//! alpha/beta, conjugation flags, `Parallelism`) with faster kernels, so this crate re-exports it under the
//! old version number.
pub use gemm019::*;
