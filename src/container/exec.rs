//! `exprun exec`: a further process in a created or running container, with
//! runc's options: `--process` or a command, `--env` (overriding the same
//! variable of the process), `--cap`, `--cgroup`, `--ignore-paused`,
//! `--preserve-fds`.

use std::fs;
use std::path::{Component, Path, PathBuf};

use nix::unistd::Pid;

use super::{io_at, load, parse_json, Error, Status};
use crate::cgroups::{CgroupPlan, Version};
use crate::error::Result;
use crate::state::Root;
use crate::{plan, spawn};

/// What `exec` needs.
pub struct ExecOptions<'a> {
    /// The container id.
    pub id: &'a str,
    /// An OCI process JSON file (`--process`); without it the container's own
    /// process is the base and `args` replaces its argv.
    pub process_file: Option<&'a Path>,
    /// The command (without `--process`).
    pub args: Vec<String>,
    /// `--cwd`.
    pub cwd: Option<&'a str>,
    /// `--env NAME=VALUE`s: each replaces the variable of the same name.
    pub env: Vec<String>,
    /// `--user UID[:GID]`.
    pub user: Option<&'a str>,
    /// `--cap CAP`s: added to the bounding, effective and permitted sets (and
    /// the ambient one where the inheritable set has it).
    pub caps: Vec<String>,
    /// `--cgroup [CONTROLLERS:]PATH`s: sub-cgroups of the container's to join.
    pub cgroups: Vec<String>,
    /// `--ignore-paused`: exec into a paused container (the process is frozen
    /// with it until `resume`).
    pub ignore_paused: bool,
    /// `--preserve-fds N`: the caller's fds 3..3+N are passed on.
    pub preserve_fds: u32,
    /// `--no-new-privs`: set no_new_privs for the process.
    pub no_new_privs: bool,
    /// `--tty` (needs `console_socket`).
    pub tty: bool,
    /// Return once the process runs.
    pub detach: bool,
    /// Where to write its pid.
    pub pid_file: Option<&'a Path>,
    /// Where to send the pty master.
    pub console_socket: Option<&'a Path>,
}

/// `exprun exec`: run a further process in a created or running container.
/// Returns its exit status (0 once started with `detach`); 126/127 when the
/// command cannot be run.
pub fn exec(root: &Root, o: &ExecOptions<'_>) -> Result<i32> {
    super::create::check_preserved_fds(o.preserve_fds)?;
    let c = load(root, o.id)?;
    match c.status() {
        Status::Stopped => return Err(Error::NotRunning(o.id.into()).into()),
        status @ Status::Paused if !o.ignore_paused => {
            return Err(Error::WrongState {
                id: o.id.into(),
                status,
                why: "cannot exec in a paused container (use --ignore-paused to override)",
            }
            .into())
        }
        _ => {}
    }
    let mut process: oci_spec::runtime::Process = match o.process_file {
        Some(f) => {
            let bytes = fs::read(f).map_err(io_at("reading", f))?;
            parse_json(f, &bytes)?
        }
        None => {
            let mut p = c.plan.spec.process().clone().unwrap_or_default();
            if o.args.is_empty() {
                return Err(crate::Error::Usage("exec: give --process FILE or a command".into()));
            }
            p.set_args(Some(o.args.clone()));
            p
        }
    };
    if let Some(cwd) = o.cwd {
        process.set_cwd(cwd.into());
    }
    if !o.env.is_empty() {
        process.set_env(Some(override_env(process.env().clone().unwrap_or_default(), &o.env)));
    }
    if let Some(u) = o.user {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        let (Ok(uid), Ok(gid)) = (uid.parse::<u32>(), gid.parse::<u32>()) else {
            return Err(crate::Error::Usage(format!("--user {u:?}: give numeric UID[:GID]")));
        };
        let mut user = process.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        process.set_user(user);
    }
    if o.tty {
        process.set_terminal(Some(true));
    }
    if o.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    if !o.caps.is_empty() {
        add_caps(&mut process, &o.caps)?;
    }
    let cgroup = sub_cgroups(&c.plan.cgroup, &o.cgroups)?;
    let plan = plan::process_plan_from(&process, &plan::host::ProcessHost::gather())?;
    let signals = spawn::block_signals()?;
    let mut child_io = match (plan.terminal, o.console_socket) {
        (true, Some(s)) => spawn::stdio::console_socket(s, process.console_size()),
        (true, None) => return Err(crate::Error::Usage("a terminal needs --console-socket".into())),
        (false, _) => spawn::stdio::inherit(),
    }
    .map_err(|source| spawn::Error::Io { op: "setting up stdio", source })?;
    child_io.preserved = o.preserve_fds;
    let req = spawn::exec::ExecRequest {
        init_pid: Pid::from_raw(c.state.pid),
        cgroup: &cgroup,
        process: &plan,
        detach: o.detach,
        pid_file: o.pid_file,
        seccomp: c.plan.seccomp.as_ref(),
        state: super::hook_state(&c, "running"),
    };
    match spawn::exec::exec(&req, child_io, &signals)? {
        spawn::exec::ExecOutcome::Started(_) => Ok(0),
        spawn::exec::ExecOutcome::Exited(code) => Ok(code),
        spawn::exec::ExecOutcome::CommandFailed(f) => Err(Error::Command(f.message).into()),
    }
}

/// `env` with each of `overrides` (`NAME=VALUE`) in place of every earlier
/// entry of its name: the last one of a name wins, where it stands.
fn override_env(mut env: Vec<String>, overrides: &[String]) -> Vec<String> {
    let name = |e: &str| e.split_once('=').map_or(e, |(n, _)| n).to_string();
    for o in overrides {
        let n = name(o);
        env.retain(|e| name(e) != n);
        env.push(o.clone());
    }
    env
}

