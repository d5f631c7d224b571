//! Glob patterns, one matcher for the three places that take them:
//! `--pass-env` names ([`Syntax::NAMES`]), `.s2iignore` components
//! ([`Syntax::COMPONENTS`]) and the files of `verify` tolerance rules
//! ([`Syntax::PATHS`]).
//!
//! `*` is any run of characters and `?` one character; in paths neither
//! crosses a `/`, and `**` does (`**/` is zero or more directories). Where
//! the syntax has them, `\` takes the next character literally and `[abc]`,
//! `[a-z]`, `[^a-z]` are classes. Matching is dynamic programming over
//! (pattern token, text position): never exponential, whatever the pattern.

/// Which of the glob features a pattern may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syntax {
    /// `*` and `?` stay within a `/`-separated component, `**` crosses them.
    pub paths: bool,
    /// `\` escapes the next character; a trailing `\` is refused.
    pub escapes: bool,
    /// `[...]` classes; an unclosed `[` is refused.
    pub classes: bool,
}

impl Syntax {
    /// `*` and `?` only, over any characters.
    pub const NAMES: Syntax = Syntax { paths: false, escapes: false, classes: false };
    /// One path component: `*`, `?`, classes and escapes.
    pub const COMPONENTS: Syntax = Syntax { paths: false, escapes: true, classes: true };
    /// Whole paths: `*`, `?`, `**` and escapes.
    pub const PATHS: Syntax = Syntax { paths: true, escapes: true, classes: false };
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    toks: Vec<Tok>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`; `bool`: may match a `/`.
    One(bool),
    /// `*`; `bool`: may match a `/`.
    Star(bool),
    /// `**/`: nothing, or up to and including a `/`.
    Dirs,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    /// Parse `pattern`; an error says why it does not parse.
    pub fn parse(pattern: &str, syntax: Syntax) -> Result<Glob, String> {
        let p: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < p.len() {
            let c = p[i];
            i += 1;
            match c {
                '\\' if syntax.escapes => {
                    let next = p.get(i).ok_or("ends with '\\'")?;
                    toks.push(Tok::Lit(*next));
                    i += 1;
                }
                '?' => toks.push(Tok::One(!syntax.paths)),
                '*' if syntax.paths && p.get(i) == Some(&'*') => {
                    while p.get(i) == Some(&'*') {
                        i += 1;
                    }
                    if p.get(i) == Some(&'/') {
                        i += 1;
                        toks.push(Tok::Dirs);
                    } else {
                        toks.push(Tok::Star(true));
                    }
                }
                '*' => toks.push(Tok::Star(!syntax.paths)),
                '[' if syntax.classes => {
                    let (tok, end) = class(&p, i)?;
                    toks.push(tok);
                    i = end;
                }
                c => toks.push(Tok::Lit(c)),
            }
        }
        Ok(Glob { toks })
    }

    /// Whether the pattern is plain text, without wildcards.
    pub fn is_literal(&self) -> bool {
        self.toks.iter().all(|t| matches!(t, Tok::Lit(_)))
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        let s: Vec<char> = text.chars().collect();
        let n = s.len();
        // next[j]: the tokens after the current one match s[j..].
        let mut next = vec![false; n + 1];
        next[n] = true;
        for tok in self.toks.iter().rev() {
            let mut cur = vec![false; n + 1];
            for j in (0..=n).rev() {
                cur[j] = match tok {
                    Tok::Lit(c) => j < n && s[j] == *c && next[j + 1],
                    Tok::One(slash) => j < n && (*slash || s[j] != '/') && next[j + 1],
                    Tok::Star(slash) => next[j] || (j < n && (*slash || s[j] != '/') && cur[j + 1]),
                    Tok::Dirs => next[j] || (j + 1..=n).any(|k| s[k - 1] == '/' && next[k]),
                    Tok::Class { negated, ranges } => {
                        j < n
                            && ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&s[j])) != *negated
                            && next[j + 1]
                    }
                };
            }
            next = cur;
        }
        next[0]
    }
}

/// The class whose `[` is just before `p[start]`, and the index after its `]`.
fn class(p: &[char], start: usize) -> Result<(Tok, usize), String> {
    let mut i = start;
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let lo = match p.get(i) {
            None => return Err("has a '[' without its ']'".into()),
            Some(']') if !first => break,
            Some('\\') => {
                i += 1;
                *p.get(i).ok_or("ends with '\\'")?
            }
            Some(ch) => *ch,
        };
        first = false;
        i += 1;
        let hi = if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|x| *x != ']') {
            i += 2;
            p[i - 1]
        } else {
            lo
        };
        ranges.push((lo, hi));
    }
    Ok((Tok::Class { negated, ranges }, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(syntax: Syntax, p: &str, s: &str) -> bool {
        Glob::parse(p, syntax).unwrap().matches(s)
    }

    #[test]
    fn names() {
        let n = |p, s| m(Syntax::NAMES, p, s);
        assert!(n("A?C*", "ABCDEF") && !n("A?C", "ABCD") && n("*", ""));
        assert!(n("CUDA_*", "CUDA_VISIBLE_DEVICES") && !n("CUDA_*", "XCUDA_"));
        assert!(n("a\\b", "a\\b") && n("[x]", "[x]"), "no escapes or classes in names");
        assert!(n("a*", "a/b") && n("a?b", "a/b"), "names have no components");
    }

    #[test]
    fn components() {
        let c = |p, s| m(Syntax::COMPONENTS, p, s);
        assert!(c("*.log", "a.log") && !c("*.log", "a.txt"));
        assert!(c("[a-c]x", "bx") && !c("[a-c]x", "dx") && c("[^a-c]x", "dx"));
        assert!(c("[]]", "]") && c("\\*", "*") && !c("\\*", "a"));
        assert_eq!(Glob::parse("[ab", Syntax::COMPONENTS).unwrap_err(), "has a '[' without its ']'");
        assert_eq!(Glob::parse("ab\\", Syntax::COMPONENTS).unwrap_err(), "ends with '\\'");
    }

    #[test]
    fn paths() {
        let p = |p, s| m(Syntax::PATHS, p, s);
        assert!(p("results/*.csv", "results/a.csv"));
        assert!(!p("results/*.csv", "results/sub/a.csv"));
        assert!(p("results/**/*.csv", "results/a.csv"));
        assert!(p("results/**/*.csv", "results/x/y/a.csv"));
        assert!(p("**", "a/b/c"));
        assert!(p("**.json", "a/b.json"));
        assert!(p("m?trics.json", "metrics.json"));
        assert!(!p("m?trics.json", "m/trics.json"));
        assert!(p("a\\*b", "a*b") && !p("a\\*b", "axb"));
        assert!(!p("metrics.json", "metrics.jsonx"));
        assert!(p("[x]", "[x]"), "no classes in paths");
    }

    #[test]
    fn many_stars_stay_fast() {
        let (pattern, text) = (format!("{}b", "*a".repeat(40)), "a".repeat(2000));
        for syntax in [Syntax::NAMES, Syntax::COMPONENTS, Syntax::PATHS] {
            assert!(!m(syntax, &pattern, &text));
            assert!(m(syntax, &"*".repeat(30), "abcdefghijklmnopqrstuvwxyz"));
        }
    }
}
