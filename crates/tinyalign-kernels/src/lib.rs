//! CPU inference on host rows, without dfdx: the kernels (`ops`) and the frozen layers built on them
//! (`layers`). Row-major `(rows, channels)` `f32` slices in, `Vec<f32>` out.
//!
//! Training's attention (`attention_grad`: forward keeping the probabilities, and its exact backward) lives
//! here too, on the same gemm and softmax, for `tinyalign-nn`'s CPU training op.
//!
//! Two users: the frozen Whisper encoder, which runs on these layers alone (its weights held once, as
//! host rows), and `tinyalign-nn`'s trainable layers, which call the same kernels for passes that record
//! no gradient.

mod attend;
mod attention_grad;
mod layers;
mod ops;

pub use attend::HostAttention;
pub use attention_grad::{AttentionShape, attention_backward, attention_forward};
pub use layers::{
    AttentionBuffers, ConvGeometry, HostConv1d, HostLayerNorm, HostLinear, HostSelfAttention,
};
pub use ops::{
    attention, attention_into, exp, gelu_in_place, gelu_with_slope, layer_norm_in_place, linear,
    linear_add, linear_into, matmul_accumulate, normalize_rows,
};
