//! What a replayed request asks for beyond exprun's default profile, and what a
//! run fetched from a registry may have of it.
//!
//! A fetched record is someone else's claim: its `request` is what replay runs,
//! and it may ask for the host's `/` read-write, CAP_SYS_ADMIN, no seccomp and
//! the host's network. [`validate`] and [`unknown_fields`] refuse a request
//! that `exprun run` could not have written; [`audit`] lists every host path
//! and privilege in it, each with the `--allow` name that permits it (none for
//! what a fetched run may never have). All three are pure: the caller decides,
//! from the run's [`Origin`], what is refused.

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use super::Error;
use crate::record::secrets;
use crate::spec::options::{self, Network, RunOptions, SeccompChoice};
use crate::spec::pins::UNPINNABLE;
use crate::spec::DEFAULT_CAPABILITIES;

/// Where a record comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Recorded by a run on this state root.
    Local,
    /// Fetched from a registry (`replay oci://`, `verify oci://`, or a later
    /// replay of such a run): its record is a claim, its files the artifact's.
    Fetched {
        /// `runs/<id>`.
        run_dir: PathBuf,
    },
}

impl Origin {
    /// The origin of run `run_id` under `runs_dir`: fetched when it was just
    /// fetched (`via_registry`) or when it has the `artifact/` directory that
    /// only a fetch makes.
    pub fn of(runs_dir: &Path, run_id: &str, via_registry: bool) -> Self {
        let run_dir = runs_dir.join(run_id);
        if via_registry || std::fs::symlink_metadata(run_dir.join("artifact")).is_ok() {
            Origin::Fetched { run_dir }
        } else {
            Origin::Local
        }
    }

    /// Whether the record was fetched.
    pub fn is_fetched(&self) -> bool {
        matches!(self, Origin::Fetched { .. })
    }

    /// The artifact's files, for a fetched run.
    pub fn artifact(&self) -> Option<PathBuf> {
        match self {
            Origin::Local => None,
            Origin::Fetched { run_dir } => Some(run_dir.join("artifact")),
        }
    }
}

/// One thing a request asks for beyond the default profile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The request's field: `volumes[0]`, `cap_add`, `network`, ...
    pub field: String,
    /// What it asks for, in words.
    pub what: String,
    /// The `--allow` name that permits it for a fetched run; `None`: a fetched
    /// run may not have it at all.
    pub allow: Option<String>,
    /// For what a fetched run may not have: what to do instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instead: Option<String>,
}

impl Finding {
    fn allowable(field: String, what: String, allow: String) -> Self {
        Self { field, what, allow: Some(allow), instead: None }
    }

    fn refused(field: String, what: String, instead: String) -> Self {
        Self { field, what, allow: None, instead: Some(instead) }
    }
}

/// What the `--allow` names look like, for help and errors.
pub const ALLOW_FORMS: &str = "cap:NAME, network:host, ipc:host, seccomp:unconfined, seccomp:sha256:HEX, \
    mount:PATH, mount:PATH:rw, device:PATH, cdi:VENDOR/CLASS=NAME, env:NAME, tmpfs:DST:dev, tmpfs:DST:suid, \
    output:DST:suid, output:DST:dev, ulimit:NAME";