/// runc's `exec --cap`: each capability joins the bounding, effective and
/// permitted sets, and the ambient set where the inheritable set has it (the
/// kernel raises no other ambient capability).
fn add_caps(process: &mut oci_spec::runtime::Process, add: &[String]) -> Result<()> {
    use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilitiesBuilder};
    let mut parsed = Capabilities::new();
    for name in add {
        let full = if name.starts_with("CAP_") { name.clone() } else { format!("CAP_{name}") };
        let cap: Capability = serde_json::from_value(serde_json::Value::String(full)).map_err(|_| {
            crate::Error::Usage(format!("--cap {name:?}: not a capability (e.g. CAP_NET_ADMIN)"))
        })?;
        parsed.insert(cap);
    }
    let old = process.capabilities().clone().unwrap_or_default();
    let with = |set: &Option<Capabilities>| {
        let mut s = set.clone().unwrap_or_default();
        s.extend(parsed.iter().copied());
        s
    };
    let inheritable = old.inheritable().clone().unwrap_or_default();
    let mut ambient = old.ambient().clone().unwrap_or_default();
    ambient.extend(parsed.iter().filter(|c| inheritable.contains(c)).copied());
    let caps = LinuxCapabilitiesBuilder::default()
        .bounding(with(old.bounding()))
        .effective(with(old.effective()))
        .permitted(with(old.permitted()))
        .inheritable(inheritable)
        .ambient(ambient)
        .build()
        .map_err(|e| crate::Error::Usage(format!("--cap: {e}")))?;
    process.set_capabilities(Some(caps));
    Ok(())
}

/// The cgroup an exec'd process joins: the container's, or with `--cgroup`
/// (runc's form) a sub-cgroup of it that exists: `PATH` in every hierarchy, or
/// `CONTROLLER[,CONTROLLER...]:PATH` in those controllers' (cgroup v1 only).
/// PATH is relative to the container's cgroup and cannot leave it.
fn sub_cgroups(base: &CgroupPlan, specs: &[String]) -> Result<CgroupPlan> {
    let mut plan = base.clone();
    let bad = |spec: &str, why: String| crate::Error::Usage(format!("--cgroup {spec:?}: {why}"));
    for spec in specs {
        let (controllers, path) = match spec.split_once(':') {
            Some((c, p)) => (Some(c), p),
            None => (None, spec.as_str()),
        };
        let sub: PathBuf = Path::new(path)
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(Ok(n)),
                Component::RootDir | Component::CurDir => None,
                _ => Some(Err(())),
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(|()| bad(spec, "the path must stay inside the container's cgroup (no ..)".into()))?;
        if sub.as_os_str().is_empty() {
            return Err(bad(spec, "give a sub-cgroup of the container's".into()));
        }
        let keys: Vec<String> = match (controllers, base.version) {
            (_, Version::None) => return Err(bad(spec, "the container has no cgroup".into())),
            (None, _) => base.dirs.keys().cloned().collect(),
            (Some(_), Version::V2) => {
                return Err(bad(spec, "cgroup v2 has one hierarchy: give PATH without controllers".into()))
            }
            (Some(list), Version::V1) => {
                let mut keys = Vec::new();
                for ctrl in list.split(',') {
                    let Some(dir) = base.dirs.get(ctrl) else {
                        let known: Vec<&str> = base.dirs.keys().map(String::as_str).collect();
                        return Err(bad(
                            spec,
                            format!("the container has no {ctrl:?} cgroup ({})", known.join(", ")),
                        ));
                    };
                    // Co-mounted controllers (cpu,cpuacct) share a directory: all move.
                    keys.extend(base.dirs.iter().filter(|(_, d)| *d == dir).map(|(k, _)| k.clone()));
                }
                keys
            }
        };
        for k in keys {
            let (Some(from), Some(dir)) = (base.dirs.get(&k), plan.dirs.get_mut(&k)) else { continue };
            let target = from.join(&sub);
            if !target.is_dir() {
                return Err(bad(
                    spec,
                    format!("{} does not exist (exec joins a cgroup, it makes none)", target.display()),
                ));
            }
            *dir = target;
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_replace_the_variable_of_the_same_name() {
        let env = vec!["PATH=/bin".to_string(), "A=1".into(), "B=2".into()];
        let out = override_env(env, &["A=9".into(), "C=3".into(), "B".into()]);
        assert_eq!(out, vec!["PATH=/bin", "A=9", "C=3", "B"]);
    }

    #[test]
    fn a_sub_cgroup_cannot_leave_the_containers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("c/sub")).unwrap();
        std::fs::create_dir_all(dir.path().join("m/sub")).unwrap();
        let mut base = CgroupPlan::none();
        base.version = Version::V1;
        base.dirs.insert("cpu".into(), dir.path().join("c"));
        base.dirs.insert("cpuacct".into(), dir.path().join("c"));
        base.dirs.insert("memory".into(), dir.path().join("m"));
        let p = sub_cgroups(&base, &["cpuacct:/sub".into()]).unwrap();
        assert_eq!(p.dirs["cpu"], dir.path().join("c/sub"), "co-mounted controllers move together");
        assert_eq!(p.dirs["memory"], dir.path().join("m"));
        let p = sub_cgroups(&base, &["sub".into()]).unwrap();
        assert_eq!(p.dirs["memory"], dir.path().join("m/sub"));
        for bad in ["../c", "sub/../..", "", "/", "blkio:sub", "nosuch"] {
            assert!(sub_cgroups(&base, &[bad.into()]).is_err(), "{bad:?} accepted");
        }
    }
}
