//! The run record: what ran, on what, with what result. Written by the parent
//! only, from the same [`RunPlan`] that spawn used, atomically, versioned.
//!
//! Secret values (by a variable's name, or credentials by their content) are
//! stored as keyed digests wherever the record holds them: the spec's env and
//! argv, the request, the command line ([`secrets`]), so records can be shared
//! and a changed secret still shows as a difference.

pub mod diff;
pub mod export;
pub mod files;
pub mod host;
pub(crate) mod recognise;
pub mod secrets;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::cgroups::{CgroupPlan, Usage};
use crate::digest::Digest;
use crate::image::LayerInfo;
use crate::plan::RunPlan;
use crate::spawn::wait::{Forwarded, Outcome, StreamSummary};
use crate::spec::options::{HostMount, RunOptions};
use crate::spec::pins::Determinism;
use files::TreeDigest;
use host::HostFacts;
pub use secrets::{looks_secret, Key};

/// The record format; bump on incompatible changes.
pub const RECORD_SCHEMA: &str = "exprun.dev/run-record/v1";

/// Record errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a record failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The state root's record key is unusable.
    #[error("record key {path} {why}; remove it to make a new one (secrets recorded under the old key can then no longer be compared)")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A record file does not parse.
    #[error("record {path} is not a valid run record: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The command ran and exited (any status).
    Exited,
    /// The command was killed by a signal.
    Killed,
    /// The command could not be executed (not found, not executable).
    NotStarted,
    /// exprun failed before or while running it.
    Failed,
    /// exprun died during the run; cleaned up later by `exprun gc` or the next run.
    Lost,
    /// Created with `exprun create` and run under another supervisor (e.g.
    /// containerd's shim), which reaped the command and holds its exit status.
    Supervised,
}

/// exprun itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExprunInfo {
    /// Crate version.
    pub version: String,
    /// sha256 of the exprun binary that ran.
    pub binary_digest: Option<Digest>,
}

/// The image, by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The reference as given.
    pub reference: String,
    /// The `name:tag` it resolved through, if any.
    pub name: Option<String>,
    /// Manifest digest: the image's identity.
    pub manifest_digest: Digest,
    /// Config digest.
    pub config_digest: Digest,
    /// OS/architecture.
    pub platform: String,
    /// Layers, bottom first.
    pub layers: Vec<LayerInfo>,
    /// The registry reference it was pulled from and what that resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<crate::image::Origin>,
}

/// A host directory or file given to the run, with its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataRecord {
    /// Host path.
    pub source: PathBuf,
    /// Path inside the container.
    pub destination: PathBuf,
    /// Tree digest and per-file digests (`None` if it could not be read).
    pub tree: Option<TreeDigest>,
    /// Why the digest is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One thing that differed, when a replay started, from the run it replays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// What: `image busybox:latest`, `input /data`, `env HF_TOKEN`,
    /// `host.kernel_release`, ...
    pub item: String,
    /// As recorded.
    pub recorded: String,
    /// As found at the replay.
    pub now: String,
    /// Whether it changes what the run computes on (image, inputs, secrets):
    /// such a replay needs `--allow-drift`.
    pub blocking: bool,
}

/// Times of the run (RFC 3339, UTC).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Times {
    /// When exprun began planning.
    pub created: String,
    /// When the command was released.
    pub started: Option<String>,
    /// When the command ended.
    pub ended: Option<String>,
    /// From release to reap.
    pub wall_seconds: Option<f64>,
}

/// How the run ended, in detail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// exprun's exit status (the command's status, 128+N, 125, 126, 127); none
    /// when another supervisor reaped the command.
    pub code: Option<i32>,
    /// The signal that ended the command, if any.
    pub signal: Option<String>,
    /// The OOM killer killed a process of the run.
    pub oom_killed: bool,
    /// A message explaining a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Resource usage of the whole container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// From the cgroup.
    #[serde(flatten)]
    pub cgroup: Usage,
    /// Peak RSS of the container's init process, KiB.
    pub init_max_rss_kib: Option<u64>,
}

