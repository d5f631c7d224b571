//! The process a container runs: `process` (argv, environment, user,
//! capabilities, rlimits, AppArmor) and `linux.personality`, resolved and
//! checked against what exprun's own process may do.

use std::path::PathBuf;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use super::host::ProcessHost;
use super::{unapplied, Error, Result};

/// The capability sets of the process, as `CAP_*` names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapSets {
    /// Bounding set.
    pub bounding: Vec<String>,
    /// Effective set.
    pub effective: Vec<String>,
    /// Permitted set.
    pub permitted: Vec<String>,
    /// Inheritable set.
    pub inheritable: Vec<String>,
    /// Ambient set.
    pub ambient: Vec<String>,
}

/// One resource limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_*` name.
    pub name: String,
    /// `RLIMIT_*` number.
    pub resource: u32,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// The process the container runs, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessPlan {
    /// argv; `args[0]` is looked up in the container's PATH when it has no `/`.
    pub args: Vec<String>,
    /// The whole environment, `NAME=VALUE`.
    pub env: Vec<String>,
    /// Working directory inside the container (created when missing).
    pub cwd: PathBuf,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// File mode creation mask.
    pub umask: u32,
    /// Capabilities.
    pub caps: CapSets,
    /// Resource limits, all explicit.
    pub rlimits: Vec<Rlimit>,
    /// PR_SET_NO_NEW_PRIVS.
    pub no_new_privs: bool,
    /// Allocate a terminal.
    pub terminal: bool,
    /// /proc/self/oom_score_adj.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i32>,
    /// personality(2) persona, from `linux.personality` (e.g. ADDR_NO_RANDOMIZE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personality: Option<u64>,
    /// CPUs the command is bound to (`--cpuset-cpus`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpu_affinity: Vec<usize>,
    /// `process.apparmorProfile`: the AppArmor profile the command is exec'd into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apparmor_profile: Option<String>,
}

/// personality(2) domains (linux/personality.h).
const PER_LINUX: u64 = 0x0000;
const PER_LINUX32: u64 = 0x0008;

/// The personality(2) persona for `linux.personality`: the LINUX or LINUX32
/// domain, plus ADDR_NO_RANDOMIZE when listed in its flags.
pub(super) fn personality(p: &oci_spec::runtime::LinuxPersonality) -> Result<u64> {
    use oci_spec::runtime::LinuxPersonalityDomain;
    let mut persona = match p.domain() {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    };
    for f in p.flags().iter().flatten() {
        match f.as_str() {
            "ADDR_NO_RANDOMIZE" => persona |= libc::ADDR_NO_RANDOMIZE as u64,
            other => {
                return Err(Error::Config(format!(
                    "linux.personality.flags: {other:?} is not supported (only ADDR_NO_RANDOMIZE)"
                )))
            }
        }
    }
    Ok(persona)
}

pub(super) fn process_plan(spec: &Spec, host: &ProcessHost) -> Result<ProcessPlan> {
    let p = spec.process().clone().ok_or(Error::Process { field: "process", why: "missing".into() })?;
    process_plan_from(&p, host)
}

/// Resolve and check an OCI process (the config's, or `exec --process`'s)
/// against what exprun's own process may do (`host`).
pub fn process_plan_from(p: &oci_spec::runtime::Process, host: &ProcessHost) -> Result<ProcessPlan> {
    unapplied::refuse_in_process(p)?;
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return Err(Error::Process { field: "args", why: "no command to run".into() });
    }
    if args.iter().any(|a| a.contains('\0')) {
        return Err(Error::Process { field: "args", why: "an argument contains a NUL byte".into() });
    }
    let env = p.env().clone().unwrap_or_default();
    if let Some(bad) = env.iter().find(|e| !e.contains('=') || e.starts_with('=') || e.contains('\0')) {
        return Err(Error::Process { field: "env", why: format!("{bad:?} is not NAME=VALUE") });
    }
    // execve refuses more than ARG_MAX bytes of arguments and environment (with
    // their pointers); say so now, naming the sizes, not with E2BIG at the end.
    let size: usize = args.iter().chain(&env).map(|s| s.len() + 1 + std::mem::size_of::<usize>()).sum();
    let arg_max = host.arg_max;
    if arg_max > 0 && size > arg_max {
        return Err(Error::Process {
            field: "args and env",
            why: format!(
                "{} arguments and {} variables take {size} bytes, over the kernel's limit of {arg_max} (ARG_MAX); \
                 pass large data in a file",
                args.len(),
                env.len()
            ),
        });
    }
    if !p.cwd().is_absolute() {
        return Err(Error::Process { field: "cwd", why: format!("{} is not absolute", p.cwd().display()) });
    }
    let caps = p.capabilities().clone().unwrap_or_default();
    let names = |set: &Option<oci_spec::runtime::Capabilities>| -> Vec<String> {
        let mut v: Vec<String> = set.iter().flatten().map(|c| format!("CAP_{c}")).collect();
        v.sort();
        v
    };
    let permitted = names(caps.permitted());
    let inheritable = names(caps.inheritable());
    // The kernel raises an ambient capability only when it is both permitted and
    // inheritable; runc and crun skip the others (`runc spec` writes ambient
    // without inheritable), and so does exprun. The plan keeps what applies.
    let ambient = names(caps.ambient())
        .into_iter()
        .filter(|c| permitted.contains(c) && inheritable.contains(c))
        .collect();
    let caps = CapSets {
        bounding: names(caps.bounding()),
        effective: names(caps.effective()),
        permitted,
        inheritable,
        ambient,
    };
    for c in caps.bounding.iter().chain(&caps.effective).chain(&caps.permitted).chain(&caps.ambient) {
        if c.parse::<caps::Capability>().is_err() {
            return Err(Error::Process {
                field: "capabilities",
                why: format!("{c} is not known to this kernel interface"),
            });
        }
    }
    let mut rlimits = Vec::new();
    for r in p.rlimits().clone().unwrap_or_default() {
        let name = serde_json::to_value(r.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let resource = rlimit_number(&name)
            .ok_or_else(|| Error::Process { field: "rlimits", why: format!("unknown resource {name}") })?;
        if r.soft() > r.hard() {
            return Err(Error::Process {
                field: "rlimits",
                why: format!("{name}: soft limit above hard limit"),
            });
        }
        check_raisable(host, &name, resource, r.hard())?;
        rlimits.push(Rlimit { name, resource, soft: r.soft(), hard: r.hard() });
    }
    let user = p.user();
    // (uid_t)-1 is no id: setresuid and setresgid read it as "leave this one
    // as it is", so the command would keep init's root (and, from a bundle,
    // its whole capability set).
    let ids = [("uid", user.uid()), ("gid", user.gid())]
        .into_iter()
        .chain(user.additional_gids().iter().flatten().map(|g| ("additionalGids", *g)));
    for (field, id) in ids {
        if id == u32::MAX {
            return Err(Error::Process {
                field: "user",
                why: format!(
                    "{field} {id} is (uid_t)-1, which the kernel takes as \"unchanged\", not an id; \
                     give an id below {id}"
                ),
            });
        }
    }
    Ok(ProcessPlan {
        args,
        env,
        cwd: p.cwd().clone(),
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask().unwrap_or(0o022),
        caps,
        rlimits,
        no_new_privs: p.no_new_privileges().unwrap_or(false),
        terminal: p.terminal().unwrap_or(false),
        oom_score_adj: p.oom_score_adj(),
        personality: None,
        cpu_affinity: Vec::new(),
        apparmor_profile: apparmor_profile(p, host)?,
    })
}

