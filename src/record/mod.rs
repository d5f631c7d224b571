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
pub mod gpu;
pub mod host;
pub mod index;
pub(crate) mod recognise;
pub mod retention;
pub mod secrets;
pub mod select;
pub mod store;
mod stored;

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
    /// A record file is larger than exprun reads.
    #[error(
        "record {path} is {size} bytes ({}), over the {} limit on run records, so exprun does not read it \
         (a record that large lists about a million files); to read it anyway, set {MAX_RECORD_SIZE_VAR} \
         above its size (e.g. {MAX_RECORD_SIZE_VAR}=1g): reading a record takes about as much memory as \
         its size",
        mib(*size),
        mib(*limit)
    )]
    TooBig {
        /// The file.
        path: PathBuf,
        /// Its size, or how much of it was read before the limit was passed.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A record path is not a regular file (a symlink, a fifo, a directory).
    #[error("record {path} is not a regular file; a run record is a file exprun wrote")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A shared part of a record could not be had.
    #[error(transparent)]
    Object(#[from] store::Error),
    /// The record size limit in the environment does not parse.
    #[error("{MAX_RECORD_SIZE_VAR}={value}: {why}")]
    Limit {
        /// The value given.
        value: String,
        /// What is wrong with it.
        why: String,
    },
}

/// The most bytes of a record file any reader accepts, unless
/// [`MAX_RECORD_SIZE_VAR`] says otherwise. A record is mostly its output and
/// input trees, about 250 bytes a file: an output at the listing bound
/// ([`files::MAX_ENTRIES`], a million files) fits; parsing a record takes
/// about twice its size in memory, and `runs diff` parses two.
pub const MAX_RECORD_BYTES: u64 = 256 << 20;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// The environment variable that changes [`MAX_RECORD_BYTES`] (a size: `512m`, `1g`).
pub const MAX_RECORD_SIZE_VAR: &str = "EXPRUN_MAX_RECORD_SIZE";

/// The record size limit: [`MAX_RECORD_SIZE_VAR`] if set, else [`MAX_RECORD_BYTES`].
pub fn max_record_bytes() -> Result<u64, Error> {
    match std::env::var(MAX_RECORD_SIZE_VAR) {
        Err(std::env::VarError::NotPresent) => Ok(MAX_RECORD_BYTES),
        Err(std::env::VarError::NotUnicode(v)) => {
            Err(Error::Limit { value: v.to_string_lossy().into_owned(), why: "not a size".into() })
        }
        Ok(v) => crate::spec::options::parse_size(MAX_RECORD_SIZE_VAR, &v).map_err(|e| Error::Limit {
            value: v.clone(),
            why: match e {
                crate::spec::Error::Option { why, .. } => why,
                other => other.to_string(),
            },
        }),
    }
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
    #[serde(default, deserialize_with = "store::tree")]
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

/// The command that made a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MadeBy {
    /// `exprun replay`.
    Replay,
    /// `exprun verify`: one of its replays, kept for its verdict.
    Verify,
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
    /// Why the cgroup figures are unavailable: the run had no cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
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
    #[serde(default, deserialize_with = "store::optional")]
    pub image: Option<ImageRecord>,
    /// The resolved executable inside the container.
    pub executable: Option<String>,
    /// sha256 of the seccomp profile the process ran under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_digest: Option<Digest>,
    /// The OCI runtime spec used: argv, env (redacted), cwd, user, hostname,
    /// capabilities, rlimits, namespaces, mounts, resources.
    #[serde(deserialize_with = "store::field")]
    pub spec: oci_spec::runtime::Spec,
    /// `--input`s with digests taken before the start.
    pub inputs: Vec<DataRecord>,
    /// `--output`s with digests taken after the exit.
    pub outputs: Vec<DataRecord>,
    /// The cgroup: version, directories, limits.
    pub cgroup: CgroupPlan,
    /// The host.
    #[serde(deserialize_with = "store::field")]
    pub host: HostFacts,
    /// The GPUs attached to the run (its `linux.devices` that are GPU nodes),
    /// as the host's driver described them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<gpu::GpuRecord>,
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
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "store::optional")]
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
    /// The command that made this replay (`replay_of`): `exprun replay` or
    /// `exprun verify`, whose replays `runs ls` leaves out unless asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub made_by: Option<MadeBy>,
    /// What differed from the replayed run when the replay started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<Drift>,
    /// The pod a container of a Kubernetes pod belonged to (from its bundle's
    /// CRI annotations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<Kubernetes>,
}

