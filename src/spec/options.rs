//! The options of `exprun run`, parsed from strings into checked values. Pure
//! functions: nothing here touches the filesystem except reading `--env-file`s.

use std::path::{Component, Path, PathBuf};

use super::shm::Ipc;
use super::Error;
use crate::glob::{Glob, Syntax};

/// Where the container's network comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A new network namespace with only loopback, up.
    None,
    /// The host's network namespace.
    Host,
}

/// A host path mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostMount {
    /// The host path, absolute and normalised.
    pub source: PathBuf,
    /// The path inside the container, absolute and normalised.
    pub destination: PathBuf,
    /// Mounted read-only.
    pub readonly: bool,
    /// `--output` only: what the run may leave there on the host that exprun
    /// otherwise removes after it (`:suid`, `:dev`).
    #[serde(default, skip_serializing_if = "crate::record::files::Keep::is_default")]
    pub keep: crate::record::files::Keep,
}

/// A tmpfs mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TmpfsMount {
    /// The path inside the container.
    pub destination: PathBuf,
    /// Extra mount options (`size=64m,mode=1777`), as given.
    pub options: Vec<String>,
}

/// One rlimit: `--ulimit nofile=1024:2048`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ulimit {
    /// The OCI name, e.g. `RLIMIT_NOFILE`.
    pub name: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// Everything `exprun run` was asked for, checked and normalised. The record keeps
/// it (secret-looking env values as digests) so `exprun replay` can ask again.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunOptions {
    /// The image reference.
    pub image: String,
    /// The command after the image (replaces the image's Cmd).
    pub command: Vec<String>,
    /// `--entrypoint`: replaces the image's Entrypoint (empty string: none).
    pub entrypoint: Option<Vec<String>>,
    /// Environment from `-e` and `--env-file`, in order; later wins.
    pub env: Vec<(String, String)>,
    /// `-w`.
    pub workdir: Option<PathBuf>,
    /// `-u`.
    pub user: Option<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `-v`.
    pub volumes: Vec<HostMount>,
    /// `--input`: read-only, digested before the run.
    pub inputs: Vec<HostMount>,
    /// `--output`: writable, digested after the run.
    pub outputs: Vec<HostMount>,
    /// `--tmpfs`.
    pub tmpfs: Vec<TmpfsMount>,
    /// `--memory`, in bytes.
    pub memory: Option<u64>,
    /// `--cpus`.
    pub cpus: Option<f64>,
    /// `--pids-limit`.
    pub pids_limit: Option<i64>,
    /// `--network`.
    pub network: Network,
    /// `--name`.
    pub name: Option<String>,
    /// `--keep`: keep the writable layer after the run.
    pub keep: bool,
    /// `--read-only`.
    pub read_only: bool,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// `--cap-add`, normalised to `CAP_*`.
    pub cap_add: Vec<String>,
    /// `--cap-drop`, normalised to `CAP_*` (or `ALL`).
    pub cap_drop: Vec<String>,
    /// `--ulimit`.
    pub ulimits: Vec<Ulimit>,
    /// `--cgroup-parent`.
    pub cgroup_parent: Option<String>,
    /// `--pass-env` patterns, as given.
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// The names in `env` that came from the caller through `--pass-env`.
    #[serde(default)]
    pub passed_env: Vec<String>,
    /// `--unpin`: deterministic-profile pins removed.
    #[serde(default)]
    pub unpin: Vec<String>,
    /// `--umask`.
    #[serde(default)]
    pub umask: Option<u32>,
    /// `--aslr on|off`.
    #[serde(default = "yes")]
    pub aslr: bool,
    /// `--cpuset-cpus`, sorted and without duplicates.
    #[serde(default)]
    pub cpuset: Vec<usize>,
    /// `--security-opt seccomp=...`.
    #[serde(default)]
    pub seccomp: SeccompChoice,
    /// `--no-limits`: a rootless run without a cgroup is meant; no note says so.
    #[serde(default)]
    pub no_limits: bool,
    /// `--storage-opt size=`: the writable layer's size, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_size: Option<u64>,
    /// `--output-digest-limit`: the most bytes of output files hashed after the
    /// run (`None`: the default; `u64::MAX`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_digest_limit: Option<u64>,
    /// `--device` and `--gpus`: host device nodes and CDI devices, as resolved
    /// when the run was asked for.
    #[serde(default, skip_serializing_if = "super::devices::Devices::is_empty")]
    pub devices: super::devices::Devices,
    /// `--shm-size`: the size of the /dev/shm tmpfs, in bytes (`None`:
    /// [`super::shm::DEFAULT_SHM_SIZE`], or what a `--tmpfs /dev/shm` says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    /// `--ipc`.
    #[serde(default, skip_serializing_if = "Ipc::is_private")]
    pub ipc: Ipc,
}

