//! Options every audio-reading subcommand shares.

use clap::Args;
use tinyalign_mel::InputFormat;

#[derive(Debug, Args)]
pub struct InputArgs {
    /// Read the inputs as headerless little-endian PCM16 mono.
    #[arg(long)]
    pub raw: bool,
    /// Sample rate of --raw inputs.
    #[arg(long, default_value_t = 16_000, requires = "raw")]
    pub raw_rate: u32,
}

impl InputArgs {
    pub fn format(&self) -> InputFormat {
        if self.raw {
            InputFormat::RawPcm16 {
                sample_rate: self.raw_rate,
            }
        } else {
            InputFormat::Wav
        }
    }
}
