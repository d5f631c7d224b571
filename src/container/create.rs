//! `exprun create`: the container set up from its bundle, init left waiting
//! on the exec FIFO for `start`.

use std::path::Path;
use std::time::SystemTime;

use super::{io_at, open_path, owner, start_time, ContainerState, Error, EXEC_FIFO, STATE_FILE};
use crate::cgroups::CgroupHost;
use crate::error::Result;
use crate::plan::{self, PlanContext, RunPlan};
use crate::record;
use crate::spawn::{self, CreateOutcome, Mode};
use crate::spec::bundle;
use crate::state::Root;
use crate::{fsutil, sys};

/// What `create` needs.
pub struct CreateOptions<'a> {
    /// The container id.
    pub id: &'a str,
    /// The bundle directory.
    pub bundle: &'a Path,
    /// Where to write init's pid (no trailing newline).
    pub pid_file: Option<&'a Path>,
    /// A unix socket to send the pty master to.
    pub console_socket: Option<&'a Path>,
    /// cgroupsPath is in systemd's `slice:prefix:name` form.
    pub systemd_cgroup: bool,
    /// exprun's command line.
    pub command_line: Vec<String>,
    /// `--preserve-fds N`: the caller's fds 3..3+N are passed to the command.
    pub preserve_fds: u32,
}

/// `--preserve-fds N`: fds 3..3+N must be the caller's, open before exprun
/// opened anything, or the container would get one of exprun's own.
pub(super) fn check_preserved_fds(n: u32) -> Result<()> {
    for fd in 3..3u64 + u64::from(n) {
        if !i32::try_from(fd).is_ok_and(sys::fd_is_open) {
            return Err(crate::Error::Usage(format!(
                "--preserve-fds {n}: fd {fd} is not open; pass fds 3 to {} to exprun",
                2 + u64::from(n)
            )));
        }
    }
    Ok(())
}

/// The plan for the bundle's config.json.
pub(super) fn plan_bundle(
    root: &Root,
    o: &CreateOptions<'_>,
    cgroups: &CgroupHost,
    interactive: bool,
) -> Result<RunPlan> {
    bundle::check_id(o.id)?;
    let state_dir = root.containers_dir().join(o.id);
    if state_dir.exists() {
        return Err(Error::Exists(o.id.into()).into());
    }
    let spec = bundle::load(o.bundle)?;
    let host = plan::Host::gather(cgroups, Some(&spec), None);
    let mut plan = plan::build(
        spec,
        PlanContext {
            command_line: o.command_line.clone(),
            systemd_cgroup: o.systemd_cgroup,
            interactive,
            ..PlanContext::bundle(o.id, o.bundle, &state_dir, &host)
        },
    )?;
    crate::seccomp::compile_planned(plan.seccomp.as_mut(), &plan.spec, &root.cache_dir())
        .map_err(plan::Error::from)?;
    // Nothing of the container exists yet: the last moment to re-exec when
    // the exec trampoline cannot serve it.
    crate::selfexe::settle(&plan).map_err(crate::Error::Usage)?;
    Ok(plan)
}

/// Write the pid file (without a trailing newline: containerd's shim parses the
/// whole file) and state.json for a container whose init is ready.
pub(super) fn write_state(
    o: &CreateOptions<'_>,
    plan: &RunPlan,
    created: &spawn::Created,
    foreground: bool,
) -> Result<()> {
    let state = ContainerState {
        id: o.id.into(),
        pid: created.pid.as_raw(),
        pid_start: start_time(created.pid.as_raw()).unwrap_or(0),
        bundle: o.bundle.canonicalize().unwrap_or_else(|_| o.bundle.to_path_buf()),
        rootfs: plan.rootfs.target().to_path_buf(),
        created: record::rfc3339(SystemTime::now()),
        owner: owner(),
        annotations: plan.spec.annotations().clone().unwrap_or_default().into_iter().collect(),
        foreground,
    };
    if let Some(p) = o.pid_file {
        fsutil::write_atomic(p, state.pid.to_string().as_bytes(), false)
            .map_err(io_at("writing the pid file", p))?;
    }
    let p = plan.state_dir.join(STATE_FILE);
    fsutil::write_json_atomic(&p, &state, false).map_err(io_at("writing", &p))?;
    Ok(())
}

/// `exprun create`: set up the container and leave init waiting for `start`.
pub fn create(root: &Root, o: &CreateOptions<'_>) -> Result<()> {
    check_preserved_fds(o.preserve_fds)?;
    let cgroups = CgroupHost::detect().map_err(plan::Error::from)?;
    let plan = plan_bundle(root, o, &cgroups, false)?;
    crate::run::note_no_cgroup(&plan);
    // Steps 6 and 8 of `exprun run` (src/run.rs), detached; `start` is step 9.
    let (signals, container) = crate::run::run_directory(root, &plan)?;
    let made = (|| -> Result<()> {
        let fifo_path = plan.state_dir.join(EXEC_FIFO);
        nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| Error::Io { op: "creating", path: fifo_path.clone(), source: e.into() })?;
        // init opens it as the process's user (after dropping privileges), so
        // it is that user's: on the host, or as the user namespace maps it.
        let owner = match &plan.user_ns {
            None => Some((plan.process.uid, plan.process.gid)),
            Some(ns) => ns.host_ids(plan.process.uid, plan.process.gid),
        };
        if let Some((uid, gid)) = owner.filter(|_| nix::unistd::geteuid().is_root()) {
            nix::unistd::chown(&fifo_path, Some(uid.into()), Some(gid.into())).map_err(|e| Error::Io {
                op: "handing to the container's user",
                path: fifo_path.clone(),
                source: e.into(),
            })?;
        }
        let fifo = open_path(&fifo_path)?;
        let mut child_io = match o.console_socket {
            Some(s) => {
                spawn::stdio::console_socket(s, plan.spec.process().as_ref().and_then(|p| p.console_size()))
            }
            None => spawn::stdio::inherit(),
        }
        .map_err(|source| spawn::Error::Io { op: "setting up stdio", source })?;
        child_io.preserved = o.preserve_fds;
        let created = match spawn::create(&plan, child_io, &signals, Mode::Detached { fifo })? {
            CreateOutcome::Ready(c) => c,
            CreateOutcome::CommandFailed(f) => return Err(Error::Command(f.message).into()),
        };
        if let Err(e) = write_state(o, &plan, &created, false) {
            created.kill();
            return Err(e);
        }
        Ok(())
    })();
    match made {
        Ok(()) => {
            container.release();
            Ok(())
        }
        Err(e) => {
            let _ = container.remove(None);
            Err(e)
        }
    }
}
