//! Text normalisation and error rates. Normalisation: lower case, hyphens and slashes as spaces, other
//! punctuation dropped (apostrophes kept), numbers written as words, British spellings as American ones
//! (as Whisper's `EnglishSpellingNormalizer` does, for the words of this project's sets), single spaces,
//! so "Press 1-2-3." and "press one two three" match, and so do "kilometres" and "kilometers": one word
//! spelt two ways is not an error a listener would hear.

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// English words for 0 ≤ n < 10⁹.
pub fn number_words(n: u64) -> String {
    fn below_thousand(n: u64, out: &mut Vec<&'static str>) {
        if n >= 100 {
            out.push(ONES[(n / 100) as usize]);
            out.push("hundred");
        }
        let rest = n % 100;
        if rest >= 20 {
            out.push(TENS[(rest / 10) as usize]);
            if !rest.is_multiple_of(10) {
                out.push(ONES[(rest % 10) as usize]);
            }
        } else if rest > 0 {
            out.push(ONES[rest as usize]);
        }
    }
    if n == 0 {
        return "zero".into();
    }
    let mut out = Vec::new();
    for (part, name) in [
        ((n / 1_000_000) % 1000, Some("million")),
        ((n / 1000) % 1000, Some("thousand")),
        (n % 1000, None),
    ] {
        if part > 0 {
            below_thousand(part, &mut out);
            out.extend(name);
        }
    }
    out.join(" ")
}

/// British → American spellings of the words the project's datasets and answers use (a subset of
/// Whisper's `english.json`).
const SPELLINGS: &[(&str, &str)] = &[
    ("colour", "color"),
    ("colours", "colors"),
    ("favourite", "favorite"),
    ("centre", "center"),
    ("centres", "centers"),
    ("metre", "meter"),
    ("metres", "meters"),
    ("kilometre", "kilometer"),
    ("kilometres", "kilometers"),
    ("litre", "liter"),
    ("litres", "liters"),
    ("theatre", "theater"),
    ("neighbour", "neighbor"),
    ("organise", "organize"),
    ("realise", "realize"),
    ("travelling", "traveling"),
    ("cancelled", "canceled"),
    ("grey", "gray"),
];

/// Normalised words of `text`.
pub fn normalise(text: &str) -> Vec<String> {
    let cleaned: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c == '-' || c == '/' || c == '_' {
                ' '
            } else {
                c
            }
        })
        .filter(|c| c.is_alphanumeric() || c.is_whitespace() || *c == '\'')
        .collect();
    let mut words = Vec::new();
    for word in cleaned.split_whitespace() {
        let word = word.trim_matches('\'');
        match word.parse::<u64>() {
            Ok(n) if n < 1_000_000_000 => {
                words.extend(number_words(n).split(' ').map(str::to_owned))
            }
            _ if !word.is_empty() => words.push(
                SPELLINGS
                    .iter()
                    .find(|(british, _)| *british == word)
                    .map_or(word, |(_, american)| american)
                    .to_string(),
            ),
            _ => {}
        }
    }
    words
}

/// Edit operations of the best alignment of a hypothesis against a reference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EditCounts {
    pub substitutions: usize,
    pub insertions: usize,
    pub deletions: usize,
    pub reference_length: usize,
}

impl EditCounts {
    pub fn errors(&self) -> usize {
        self.substitutions + self.insertions + self.deletions
    }

    /// Errors per reference item (can exceed 1 with many insertions).
    pub fn rate(&self) -> f64 {
        self.errors() as f64 / self.reference_length.max(1) as f64
    }

    pub fn add(&mut self, other: EditCounts) {
        self.substitutions += other.substitutions;
        self.insertions += other.insertions;
        self.deletions += other.deletions;
        self.reference_length += other.reference_length;
    }
}

