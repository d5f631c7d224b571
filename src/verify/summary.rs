//! What a replay will run, for people: the request, as it will run (not the
//! record's spec, which only says what ran, or claims to), every finding of the
//! audit with whether it is permitted, and where the record's spec and request
//! disagree. `exprun replay` and `exprun verify` print it before anything runs
//! (and `--dry-run` prints just this); `exprun runs show` shows the request the
//! same way. Everything from the record goes through
//! [`crate::record::for_terminal`].

use std::collections::BTreeSet;
use std::path::Path;

use oci_spec::runtime::LinuxNamespaceType;

use super::replay::{Permit, Prepared};
use super::trust::{self, Finding};
use crate::record::{for_terminal, secrets, RunRecord};
use crate::spec::options::{Network, RunOptions, SeccompChoice};
use crate::spec::pins::Determinism;
use crate::spec::shm::{self, Ipc};
use crate::spec::{DEFAULT_CAPABILITIES, DEFAULT_HOSTNAME};

/// The summary `replay` and `verify` print: `what` is `replay` or `verify`.
pub fn render(what: &str, record: &RunRecord, p: &Prepared) -> String {
    let origin = if p.fetched { " (fetched from a registry)" } else { "" };
    let mut out = format!("exprun: {what} of run {}{origin} runs this request:\n", p.run);
    for (label, value) in request_lines(&p.options, record.determinism.as_ref(), &p.secrets) {
        out.push_str(&format!("  {label:<12}{}\n", for_terminal(&value)));
    }
    out.push_str(&render_findings(&p.findings));
    for a in &p.unused_allows {
        out.push_str(&format!("  --allow {}: the request asks for nothing it permits\n", for_terminal(a)));
    }
    out.push_str(&render_disagreements(record));
    out
}

/// The audit's findings with their permits, one line each.
pub fn render_findings(findings: &[(Finding, Permit)]) -> String {
    if findings.is_empty() {
        return "  beyond the default profile: nothing\n".into();
    }
    let mut out = String::from("  beyond the default profile:\n");
    for (f, p) in findings {
        let state = match (p, &f.allow) {
            (Permit::Recorded, _) => "recorded here".to_string(),
            (Permit::Allowed, Some(a)) => format!("allowed by --allow {a}"),
            (Permit::Refused, Some(a)) => format!("REFUSED; --allow {a} permits it"),
            (_, None) => format!("REFUSED: {}", f.instead.as_deref().unwrap_or_default()),
        };
        out.push_str(&format!("    {}: {}  [{}]\n", f.field, for_terminal(&f.what), for_terminal(&state)));
    }
    out
}

/// The warning when the record's spec and request disagree; empty when they agree.
pub fn render_disagreements(record: &RunRecord) -> String {
    let d = disagreements(record);
    if d.is_empty() {
        return String::new();
    }
    let mut out =
        String::from("  WARNING: the record's spec and request disagree; a replay runs the request");
    if let Some(v) = &record.variation {
        out.push_str(&format!(
            " (this run ran under the variation {}, which changes the spec)",
            for_terminal(v)
        ));
    }
    out.push_str(":\n");
    for line in d {
        out.push_str(&format!("    {}\n", for_terminal(&line)));
    }
    out
}