/// One run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// [`RECORD_SCHEMA`].
    pub schema: String,
    /// Run id.
    pub run_id: String,
    /// `--name`.
    pub name: Option<String>,
    /// How it ended.
    pub status: Status,
    /// exprun's version and binary digest.
    pub exprun: ExprunInfo,
    /// The exprun command line (secret values redacted).
    pub command_line: Vec<String>,
    /// The image.
    pub image: Option<ImageRecord>,
    /// The resolved executable inside the container.
    pub executable: Option<String>,
    /// sha256 of the seccomp profile the process ran under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_digest: Option<Digest>,
    /// The OCI runtime spec used: argv, env (redacted), cwd, user, hostname,
    /// capabilities, rlimits, namespaces, mounts, resources.
    pub spec: oci_spec::runtime::Spec,
    /// `--input`s with digests taken before the start.
    pub inputs: Vec<DataRecord>,
    /// `--output`s with digests taken after the exit.
    pub outputs: Vec<DataRecord>,
    /// The cgroup: version, directories, limits.
    pub cgroup: CgroupPlan,
    /// The host.
    pub host: HostFacts,
    /// Times.
    pub time: Times,
    /// Usage.
    pub usage: UsageRecord,
    /// Exit.
    pub exit: ExitRecord,
    /// stdout digest and size.
    pub stdout: Option<StreamSummary>,
    /// stderr digest and size.
    pub stderr: Option<StreamSummary>,
    /// Signals exprun forwarded to the container.
    pub signals: Vec<Forwarded>,
    /// The deterministic profile: every pin applied and every source of
    /// nondeterminism left (`exprun run` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub determinism: Option<Determinism>,
    /// The options `exprun run` was given, normalised, secret values as digests:
    /// what `exprun replay` asks for again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RunOptions>,
    /// The run this one replays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
    /// The variation it ran under (`exprun verify --vary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variation: Option<String>,
    /// What differed from the replayed run when the replay started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<Drift>,
}