/// Levenshtein alignment with operation counts (ties prefer substitutions, then deletions).
pub fn edit_counts<T: PartialEq>(reference: &[T], hypothesis: &[T]) -> EditCounts {
    let (n, m) = (reference.len(), hypothesis.len());
    // cost[i][j] = (errors, subs, ins, dels) aligning reference[..i] with hypothesis[..j].
    let mut prev: Vec<(usize, usize, usize, usize)> = (0..=m).map(|j| (j, 0, j, 0)).collect();
    for i in 1..=n {
        let mut row = vec![(i, 0, 0, i); m + 1];
        for j in 1..=m {
            let (e, s, ins, d) = prev[j - 1];
            let same = reference[i - 1] == hypothesis[j - 1];
            let diagonal = if same {
                (e, s, ins, d)
            } else {
                (e + 1, s + 1, ins, d)
            };
            let (e, s, ins, d) = prev[j];
            let deletion = (e + 1, s, ins, d + 1);
            let (e, s, ins, d) = row[j - 1];
            let insertion = (e + 1, s, ins + 1, d);
            row[j] = [diagonal, deletion, insertion]
                .into_iter()
                .min_by_key(|c| c.0)
                .expect("three candidates");
        }
        prev = row;
    }
    let (_, substitutions, insertions, deletions) = prev[m];
    EditCounts {
        substitutions,
        insertions,
        deletions,
        reference_length: n,
    }
}

/// Word errors of `hypothesis` against `reference` after normalisation.
pub fn word_errors(reference: &str, hypothesis: &str) -> EditCounts {
    edit_counts(&normalise(reference), &normalise(hypothesis))
}

/// Character errors over the normalised texts (words joined by single spaces).
pub fn char_errors(reference: &str, hypothesis: &str) -> EditCounts {
    let chars = |t: &str| normalise(t).join(" ").chars().collect::<Vec<char>>();
    edit_counts(&chars(reference), &chars(hypothesis))
}

