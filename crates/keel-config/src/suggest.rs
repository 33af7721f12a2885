//! "Did you mean" suggestions for misspelt field names and enum values.

/// Levenshtein distance, case-insensitive (users often get only the case wrong).
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `got`, if it is close enough to be a plausible typo.
pub fn closest<'a>(got: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (got.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (distance(got, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            closest("hedears", ["headers", "uri", "method"]),
            Some("headers")
        );
        assert_eq!(closest("STRCT", ["STRICT", "PERMISSIVE"]), Some("STRICT"));
        assert_eq!(closest("strict", ["STRICT", "PERMISSIVE"]), Some("STRICT"));
        assert_eq!(closest("completelydifferent", ["headers", "uri"]), None);
    }
}