/// The seccomp profile of a run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompChoice {
    /// exprun's default profile (the containerd/Docker default's equivalent).
    #[default]
    Default,
    /// No filter (`seccomp=unconfined`).
    Unconfined,
    /// A profile read from a file (kept whole, so a replay uses it as it was).
    File {
        /// The file, as given.
        path: PathBuf,
        /// Its content.
        profile: oci_spec::runtime::LinuxSeccomp,
    },
}

/// `--security-opt KEY=VALUE`: only `seccomp=FILE|unconfined` so far. `read`
/// reads a profile file.
pub fn parse_security_opt(
    s: &str,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<SeccompChoice, Error> {
    let bad = |why: String| Error::Option { option: "--security-opt", value: s.into(), why };
    let Some(value) = s.strip_prefix("seccomp=").or_else(|| s.strip_prefix("seccomp:")) else {
        return Err(bad("only seccomp=FILE or seccomp=unconfined is supported".into()));
    };
    if value == "unconfined" {
        return Ok(SeccompChoice::Unconfined);
    }
    let path = PathBuf::from(value);
    let text = read(&path).map_err(|e| bad(format!("reading the profile {value}: {e}")))?;
    let profile = serde_json::from_str(&text).map_err(|e| {
        bad(format!("{value} is not an OCI seccomp profile (linux.seccomp of config.json): {e}"))
    })?;
    Ok(SeccompChoice::File { path, profile })
}

fn yes() -> bool {
    true
}

/// Parse a CPU list like `0-3,6`: sorted, without duplicates.
pub fn parse_cpuset(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |n: &str| n.trim().parse::<usize>().map_err(|_| format!("{n:?} is not a CPU number"));
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if a > b || b >= 8192 {
            return Err(format!("{part:?} is not a CPU range"));
        }
        out.extend(a..=b);
    }
    if out.is_empty() {
        return Err("no CPUs given".into());
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The shortest list form of sorted CPUs: `0-3,6`.
pub fn format_cpuset(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { cpus[i].to_string() } else { format!("{}-{}", cpus[i], cpus[j]) });
        i = j + 1;
    }
    parts.join(",")
}

/// `--cpuset-cpus`: a CPU list whose CPUs exprun may itself run on.
pub fn parse_cpuset_option(s: &str, allowed: &[usize]) -> Result<Vec<usize>, Error> {
    let bad = |why: String| Error::Option { option: "--cpuset-cpus", value: s.into(), why };
    let cpus = parse_cpuset(s).map_err(|w| bad(format!("{w}; give a list such as 0-3,6")))?;
    if let Some(c) = cpus.iter().find(|c| !allowed.contains(c)) {
        return Err(bad(format!(
            "CPU {c} is not available to exprun (available: {})",
            format_cpuset(allowed)
        )));
    }
    Ok(cpus)
}

/// `--umask`: an octal mode up to 0777.
pub fn parse_umask(s: &str) -> Result<u32, Error> {
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o777).ok_or_else(|| Error::Option {
        option: "--umask",
        value: s.into(),
        why: "not an octal mode between 000 and 777, e.g. 022".into(),
    })
}

