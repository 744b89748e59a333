//! Redis's glob matching (`stringmatchlen`), used by KEYS, SCAN and HSCAN.
//!
//! `*` any run, `?` one byte, `[abc]`, `[^abc]`, `[a-z]` classes, `\x` a
//! literal x. Matching is on bytes, binary-safe, and case-sensitive. A
//! nesting limit on `*` backtracking keeps a hostile pattern from turning
//! into exponential work.

/// True when `subject` matches `pattern`.
pub fn matches(pattern: &[u8], subject: &[u8]) -> bool {
    let mut skip_long = false;
    match_from(pattern, subject, 0, &mut skip_long)
}

/// Deepest `*` nesting before giving up, as Redis does.
const MAX_NESTING: usize = 1000;

fn match_from(mut p: &[u8], mut s: &[u8], nesting: usize, skip_long: &mut bool) -> bool {
    if nesting > MAX_NESTING {
        return false;
    }
    while let Some(&pc) = p.first() {
        if *skip_long {
            return false;
        }
        match pc {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                for start in 0..=s.len() {
                    if match_from(&p[1..], &s[start..], nesting + 1, skip_long) {
                        return true;
                    }
                    if *skip_long {
                        return false;
                    }
                }
                *skip_long = true;
                return false;
            }
            b'?' => {
                if s.is_empty() {
                    return false;
                }
                s = &s[1..];
                p = &p[1..];
            }
            b'[' => {
                let Some(&c) = s.first() else {
                    return false;
                };
                let (matched, rest) = match_class(&p[1..], c);
                if !matched {
                    return false;
                }
                p = rest;
                s = &s[1..];
            }
            b'\\' if p.len() >= 2 => {
                if s.first() != Some(&p[1]) {
                    return false;
                }
                p = &p[2..];
                s = &s[1..];
            }
            _ => {
                if s.first() != Some(&pc) {
                    return false;
                }
                p = &p[1..];
                s = &s[1..];
            }
        }
    }
    s.is_empty()
}

/// Matches `c` against the class body after `[`; returns the verdict and the
/// pattern after the closing `]` (or the end, for an unterminated class).
fn match_class(mut p: &[u8], c: u8) -> (bool, &[u8]) {
    let negate = p.first() == Some(&b'^');
    if negate {
        p = &p[1..];
    }
    let mut matched = false;
    loop {
        match p {
            [] => break,
            [b']', rest @ ..] => {
                p = rest;
                break;
            }
            [b'\\', x, rest @ ..] => {
                matched |= *x == c;
                p = rest;
            }
            [lo, b'-', hi, rest @ ..] if *hi != b']' => {
                let (lo, hi) = if lo <= hi { (*lo, *hi) } else { (*hi, *lo) };
                matched |= (lo..=hi).contains(&c);
                p = rest;
            }
            [x, rest @ ..] => {
                matched |= *x == c;
                p = rest;
            }
        }
    }
    (matched != negate, p)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs_match_like_redis() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "anything", true),
            ("*", "", true),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hallo", true),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("key:*:name", "key:12:name", true),
            ("key:*:name", "key:12:age", false),
            ("a*b*c", "aXXbYYc", true),
            ("[", "a", false),
        ];
        for (p, s, want) in cases {
            assert_eq!(matches(p.as_bytes(), s.as_bytes()), *want, "{p} ~ {s}");
        }
    }

    #[test]
    fn a_hostile_pattern_finishes() {
        let pattern = "a*".repeat(50) + "b";
        let subject = "a".repeat(60);
        assert!(!matches(pattern.as_bytes(), subject.as_bytes()));
    }
}
