//! `exprun-verify.toml`: the settings of `exprun verify` kept with the
//! experiment (what to ignore, which tolerances, which variations), so that
//! every verify of it compares the same way and its verdict says how.
//!
//! Where it is read from: `--config FILE`; else `exprun-verify.toml` in the
//! current directory; else `exprun-verify.toml` at the root of the run's
//! first input directory that has one (an input is digest-checked against the
//! record, so such a file is the one the run was recorded with). Options
//! given on the command line add to the file's lists (`ignore`, `tolerance`,
//! `vary`, `compare`) and replace its single values (`runs`, `rtol`, `atol`).
//! A run fetched from a registry names host paths nobody here chose: its
//! inputs are not looked in.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Error;
use crate::digest::Digest;

/// The file's name, looked for in the current directory and the inputs.
pub const FILE_NAME: &str = "exprun-verify.toml";

/// A number, or the same written as a string (`"1e-6"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Number {
    Float(f64),
    Int(i64),
    Text(String),
}

impl Number {
    fn text(&self) -> String {
        match self {
            Number::Float(x) => format!("{x:e}"),
            Number::Int(i) => i.to_string(),
            Number::Text(s) => s.clone(),
        }
    }
}

/// The file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    runs: Option<u32>,
    #[serde(default)]
    vary: Vec<String>,
    #[serde(default)]
    ignore: Vec<String>,
    #[serde(default)]
    compare: Vec<String>,
    #[serde(default)]
    rtol: Option<Number>,
    #[serde(default)]
    atol: Option<Number>,
    #[serde(default)]
    tolerance: Vec<String>,
}

/// The settings of one verify: the file's, with the command line's on top.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Plain replays.
    pub runs: u32,
    /// Variations, as given (`all` or names).
    pub vary: Vec<String>,
    /// Streams (`stdout`, `stderr`) and output file patterns left out of the comparison.
    pub ignore: Vec<String>,
    /// What is compared beyond content: `modes`.
    pub compare: Vec<String>,
    /// General relative tolerance, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtol: Option<String>,
    /// General absolute tolerance, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub atol: Option<String>,
    /// Per-file tolerance rules.
    pub tolerance: Vec<String>,
    /// The file read, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigFile>,
}

/// The settings file a verify read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// Where it was read: its host path.
    pub path: PathBuf,
    /// How it was found: `--config`, `current directory`, or `input <destination>`.
    pub found: String,
    /// sha256 of its bytes.
    pub digest: Digest,
}

/// What was given on the command line.
#[derive(Debug, Default)]
pub struct Given {
    /// `--runs`.
    pub runs: Option<u32>,
    /// `--vary`.
    pub vary: Vec<String>,
    /// `--ignore`.
    pub ignore: Vec<String>,
    /// `--compare`.
    pub compare: Vec<String>,
    /// `--rtol`.
    pub rtol: Option<String>,
    /// `--atol`.
    pub atol: Option<String>,
    /// `--tolerance`.
    pub tolerance: Vec<String>,
}

/// Find the settings file: `given.config`, else in `cwd`, else at the root of
/// the first of `inputs` (host path, destination) that has one.
pub fn find(given: Option<&Path>, cwd: &Path, inputs: &[(PathBuf, PathBuf)]) -> Option<(PathBuf, String)> {
    if let Some(p) = given {
        return Some((p.to_path_buf(), "--config".into()));
    }
    let here = cwd.join(FILE_NAME);
    if here.is_file() {
        return Some((here, "current directory".into()));
    }
    inputs.iter().find_map(|(source, destination)| {
        let p = source.join(FILE_NAME);
        // Only a plain file at the input's root: never through a symlink.
        let plain = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file());
        plain.then(|| (p, format!("input {}", destination.display())))
    })
}