/// Parse one `--allow` into the name [`audit`] gives: `cap:sys_admin` and
/// `cap:CAP_SYS_ADMIN` are `cap:SYS_ADMIN`.
pub fn parse_allow(s: &str) -> Result<String, Error> {
    let bad = |why: String| Error::BadAllow { given: s.to_string(), why };
    let (kind, rest) =
        s.split_once(':').ok_or_else(|| bad(format!("expected KIND:VALUE, one of: {ALLOW_FORMS}")))?;
    let path = |p: &str| -> Result<PathBuf, Error> {
        let p = PathBuf::from(p);
        if is_plain_absolute(&p) {
            Ok(p)
        } else {
            Err(bad(format!("{:?} is not an absolute path without '.' or '..'", p.display().to_string())))
        }
    };
    match kind {
        "cap" => {
            let name = options::parse_capability("--allow", rest).map_err(|e| bad(e.to_string()))?;
            Ok(format!("cap:{}", name.trim_start_matches("CAP_")))
        }
        "network" if rest == "host" => Ok(s.to_string()),
        "ipc" if rest == "host" => Ok(s.to_string()),
        "seccomp" if rest == "unconfined" => Ok(s.to_string()),
        "seccomp"
            if rest.strip_prefix("sha256:").is_some_and(|h| crate::digest::Digest::from_hex(h).is_ok()) =>
        {
            Ok(s.to_string())
        }
        "mount" => match rest.strip_suffix(":rw") {
            Some(p) => Ok(format!("mount:{}:rw", path(p)?.display())),
            None => Ok(format!("mount:{}", path(rest)?.display())),
        },
        "device" => Ok(format!("device:{}", path(rest)?.display())),
        "cdi" => {
            crate::cdi::split_name(rest).map_err(|e| bad(e.to_string()))?;
            Ok(s.to_string())
        }
        "env" if is_env_name(rest) => Ok(s.to_string()),
        "tmpfs" | "output" => {
            let (dst, what) =
                rest.rsplit_once(':').ok_or_else(|| bad(format!("expected {kind}:DST:OPTION")))?;
            let ok = match kind {
                "tmpfs" => ["dev", "suid"].contains(&what),
                _ => ["suid", "dev"].contains(&what),
            };
            if !ok {
                return Err(bad(format!("{what:?} is not an option that needs allowing; dev or suid")));
            }
            Ok(format!("{kind}:{}:{what}", path(dst)?.display()))
        }
        "ulimit" => {
            let u = options::parse_ulimit(&format!("{rest}=0")).map_err(|e| bad(e.to_string()))?;
            Ok(format!("ulimit:{}", ulimit_short(&u.name)))
        }
        _ => Err(bad(format!("not something a replay can be allowed; one of: {ALLOW_FORMS}"))),
    }
}

/// What [`audit`] needs besides the request.
pub struct AuditContext<'a> {
    /// The caller's rlimits, as (OCI name, soft, hard).
    pub host_rlimits: &'a [(String, u64, u64)],
    /// Host paths this replay provides itself: the artifact's copies of the
    /// inputs, inputs given with `--input`, fresh output directories, and for
    /// a run recorded here, its recorded inputs.
    pub provided: &'a [PathBuf],
}

