//! The node configuration file, `/etc/exprun/exprun.toml` (or the file
//! `$EXPRUN_CONFIG` names): settings that belong to the host, not to one
//! command line. Today: where the records of pod containers are kept, and how
//! many of them.
//!
//! ```toml
//! [records]
//! root = "/var/lib/exprun"        # an exprun root; records go to its runs/
//!
//! [records.retention]
//! max_age = "30d"                 # or "none"
//! max_count = 10000               # or "none"
//! max_size = "1g"                 # or "none"
//! ```
//!
//! A missing default file means the defaults; a file named by `$EXPRUN_CONFIG`
//! must exist. Unknown keys and bad values are refused with the file, the key
//! and the value.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The node configuration file when `$EXPRUN_CONFIG` is not set.
pub const DEFAULT_CONFIG: &str = "/etc/exprun/exprun.toml";
/// The environment variable naming another configuration file.
pub const CONFIG_ENV: &str = "EXPRUN_CONFIG";
/// Where pod containers' records go by default: the default root of exprun as
/// root, so that `exprun runs ls` lists them without `--root`.
pub const DEFAULT_RECORDS_ROOT: &str = "/var/lib/exprun";
/// Default retention: records older than this are removed.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default retention: at most this many pod records are kept.
pub const DEFAULT_MAX_COUNT: u64 = 10_000;
/// Default retention: pod records take at most this many bytes together.
pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;

/// Configuration errors: each names the file, and the key and value when one is bad.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("reading the node configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is not TOML.
    #[error("parsing the node configuration {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A key has a value exprun cannot use, or is not known.
    #[error("node configuration {path}: {key} = {value}: {why}")]
    Value {
        /// The file.
        path: PathBuf,
        /// The key, dotted (`records.retention.max_age`).
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong and what to write instead.
        why: String,
    },
}

/// The node configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// `[records]`.
    pub records: RecordsConfig,
}

/// `[records]`: the records of pod containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsConfig {
    /// The exprun root whose `runs/` keeps them.
    pub root: PathBuf,
    /// `[records.retention]`.
    pub retention: Retention,
}

/// `[records.retention]`: bounds on the pod records kept; `None` is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Records written longer ago than this are removed.
    pub max_age: Option<Duration>,
    /// At most this many are kept.
    pub max_count: Option<u64>,
    /// At most this many bytes of them are kept.
    pub max_size: Option<u64>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            records: RecordsConfig {
                root: PathBuf::from(DEFAULT_RECORDS_ROOT),
                retention: Retention {
                    max_age: Some(DEFAULT_MAX_AGE),
                    max_count: Some(DEFAULT_MAX_COUNT),
                    max_size: Some(DEFAULT_MAX_SIZE),
                },
            },
        }
    }
}

impl NodeConfig {
    /// Load the file `$EXPRUN_CONFIG` names (which must exist), else
    /// [`DEFAULT_CONFIG`] (the defaults when it is missing).
    pub fn load() -> Result<Self, Error> {
        match std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
            Some(p) => Self::load_file(Path::new(&p), true),
            None => Self::load_file(Path::new(DEFAULT_CONFIG), false),
        }
    }

    /// Load `path`; when it is missing, the defaults unless `required`.
    pub fn load_file(path: &Path, required: bool) -> Result<Self, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !required => Ok(Self::default()),
            Err(source) => Err(Error::Read { path: path.to_path_buf(), source }),
        }
    }

    /// Parse the text of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, Error> {
        let table: toml::Table = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let bad = |key: &str, value: &toml::Value, why: &str| Error::Value {
            path: path.to_path_buf(),
            key: key.into(),
            value: show(value),
            why: why.into(),
        };
        let mut config = Self::default();
        for (k, v) in &table {
            if k != "records" {
                return Err(bad(k, v, "unknown key; the known section is [records]"));
            }
            let toml::Value::Table(records) = v else {
                return Err(bad(k, v, "expected a [records] section"));
            };
            for (k, v) in records {
                let key = format!("records.{k}");
                match k.as_str() {
                    "root" => {
                        let dir = v.as_str().map(PathBuf::from).filter(|p| p.is_absolute());
                        config.records.root =
                            dir.ok_or_else(|| bad(&key, v, "expected an absolute directory path"))?;
                    }
                    "retention" => {
                        let toml::Value::Table(t) = v else {
                            return Err(bad(&key, v, "expected a [records.retention] section"));
                        };
                        parse_retention(t, &mut config.records.retention, &bad)?;
                    }
                    _ => {
                        return Err(bad(
                            &key,
                            v,
                            "unknown key; the known keys are root and [records.retention]",
                        ))
                    }
                }
            }
        }
        Ok(config)
    }
}

