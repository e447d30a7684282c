//! Where the projector trains: the CPU (default) or a CUDA GPU (the `cuda` feature). Only the projector
//! moves; the frozen encoder and LLM run on the CPU, and their outputs are cached host data anyway.

use tinyalign_nn::{Merge, NnDevice, Scalar, Tape, Taped2};
use tinyalign_projector::BatchLayout;

use crate::TrainError;
use crate::in_the_loop::LoopContext;

/// The device named by `--device`: `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ComputeDevice {
    #[default]
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for ComputeDevice {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, TrainError> {
        let bad = || {
            TrainError::Config(format!(
                "unknown device {s:?}: use cpu, cuda or cuda:N (N the GPU's ordinal)"
            ))
        };
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(bad),
        }
    }
}

impl std::fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// A device the training loop runs on. The LLM-in-the-loop baseline back-propagates through the frozen
/// LLM's graph, which is built on the CPU: elsewhere it is refused before training starts.
pub(crate) trait TrainDevice: NnDevice {
    /// The LLM-in-the-loop loss of `out`, or `None` (the default) where that graph cannot run.
    fn in_loop_loss<T: Tape<f32, Self> + Merge<T>>(
        _context: &LoopContext,
        _out: Taped2<T, Self>,
        _layout: &BatchLayout,
        _answers: &[&[u32]],
        _answer_embeds: &[&[f32]],
    ) -> Option<Scalar<T, Self>> {
        None
    }
}

impl TrainDevice for tinyalign_nn::Cpu {
    fn in_loop_loss<T: Tape<f32, Self> + Merge<T>>(
        context: &LoopContext,
        out: Taped2<T, Self>,
        layout: &BatchLayout,
        answers: &[&[u32]],
        answer_embeds: &[&[f32]],
    ) -> Option<Scalar<T, Self>> {
        Some(context.loss(out, layout, answers, answer_embeds))
    }
}

#[cfg(feature = "cuda")]
impl TrainDevice for tinyalign_nn::Cuda {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_print_back() {
        for (text, device) in [
            ("cpu", ComputeDevice::Cpu),
            ("cuda", ComputeDevice::Cuda(0)),
            ("cuda:1", ComputeDevice::Cuda(1)),
        ] {
            assert_eq!(text.parse::<ComputeDevice>().unwrap(), device);
        }
        assert_eq!(ComputeDevice::Cuda(0).to_string(), "cuda:0");
        for bad in ["gpu", "cuda:", "cuda:x", "CUDA"] {
            let e = bad.parse::<ComputeDevice>().unwrap_err().to_string();
            assert!(e.contains("cpu, cuda or cuda:N"), "{bad}: {e}");
        }
    }
}