/// Every host path and privilege `o` asks for beyond the default profile
/// (the 14 default capabilities, exprun's seccomp profile, a network namespace
/// with loopback only, no host mounts but the run's own inputs and outputs,
/// `nosuid,nodev` mounts, the caller's rlimits, no variable of the caller's).
pub fn audit(o: &RunOptions, ctx: &AuditContext<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let provided = |p: &Path| ctx.provided.iter().any(|q| q == p);
    for (i, m) in o.inputs.iter().enumerate() {
        if !provided(&m.source) {
            out.push(Finding::refused(
                format!("inputs[{i}]"),
                format!("reads the host's {} at {}", m.source.display(), m.destination.display()),
                format!(
                    "a fetched run's inputs come from its artifact, and this one does not carry it; \
                     give it with --input PATH:{} (its digest is checked against the record)",
                    m.destination.display()
                ),
            ));
        }
    }
    for (i, m) in o.outputs.iter().enumerate() {
        if !provided(&m.source) {
            out.push(Finding::refused(
                format!("outputs[{i}]"),
                format!("writes the host's {} at {}", m.source.display(), m.destination.display()),
                "a replay's outputs go to fresh directories".into(),
            ));
        }
        for (kept, what) in [(m.keep.suid, "suid"), (m.keep.dev, "dev")] {
            if kept {
                let left = if what == "suid" { "set-id files" } else { "device nodes, fifos and sockets" };
                out.push(Finding::allowable(
                    format!("outputs[{i}].keep"),
                    format!("leaves the {left} it writes at {} on the host", m.destination.display()),
                    format!("output:{}:{what}", m.destination.display()),
                ));
            }
        }
    }
    for (i, d) in o.devices.nodes.iter().enumerate() {
        out.push(Finding::allowable(
            format!("devices.nodes[{i}]"),
            format!("the host's device {} ({}) at {}", d.host.display(), d.numbers(), d.container.display()),
            format!("device:{}", d.host.display()),
        ));
    }
    // A CDI device is resolved again from this host's specs: what it brings
    // (nodes, mounts, hooks run on the host) is the local administrator's.
    for (i, d) in o.devices.cdi.iter().enumerate() {
        out.push(Finding::allowable(
            format!("devices.cdi[{i}]"),
            format!("the CDI device {}, as this host's CDI specs give it", d.name),
            format!("cdi:{}", d.name),
        ));
    }
    for (i, m) in o.volumes.iter().enumerate() {
        let access = if m.readonly { "read-only" } else { "writable" };
        let (allow, thing) = if m.source.starts_with("/dev") {
            (format!("device:{}", m.source.display()), "device")
        } else if m.readonly {
            (format!("mount:{}", m.source.display()), "path")
        } else {
            (format!("mount:{}:rw", m.source.display()), "path")
        };
        out.push(Finding::allowable(
            format!("volumes[{i}]"),
            format!(
                "binds the host's {thing} {} at {}, {access}",
                m.source.display(),
                m.destination.display()
            ),
            allow,
        ));
    }
    if let Some(parent) = &o.cgroup_parent {
        out.push(Finding::refused(
            "cgroup_parent".into(),
            format!("puts the run's cgroup under {parent} on this host"),
            "a replay's cgroup goes where exprun puts it".into(),
        ));
    }
    let all = o.cap_add.iter().any(|c| c == "ALL");
    if all {
        out.push(Finding::allowable("cap_add".into(), "every capability".into(), "cap:ALL".into()));
    }
    for c in o.cap_add.iter().filter(|c| !all && !DEFAULT_CAPABILITIES.contains(&c.as_str())) {
        out.push(Finding::allowable(
            "cap_add".into(),
            format!("{c}, beyond the default capabilities"),
            format!("cap:{}", c.trim_start_matches("CAP_")),
        ));
    }
    if o.network == Network::Host {
        out.push(Finding::allowable(
            "network".into(),
            "the host's network namespace (every interface and port of this host)".into(),
            "network:host".into(),
        ));
    }
    if o.ipc == crate::spec::shm::Ipc::Host {
        out.push(Finding::allowable(
            "ipc".into(),
            "the host's IPC namespace and /dev/shm (its shared memory, semaphores and message queues)".into(),
            "ipc:host".into(),
        ));
    }
    match &o.seccomp {
        SeccompChoice::Default => {}
        SeccompChoice::Unconfined => out.push(Finding::allowable(
            "seccomp".into(),
            "no seccomp filter".into(),
            "seccomp:unconfined".into(),
        )),
        SeccompChoice::File { path, profile } => {
            let digest = profile_digest(profile);
            out.push(Finding::allowable(
                "seccomp".into(),
                format!("its own seccomp profile (from {}, {digest}) instead of exprun's", path.display()),
                format!("seccomp:{digest}"),
            ));
        }
    }
    for (i, t) in o.tmpfs.iter().enumerate() {
        for opt in ["dev", "suid"] {
            if t.options.iter().any(|x| x == opt) {
                out.push(Finding::allowable(
                    format!("tmpfs[{i}]"),
                    format!(
                        "a tmpfs at {} with {opt} (the default is nosuid,nodev)",
                        t.destination.display()
                    ),
                    format!("tmpfs:{}:{opt}", t.destination.display()),
                ));
            }
        }
    }
    for u in &o.ulimits {
        let host = ctx.host_rlimits.iter().find(|(n, _, _)| *n == u.name).map(|(_, _, hard)| *hard);
        if host.is_none_or(|hard| u.hard > hard) {
            let limit = |v: u64| if v == u64::MAX { "unlimited".to_string() } else { v.to_string() };
            out.push(Finding::allowable(
                "ulimits".into(),
                format!(
                    "{} hard limit {}, above yours ({})",
                    u.name,
                    limit(u.hard),
                    host.map_or("unknown".into(), limit)
                ),
                format!("ulimit:{}", ulimit_short(&u.name)),
            ));
        }
    }
    for (name, value) in &o.env {
        if secrets::is_redacted(value) {
            out.push(Finding::allowable(
                "env".into(),
                format!("${name} from your environment (the record holds only its digest)"),
                format!("env:{name}"),
            ));
        }
    }
    out
}

/// The digest a custom seccomp profile is allowed by: of its JSON as exprun
/// reads it (fields it does not know are not part of it).
pub fn profile_digest(profile: &oci_spec::runtime::LinuxSeccomp) -> String {
    let bytes = serde_json::to_vec(profile).unwrap_or_default();
    crate::digest::Digest::of_bytes(&bytes).to_string()
}

/// `RLIMIT_NOFILE` → `nofile`, as `--ulimit` spells it.
fn ulimit_short(name: &str) -> String {
    name.trim_start_matches("RLIMIT_").to_ascii_lowercase()
}

