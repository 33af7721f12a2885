//! Istio's regex check (`validateStringRegexp`): Go's RE2 syntax, at most 1024 characters.
//! Rust's `regex` crate is close to RE2 but not equal, so patterns are translated first.

/// Istio's `validateStringRegexp`: at most 1024 characters (Envoy's program-size cap) and
/// valid RE2.
pub(crate) fn validate_regexp(re: &str, place: &str) -> Result<(), String> {
    if re.len() > 1024 {
        return Err(format!(
            "{place:?}: regex is too large, max length allowed is 1024"
        ));
    }
    let translated = go_re2_to_rust(re).map_err(|e| {
        format!(
            "{place:?}: error parsing regexp: {e}; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)"
        )
    })?;
    match regex::RegexBuilder::new(&translated)
        .size_limit(1 << 24)
        .build()
    {
        // Go compiles without a size cap; only the syntax matters here.
        Ok(_) | Err(regex::Error::CompiledTooBig(_)) => Ok(()),
        Err(e) => {
            let detail = e
                .to_string()
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or_default()
                .trim()
                .to_string();
            Err(format!(
                "{place:?}: {detail}; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)"
            ))
        }
    }
}

/// Rewrites the places where Go's RE2 syntax (what Istio compiles) and Rust's `regex` differ,
/// so a pattern Go accepts is not rejected: a `{` that does not start a repetition is a
/// literal in Go, `\Q...\E` quotes text, and inside a class `[`, `&` and `~` are plain
/// characters (Rust reads them as nested classes and set operators). Go's limit of 1000 on
/// repetition counts is enforced here.
fn go_re2_to_rust(re: &str) -> Result<String, String> {
    let c: Vec<char> = re.chars().collect();
    let mut out = String::with_capacity(re.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    let mut class_first = false;
    // Whether the previous token was a repetition: Go rejects stacked ones (`a**`).
    let mut last_repeat = false;
    while i < c.len() {
        let ch = c[i];
        if ch == '\\' {
            last_repeat = false;
            if !in_class && c.get(i + 1) == Some(&'Q') {
                let rest: String = c[i + 2..].iter().collect();
                let (lit, quote_end) = match rest.find("\\E") {
                    Some(end) => (&rest[..end], 2),
                    None => (rest.as_str(), 0),
                };
                out.push_str(&regex::escape(lit));
                i += 2 + lit.chars().count() + quote_end;
                continue;
            }
            out.push(ch);
            if let Some(n) = c.get(i + 1) {
                out.push(*n);
            }
            i += 2;
            class_first = false;
            continue;
        }
        if in_class {
            match ch {
                ']' if !class_first => in_class = false,
                '[' if c.get(i + 1) == Some(&':') => {
                    // A POSIX class such as [:alpha:]: copy it through.
                    let rest: String = c[i..].iter().collect();
                    if let Some(end) = rest.find(":]") {
                        out.push_str(&rest[..end + 2]);
                        i += rest[..end + 2].chars().count();
                        class_first = false;
                        continue;
                    }
                    out.push('\\');
                }
                '[' | '&' | '~' => out.push('\\'),
                '-' if c.get(i + 1) == Some(&'-') => out.push('\\'),
                _ => {}
            }
            out.push(ch);
            class_first = false;
            i += 1;
            continue;
        }
        let repeat_len = match ch {
            '*' | '+' | '?' => Some(1),
            '{' => {
                let rest: String = c[i + 1..].iter().collect();
                match parse_repeat(&rest) {
                    Some((lo, hi, len)) => {
                        if lo > 1000 || hi.is_some_and(|h| h > 1000 || h < lo) {
                            let text: String = c[i..=i + len].iter().collect();
                            return Err(format!("invalid repeat count: `{text}`"));
                        }
                        Some(len + 1)
                    }
                    None => None,
                }
            }
            _ => None,
        };
        match repeat_len {
            Some(len) => {
                let mut end = i + len;
                if c.get(end) == Some(&'?') {
                    end += 1; // non-greedy
                }
                let text: String = c[i..end].iter().collect();
                if last_repeat {
                    return Err(format!("invalid nested repetition operator: `{text}`"));
                }
                out.push_str(&text);
                last_repeat = true;
                i = end;
                continue;
            }
            None if ch == '{' => out.push_str("\\{"),
            None if ch == '[' => {
                in_class = true;
                class_first = true;
                out.push('[');
                if c.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
            }
            None => out.push(ch),
        }
        last_repeat = false;
        i += 1;
    }
    Ok(out)
}

/// `n}`, `n,}` or `n,m}` after a `{`: (min, max, characters up to and including `}`).
fn parse_repeat(s: &str) -> Option<(u64, Option<u64>, usize)> {
    let digits = |t: &str| t.chars().take_while(char::is_ascii_digit).count();
    let n = digits(s);
    if n == 0 {
        return None;
    }
    let lo: u64 = s[..n].parse().unwrap_or(u64::MAX);
    let rest = &s[n..];
    if rest.starts_with('}') {
        return Some((lo, Some(lo), n + 1));
    }
    let after = rest.strip_prefix(',')?;
    let m = digits(after);
    if !after[m..].starts_with('}') {
        return None;
    }
    let hi = if m == 0 {
        None
    } else {
        Some(after[..m].parse().unwrap_or(u64::MAX))
    };
    Some((lo, hi, n + 1 + m + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_re2_syntax() {
        assert!(validate_regexp("^/api/v[0-9]+", "uri").is_ok());
        assert!(validate_regexp("(?=x)", "uri").is_err_and(|e| e.contains("RE2")));
        assert!(validate_regexp(&"a".repeat(1025), "uri").is_err_and(|e| e.contains("1024")));
        // Go's RE2 reads these as literals or quotes; Rust's parser must not reject them.
        for ok in [
            "/users/{id}",
            "a{",
            "x{,3}",
            "[a[b]",
            "[a&&b]",
            "[[:alpha:]]+",
            "[]a]",
            "\\Q{literal}*\\E$",
            "^/api/v[0-9]{1,3}/",
            "a{1000}",
            "a*?b+?c??",
            "(a*)*",
        ] {
            assert!(
                validate_regexp(ok, "uri").is_ok(),
                "{ok}: {:?}",
                validate_regexp(ok, "uri")
            );
        }
        for bad in [
            "a{1001}", "a{3,2}", "(", "[a", "a**", "a+*", "a{2}{3}", "(?<=x)y",
        ] {
            assert!(validate_regexp(bad, "uri").is_err(), "{bad}");
        }
    }
}
