//! CPU inference on host rows, without dfdx: the kernels (`ops`) and the frozen layers built on them
//! (`layers`). Row-major `(rows, channels)` `f32` slices in, `Vec<f32>` out.
//!
//! Two users: the frozen Whisper encoder, which runs on these layers alone (its weights held once, as
//! host rows), and `tinyalign-nn`'s trainable layers, which call the same kernels for passes that record
//! no gradient.

mod attend;
mod layers;
mod ops;

pub use attend::HostAttention;
pub use layers::{ConvGeometry, HostConv1d, HostLayerNorm, HostLinear, HostSelfAttention};
pub use ops::{
    attention, exp, gelu_in_place, gelu_with_slope, layer_norm_in_place, linear, normalize_rows,
};