/// The request as it will run, as (label, value) lines: image, argv,
/// environment (secret values never shown), user, working directory,
/// hostname, network, namespaces, capabilities, seccomp, mounts, limits and the
/// pins. `secrets` are the variables whose values are taken from the caller.
pub fn request_lines(
    o: &RunOptions,
    pins: Option<&Determinism>,
    secrets: &[String],
) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Vec::new();
    let mut line = |label: &str, value: String| v.push((label.to_string(), value));
    line("image", o.image.clone());
    let words = |w: &[String]| w.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ");
    line(
        "command",
        match (&o.entrypoint, o.command.is_empty()) {
            (Some(e), _) => words(&[e.clone(), o.command.clone()].concat()),
            (None, true) => "the image's Entrypoint and Cmd".into(),
            (None, false) => format!("the image's Entrypoint, then {}", words(&o.command)),
        },
    );
    for (name, value) in &o.env {
        let shown = if secrets.contains(name) {
            "<secret, from your environment>".to_string()
        } else if secrets::is_redacted(value) {
            "<secret: the record holds only its digest>".to_string()
        } else {
            value.clone()
        };
        line("env", format!("{name}={shown}"));
    }
    if let Some(d) = pins {
        let env: Vec<String> = d.env().iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !env.is_empty() {
            line("env", format!("{} (pinned; -e wins)", env.join(" ")));
        }
    }
    line("user", o.user.clone().unwrap_or_else(|| "the image's".into()));
    line("workdir", o.workdir.as_ref().map_or("the image's".into(), |w| w.display().to_string()));
    line("hostname", o.hostname.clone().unwrap_or_else(|| DEFAULT_HOSTNAME.into()));
    line(
        "network",
        match o.network {
            Network::None => "none: its own namespace, loopback only".into(),
            Network::Host => "HOST: the host's network namespace".into(),
        },
    );
    let shm_options = shm::shm_options(o.shm_size, shm::shm_tmpfs(&o.tmpfs));
    let shm = shm_options.iter().find(|x| x.starts_with("size=")).cloned().unwrap_or_default();
    line(
        "ipc",
        match o.ipc {
            Ipc::Private => format!("private: its own namespace, /dev/shm {shm}"),
            Ipc::Host => "HOST: the host's IPC namespace and /dev/shm".into(),
        },
    );
    let mut ns = vec!["pid", "uts", "mount", "cgroup"];
    if o.ipc == Ipc::Private {
        ns.insert(1, "ipc");
    }
    if o.network == Network::None {
        ns.push("network");
    }
    line("namespaces", format!("{} (and user, rootless)", ns.join(" ")));
    let caps = crate::spec::capabilities(&o.cap_add, &o.cap_drop);
    let added: Vec<&str> =
        caps.iter().map(String::as_str).filter(|c| !DEFAULT_CAPABILITIES.contains(c)).collect();
    let dropped: Vec<&str> =
        DEFAULT_CAPABILITIES.iter().copied().filter(|c| !caps.iter().any(|x| x == c)).collect();
    let mut c = format!(
        "{} of the {} default",
        DEFAULT_CAPABILITIES.len() - dropped.len(),
        DEFAULT_CAPABILITIES.len()
    );
    if !added.is_empty() {
        c.push_str(&format!("; ADDED {}", added.join(" ")));
    }
    if !dropped.is_empty() {
        c.push_str(&format!("; dropped {}", dropped.join(" ")));
    }
    line("caps", c);
    line(
        "seccomp",
        match &o.seccomp {
            SeccompChoice::Default => "exprun's default profile".into(),
            SeccompChoice::Unconfined => "NONE (unconfined)".into(),
            SeccompChoice::File { path, profile } => {
                format!(
                    "the request's own profile (from {}, {})",
                    path.display(),
                    trust::profile_digest(profile)
                )
            }
        },
    );
    line("root", if o.read_only { "the image, read-only" } else { "the image, writable layer" }.into());
    let bind =
        |src: &Path, ro: bool| format!("{} ({})", src.display(), if ro { "read-only" } else { "WRITABLE" });
    for m in &o.inputs {
        line("input", format!("{} <- {}", m.destination.display(), bind(&m.source, true)));
    }
    for m in &o.outputs {
        let mut s = format!("{} -> {}", m.destination.display(), bind(&m.source, false));
        for (kept, what) in [(m.keep.suid, "set-id files kept"), (m.keep.dev, "device nodes kept")] {
            if kept {
                s.push_str(&format!(", {what}"));
            }
        }
        line("output", s);
    }
    for m in &o.volumes {
        line("HOST MOUNT", format!("{} <- host {}", m.destination.display(), bind(&m.source, m.readonly)));
    }
    for t in &o.tmpfs {
        if t.destination == Path::new(shm::SHM_PATH) {
            line("tmpfs", format!("{} ({})", t.destination.display(), shm_options.join(",")));
            continue;
        }
        line("tmpfs", format!("{} (nosuid,nodev,{})", t.destination.display(), t.options.join(",")));
    }
    let mut limits = Vec::new();
    if let Some(m) = o.memory {
        limits.push(format!("memory {} MiB", m >> 20));
    }
    if let Some(c) = o.cpus {
        limits.push(format!("cpus {c}"));
    }
    if let Some(p) = o.pids_limit {
        limits.push(format!("pids {p}"));
    }
    if let Some(s) = o.storage_size {
        limits.push(format!("writable layer {} MiB", s >> 20));
    }
    for u in &o.ulimits {
        let n = |x: u64| if x == u64::MAX { "unlimited".to_string() } else { x.to_string() };
        limits.push(format!("{} {}:{}", u.name, n(u.soft), n(u.hard)));
    }
    if o.no_limits {
        limits.push("none (--no-limits)".into());
    }
    match o.output_digest_limit {
        Some(u64::MAX) => limits.push("outputs digested without a limit".into()),
        Some(b) => limits.push(format!("outputs digested up to {} MiB", b >> 20)),
        None => {}
    }
    line("limits", if limits.is_empty() { "none".into() } else { limits.join(", ") });
    if let Some(parent) = &o.cgroup_parent {
        line("cgroup", format!("under {parent}"));
    }
    if let Some(d) = pins {
        let mut p = format!("umask {:03o}, aslr {}", d.umask(), if d.aslr() { "on" } else { "off" });
        let cpus = d.cpuset();
        if !cpus.is_empty() {
            p.push_str(&format!(", cpus {}", crate::spec::options::format_cpuset(&cpus)));
        }
        line("pins", p);
    }
    let flags: Vec<&str> = [(o.tty, "tty"), (o.interactive, "stdin"), (o.keep, "keeps its writable layer")]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, s)| *s)
        .collect();
    if !flags.is_empty() {
        line("also", flags.join(", "));
    }
    v
}

