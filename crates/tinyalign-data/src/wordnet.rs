//! Sentences to read from WordNet 3.0's usage examples (Debian `wordnet-base`, fetched by `cargo xtask
//! fetch` into `<cache>/text-wordnet`): ~48,000 short English examples written by lexicographers to show
//! how a word is used ("the sky was leaden and thick"), over 30,000 word types. They give the synthetic
//! set the vocabulary breadth its templates lack.
//!
//! The synthesisers and Whisper both see the text, so only sentences a speaker can read aloud as written
//! are kept: letters, spaces and light punctuation, 4–16 words, no digits (a digit's spoken form is
//! ambiguous, and the scorer would not forgive "1365" against "thirteen sixty-five").

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::DataError;

pub const WORDNET_SOURCE: &str = "WordNet 3.0 usage examples (Debian wordnet-base 1:3.0-37)";
pub const WORDNET_LICENCE: &str =
    "WordNet 3.0 licence (Princeton University; use, copy, modify and distribute with the notice)";
/// The folder under the cache that `cargo xtask fetch` unpacks `wordnet-base` into.
pub const WORDNET_CACHE_DIR: &str = "text-wordnet";
const DATA_FILES: [&str; 4] = ["data.noun", "data.verb", "data.adj", "data.adv"];
const WORDS: std::ops::RangeInclusive<usize> = 4..=16;

/// Where the WordNet database lies under `cache` (see [`WORDNET_CACHE_DIR`]).
pub fn wordnet_dir(cache: &Path) -> PathBuf {
    cache
        .join(WORDNET_CACHE_DIR)
        .join("usr")
        .join("share")
        .join("wordnet")
}

/// Every usable example in the four data files under `dir`, deduplicated, in file order (noun, verb,
/// adjective, adverb). A missing file is an error that names it and the fetch command.
pub fn wordnet_sentences(dir: &Path) -> Result<Vec<String>, DataError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for name in DATA_FILES {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| {
            DataError::Io(format!(
                "{}: {e} (fetch WordNet with `cargo xtask fetch`)",
                path.display()
            ))
        })?;
        // The database is Latin-1 in places; such lines hold no usable example anyway.
        let text = String::from_utf8_lossy(&bytes);
        for sentence in examples_in_data_file(&text) {
            if seen.insert(sentence.clone()) {
                out.push(sentence);
            }
        }
    }
    if out.is_empty() {
        return Err(DataError::Invalid(format!(
            "{}: no usable WordNet examples",
            dir.display()
        )));
    }
    Ok(out)
}

/// The usable examples of one `data.*` file: a synset line ends in `| gloss; "example"; "example"`
/// (wndb(5WN)); the licence header's lines start with two spaces.
pub fn examples_in_data_file(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| !line.starts_with("  "))
        .filter_map(|line| line.split_once(" | ").map(|(_, gloss)| gloss))
        .flat_map(|gloss| gloss.split('"').skip(1).step_by(2))
        .filter_map(readable_sentence)
        .collect()
}

/// `example` as a sentence to read (first letter capitalised, a full stop unless it ends in . ? or !), or
/// `None` when it does not pass the filters in the module docs.
fn readable_sentence(example: &str) -> Option<String> {
    let text = crate::clean_text(example);
    let allowed = |c: char| c.is_ascii_alphabetic() || " ,.'?!-".contains(c);
    if !text.chars().all(allowed)
        || !WORDS.contains(&text.split(' ').count())
        || !text.starts_with(|c: char| c.is_ascii_alphabetic())
        || text.contains("--")
        || text.contains(" -")
        || text.contains("- ")
    {
        return None;
    }
    let mut chars = text.chars();
    let first = chars.next()?.to_ascii_uppercase();
    let mut sentence: String = std::iter::once(first).chain(chars).collect();
    if !sentence.ends_with(['.', '?', '!']) {
        sentence = sentence.trim_end_matches(',').to_string();
        sentence.push('.');
    }
    Some(sentence)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "  1 This software and database is being provided to you, the LICENSEE, by  \n\
00003553 03 n 02 whole 0 unit 0 002 @ 00002684 n 0000 | an assemblage of parts that is regarded as a single entity; \"how big is that part compared to the whole?\"; \"the team is a unit\"\n\
00004258 03 n 02 living_thing 0 animate_thing 0 000 | a living (or once living) entity\n\
00021265 03 n 01 food 0 000 | any substance that can be metabolized; \"food and drink\"; \"it remained feudatory to India until 1365\"; \"the sky was leaden and thick\"; \"an interest in music, art and so on\"\n\
00021939 03 n 01 artifact 0 000 | a man-made object; \"he set a row of posts in the ground\"; \"He said -- nothing\"; \"the sky was leaden and thick\"\n";

    #[test]
    fn examples_are_read_aloud_sentences() {
        assert_eq!(
            examples_in_data_file(SAMPLE),
            [
                "How big is that part compared to the whole?",
                "The team is a unit.",
                "The sky was leaden and thick.",
                "An interest in music, art and so on.",
                "He set a row of posts in the ground.",
                "The sky was leaden and thick.",
            ]
        );
    }

    #[test]
    fn filters_say_why_a_sentence_goes() {
        // Too short, digits, dashes, quotes inside, too long.
        for bad in [
            "food and drink",
            "it remained feudatory to India until 1365",
            "He said -- nothing",
            "it was a semi- automatic rifle",
            "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen",
            "we lived in the (old) house",
        ] {
            assert_eq!(readable_sentence(bad), None, "{bad}");
        }
        assert_eq!(
            readable_sentence("a well-known  face in town,").as_deref(),
            Some("A well-known face in town.")
        );
    }

    #[test]
    fn a_missing_database_names_the_file_and_the_fix() {
        let dir = std::env::temp_dir().join(format!("tinyalign-wn-missing-{}", std::process::id()));
        let message = wordnet_sentences(&dir).unwrap_err().to_string();
        assert!(
            message.contains("data.noun") && message.contains("cargo xtask fetch"),
            "{message}"
        );
    }

    #[test]
    fn sentences_are_deduplicated_across_files() {
        let dir = std::env::temp_dir().join(format!("tinyalign-wn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in DATA_FILES {
            std::fs::write(dir.join(name), SAMPLE).unwrap();
        }
        let sentences = wordnet_sentences(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(sentences.len(), 5);
    }
}