/// The settings: the file at `found` (if any) under what `given` says.
pub fn settings(found: Option<(PathBuf, String)>, given: Given) -> Result<Settings, Error> {
    let (file, config) = match found {
        None => (File::default(), None),
        Some((path, how)) => {
            let bytes = std::fs::read(&path).map_err(|source| Error::Io {
                op: "reading",
                path: path.clone(),
                source,
            })?;
            let bad = |why: String| Error::Config { path: path.clone(), why };
            let text = std::str::from_utf8(&bytes).map_err(|e| bad(format!("not UTF-8: {e}")))?;
            let file: File = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
            let digest = Digest::of_bytes(&bytes);
            (file, Some(ConfigFile { path, found: how, digest }))
        }
    };
    let join = |mut a: Vec<String>, b: Vec<String>| {
        for x in b {
            if !a.contains(&x) {
                a.push(x);
            }
        }
        a
    };
    let s = Settings {
        runs: given.runs.or(file.runs).unwrap_or(1),
        vary: join(file.vary, given.vary),
        ignore: join(file.ignore, given.ignore),
        compare: join(file.compare, given.compare),
        rtol: given.rtol.or(file.rtol.map(|n| n.text())),
        atol: given.atol.or(file.atol.map(|n| n.text())),
        tolerance: join(file.tolerance, given.tolerance),
        config,
    };
    if !(1..=100).contains(&s.runs) {
        return Err(Error::Setting { what: "runs".into(), why: format!("{}: between 1 and 100", s.runs) });
    }
    if let Some(c) = s.compare.iter().find(|c| c.as_str() != "modes") {
        return Err(Error::Setting {
            what: "compare".into(),
            why: format!("{c:?}: only \"modes\" (permission bits) can be compared beyond content"),
        });
    }
    Ok(s)
}

impl Settings {
    /// Whether permission bits count as a difference.
    pub fn compare_modes(&self) -> bool {
        self.compare.iter().any(|c| c == "modes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join(FILE_NAME);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn the_file_is_read_and_the_command_line_adds_to_it() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "runs = 2\nvary = [\"tz\"]\nignore = [\"stderr\", \"logs/*.log\"]\nrtol = 1e-9\natol = \"0\"\n\
             tolerance = [\"m.json:$.loss=1e-6\"]\ncompare = [\"modes\"]\n",
        );
        let found = find(None, d.path(), &[]);
        assert_eq!(found.as_ref().map(|f| f.1.as_str()), Some("current directory"));
        let given = Given { vary: vec!["hostname".into()], rtol: Some("1e-3".into()), ..Given::default() };
        let s = settings(found, given).unwrap();
        assert_eq!(s.runs, 2);
        assert_eq!(s.vary, ["tz", "hostname"]);
        assert_eq!(s.ignore, ["stderr", "logs/*.log"]);
        assert_eq!((s.rtol.as_deref(), s.atol.as_deref()), (Some("1e-3"), Some("0")));
        assert!(s.compare_modes());
        let c = s.config.unwrap();
        assert_eq!(c.digest, Digest::of_bytes(&std::fs::read(&c.path).unwrap()));
    }

    #[test]
    fn an_input_holds_it_when_the_current_directory_does_not() {
        let (cwd, input) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(input.path(), "ignore = [\"stdout\"]\n");
        let inputs = [(input.path().to_path_buf(), PathBuf::from("/code"))];
        let found = find(None, cwd.path(), &inputs);
        assert_eq!(found.as_ref().map(|f| f.1.as_str()), Some("input /code"));
        assert_eq!(settings(found, Given::default()).unwrap().ignore, ["stdout"]);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "ignor = [\"stderr\"]\n");
        let e = settings(Some((p.clone(), "--config".into())), Given::default()).unwrap_err().to_string();
        assert!(e.contains(&p.display().to_string()) && e.contains("ignor"), "{e}");
        write(d.path(), "compare = [\"owners\"]\n");
        let e = settings(Some((p, "--config".into())), Given::default()).unwrap_err().to_string();
        assert!(e.contains("compare") && e.contains("owners"), "{e}");
    }
}