/// `process.apparmorProfile`, when AppArmor can apply it on this host; a profile
/// it cannot apply is refused, never dropped.
fn apparmor_profile(p: &oci_spec::runtime::Process, host: &ProcessHost) -> Result<Option<String>> {
    let Some(profile) = p.apparmor_profile().clone().filter(|s| !s.is_empty()) else { return Ok(None) };
    if profile.contains(['\0', '\n']) {
        return Err(Error::Process {
            field: "apparmorProfile",
            why: format!("{profile:?} contains a NUL or newline"),
        });
    }
    match &host.apparmor {
        Ok(s) if s.trim() == "Y" => Ok(Some(profile)),
        found => Err(Error::Process {
            field: "apparmorProfile",
            why: format!(
                "{profile:?} cannot be applied: AppArmor is not enabled on this host ({} {}); \
                 remove the field, or run on a host with AppArmor",
                super::host::APPARMOR_ENABLED,
                match found {
                    Ok(s) => format!("says {:?}", s.trim()),
                    Err(e) => format!("cannot be read: {e}"),
                }
            ),
        }),
    }
}

/// Raising a hard limit above exprun's own needs CAP_SYS_RESOURCE; say so before
/// anything starts rather than fail inside the container's setup.
fn check_raisable(host: &ProcessHost, name: &str, resource: u32, hard: u64) -> Result<()> {
    let Some(&own) = host.hard_rlimits.get(&resource) else { return Ok(()) };
    if hard <= own || host.cap_sys_resource {
        return Ok(());
    }
    Err(Error::Process {
        field: "rlimits",
        why: format!(
            "{name} hard limit {hard} is above exprun's own ({own}), and raising it needs CAP_SYS_RESOURCE, which exprun does not have"
        ),
    })
}

/// The `RLIMIT_*` resources by name. The casts are for musl, where the
/// constants are `int` (glibc: `unsigned int`).
#[allow(clippy::unnecessary_cast)]
const RLIMITS: &[(&str, u32)] = &[
    ("RLIMIT_CPU", libc::RLIMIT_CPU as u32),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE as u32),
    ("RLIMIT_DATA", libc::RLIMIT_DATA as u32),
    ("RLIMIT_STACK", libc::RLIMIT_STACK as u32),
    ("RLIMIT_CORE", libc::RLIMIT_CORE as u32),
    ("RLIMIT_RSS", libc::RLIMIT_RSS as u32),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC as u32),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE as u32),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK as u32),
    ("RLIMIT_AS", libc::RLIMIT_AS as u32),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS as u32),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING as u32),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE as u32),
    ("RLIMIT_NICE", libc::RLIMIT_NICE as u32),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO as u32),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME as u32),
];

/// The `RLIMIT_*` number of a resource name.
fn rlimit_number(name: &str) -> Option<u32> {
    RLIMITS.iter().find(|(n, _)| *n == name).map(|&(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ambient_capabilities_apply_only_when_permitted_and_inheritable() {
        let process = |caps: serde_json::Value| -> oci_spec::runtime::Process {
            serde_json::from_value(serde_json::json!({"user": {"uid": 0, "gid": 0}, "args": ["true"], "cwd": "/", "capabilities": caps}))
                .unwrap()
        };
        let host = crate::plan::host::fixtures::rootless().process;
        let three = serde_json::json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        // What `runc spec` writes: ambient without inheritable.
        let runc_spec = process(serde_json::json!({
            "bounding": three, "effective": three, "permitted": three, "ambient": three
        }));
        assert!(process_plan_from(&runc_spec, &host).unwrap().caps.ambient.is_empty());
        let inheritable = process(serde_json::json!({
            "bounding": three, "effective": three, "permitted": three,
            "inheritable": ["CAP_KILL"], "ambient": three
        }));
        assert_eq!(process_plan_from(&inheritable, &host).unwrap().caps.ambient, ["CAP_KILL"]);
    }
}