/// Check each value of a request as `exprun run`'s parser would have: a
/// recorded request holds only what the parser lets through. The error names
/// the field (`volumes[0].destination`).
pub fn validate(o: &RunOptions) -> Result<(), (String, String)> {
    let bad = |field: String, why: String| Err((field, why));
    for (i, d) in o.devices.nodes.iter().enumerate() {
        let field = |f: &str| format!("devices.nodes[{i}].{f}");
        if !is_plain_absolute(&d.host) {
            return bad(field("host"), "not an absolute path without '.' or '..'".into());
        }
        if !is_plain_absolute(&d.container)
            || !d.container.starts_with("/dev")
            || d.container == Path::new("/dev")
        {
            return bad(field("container"), "not a path under /dev without '.' or '..'".into());
        }
        if d.perms.is_empty() || !d.perms.chars().all(|c| "rwm".contains(c)) {
            return bad(field("perms"), format!("{:?} is not some of r, w, m", d.perms));
        }
        if d.kind != 'c' && d.kind != 'b' {
            return bad(field("kind"), format!("{:?} is not c or b", d.kind));
        }
    }
    for (i, d) in o.devices.cdi.iter().enumerate() {
        if let Err(e) = crate::cdi::split_name(&d.name) {
            return bad(format!("devices.cdi[{i}].name"), e.to_string());
        }
    }
    for (i, w) in o.entrypoint.iter().flatten().chain(&o.command).enumerate() {
        if w.contains('\0') {
            return bad(format!("command word {}", i + 1), "holds a NUL byte".into());
        }
    }
    for (i, (k, v)) in o.env.iter().enumerate() {
        if !is_env_name(k) || v.contains('\0') {
            return bad(
                format!("env[{i}]"),
                format!("{k:?} is not a variable name, or its value holds a NUL byte"),
            );
        }
    }
    let container = |field: String, p: &Path, root_ok: bool| -> Result<(), (String, String)> {
        let s = p.to_string_lossy();
        match options::container_path("", &s) {
            Ok(n) if n == p && (root_ok || n != Path::new("/")) => Ok(()),
            _ => Err((
                field,
                format!("{s:?} is not an absolute container path without '.', '..' or '/' alone"),
            )),
        }
    };
    if let Some(w) = &o.workdir {
        container("workdir".into(), w, true)?;
    }
    if let Some(u) = &o.user {
        if u.is_empty() || u.contains(|c: char| c.is_control()) {
            return bad("user".into(), format!("{u:?} is not a user name or id"));
        }
    }
    if let Some(h) = &o.hostname {
        options::parse_hostname(h).map_err(|e| ("hostname".to_string(), e.to_string()))?;
    }
    if let Some(n) = &o.name {
        options::parse_name(n).map_err(|e| ("name".to_string(), e.to_string()))?;
    }
    for (list, mounts) in [("volumes", &o.volumes), ("inputs", &o.inputs), ("outputs", &o.outputs)] {
        for (i, m) in mounts.iter().enumerate() {
            if !is_plain_absolute(&m.source) || m.source.to_string_lossy().contains(':') {
                return bad(
                    format!("{list}[{i}].source"),
                    format!(
                        "{:?} is not an absolute host path without ':', '.' or '..'",
                        m.source.display().to_string()
                    ),
                );
            }
            container(format!("{list}[{i}].destination"), &m.destination, false)?;
        }
    }
    for (i, t) in o.tmpfs.iter().enumerate() {
        container(format!("tmpfs[{i}].destination"), &t.destination, false)?;
        if let Some(x) = t.options.iter().find(|x| !tmpfs_option(x)) {
            return bad(format!("tmpfs[{i}].options"), format!("{x:?} is not a tmpfs option"));
        }
    }
    if o.memory.is_some_and(|m| m < options::MIN_MEMORY) {
        return bad("memory".into(), format!("below the minimum of {} MiB", options::MIN_MEMORY >> 20));
    }
    if o.storage_size.is_some_and(|m| m < options::MIN_MEMORY) {
        return bad("storage_size".into(), format!("below the minimum of {} MiB", options::MIN_MEMORY >> 20));
    }
    if o.shm_size == Some(0) {
        return bad("shm_size".into(), "zero (a tmpfs of size 0 has no limit)".into());
    }
    crate::spec::shm::check_shm(o.shm_size, o.ipc, &o.tmpfs)
        .map_err(|e| ("shm_size".to_string(), e.to_string()))?;
    if o.cpus.is_some_and(|c| !c.is_finite() || c < 0.01) {
        return bad("cpus".into(), "not a number of CPUs of at least 0.01".into());
    }
    if o.pids_limit.is_some_and(|p| p <= 0) {
        return bad("pids_limit".into(), "not a positive number of processes".into());
    }
    if o.output_digest_limit == Some(0) {
        return bad("output_digest_limit".into(), "zero".into());
    }
    for (field, list) in [("cap_add", &o.cap_add), ("cap_drop", &o.cap_drop)] {
        for c in list.iter() {
            if options::parse_capability("", c).ok().as_ref() != Some(c) {
                return bad(
                    field.into(),
                    format!("{c:?} is not a capability name such as CAP_NET_ADMIN, or ALL"),
                );
            }
        }
    }
    for (i, u) in o.ulimits.iter().enumerate() {
        let short = u.name.strip_prefix("RLIMIT_").map(str::to_ascii_lowercase).unwrap_or_default();
        let parsed = options::parse_ulimit(&format!("{short}={}:{}", u.soft, u.hard));
        if parsed.as_ref().ok().is_none_or(|p| p.name != u.name) || u.soft > u.hard {
            return bad(
                format!("ulimits[{i}]"),
                format!("{} {}:{} is not a resource limit", u.name, u.soft, u.hard),
            );
        }
    }
    if let Some(u) = o.unpin.iter().find(|u| *u != "all" && !UNPINNABLE.contains(&u.as_str())) {
        return bad("unpin".into(), format!("{u:?} is not a pin"));
    }
    if o.umask.is_some_and(|m| m > 0o777) {
        return bad("umask".into(), "not a mode between 000 and 777".into());
    }
    if o.cpuset.iter().any(|c| *c >= 8192) || o.cpuset.windows(2).any(|w| w[0] >= w[1]) {
        return bad("cpuset".into(), "not a sorted list of CPUs".into());
    }
    Ok(())
}

