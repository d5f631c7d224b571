//! `exprun delete`: the container killed if forced, its cgroup and state
//! removed, and its run recorded.

use std::os::fd::AsFd;
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::unistd::Pid;

use super::{container_pids, hook_state, io_at, load, Error, Loaded, Status};
use crate::cgroups::{Cgroup, CgroupHost};
use crate::error::Result;
use crate::node::NodeConfig;
use crate::record::{self, retention, RunRecord};
use crate::state::Root;
use crate::{fsutil, spawn, sys};

/// How long `delete` waits for a killed container's processes to go.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// `exprun delete`: remove a stopped (or created) container; with `force` also a
/// running one, and no error when it does not exist. The record of a pod
/// container goes to the records root `node` names (the state root of
/// containerd's shim is a tmpfs that goes with the container), under its
/// retention policy; any other container's to `root`.
pub fn delete(root: &Root, id: &str, force: bool, node: &NodeConfig) -> Result<()> {
    let c = match load(root, id) {
        Ok(c) => c,
        Err(crate::Error::Container(Error::NotFound(_))) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    let refuse_running = |status: Status| -> Result<()> {
        if matches!(status, Status::Running | Status::Paused) && !force {
            return Err(
                Error::WrongState { id: id.into(), status, why: "stop it first, or use --force" }.into()
            );
        }
        Ok(())
    };
    if c.state.foreground && matches!(fsutil::Lock::try_dir(&c.dir), Ok(None)) {
        // `exprun run --bundle` is supervising it: kill it, and that exprun
        // removes it and records the run with its exit status.
        let status = c.status();
        refuse_running(status)?;
        kill_and_wait(&c, status);
        return Ok(());
    }
    let kubernetes = record::Kubernetes::from_annotations(&c.state.annotations);
    let records = match kubernetes {
        Some(_) => Root::new(&node.records.root),
        None => root.clone(),
    };
    let key = record::Key::open(records.dir())?;
    let lock = fsutil::Lock::acquire_dir(&c.dir).map_err(io_at("locking", &c.dir))?;
    let status = c.status();
    refuse_running(status)?;
    kill_and_wait(&c, status);
    let cgroup = Cgroup::adopt(&c.plan.cgroup);
    let usage = cgroup.usage();
    let t0 = Instant::now();
    loop {
        match cgroup.destroy() {
            Ok(()) => break,
            Err(e) if t0.elapsed() > KILL_WAIT => return Err(spawn::Error::from(e).into()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let created = humantime::parse_rfc3339(&c.state.created).unwrap_or_else(|_| SystemTime::now());
    let mut rec = RunRecord::new(
        &c.plan,
        created,
        record::exprun_info(&root.cache_dir()),
        record::host::facts(&CgroupHost::parse("", "")),
        &key,
    );
    rec.status = record::Status::Supervised;
    rec.exit.code = None;
    rec.exit.message = Some(format!(
        "created with exprun create and deleted {}; the exit status is the supervisor's (e.g. containerd's shim)",
        if status == Status::Stopped { "after it stopped" } else { "while it was still running (forced)" }
    ));
    rec.usage.cgroup = usage;
    rec.kubernetes = kubernetes;
    let runs = records.private_runs_dir()?;
    rec.write(&runs)?;
    fsutil::remove_tree(&c.dir).map_err(io_at("removing", &c.dir))?;
    drop(lock);
    if rec.kubernetes.is_some() {
        let entry = retention::Entry::for_record(&runs, id, &root.containers_dir());
        // The record is written and the container gone: a failure here is
        // reported, and `exprun gc` applies the policy again.
        if let Err(e) = retention::add(&runs, &entry, &node.records.retention, SystemTime::now()) {
            eprintln!("exprun: warning: retention of pod records: {e}");
        }
    }
    // A failing poststop hook is reported, not fatal (runtime spec).
    if let Err(e) = crate::hooks::run_all("poststop", &c.plan.hooks.poststop, &hook_state(&c, "stopped")) {
        eprintln!("exprun: warning: {e}");
    }
    Ok(())
}

/// SIGKILL a container's init and every process in its cgroup, and wait (up to
/// [`KILL_WAIT`]) for init to go.
fn kill_and_wait(c: &Loaded, status: Status) {
    if status == Status::Stopped {
        return;
    }
    let pidfd = sys::pidfd_open(Pid::from_raw(c.state.pid)).ok();
    if let Some(fd) = &pidfd {
        let _ = sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
    }
    for pid in container_pids(c) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
    // Frozen tasks cannot act on the SIGKILL until they are thawed.
    if status == Status::Paused {
        let _ = Cgroup::adopt(&c.plan.cgroup).set_frozen(false);
    }
    if let Some(fd) = pidfd {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let _ = sys::poll(&mut fds, PollTimeout::try_from(KILL_WAIT).unwrap_or(PollTimeout::NONE));
    }
}