/// `--pass-env NAME|GLOB`: the caller's variables whose names match, in name
/// order. `*` matches any run of characters, `?` one character.
pub fn pass_env(patterns: &[String], caller: &[(String, String)]) -> Result<Vec<(String, String)>, Error> {
    let mut globs = Vec::new();
    for p in patterns {
        let bad = |why: String| Error::Option { option: "--pass-env", value: p.clone(), why };
        if p.is_empty() || p.contains('=') {
            return Err(bad(
                "give a variable name or a glob such as CUDA_*, without a value (use -e NAME=VALUE to set one)"
                    .into(),
            ));
        }
        globs.push(Glob::parse(p, Syntax::NAMES).map_err(bad)?);
    }
    let mut out: Vec<(String, String)> =
        caller.iter().filter(|(k, _)| globs.iter().any(|g| g.matches(k))).cloned().collect();
    out.sort();
    Ok(out)
}

/// The smallest `--memory` accepted: below this the runtime's own setup inside the
/// cgroup can be OOM-killed before the command starts (docker and podman use 6 MiB).
pub const MIN_MEMORY: u64 = 6 << 20;

/// Parse a size like `512k`, `64m`, `1.5g`, `100` (bytes), case-insensitive, with an
/// optional trailing `b` or `ib`.
pub fn parse_size(option: &'static str, s: &str) -> Result<u64, Error> {
    let bad = |why: &str| Error::Option { option, value: s.to_string(), why: why.to_string() };
    let lower = s.trim().to_ascii_lowercase();
    let t = lower.trim_end_matches("ib").trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        Some(c) if c.is_ascii_digit() => (t, 1),
        _ => return Err(bad("expected a number with an optional unit k, m, g or t, e.g. 512m")),
    };
    let value: f64 =
        num.parse().map_err(|_| bad("expected a number with an optional unit k, m, g or t, e.g. 512m"))?;
    if !value.is_finite() || value <= 0.0 {
        return Err(bad("must be greater than zero"));
    }
    let bytes = value * mult as f64;
    if bytes > i64::MAX as f64 {
        return Err(bad("too large"));
    }
    Ok(bytes as u64)
}

/// `--memory`: a size of at least [`MIN_MEMORY`].
pub fn parse_memory(s: &str) -> Result<u64, Error> {
    let bytes = parse_size("--memory", s)?;
    if bytes < MIN_MEMORY {
        return Err(Error::Option {
            option: "--memory",
            value: s.into(),
            why: format!("the minimum is {} MiB", MIN_MEMORY >> 20),
        });
    }
    Ok(bytes)
}

/// `--storage-opt`: podman's spelling; `size=SIZE` (the writable layer's size)
/// is the one option there is. A later `size=` wins, as with podman.
pub fn parse_storage_opts(opts: &[String]) -> Result<Option<u64>, Error> {
    let mut size = None;
    for s in opts {
        match s.split_once('=') {
            Some(("size", v)) => {
                let bytes = parse_size("--storage-opt size", v)?;
                if bytes < MIN_MEMORY {
                    return Err(Error::Option {
                        option: "--storage-opt",
                        value: s.clone(),
                        why: format!("the minimum is {} MiB", MIN_MEMORY >> 20),
                    });
                }
                size = Some(bytes);
            }
            _ => {
                return Err(Error::Option {
                    option: "--storage-opt",
                    value: s.clone(),
                    why: "the one storage option is size=SIZE (the writable layer's size, e.g. size=10g)"
                        .into(),
                })
            }
        }
    }
    Ok(size)
}

/// `--cpus`: a positive number of CPUs, at most `online`, in steps of 0.01.
pub fn parse_cpus(s: &str, online: usize) -> Result<f64, Error> {
    let bad = |why: String| Error::Option { option: "--cpus", value: s.into(), why };
    let v: f64 = s.trim().parse().map_err(|_| bad("expected a number such as 1.5".into()))?;
    if !v.is_finite() || v < 0.01 {
        return Err(bad("must be at least 0.01".into()));
    }
    if v > online as f64 {
        return Err(bad(format!("this host has {online} CPUs online")));
    }
    Ok(v)
}

/// `--pids-limit`: a positive number of tasks.
pub fn parse_pids_limit(s: &str) -> Result<i64, Error> {
    match s.trim().parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Error::Option {
            option: "--pids-limit",
            value: s.into(),
            why: "expected a positive number of processes".into(),
        }),
    }
}