/// The fields of a recorded request (`raw`, as JSON) that exprun does not
/// know, as paths (`request.privileged`, `request.volumes[0].propagation`).
/// A field with nothing in it (null, false, empty) asks for nothing and is not
/// listed. `raw` must parse as a request.
pub fn unknown_fields(raw: &Value) -> Result<Vec<String>, (String, String)> {
    let parsed: RunOptions =
        serde_json::from_value(raw.clone()).map_err(|e| ("request".to_string(), e.to_string()))?;
    let canonical = serde_json::to_value(&parsed).map_err(|e| ("request".to_string(), e.to_string()))?;
    let mut out = Vec::new();
    extra_fields(raw, &canonical, "request", &mut out);
    Ok(out)
}

fn extra_fields(raw: &Value, known: &Value, at: &str, out: &mut Vec<String>) {
    match (raw, known) {
        (Value::Object(r), Value::Object(k)) => {
            for (key, v) in r {
                let here = format!("{at}.{key}");
                match k.get(key) {
                    Some(kv) => extra_fields(v, kv, &here, out),
                    None if is_empty(v) => {}
                    None => out.push(here),
                }
            }
        }
        (Value::Array(r), Value::Array(k)) => {
            for (i, (rv, kv)) in r.iter().zip(k).enumerate() {
                extra_fields(rv, kv, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
        _ => false,
    }
}

/// An absolute path without `.`, `..`, `//` or a trailing `/`.
fn is_plain_absolute(p: &Path) -> bool {
    let rebuilt: PathBuf = p.components().collect();
    p.is_absolute()
        && p.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && rebuilt.as_os_str() == p.as_os_str()
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty() && !s.contains(|c: char| c == '=' || c == '\0' || c.is_whitespace())
}

/// The mount options a tmpfs takes: flags, and the data tmpfs knows.
fn tmpfs_option(o: &str) -> bool {
    const FLAGS: &[&str] = &[
        "ro",
        "rw",
        "nosuid",
        "suid",
        "nodev",
        "dev",
        "noexec",
        "exec",
        "sync",
        "async",
        "dirsync",
        "noatime",
        "atime",
        "nodiratime",
        "diratime",
        "relatime",
        "norelatime",
        "strictatime",
        "nostrictatime",
        "inode32",
        "inode64",
        "noswap",
    ];
    const DATA: &[&str] = &["size", "nr_blocks", "nr_inodes", "mode", "uid", "gid", "huge", "mpol"];
    FLAGS.contains(&o) || o.split_once('=').is_some_and(|(k, v)| DATA.contains(&k) && !v.is_empty())
}

#[cfg(test)]
#[path = "trust_tests.rs"]
mod tests;