/// A pod container's names, from the annotations containerd's CRI plugin puts
/// into its bundle's config.json.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kubernetes {
    /// The pod (`io.kubernetes.cri.sandbox-name`).
    pub pod: Option<String>,
    /// The pod's namespace (`io.kubernetes.cri.sandbox-namespace`).
    pub namespace: Option<String>,
    /// The container (`io.kubernetes.cri.container-name`; none for the sandbox).
    pub container: Option<String>,
    /// `sandbox` (the pod's pause container) or `container`
    /// (`io.kubernetes.cri.container-type`).
    pub container_type: Option<String>,
    /// The sandbox's container id (`io.kubernetes.cri.sandbox-id`).
    pub sandbox_id: String,
}

impl Kubernetes {
    /// The names of a pod container: `None` unless the annotations have a
    /// sandbox id, the mark of a container that containerd's CRI plugin made.
    pub fn from_annotations(a: &std::collections::BTreeMap<String, String>) -> Option<Self> {
        let get = |k: &str| a.get(&format!("io.kubernetes.cri.{k}")).cloned();
        Some(Self {
            sandbox_id: get("sandbox-id")?,
            pod: get("sandbox-name"),
            namespace: get("sandbox-namespace"),
            container: get("container-name"),
            container_type: get("container-type"),
        })
    }
}

