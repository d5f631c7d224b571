//! `.s2iignore`: paths of the source that assemble does not get, read as s2i
//! reads the file.
//!
//! One pattern per line, relative to the source directory; lines starting
//! with `#` and blank lines are skipped, and spaces around a line are trimmed.
//! A pattern matches paths with as many components as it has (it is not
//! recursive, as with `.dockerignore`), each component by glob: `*` (any run
//! of characters within the component), `?` (one character), `[abc]`, `[a-z]`,
//! `[^a-z]`, and `\` to take the next character literally. A matched directory
//! is left out whole. `!PATTERN` takes back what the lines above it matched;
//! lines below it may match again. A pattern that would reach outside the
//! source (`..`) or does not parse is refused, naming its line.

use std::path::{Component, Path};

use crate::glob::{Glob, Syntax};

/// The rules of one `.s2iignore`, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ignore {
    /// (whether the rule takes paths back, the pattern's components)
    rules: Vec<(bool, Vec<Glob>)>,
}

impl Ignore {
    /// Parse a `.s2iignore`; the error names the line and says why.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| format!("line {}: {line:?}: {why}", i + 1);
            let (back, pattern) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let mut parts = Vec::new();
            for c in Path::new(pattern).components() {
                match c {
                    Component::Normal(s) => {
                        let s = s.to_str().ok_or_else(|| bad("is not UTF-8"))?;
                        parts.push(Glob::parse(s, Syntax::COMPONENTS).map_err(|why| bad(&why))?);
                    }
                    Component::RootDir | Component::CurDir => {}
                    Component::ParentDir | Component::Prefix(_) => {
                        return Err(bad("'..' would reach outside the source directory"))
                    }
                }
            }
            if parts.is_empty() {
                return Err(bad("names the source directory itself"));
            }
            rules.push((back, parts));
        }
        Ok(Self { rules })
    }

    /// Whether `rel`, a path relative to the source directory, is left out.
    pub fn ignores(&self, rel: &Path) -> bool {
        let names: Vec<&str> = rel.components().filter_map(|c| c.as_os_str().to_str()).collect();
        let mut ignored = false;
        for (back, pattern) in &self.rules {
            if pattern.len() == names.len() && pattern.iter().zip(&names).all(|(p, n)| p.matches(n)) {
                ignored = !back;
            }
        }
        ignored
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignores(rules: &str, path: &str) -> bool {
        Ignore::parse(rules).unwrap().ignores(Path::new(path))
    }

    #[test]
    fn patterns_match_component_by_component() {
        let rules = "# build output\n\n  *.log  \nbuild\ndata/*.csv\n/.git\n";
        for yes in ["a.log", "build", ".git", "data/x.csv"] {
            assert!(ignores(rules, yes), "{yes}");
        }
        for no in ["src/a.log", "build.rs", "data/sub/x.csv", "data", "README"] {
            assert!(!ignores(rules, no), "{no}");
        }
    }

    #[test]
    fn exclamation_marks_take_back_what_came_before() {
        let rules = "*.md\n!README.md\n";
        assert!(ignores(rules, "notes.md"));
        assert!(!ignores(rules, "README.md"));
        assert!(ignores("!README.md\n*.md\n", "README.md"), "a later pattern matches again");
    }

    #[test]
    fn classes_and_escapes() {
        assert!(ignores("file[0-9]", "file7"));
        assert!(!ignores("file[0-9]", "filex"));
        assert!(ignores("file[^0-9]", "filex"));
        assert!(ignores("a?c", "abc"));
        assert!(!ignores("a?c", "ac"));
        assert!(ignores("\\*star", "*star"));
        assert!(!ignores("\\*star", "xstar"));
        assert!(ignores("[]]x", "]x"));
    }

    #[test]
    fn bad_patterns_name_their_line() {
        let e = Ignore::parse("ok\n../secret\n").unwrap_err();
        assert!(e.starts_with("line 2") && e.contains("outside"), "{e}");
        assert!(Ignore::parse("x[ab\n").unwrap_err().contains("without its ']'"));
        assert!(Ignore::parse("x\\").unwrap_err().contains("ends with"));
        assert!(Ignore::parse("/\n").unwrap_err().contains("source directory itself"));
        assert!(Ignore::parse("# only a comment\n\n").unwrap().is_empty());
    }
}
