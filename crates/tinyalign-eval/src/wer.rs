//! Text normalisation and error rates. Normalisation: lower case, hyphens and slashes as spaces, other
//! punctuation dropped (apostrophes kept), numbers written as words, single spaces, so "Press 1-2-3."
//! and "press one two three" match.

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
            _ if !word.is_empty() => words.push(word.to_string()),
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
    fn refusals_and_loops() {
        assert!(is_refusal("I'm sorry, but I can't help with that."));
        assert!(!is_refusal("Please enter your password."));
        assert!(is_looping("press one press one press one press one"));
        assert!(!is_looping("press one for sales press two for support"));
    }
}
