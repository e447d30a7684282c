//! Sentences the frozen LLM writes when asked (issue 18's third text source, beside the templates and
//! WordNet): the prompts, the parsing of an answer into sentences, the filter a sentence must pass to be
//! read aloud, and the JSON Lines file that keeps them with how each was made. The generation itself (an LLM
//! run) is `tinyalign data write-sentences`; this crate stays free of the LLM.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{DataError, Task, clean_text};

/// What the LLM is asked to write about, and the task the sentences serve. Numbers, dates, times, amounts,
/// names and places are what the template text lacks (the words a projector gets wrong).
pub const TOPICS: &[(&str, Task)] = &[
    (
        "setting alarms, timers and reminders at particular times and dates",
        Task::Respond,
    ),
    (
        "prices, amounts of money, bills and shopping",
        Task::Respond,
    ),
    (
        "travel between named cities and countries, with dates and times",
        Task::Respond,
    ),
    (
        "the weather in a named city on a particular day",
        Task::Respond,
    ),
    (
        "calling or messaging people by their first and last names",
        Task::Respond,
    ),
    (
        "cooking with quantities, weights and temperatures",
        Task::Respond,
    ),
    (
        "questions about history, science and geography",
        Task::Respond,
    ),
    ("sports scores, years and distances", Task::Respond),
    ("phone numbers, addresses and postcodes", Task::Respond),
    ("health, appointments and medicine doses", Task::Respond),
    (
        "everyday life at home, at work and at school",
        Task::Transcribe,
    ),
    ("news about towns, companies and people", Task::Transcribe),
    (
        "a story about a journey, told one sentence at a time",
        Task::Transcribe,
    ),
    ("nature, animals and the seasons", Task::Transcribe),
];

/// The user turn asking for `count` sentences on `topic`.
pub fn sentence_prompt(topic: &str, task: Task, count: usize) -> String {
    let kind = match task {
        Task::Respond => "requests or questions a person might say to a voice assistant",
        Task::Transcribe => "sentences a person might read aloud",
    };
    format!(
        "Write {count} different {kind}, about {topic}. Write every number, date, time and amount in \
         words, the way people say them (\"twenty past seven\", \"three hundred and ten dollars\"). Use \
         everyday English, five to twenty words each. One per line, no numbering, nothing else."
    )
}

/// The sentences of one answer: a line each, list markers and surrounding quotes dropped.
pub fn sentences_in(answer: &str) -> Vec<String> {
    answer
        .lines()
        .map(|line| {
            let line = line.trim();
            let line = line.trim_start_matches(|c: char| c.is_ascii_digit());
            let line = line
                .strip_prefix(['.', ')'])
                .unwrap_or(line)
                .trim_start_matches(['-', '*', '•', ' ']);
            clean_text(line.trim_matches(['"', '“', '”', ' ']))
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// Why a sentence is not read aloud, or `Ok`: plain English that a synthesiser says as written (letters,
/// spaces, `,.'?!-`, no digits or symbols it would spell out), 5–25 words, a capital first and an end mark.
pub fn check_sentence(text: &str) -> Result<(), &'static str> {
    let words = text.split_whitespace().count();
    if !(5..=25).contains(&words) {
        return Err("not 5–25 words");
    }
    if !text
        .chars()
        .all(|c| c.is_ascii_alphabetic() || " ,.'?!-".contains(c))
    {
        return Err("digits, symbols or non-English letters");
    }
    if !text.starts_with(|c: char| c.is_ascii_uppercase()) {
        return Err("no capital first");
    }
    if !text.ends_with(['.', '?', '!']) {
        return Err("no end mark");
    }
    if text.contains("sentence") || text.contains("Sentence") {
        return Err("talks about the request, not a sentence");
    }
    Ok(())
}

/// One written sentence and how it was made (a line of the sentences file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmSentence {
    pub text: String,
    pub task: Task,
    pub topic: String,
    /// The sampling seed of the answer it came from: the file's prompt counter.
    pub seed: u64,
    /// The LLM's name and the sha256 of its file.
    pub llm: String,
    pub llm_sha256: String,
}

/// Reads a sentences file: every line parsed and checked again (the file may have been edited), duplicates
/// (case-insensitive) dropped; an error names the line.
pub fn read_llm_sentences(path: &Path) -> Result<Vec<LlmSentence>, DataError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| DataError::Io(format!("{}: {e}", path.display())))?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |message: String| DataError::Line {
            file: path.display().to_string(),
            line: i + 1,
            message,
        };
        let sentence: LlmSentence = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
        check_sentence(&sentence.text).map_err(|why| at(format!("{:?}: {why}", sentence.text)))?;
        if seen.insert(sentence.text.to_lowercase()) {
            out.push(sentence);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_checked_sentences() {
        let answer = "1. Set an alarm for twenty past seven tomorrow morning.\n\n2) \"What is the weather in Oslo on Friday?\"\n- Remind me to pay three hundred and ten dollars.\n* Call 555 1234 now please.\nSure! Here are ten sentences:\nok";
        let sentences = sentences_in(answer);
        assert_eq!(
            sentences,
            [
                "Set an alarm for twenty past seven tomorrow morning.",
                "What is the weather in Oslo on Friday?",
                "Remind me to pay three hundred and ten dollars.",
                "Call 555 1234 now please.",
                "Sure! Here are ten sentences:",
                "ok",
            ]
        );
        let verdicts: Vec<_> = sentences.iter().map(|s| check_sentence(s)).collect();
        assert_eq!(
            verdicts,
            [
                Ok(()),
                Ok(()),
                Ok(()),
                Err("digits, symbols or non-English letters"),
                Err("digits, symbols or non-English letters"),
                Err("not 5–25 words"),
            ]
        );
        assert_eq!(
            check_sentence("set an alarm for seven tomorrow."),
            Err("no capital first")
        );
        assert_eq!(
            check_sentence("Set an alarm for seven tomorrow"),
            Err("no end mark")
        );
        assert_eq!(
            check_sentence("Café au lait for two people please."),
            Err("digits, symbols or non-English letters")
        );
        assert!(
            sentence_prompt("prices", Task::Respond, 10).contains("Write 10 different requests")
        );
    }

    #[test]
    fn a_sentences_file_is_checked_and_deduplicated_by_line() {
        let dir = std::env::temp_dir().join(format!("tinyalign-llm-texts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.jsonl");
        let line = |text: &str, seed: u64| {
            serde_json::to_string(&LlmSentence {
                text: text.into(),
                task: Task::Respond,
                topic: "prices".into(),
                seed,
                llm: "qwen2.5-0.5b".into(),
                llm_sha256: "ab".into(),
            })
            .unwrap()
        };
        let good = "How much are two loaves of bread today?";
        std::fs::write(
            &path,
            format!(
                "{}\n{}\n",
                line(good, 0),
                line(&good.to_uppercase().replace("TODAY?", "Today?"), 1)
            ),
        )
        .unwrap();
        assert_eq!(read_llm_sentences(&path).unwrap().len(), 1);
        std::fs::write(
            &path,
            format!(
                "{}\n{}\n",
                line(good, 0),
                line("Pay 5 dollars now please.", 1)
            ),
        )
        .unwrap();
        let err = read_llm_sentences(&path).unwrap_err().to_string();
        assert!(
            err.contains("s.jsonl:2:") && err.contains("digits"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
