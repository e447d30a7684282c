//! The synthetic datasets' texts: templates with slots (`datasets/synth/templates.txt`), expanded with seeded
//! slot choices into distinct sentences, each with its task.

use std::collections::{BTreeMap, HashSet};

use crate::recipes::SplitMix;
use crate::{DataError, Task};

/// The recipe file, compiled in so a built binary needs no source tree.
pub const TEMPLATES: &str = include_str!("../../../datasets/synth/templates.txt");

#[derive(Debug, Clone)]
pub struct TextPool {
    slots: BTreeMap<String, Vec<String>>,
    templates: Vec<(Task, String)>,
}

impl TextPool {
    /// Parses the template format; an error names the line.
    pub fn parse(text: &str) -> Result<Self, DataError> {
        let mut slots = BTreeMap::new();
        let mut templates = Vec::new();
        let at = |line: usize, message: String| DataError::Line {
            file: "datasets/synth/templates.txt".into(),
            line,
            message,
        };
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('@') {
                let (name, values) = rest
                    .split_once('=')
                    .ok_or_else(|| at(line_no, "a slot line is `@name = a | b`".into()))?;
                let values: Vec<String> = values
                    .split('|')
                    .map(crate::clean_text)
                    .filter(|v| !v.is_empty())
                    .collect();
                if values.is_empty() {
                    return Err(at(line_no, format!("slot `{}` has no values", name.trim())));
                }
                slots.insert(name.trim().to_string(), values);
                continue;
            }
            let (task, template) = line
                .split_once('\t')
                .ok_or_else(|| at(line_no, "a template line is `task<TAB>text`".into()))?;
            let task = match task.trim() {
                "respond" => Task::Respond,
                "transcribe" => Task::Transcribe,
                other => return Err(at(line_no, format!("unknown task `{other}`"))),
            };
            let template = crate::clean_text(template);
            if template.starts_with('-') {
                // It would reach the synthesisers' command lines as an option.
                return Err(at(line_no, "a text may not start with `-`".into()));
            }
            templates.push((line_no, task, template));
        }
        for (line_no, _, template) in &templates {
            for slot in slot_names(template) {
                if !slots.contains_key(slot) {
                    return Err(at(*line_no, format!("unknown slot `{{{slot}}}`")));
                }
            }
        }
        if templates.is_empty() {
            return Err(DataError::Invalid("templates.txt has no templates".into()));
        }
        Ok(Self {
            slots,
            templates: templates.into_iter().map(|(_, t, s)| (t, s)).collect(),
        })
    }

    /// The compiled-in recipe.
    pub fn builtin() -> Self {
        Self::parse(TEMPLATES).expect("datasets/synth/templates.txt parses (tested)")
    }

    pub fn template_count(&self) -> usize {
        self.templates.len()
    }

    /// Up to `count` distinct texts: templates taken in turn, slots filled by a seeded generator. Stops
    /// early when the templates cannot give more distinct texts.
    pub fn expand(&self, seed: u64, count: usize) -> Vec<(Task, String)> {
        let mut rng = SplitMix::new(seed);
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(count);
        let mut misses = 0;
        let mut turn = 0;
        while out.len() < count && misses < 50 * self.templates.len() {
            let (task, template) = &self.templates[turn % self.templates.len()];
            turn += 1;
            let text = self.fill(template, &mut rng);
            if seen.insert(text.clone()) {
                out.push((*task, text));
                misses = 0;
            } else {
                misses += 1;
            }
        }
        out
    }

    fn fill(&self, template: &str, rng: &mut SplitMix) -> String {
        let mut text = String::with_capacity(template.len() + 16);
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let close = open + rest[open..].find('}').expect("slots checked at parse");
            text.push_str(&rest[..open]);
            let values = &self.slots[&rest[open + 1..close]];
            text.push_str(&values[rng.below(values.len())]);
            rest = &rest[close + 1..];
        }
        text.push_str(rest);
        capitalise_first(&text)
    }
}

fn slot_names(template: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        match rest[open..].find('}') {
            Some(close) => {
                names.push(&rest[open + 1..open + close]);
                rest = &rest[open + close + 1..];
            }
            None => {
                names.push(&rest[open + 1..]);
                break;
            }
        }
    }
    names
}

/// A slot can start a sentence ("{name} called"): sentences start with a capital.
fn capitalise_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_templates_parse_and_expand_deterministically() {
        let pool = TextPool::builtin();
        assert!(pool.template_count() > 50);
        let a = pool.expand(3, 500);
        assert_eq!(a.len(), 500);
        assert_eq!(a, pool.expand(3, 500));
        assert_ne!(a, pool.expand(4, 500));
        let distinct: HashSet<_> = a.iter().map(|(_, t)| t).collect();
        assert_eq!(distinct.len(), 500);
        assert!(a.iter().all(|(_, t)| !t.contains('{') && !t.contains('}')));
        assert!(a.iter().any(|(task, _)| *task == Task::Respond));
        assert!(a.iter().any(|(task, _)| *task == Task::Transcribe));
    }

    #[test]
    fn expansion_stops_when_templates_run_out() {
        let pool = TextPool::parse("@x = a | b\nrespond\tSay {x}.\n").unwrap();
        let texts = pool.expand(0, 10);
        let mut sorted: Vec<_> = texts.into_iter().map(|(_, t)| t).collect();
        sorted.sort();
        assert_eq!(sorted, ["Say a.", "Say b."]);
    }

    #[test]
    fn bad_recipes_name_the_line() {
        let err = |text: &str| TextPool::parse(text).unwrap_err().to_string();
        assert!(err("@x = a\nrespond\tSay {y}.\n").contains(":2: unknown slot `{y}`"));
        assert!(err("shout\tSay it.\n").contains(":1: unknown task `shout`"));
        assert!(err("@x =  | \n").contains(":1: slot `x` has no values"));
        assert!(err("respond\t-v loud\n").contains("may not start with `-`"));
        assert!(err("just words\n").contains("task<TAB>text"));
    }
}
