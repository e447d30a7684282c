//! `tinyalign`: the command-line face of tinyalign. Subcommands arrive with the crates behind them; today:
//! `mel` (audio → Whisper log-mel features), `features` (Whisper encoder outputs), `transcribe`, `ask`
//! (the frozen LLM on a text prompt), `convert-whisper` (CTranslate2 → safetensors) and `convert-llm`
//! (a Hugging Face LLM folder → GGUF).

mod ask_cmd;
mod check_cmd;
mod compare_cmd;
mod convert_cmd;
mod data_cmd;
mod eval_cmd;
mod features_cmd;
mod input_args;
mod llm_choice;
mod mel_cmd;
mod pack_features_cmd;
mod paths;
mod personalize_cmd;
mod report_cmd;
mod sentences_cmd;
mod spectrogram_png;
mod train_cmd;
mod transcribe_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tinyalign",
    version,
    about = "Align a Whisper encoder with a small LLM, on the device"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compute Whisper log-mel features of audio files and write them as .npy (and optionally PNG).
    Mel(mel_cmd::MelArgs),
    /// Run the frozen Whisper encoder on an audio file and save its output features ([frames, d_audio]).
    Features(features_cmd::FeaturesArgs),
    /// Transcribe audio files with Whisper (greedy, no timestamps).
    Transcribe(transcribe_cmd::TranscribeArgs),
    /// Datasets: build the packaged ones, import your own recordings, statistics.
    Data(data_cmd::DataArgs),
    /// Train a projector with EmbedLink targets (configs/*.toml presets).
    Train(train_cmd::TrainArgs),
    /// Evaluate a projector on a manifest split: transcribe (WER/CER) or respond (F1 against the LLM's answer
    /// to the text); whisper, cascade, text oracle and projector rows.
    Eval(eval_cmd::EvalArgs),
    /// One report of a training run from its summary and evaluations (report.md, report.json).
    Report(report_cmd::ReportArgs),
    /// Compare training runs: cost per utterance, validation cosine over time, WER (cargo xtask bench-align).
    Compare(compare_cmd::CompareArgs),
    /// Adapt a base projector to one user's voice; WER on their held-out speech before and after.
    Personalize(personalize_cmd::PersonalizeArgs),
    /// Personalised users: list them, or forget one (deletes their audio, features and projector).
    Users(personalize_cmd::UsersArgs),
    /// Ask the frozen LLM a text question (ChatML), streaming the answer.
    Ask(ask_cmd::AskArgs),
    /// Convert a CTranslate2 Whisper model.bin to canonical safetensors + config.json.
    ConvertWhisper(convert_cmd::ConvertWhisperArgs),
    /// Convert a Hugging Face LLM folder (SmolLM2, Qwen2.5) to one GGUF file, optionally quantised.
    ConvertLlm(convert_cmd::ConvertLlmArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mel(args) => mel_cmd::run(&args),
        Command::ConvertWhisper(args) => convert_cmd::run(&args),
        Command::ConvertLlm(args) => convert_cmd::run_llm(&args),
        Command::Features(args) => features_cmd::run(&args),
        Command::Transcribe(args) => transcribe_cmd::run(&args),
        Command::Ask(args) => ask_cmd::run(&args),
        Command::Data(args) => data_cmd::run(&args),
        Command::Train(args) => train_cmd::run(&args),
        Command::Eval(args) => eval_cmd::run(&args),
        Command::Report(args) => report_cmd::run(&args),
        Command::Personalize(args) => personalize_cmd::run(&args),
        Command::Compare(args) => compare_cmd::run(&args),
        Command::Users(args) => personalize_cmd::run_users(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