/// A value as it would be written in the file (sections and arrays abridged).
fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) => "[...]".into(),
        toml::Value::Table(_) => "{...}".into(),
    }
}

fn parse_retention(
    t: &toml::Table,
    r: &mut Retention,
    bad: &dyn Fn(&str, &toml::Value, &str) -> Error,
) -> Result<(), Error> {
    for (k, v) in t {
        let key = format!("records.retention.{k}");
        let none = v.as_str() == Some("none");
        match k.as_str() {
            "max_age" => {
                let why = "expected a duration such as \"30d\" or \"12h\", or \"none\"";
                r.max_age = match v.as_str() {
                    _ if none => None,
                    Some(s) => Some(
                        humantime::parse_duration(s)
                            .ok()
                            .filter(|d| !d.is_zero())
                            .ok_or_else(|| bad(&key, v, why))?,
                    ),
                    None => return Err(bad(&key, v, why)),
                };
            }
            "max_count" => {
                let why = "expected a number of records from 1 up, or \"none\"";
                r.max_count = match v.as_integer() {
                    _ if none => None,
                    Some(n) if n >= 1 => Some(n as u64),
                    _ => return Err(bad(&key, v, why)),
                };
            }
            "max_size" => {
                let why = "expected a size such as \"10g\" or \"512m\", or \"none\"";
                r.max_size = match (v.as_str(), v.as_integer()) {
                    _ if none => None,
                    (Some(s), _) => {
                        Some(crate::spec::options::parse_size("max_size", s).map_err(|_| bad(&key, v, why))?)
                    }
                    (None, Some(n)) if n >= 1 => Some(n as u64),
                    _ => return Err(bad(&key, v, why)),
                };
            }
            _ => {
                return Err(bad(&key, v, "unknown key; the known keys are max_age, max_count and max_size"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeConfig, Error> {
        NodeConfig::parse(Path::new("/etc/exprun/exprun.toml"), text)
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), NodeConfig::default());
        let d = NodeConfig::default().records;
        assert_eq!(d.root, Path::new("/var/lib/exprun"));
        assert_eq!(d.retention.max_count, Some(10_000));
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            "[records]\nroot = \"/srv/exprun\"\n[records.retention]\nmax_age = \"2h\"\nmax_count = 5\nmax_size = \"10g\"\n",
        )
        .unwrap();
        assert_eq!(c.records.root, Path::new("/srv/exprun"));
        let r = c.records.retention;
        assert_eq!(r.max_age, Some(Duration::from_secs(7200)));
        assert_eq!(r.max_count, Some(5));
        assert_eq!(r.max_size, Some(10 << 30));
        let c = parse("[records.retention]\nmax_age = \"none\"\nmax_count = \"none\"\nmax_size = 4096\n")
            .unwrap();
        let r = c.records.retention;
        assert_eq!((r.max_age, r.max_count, r.max_size), (None, None, Some(4096)));
    }

    #[test]
    fn bad_values_name_the_file_key_and_value() {
        for (text, key, value) in [
            ("[records.retention]\nmax_age = \"soon\"", "records.retention.max_age", "\"soon\""),
            ("[records.retention]\nmax_count = 0", "records.retention.max_count", "0"),
            ("[records.retention]\nmax_size = \"lots\"", "records.retention.max_size", "\"lots\""),
            ("[records.retention]\nmax_days = 3", "records.retention.max_days", "3"),
            ("[records]\nroot = \"relative/dir\"", "records.root", "\"relative/dir\""),
            ("[record]\nroot = \"/x\"", "record", ""),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains("/etc/exprun/exprun.toml"), "{e}");
            assert!(e.contains(&format!("{key} = {value}")), "{e}");
        }
        let e = parse("[records\n").unwrap_err().to_string();
        assert!(e.starts_with("parsing the node configuration /etc/exprun/exprun.toml"), "{e}");
    }

    #[test]
    fn a_named_file_must_exist_and_the_default_may_not() {
        let missing = Path::new("/nonexistent/exprun.toml");
        assert_eq!(NodeConfig::load_file(missing, false).unwrap(), NodeConfig::default());
        let e = NodeConfig::load_file(missing, true).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/exprun.toml"), "{e}");
    }
}