/// A normalised absolute path inside the container: no `..`, no `.`, no trailing `/`.
pub fn container_path(option: &'static str, s: &str) -> Result<PathBuf, Error> {
    let bad = |why: &str| Error::Option { option, value: s.into(), why: why.into() };
    let p = Path::new(s);
    if !p.is_absolute() {
        return Err(bad("the path inside the container must be absolute"));
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => return Err(bad("'..' is not allowed in container paths")),
            Component::Prefix(_) => return Err(bad("not a Linux path")),
        }
    }
    Ok(out)
}

/// `SRC:DST[:ro|rw]` for `-v`, `--input` and `--output`. The source must exist
/// unless `create_source` (outputs are created as directories when missing).
pub fn parse_host_mount(
    option: &'static str,
    s: &str,
    cwd: &Path,
    allow_mode: bool,
) -> Result<HostMount, Error> {
    let bad = |why: &str| Error::Option { option, value: s.into(), why: why.into() };
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [src, dst] => (*src, *dst, None),
        [src, dst, mode] if allow_mode => (*src, *dst, Some(*mode)),
        _ if allow_mode => return Err(bad("expected SRC:DST or SRC:DST:ro")),
        _ => return Err(bad("expected SRC:DST")),
    };
    if src.is_empty() {
        return Err(bad("the host path is empty"));
    }
    let mut readonly = false;
    if let Some(mode) = mode {
        for opt in mode.split(',') {
            match opt {
                "ro" => readonly = true,
                "rw" => readonly = false,
                // SELinux relabel flags are accepted and ignored, as rootful podman
                // on a host without SELinux does.
                "z" | "Z" => {}
                other => {
                    return Err(bad(&format!("unknown mount option {other:?}; use ro or rw")));
                }
            }
        }
    }
    let source = normalise_host(&cwd.join(src));
    let destination = container_path(option, dst)?;
    if destination == Path::new("/") {
        return Err(bad("cannot mount over the container's root directory"));
    }
    Ok(HostMount { source, destination, readonly, keep: Default::default() })
}

/// `SRC:DST[:suid,dev]` for `--output`. Podman's volume options name what is
/// kept: after the run exprun removes setuid/setgid bits (unless `suid`) and
/// device nodes, fifos and sockets (unless `dev`), since on the host they work
/// for anyone who reaches them. The mount in the container is nosuid,nodev
/// either way.
pub fn parse_output(s: &str, cwd: &Path) -> Result<HostMount, Error> {
    let (mount, opts) = match s.splitn(3, ':').collect::<Vec<_>>().as_slice() {
        [src, dst, opts] => (format!("{src}:{dst}"), Some(*opts)),
        _ => (s.to_string(), None),
    };
    let mut m = parse_host_mount("--output", &mount, cwd, false)?;
    for opt in opts.into_iter().flat_map(|o| o.split(',')) {
        match opt {
            "suid" => m.keep.suid = true,
            "nosuid" => m.keep.suid = false,
            "dev" => m.keep.dev = true,
            "nodev" => m.keep.dev = false,
            other => {
                return Err(Error::Option {
                    option: "--output",
                    value: s.into(),
                    why: format!(
                        "unknown output option {other:?}; use suid (keep setuid/setgid bits of the \
                         files the run leaves) or dev (keep its device nodes, fifos and sockets)"
                    ),
                })
            }
        }
    }
    Ok(m)
}

/// `--output-digest-limit`: a size, or `none`.
pub fn parse_digest_limit(s: &str) -> Result<u64, Error> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(u64::MAX);
    }
    parse_size("--output-digest-limit", s)
}

/// `DST[:options]` for `--tmpfs`.
pub fn parse_tmpfs(s: &str) -> Result<TmpfsMount, Error> {
    let (dst, opts) = s.split_once(':').unwrap_or((s, ""));
    let destination = container_path("--tmpfs", dst)?;
    let options = opts.split(',').filter(|o| !o.is_empty()).map(str::to_string).collect();
    Ok(TmpfsMount { destination, options })
}