/// Bag-of-words F1 of the normalised words (SQuAD's answer metric): precision and recall of the words the
/// two texts share, counted with multiplicity. Two empty texts agree (1.0); one empty text scores 0.
pub fn token_f1(reference: &str, hypothesis: &str) -> f64 {
    let (reference, hypothesis) = (normalise(reference), normalise(hypothesis));
    if reference.is_empty() || hypothesis.is_empty() {
        return f64::from(u8::from(reference.is_empty() && hypothesis.is_empty()));
    }
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for w in &reference {
        *counts.entry(w).or_default() += 1;
    }
    let mut shared = 0usize;
    for w in &hypothesis {
        if let Some(c) = counts.get_mut(w.as_str()).filter(|c| **c > 0) {
            *c -= 1;
            shared += 1;
        }
    }
    if shared == 0 {
        return 0.0;
    }
    let precision = shared as f64 / hypothesis.len() as f64;
    let recall = shared as f64 / reference.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// The same normalised words in the same order.
pub fn exact_match(reference: &str, hypothesis: &str) -> bool {
    normalise(reference) == normalise(hypothesis)
}

/// An answer that declines instead of doing the task.
pub fn is_refusal(answer: &str) -> bool {
    let a = answer.to_lowercase();
    [
        "i can't",
        "i cannot",
        "i'm sorry",
        "i am sorry",
        "as an ai",
        "i'm not able",
        "i am not able",
        "i don't have",
    ]
    .iter()
    .any(|p| a.contains(p))
}

/// An answer stuck in a loop: some word 3-gram occurs three or more times.
pub fn is_looping(answer: &str) -> bool {
    let words = normalise(answer);
    let mut seen = std::collections::HashMap::new();
    words.windows(3).any(|w| {
        let count = seen.entry(w.to_vec()).or_insert(0);
        *count += 1;
        *count >= 3
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_punctuation_normalise() {
        assert_eq!(number_words(0), "zero");
        assert_eq!(number_words(15), "fifteen");
        assert_eq!(number_words(40), "forty");
        assert_eq!(number_words(342), "three hundred forty two");
        assert_eq!(number_words(2024), "two thousand twenty four");
        assert_eq!(number_words(1_000_001), "one million one");
        assert_eq!(
            number_words(1_234_567),
            "one million two hundred thirty four thousand five hundred sixty seven"
        );
        assert_eq!(number_words(100), "one hundred");
        assert_eq!(
            normalise("Press 1-2-3, then #!  Don't."),
            ["press", "one", "two", "three", "then", "don't"]
        );
        assert_eq!(normalise("'quoted' words"), ["quoted", "words"]);
        assert_eq!(
            normalise("Convert 8 miles to Kilometres, colour!"),
            normalise("convert eight miles to kilometers color")
        );
    }

    #[test]
    fn counts_match_hand_alignments() {
        // Three errors however they are aligned (3 S, or S + D + I).
        let c = word_errors("the cat sat on the mat", "the bat sat on mat now");
        assert_eq!((c.errors(), c.reference_length), (3, 6));
        assert!((c.rate() - 0.5).abs() < 1e-12);
        // One deletion and one insertion beat three substitutions.
        let c = word_errors("a b c d", "a c d e");
        assert_eq!((c.substitutions, c.deletions, c.insertions), (0, 1, 1));
        assert_eq!(
            word_errors("No more messages.", "no more messages").errors(),
            0
        );
        let empty = word_errors("hello world", "");
        assert_eq!((empty.deletions, empty.rate()), (2, 1.0));
        let extra = word_errors("hi", "hi hi hi");
        assert_eq!((extra.insertions, extra.rate()), (2, 2.0));
        assert_eq!(char_errors("abc", "abd").substitutions, 1);
    }

    #[test]
    fn f1_and_exact_match_match_hand_counts() {
        // Shared words {the, capital, lisbon}: precision 3/4, recall 3/6, F1 = 2·0.75·0.5/1.25 = 0.6.
        let f1 = token_f1(
            "The capital of Portugal is Lisbon.",
            "the capital city, Lisbon!",
        );
        assert!((f1 - 0.6).abs() < 1e-12, "{f1}");
        // Multiplicity: "eggs eggs" shares one "eggs" with the reference.
        let f1 = token_f1("eggs and rice", "eggs eggs");
        assert!((f1 - 2.0 * 0.5 * (1.0 / 3.0) / (0.5 + 1.0 / 3.0)).abs() < 1e-12);
        assert_eq!(token_f1("", ""), 1.0);
        assert_eq!(token_f1("something", ""), 0.0);
        assert_eq!(token_f1("a b", "c d"), 0.0);
        assert_eq!(
            token_f1("Set a timer for 5 seconds.", "set a timer for five seconds"),
            1.0
        );
        assert!(exact_match("It's 5 o'clock.", "it's five o'clock"));
        assert!(!exact_match("a b", "b a"));
        assert_eq!(token_f1("a b", "b a"), 1.0);
    }

    #[test]
    fn refusals_and_loops() {
        assert!(is_refusal("I'm sorry, but I can't help with that."));
        assert!(!is_refusal("Please enter your password."));
        assert!(is_looping("press one press one press one press one"));
        assert!(!is_looping("press one for sales press two for support"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn sentence() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    "the", "a", "cat", "Sat", "on", "mat,", "42", "don't", "-", "!"
                ],
                0..12,
            )
            .prop_map(|w| w.join(" "))
        }

        proptest! {
            #[test]
            fn a_text_against_itself_has_no_errors(x in sentence()) {
                prop_assert_eq!(word_errors(&x, &x).errors(), 0);
                prop_assert_eq!(char_errors(&x, &x).errors(), 0);
                prop_assert!(exact_match(&x, &x));
                prop_assert_eq!(token_f1(&x, &x), 1.0);
            }

            #[test]
            fn swapping_texts_swaps_insertions_and_deletions(a in sentence(), b in sentence()) {
                let (ab, ba) = (word_errors(&a, &b), word_errors(&b, &a));
                prop_assert_eq!(ab.errors(), ba.errors());
                // Equal-cost alignments may trade S for I + D, but the length difference is fixed.
                prop_assert_eq!(
                    ab.insertions as i64 - ab.deletions as i64,
                    ba.deletions as i64 - ba.insertions as i64
                );
                prop_assert_eq!(ab.insertions as i64 - ab.deletions as i64,
                    normalise(&b).len() as i64 - normalise(&a).len() as i64);
                let (f_ab, f_ba) = (token_f1(&a, &b), token_f1(&b, &a));
                prop_assert!((f_ab - f_ba).abs() < 1e-12 && (0.0..=1.0).contains(&f_ab));
            }

            #[test]
            fn errors_are_bounded_by_the_longer_text(a in sentence(), b in sentence()) {
                let c = word_errors(&a, &b);
                let (n, m) = (normalise(&a).len(), normalise(&b).len());
                prop_assert!(c.errors() <= n.max(m));
                prop_assert!(c.errors() >= n.abs_diff(m));
                // Every reference word is matched, substituted or deleted; every hypothesis word matched,
                // substituted or inserted.
                prop_assert!(c.substitutions + c.deletions <= n && c.substitutions + c.insertions <= m);
                prop_assert_eq!(c.reference_length, n);
            }
        }
    }
}