/// A word of a command as a shell would need it.
fn quote(w: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !w.is_empty() && w.chars().all(plain) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// Where the record's spec (what it says ran) and its request (what a replay
/// runs) disagree: argv, environment, hostname, network, capabilities,
/// seccomp, the root's mode, bind mounts, tmpfs mounts and limits. An
/// `exprun run` writes both from one plan, so they agree unless a variation
/// of `verify` changed the spec, or the record was made by hand.
pub fn disagreements(record: &RunRecord) -> Vec<String> {
    let Some(o) = &record.request else { return Vec::new() };
    let spec = &record.spec;
    let mut out = Vec::new();
    let process = spec.process().clone().unwrap_or_default();
    let args = process.args().clone().unwrap_or_default();
    let expected_args = o.entrypoint.as_ref().map(|e| [e.clone(), o.command.clone()].concat());
    let args_agree = match expected_args {
        Some(e) => e == args,
        None => o.command.is_empty() || args.ends_with(&o.command),
    };
    if !args_agree {
        let words = |w: &[String]| w.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ");
        let asked = match &o.entrypoint {
            Some(e) => words(&[e.clone(), o.command.clone()].concat()),
            None => format!("the image's Entrypoint, then {}", words(&o.command)),
        };
        out.push(format!("command: the spec ran {}, the request asks for {asked}", words(&args)));
    }
    let env = process.env().clone().unwrap_or_default();
    for (k, v) in &o.env {
        if !env.iter().any(|e| *e == format!("{k}={v}")) {
            out.push(format!("env {k}: in the request, not so in the spec"));
        }
    }
    if let Some(w) = &o.workdir {
        if process.cwd() != w {
            out.push(format!("workdir: the spec {}, the request {}", process.cwd().display(), w.display()));
        }
    }
    let hostname = o.hostname.clone().unwrap_or_else(|| DEFAULT_HOSTNAME.into());
    if spec.hostname().as_deref() != Some(hostname.as_str()) {
        out.push(format!(
            "hostname: the spec {:?}, the request {hostname:?}",
            spec.hostname().clone().unwrap_or_default()
        ));
    }
    let linux = spec.linux().clone().unwrap_or_default();
    let netns = linux.namespaces().iter().flatten().any(|n| n.typ() == LinuxNamespaceType::Network);
    if netns != (o.network == Network::None) {
        let says = |own: bool| if own { "its own network namespace" } else { "the host's network" };
        out.push(format!(
            "network: the spec {}, the request {}",
            says(netns),
            says(o.network == Network::None)
        ));
    }
    let ipcns = linux.namespaces().iter().flatten().any(|n| n.typ() == LinuxNamespaceType::Ipc);
    if ipcns != (o.ipc == Ipc::Private) {
        let says = |own: bool| if own { "its own IPC namespace" } else { "the host's IPC namespace" };
        out.push(format!("ipc: the spec {}, the request {}", says(ipcns), says(o.ipc == Ipc::Private)));
    }
    let bounding: BTreeSet<String> = process
        .capabilities()
        .as_ref()
        .and_then(|c| c.bounding().clone())
        .map(|set| {
            set.iter().filter_map(|c| serde_json::to_value(c).ok()?.as_str().map(str::to_string)).collect()
        })
        .unwrap_or_default();
    let asked: BTreeSet<String> = crate::spec::capabilities(&o.cap_add, &o.cap_drop).into_iter().collect();
    if bounding != asked {
        let only = |a: &BTreeSet<String>, b: &BTreeSet<String>| {
            a.difference(b).cloned().collect::<Vec<_>>().join(" ")
        };
        out.push(format!(
            "capabilities: only in the request: {}; only in the spec: {}",
            or_none(only(&asked, &bounding)),
            or_none(only(&bounding, &asked))
        ));
    }
    let seccomp = linux.seccomp().as_ref();
    let seccomp_agrees = match &o.seccomp {
        SeccompChoice::Unconfined => seccomp.is_none(),
        SeccompChoice::Default => seccomp.is_some(),
        SeccompChoice::File { profile, .. } => seccomp == Some(profile),
    };
    if !seccomp_agrees {
        let says =
            |s: Option<&oci_spec::runtime::LinuxSeccomp>| if s.is_some() { "a profile" } else { "no filter" };
        let asks = match &o.seccomp {
            SeccompChoice::Unconfined => "no filter",
            SeccompChoice::Default => "exprun's profile",
            SeccompChoice::File { .. } => "its own profile",
        };
        out.push(format!("seccomp: the spec has {}, the request asks for {asks}", says(seccomp)));
    }
    let readonly = spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false);
    if readonly != o.read_only {
        out.push(format!("read-only root: the spec {readonly}, the request {}", o.read_only));
    }
    // An input's source is whatever the replay provides (the artifact's copy,
    // `--input`), digest-checked: only where it goes and how are compared.
    let input_at = |d: &Path| o.inputs.iter().any(|m| m.destination == d);
    let source = |d: &Path, s: String| if input_at(d) { "an input".to_string() } else { s };
    let binds_asked: BTreeSet<(String, String, bool)> = o
        .volumes
        .iter()
        .map(|m| (m, m.readonly))
        .chain(o.inputs.iter().map(|m| (m, true)))
        .chain(o.outputs.iter().map(|m| (m, false)))
        .map(|(m, ro)| {
            let src = source(&m.destination, m.source.display().to_string());
            (m.destination.display().to_string(), src, ro)
        })
        .chain(
            o.devices
                .cdi_edits
                .mounts
                .iter()
                .filter(|m| m.fstype.as_deref().is_none_or(|t| t == "bind"))
                .map(|m| {
                    let ro = m.options.iter().any(|x| x == "ro");
                    (m.container_path.display().to_string(), m.host_path.display().to_string(), ro)
                }),
        )
        .collect();
    let system = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/sys"];
    let mounts = spec.mounts().clone().unwrap_or_default();
    let binds_ran: BTreeSet<(String, String, bool)> = mounts
        .iter()
        .filter(|m| m.typ().as_deref() == Some("bind"))
        .filter(|m| {
            !system.iter().any(|s| m.destination() == Path::new(s)) && !m.destination().starts_with("/dev")
        })
        .map(|m| {
            let ro = m.options().iter().flatten().any(|x| x == "ro");
            let src = m.source().as_ref().map(|s| s.display().to_string()).unwrap_or_default();
            (m.destination().display().to_string(), source(m.destination(), src), ro)
        })
        .collect();
    let bind = |(d, s, ro): &(String, String, bool)| format!("{s} at {d} {}", if *ro { "ro" } else { "rw" });
    for b in binds_asked.difference(&binds_ran) {
        out.push(format!("mounts: the request binds {}; the spec has no such mount", bind(b)));
    }
    for b in binds_ran.difference(&binds_asked) {
        out.push(format!("mounts: the spec binds {}; the request does not", bind(b)));
    }
    for t in &o.tmpfs {
        if !mounts.iter().any(|m| m.destination() == &t.destination && m.typ().as_deref() == Some("tmpfs")) {
            out.push(format!(
                "mounts: the request has a tmpfs at {}; the spec does not",
                t.destination.display()
            ));
        }
    }
    let resources = linux.resources().clone().unwrap_or_default();
    let memory = resources.memory().as_ref().and_then(|m| m.limit());
    if memory != o.memory.map(|m| m as i64) {
        out.push(format!("memory: the spec {memory:?}, the request {:?}", o.memory));
    }
    let pids = resources.pids().as_ref().map(|p| p.limit());
    if pids != o.pids_limit {
        out.push(format!("pids: the spec {pids:?}, the request {:?}", o.pids_limit));
    }
    out
}

fn or_none(s: String) -> String {
    if s.is_empty() {
        "none".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_a_shell() {
        assert_eq!(quote("ls"), "ls");
        assert_eq!(quote("/in/x.csv"), "/in/x.csv");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }
}