/// Lexically normalise an absolute host path (remove `.` and resolve `..`).
fn normalise_host(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// `-e NAME=VALUE` or `-e NAME` (the caller's value of NAME, skipped when unset).
pub fn parse_env(
    option: &'static str,
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(String, String)>, Error> {
    let (name, value) = match s.split_once('=') {
        Some((n, v)) => (n, Some(v.to_string())),
        None => (s, None),
    };
    check_env_name(option, name)?;
    if value.as_deref().is_some_and(|v| v.contains('\0')) {
        return Err(Error::Option {
            option,
            value: name.into(),
            why: "the value contains a NUL byte".into(),
        });
    }
    Ok(value.or_else(|| lookup(name)).map(|v| (name.to_string(), v)))
}

fn check_env_name(option: &'static str, name: &str) -> Result<(), Error> {
    if name.is_empty() || name.contains('\0') || name.contains(char::is_whitespace) {
        return Err(Error::Option {
            option,
            value: name.into(),
            why: "an environment variable name must be non-empty, without '=', spaces or NUL".into(),
        });
    }
    Ok(())
}

/// The lines of an `--env-file`: `NAME=VALUE`, `NAME` (taken from the caller),
/// blank lines and `#` comments.
pub fn parse_env_file(
    path: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry = parse_env("--env-file", line, lookup).map_err(|e| Error::EnvFile {
            path: path.to_path_buf(),
            line: i + 1,
            why: e.to_string(),
        })?;
        out.extend(entry);
    }
    Ok(out)
}

/// `--ulimit name=soft[:hard]`, names as podman spells them (`nofile`, `nproc`, ...).
pub fn parse_ulimit(s: &str) -> Result<Ulimit, Error> {
    let bad = |why: &str| Error::Option { option: "--ulimit", value: s.into(), why: why.into() };
    let (name, values) =
        s.split_once('=').ok_or_else(|| bad("expected NAME=SOFT[:HARD], e.g. nofile=1024:4096"))?;
    let oci = match name {
        "core" | "cpu" | "data" | "fsize" | "locks" | "memlock" | "msgqueue" | "nice" | "nofile"
        | "nproc" | "rss" | "rtprio" | "rttime" | "sigpending" | "stack" | "as" => {
            format!("RLIMIT_{}", name.to_ascii_uppercase())
        }
        _ => return Err(bad(&format!("unknown limit {name:?}"))),
    };
    let num = |v: &str| -> Result<u64, Error> {
        if v == "unlimited" || v == "-1" {
            return Ok(u64::MAX);
        }
        v.parse().map_err(|_| bad("limits are numbers or 'unlimited'"))
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (num(s)?, num(h)?),
        None => (num(values)?, num(values)?),
    };
    if soft > hard {
        return Err(bad("the soft limit is above the hard limit"));
    }
    Ok(Ulimit { name: oci, soft, hard })
}

/// `--cap-add/--cap-drop` names: `net_admin`, `NET_ADMIN` or `CAP_NET_ADMIN`; `ALL`.
pub fn parse_capability(option: &'static str, s: &str) -> Result<String, Error> {
    let upper = s.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let name = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    if name.parse::<caps::Capability>().is_err() {
        return Err(Error::Option { option, value: s.into(), why: "not a Linux capability name".into() });
    }
    Ok(name)
}

/// `--hostname`: RFC 1123 labels, at most 64 characters (the kernel's limit).
pub fn parse_hostname(s: &str) -> Result<String, Error> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(s.to_string())
    } else {
        Err(Error::Option {
            option: "--hostname",
            value: s.into(),
            why: "use letters, digits, '-' and '.', at most 64 characters".into(),
        })
    }
}

/// `--name`: what runs are called; the same rules as podman container names.
pub fn parse_name(s: &str) -> Result<String, Error> {
    let bad = |why: String| Err(Error::Option { option: "--name", value: s.into(), why });
    if s.len() > MAX_NAME {
        return bad(format!("{} characters long; a name has at most {MAX_NAME}", s.chars().count()));
    }
    let ok = s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(s.to_string())
    } else {
        bad("use letters, digits, '_', '.' and '-', starting with a letter or digit".into())
    }
}

/// The longest `--name`: names become file names under runs/by-name.
pub const MAX_NAME: usize = 128;

#[cfg(test)]
#[path = "options_tests.rs"]
mod tests;