/// Characters that reorder the text around them when shown (bidirectional
/// embeddings, overrides and isolates, and the marks), or break a line where a
/// terminal may not show one: shown escaped, so what is printed reads in the
/// order it is stored ("Trojan Source", CVE-2021-42574).
fn reorders(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` for a terminal: control characters (C0 including newline and tab, DEL,
/// C1) and bidirectional controls escaped, so that a record cannot move the
/// cursor, clear the screen, set the window title, write the clipboard (OSC
/// 52) or reorder what is shown, and a value on one line stays on one line.
/// Everything printed from a record for people goes through here, and so does
/// every error exprun prints; JSON goes through [`json_for_terminal`].
pub fn for_terminal(s: &str) -> std::borrow::Cow<'_, str> {
    escape(s, false)
}

/// A message of several lines for a terminal: as [`for_terminal`], but its
/// newlines stay (exprun's own messages use them, e.g. a drift table).
pub fn lines_for_terminal(s: &str) -> std::borrow::Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, keep_newlines: bool) -> std::borrow::Cow<'_, str> {
    let special = |c: char| (c.is_control() && !(keep_newlines && c == '\n')) || reorders(c);
    if !s.contains(special) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if !special(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// JSON text for a terminal: the same JSON value, with DEL, C1 controls and
/// bidirectional controls written as `\uXXXX` escapes (serde_json escapes
/// only those below U+0020). They can only occur inside strings, where the
/// escape means the same character, so the output parses to the same value.
pub fn json_for_terminal(json: &str) -> std::borrow::Cow<'_, str> {
    let special = |c: char| c == '\u{7f}' || (c.is_control() && c as u32 >= 0x80) || reorders(c);
    if !json.contains(special) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if special(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
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
    /// Secret values are stored as digests under `key`. The GPUs among the
    /// plan's device nodes are looked up on this host ([`gpu::facts`]: nothing
    /// is read when there are none).
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
            gpus: gpu::facts(&plan.device_nodes),
            time: Times { created: rfc3339(created), ..Times::default() },
            usage: UsageRecord {
                unavailable: plan.no_cgroup.as_ref().map(|n| n.why.clone()),
                ..UsageRecord::default()
            },
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
            made_by: plan.request.as_ref().and_then(|r| r.made_by),
            drift: plan.request.as_ref().map(|r| r.drift.clone()).unwrap_or_default(),
            kubernetes: None,
        }
    }

    /// Whether `exprun verify` made this run: as its record says, or, for a
    /// record written before `made_by` was, by the command line verify gives
    /// its replays (`exprun verify <original>`).
    pub fn made_by_verify(&self) -> bool {
        match (self.made_by, &self.replay_of) {
            (Some(m), _) => m == MadeBy::Verify,
            (None, Some(of)) => self.command_line == ["exprun", "verify", of.as_str()],
            (None, None) => false,
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
        self.usage.cgroup = usage;
        self.usage.init_max_rss_kib = Some(outcome.init_max_rss_kib);
        self.stdout = Some(outcome.stdout.clone());
        self.stderr = Some(outcome.stderr.clone());
        self.signals = outcome.forwarded.clone();
    }
}

/// The digest of the running exprun binary, cached in `cache_dir` by (device,
/// inode, size, mtime) so it is computed once per installed binary, not per run.
pub fn exprun_info(cache_dir: &Path) -> ExprunInfo {
    ExprunInfo { version: env!("CARGO_PKG_VERSION").into(), binary_digest: binary_digest(cache_dir) }
}

/// How many binaries the digest cache remembers: a state root used by two
/// installed exprun binaries in turn (a root-owned one and the caller's own, two
/// versions) hashes neither again, where one entry made each run hash 16 MB.
const BINARY_DIGESTS_KEPT: usize = 8;

fn binary_digest(cache_dir: &Path) -> Option<Digest> {
    let exe = Path::new("/proc/self/exe");
    // A sealed copy of the installed binary is cached as that binary.
    let key = match crate::selfexe::copied_from() {
        Some(installed) => installed.to_string(),
        None => crate::selfexe::identity(&fs::metadata(exe).ok()?),
    };
    let cache = cache_dir.join("exprun-binary-digest");
    let known = fs::read_to_string(&cache).unwrap_or_default();
    let entries: Vec<(&str, &str)> = known.lines().filter_map(|line| line.split_once(' ')).collect();
    if let Some(d) = entries.iter().find(|&&(k, _)| k == key).and_then(|(_, d)| d.parse().ok()) {
        return Some(d);
    }
    let (digest, _) = Digest::of_file(exe).ok()?;
    // The newest first; the oldest beyond the limit are forgotten.
    let mut text = format!("{key} {digest}\n");
    for (k, d) in entries.into_iter().filter(|&(k, _)| k != key).take(BINARY_DIGESTS_KEPT - 1) {
        text.push_str(&format!("{k} {d}\n"));
    }
    if crate::fsutil::create_private_dir_all(cache_dir).is_ok() {
        let _ = crate::fsutil::write_atomic(&cache, text.as_bytes(), false);
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
        assert_eq!(for_terminal("abc\u{202e}fed\u{2066}x\u{2069}"), "abc\\u{202e}fed\\u{2066}x\\u{2069}");
        assert_eq!(lines_for_terminal("table\nrow \x1b[2J\r\tend\n"), "table\nrow \\x1b[2J\\r\\tend\n");
    }

    #[test]
    fn json_for_a_terminal_is_the_same_json() {
        let v = serde_json::json!({"name": "a\u{1b}]0;t\u{7}b\u{7f}\u{9b}2J\u{202e}x", "n": 1});
        let text = serde_json::to_string_pretty(&v).unwrap();
        assert!(text.contains('\u{9b}') && text.contains('\u{202e}'), "serde_json leaves them: {text}");
        let shown = json_for_terminal(&text);
        assert!(!shown.chars().any(|c| (c.is_control() && c != '\n') || reorders(c)), "{shown}");
        assert!(shown.contains(r"\u001b]0;t\u0007b\u007f\u009b2J\u202ex"), "{shown}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&shown).unwrap(), v);
        assert!(matches!(json_for_terminal("{\n  \"a\": \"é\"\n}"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn binary_digest_is_cached() {
        let dir = tempfile::tempdir().unwrap();
        let a = binary_digest(dir.path()).unwrap();
        assert!(dir.path().join("exprun-binary-digest").exists());
        assert_eq!(binary_digest(dir.path()).unwrap(), a);
    }

    #[test]
    fn the_digest_cache_keeps_several_binaries_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("exprun-binary-digest");
        let other =
            |i: usize| format!("1:{i}:5:6.7 sha256:{}", format!("{i:x}").repeat(64).get(..64).unwrap());
        let others: Vec<String> = (1..=BINARY_DIGESTS_KEPT).map(other).collect();
        std::fs::write(&cache, others.join("\n") + "\n").unwrap();
        let ours = binary_digest(dir.path()).unwrap();
        let text = std::fs::read_to_string(&cache).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), BINARY_DIGESTS_KEPT, "{text}");
        assert!(lines[0].ends_with(&format!(" {ours}")), "{text}");
        assert_eq!(lines[1..], others[..BINARY_DIGESTS_KEPT - 1], "the oldest one goes");

        // Found among the others (a planted digest shows it was not computed again).
        let key = lines[0].split_once(' ').unwrap().0.to_string();
        let planted = format!("sha256:{}", "ab".repeat(32));
        std::fs::write(&cache, format!("{}\n{key} {planted}\n{}\n", others[0], others[1])).unwrap();
        assert_eq!(binary_digest(dir.path()).unwrap().to_string(), planted);
    }
}