/// `s` for a terminal: control characters (C0 including newline and tab, DEL,
/// C1) escaped, so that a record cannot move the cursor, clear the screen, set
/// the window title or write the clipboard (OSC 52) when it is shown, and a
/// value on one line stays on one line. Everything printed from a record for
/// people goes through here; `--json` output is escaped by JSON itself.
pub fn for_terminal(s: &str) -> std::borrow::Cow<'_, str> {
    let control = |c: char| c.is_control();
    if !s.contains(control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && control(c) => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if control(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// RFC 3339 in UTC with second precision.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl RunRecord {
    /// A record for `plan`, before anything ran: status `failed` until told otherwise.
    /// Secret values are stored as digests under `key`.
    pub fn new(plan: &RunPlan, created: SystemTime, exprun: ExprunInfo, host: HostFacts, key: &Key) -> Self {
        let mut spec = plan.spec.clone();
        if let Some(p) = spec.process_mut() {
            if let Some(env) = p.env_mut() {
                *env = env.iter().map(|e| key.redact_env_entry(e)).collect();
            }
            let args = p.args().as_ref().map(|v| v.iter().map(|a| key.redact_arg(a)).collect());
            p.set_args(args);
        }
        let data = |v: &[HostMount]| {
            v.iter()
                .map(|m| DataRecord {
                    source: m.source.clone(),
                    destination: m.destination.clone(),
                    tree: None,
                    error: None,
                })
                .collect()
        };
        Self {
            schema: RECORD_SCHEMA.into(),
            run_id: plan.id.clone(),
            name: plan.name.clone(),
            status: Status::Failed,
            exprun,
            command_line: key.redact_command_line(&plan.command_line),
            image: plan.image.as_ref().map(|i| ImageRecord {
                reference: i.reference.clone(),
                name: i.name.clone(),
                manifest_digest: i.manifest_digest.clone(),
                config_digest: i.config_digest.clone(),
                platform: i.platform.clone(),
                layers: i.layers.clone(),
                origin: i.origin.clone(),
            }),
            executable: None,
            seccomp_digest: plan.seccomp.as_ref().map(|f| f.digest.clone()),
            spec,
            inputs: data(&plan.inputs),
            outputs: data(&plan.outputs),
            cgroup: plan.cgroup.clone(),
            host,
            time: Times { created: rfc3339(created), ..Times::default() },
            usage: UsageRecord::default(),
            exit: ExitRecord { code: Some(crate::error::EXIT_EXPRUN_FAILED), ..ExitRecord::default() },
            stdout: None,
            stderr: None,
            signals: Vec::new(),
            determinism: plan.request.as_ref().map(|r| r.determinism.clone()),
            request: plan.request.as_ref().map(|r| {
                let mut o = r.options.clone();
                for (k, v) in &mut o.env {
                    *v = key.redact_env_value(k, v);
                }
                let args = |v: &mut Vec<String>| v.iter_mut().for_each(|a| *a = key.redact_arg(a));
                args(&mut o.command);
                o.entrypoint.iter_mut().for_each(args);
                o
            }),
            replay_of: plan.request.as_ref().and_then(|r| r.replay_of.clone()),
            variation: plan.request.as_ref().and_then(|r| r.variation.clone()),
            drift: plan.request.as_ref().map(|r| r.drift.clone()).unwrap_or_default(),
        }
    }

    /// Fill in what the foreground wait learned.
    pub fn finish(&mut self, outcome: &Outcome, usage: Usage) {
        use crate::spawn::wait::{signal_name, Exit};
        self.time.started = Some(rfc3339(outcome.started));
        self.time.ended = Some(rfc3339(outcome.ended));
        self.time.wall_seconds = Some(outcome.wall_seconds);
        self.exit.code = Some(outcome.exit_code());
        self.exit.oom_killed = usage.oom_kills > 0;
        self.status = match (&outcome.exec_failure, outcome.exit) {
            (Some(f), _) => {
                self.exit.message = Some(f.message.clone());
                Status::NotStarted
            }
            (None, Exit::Code(_)) => Status::Exited,
            (None, Exit::Signal(s)) => {
                self.exit.signal = Some(signal_name(s));
                Status::Killed
            }
        };
        self.usage = UsageRecord { cgroup: usage, init_max_rss_kib: Some(outcome.init_max_rss_kib) };
        self.stdout = Some(outcome.stdout.clone());
        self.stderr = Some(outcome.stderr.clone());
        self.signals = outcome.forwarded.clone();
    }

    /// Write `runs/<id>/record.json` atomically and durably.
    pub fn write(&self, runs_dir: &Path) -> Result<PathBuf, Error> {
        let dir = runs_dir.join(&self.run_id);
        crate::fsutil::create_private_dir_all(&dir).map_err(|source| Error::Io {
            op: "creating",
            path: dir.clone(),
            source,
        })?;
        let path = dir.join("record.json");
        crate::fsutil::write_json_atomic(&path, self, true).map_err(|source| Error::Io {
            op: "writing",
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// Read a record file.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text =
            fs::read(path).map_err(|source| Error::Io { op: "reading", path: path.to_path_buf(), source })?;
        serde_json::from_slice(&text).map_err(|source| Error::Parse { path: path.to_path_buf(), source })
    }
}

/// The digest of the running exprun binary, cached in `cache_dir` by (device,
/// inode, size, mtime) so it is computed once per installed binary, not per run.
pub fn exprun_info(cache_dir: &Path) -> ExprunInfo {
    ExprunInfo { version: env!("CARGO_PKG_VERSION").into(), binary_digest: binary_digest(cache_dir) }
}

fn binary_digest(cache_dir: &Path) -> Option<Digest> {
    let exe = Path::new("/proc/self/exe");
    // A sealed copy of the installed binary is cached as that binary.
    let key = match crate::selfexe::copied_from() {
        Some(installed) => installed.to_string(),
        None => crate::selfexe::identity(&fs::metadata(exe).ok()?),
    };
    let cache = cache_dir.join("exprun-binary-digest");
    if let Ok(text) = fs::read_to_string(&cache) {
        if let Some((k, d)) = text.trim().split_once(' ') {
            if k == key {
                if let Ok(d) = d.parse() {
                    return Some(d);
                }
            }
        }
    }
    let (digest, _) = Digest::of_file(exe).ok()?;
    if crate::fsutil::create_private_dir_all(cache_dir).is_ok() {
        let _ = crate::fsutil::write_atomic(&cache, format!("{key} {digest}\n").as_bytes(), false);
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_for_terminals() {
        assert!(matches!(for_terminal("plain ünïcode"), std::borrow::Cow::Borrowed(_)));
        let hostile = "a\nb\r\t\x1b]52;c;aGk=\x07\x1b[2J\x7f\u{9b}31m\u{85}";
        let shown = for_terminal(hostile);
        assert_eq!(shown, "a\\nb\\r\\t\\x1b]52;c;aGk=\\x07\\x1b[2J\\x7f\\u{009b}31m\\u{0085}");
        assert!(!shown.chars().any(char::is_control), "{shown}");
    }

    #[test]
    fn binary_digest_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let a = binary_digest(dir.path()).unwrap();
        assert!(dir.path().join("exprun-binary-digest").exists());
        assert_eq!(binary_digest(dir.path()).unwrap(), a);
    }
}
