//! "Did you mean": the valid word closest to a misspelt one, for every complaint that lists
//! the valid choices (keys, balancing methods, variables, protocols).

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest of `valid` to `word`, when it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(word: &str, valid: &[&'a str]) -> Option<&'a str> {
    let word_lower = word.to_ascii_lowercase();
    valid
        .iter()
        .map(|v| (distance(&word_lower, &v.to_ascii_lowercase()), *v))
        .filter(|(d, v)| *d <= 2.max(v.len() / 3) && *d < v.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

/// `one of: a, b, c` with a "did you mean" in front when one is close.
pub(crate) fn choices(word: &str, valid: &[&str]) -> String {
    let list = valid.join(", ");
    match did_you_mean(word, valid) {
        Some(close) => format!("did you mean `{close}`? (valid: {list})"),
        None => format!("valid: {list}"),
    }
}
