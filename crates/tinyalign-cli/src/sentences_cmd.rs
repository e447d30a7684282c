//! `tinyalign data write-sentences`: the frozen LLM writes training sentences when asked (seeded sampling,
//! a topic per prompt, deduplicated, filtered), appended to a JSON Lines file that a later run continues.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use tinyalign_data::{LlmSentence, TOPICS, check_sentence, sentence_prompt, sentences_in};
use tinyalign_llm::{ChatMessage, GenerateOptions, LlamaModel, Precision};

#[derive(Debug, Args)]
pub struct WriteSentencesArgs {
    /// The file to append to (JSON Lines; an existing one is continued where it stopped).
    #[arg(long)]
    out: PathBuf,
    /// Stop when the file holds this many sentences.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// The LLM that writes (smollm2-135m, qwen2.5-0.5b, qwen2.5-1.5b, a .gguf file or a Hugging Face folder (`DIR`, or `DIR@q8_0` to quantise it at load)).
    #[arg(long, default_value = "qwen2.5-0.5b")]
    llm: String,
    /// Sentences asked for per prompt.
    #[arg(long, default_value_t = 10)]
    per_prompt: usize,
    /// Added to the prompt counter to seed each answer's sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 0.9)]
    temperature: f32,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
}

pub fn run(args: &WriteSentencesArgs) -> Result<()> {
    if args.count == 0
        || args.per_prompt == 0
        || args.temperature.is_nan()
        || args.temperature <= 0.0
    {
        bail!(
            "--count, --per-prompt and --temperature must be positive (sampling makes the variety)"
        );
    }
    let path = crate::llm_choice::resolve(&args.llm)?;
    let (model, sha256) = LlamaModel::load_gguf_with_sha256(&path, Precision::Native)
        .with_context(|| format!("loading {}", path.display()))?;
    // Continue a file: its sentences count and stay unique, its prompt counter goes on.
    let (mut seen, mut held, mut next_prompt) = (HashSet::new(), 0usize, 0u64);
    if args.out.exists() {
        for sentence in tinyalign_data::read_llm_sentences(&args.out)? {
            seen.insert(sentence.text.to_lowercase());
            held += 1;
            next_prompt = next_prompt.max((sentence.seed + 1).saturating_sub(args.seed));
        }
        eprintln!(
            "{}: {held} sentences already, continuing",
            args.out.display()
        );
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.out)
        .with_context(|| args.out.display().to_string())?;
    let started = Instant::now();
    let (mut kept, mut rejected, mut repeated, mut tokens) = (0usize, 0usize, 0usize, 0usize);
    while held < args.count {
        let (topic, task) = TOPICS[next_prompt as usize % TOPICS.len()];
        let seed = args.seed + next_prompt;
        let options = GenerateOptions {
            max_tokens: 40 * args.per_prompt,
            temperature: args.temperature,
            top_p: args.top_p,
            seed,
            ..GenerateOptions::default()
        };
        let prompt = sentence_prompt(topic, task, args.per_prompt);
        let answer = model.chat(&[ChatMessage::new("user", &prompt)], &options, |_| true)?;
        tokens += answer.tokens.len();
        let mut lines = String::new();
        for text in sentences_in(&answer.text) {
            if check_sentence(&text).is_err() {
                rejected += 1;
            } else if !seen.insert(text.to_lowercase()) {
                repeated += 1;
            } else if held < args.count {
                let sentence = LlmSentence {
                    text,
                    task,
                    topic: topic.to_string(),
                    seed,
                    llm: args.llm.clone(),
                    llm_sha256: sha256.clone(),
                };
                lines.push_str(&serde_json::to_string(&sentence)?);
                lines.push('\n');
                held += 1;
                kept += 1;
            }
        }
        // A whole answer at a time, flushed: Ctrl-C loses at most the answer being written.
        file.write_all(lines.as_bytes())
            .and_then(|()| file.flush())
            .with_context(|| args.out.display().to_string())?;
        next_prompt += 1;
        let elapsed = started.elapsed().as_secs_f64();
        eprintln!(
            "  prompt {next_prompt}: {held}/{} sentences ({kept} new, {rejected} rejected by the filter, \
             {repeated} repeats), {:.1} tokens/s, ETA {:.0} s",
            args.count,
            tokens as f64 / elapsed,
            elapsed / kept.max(1) as f64 * (args.count - held) as f64
        );
    }
    println!(
        "{held} sentences in {} ({kept} written now in {:.0} s; {rejected} lines rejected, {repeated} repeats)",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
