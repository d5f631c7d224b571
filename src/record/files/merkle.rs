//! The Merkle digest of a tree, from its sorted entries: each directory's
//! digest is the sha256 of `exprun tree 1\n` and one line per child, sorted
//! by name:
//!
//! ```text
//! <kind> <mode octal, or -> <size> <name length>:<name> <ref>\n
//! ```
//!
//! where `ref` is the file's sha256 (`unread` when it was not read), the
//! subdirectory's digest, the symlink's `<length>:<target>`, or `-`. The
//! tree's digest is its root's (whose children are the top-level entries; a
//! tree that is one file has the one child `.`), with a last line
//! `incomplete <why>` when the tree was cut short. Names and targets carry
//! their length, so no name can pass for another line.

use std::collections::HashMap;

use super::FileEntry;
use crate::digest::{Digest, Hasher};

/// The Merkle digest of the tree with these entries; `incomplete` says why it
/// was cut short, if it was.
pub fn digest(entries: &[FileEntry], incomplete: Option<&str>) -> Digest {
    let mut children: HashMap<&str, Vec<(&str, &FileEntry)>> = HashMap::new();
    for e in entries {
        let (parent, name) = match e.path.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", e.path.as_str()),
        };
        children.entry(parent).or_default().push((name, e));
    }
    for v in children.values_mut() {
        v.sort_by(|a, b| a.0.cmp(b.0));
    }
    let mut h = node(&children, "");
    if let Some(why) = incomplete {
        h.update(format!("incomplete {why}\n").as_bytes());
    }
    h.finish().0
}

/// The hasher of directory `dir`, fed its children's lines.
fn node(children: &HashMap<&str, Vec<(&str, &FileEntry)>>, dir: &str) -> Hasher {
    let mut h = Hasher::new();
    h.update(b"exprun tree 1\n");
    for (name, e) in children.get(dir).map(Vec::as_slice).unwrap_or_default() {
        let reference = match e.kind.as_str() {
            "dir" => node(children, &e.path).finish().0.hex().to_string(),
            "file" => match &e.digest {
                Some(d) => d.hex().to_string(),
                None => "unread".to_string(),
            },
            "symlink" => {
                let t = e.target.as_deref().unwrap_or_default();
                format!("{}:{t}", t.len())
            }
            _ => "-".to_string(),
        };
        let mode = e.mode.map(|m| format!("{m:04o}")).unwrap_or_else(|| "-".into());
        let line = format!("{} {mode} {} {}:{name} {reference}\n", e.kind, e.size.unwrap_or(0), name.len());
        h.update(line.as_bytes());
    }
    h
}
