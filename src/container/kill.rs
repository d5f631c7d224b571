//! `exprun kill`: a signal to init, or to every process of the container.

use std::os::fd::AsFd;

use nix::unistd::Pid;

use super::{alive, container_pids, load, Error, Status};
use crate::error::Result;
use crate::state::Root;
use crate::sys;

/// `exprun kill`: signal init, or with `all` every process of the container's
/// cgroup (which succeeds on a stopped container too).
pub fn kill(root: &Root, id: &str, signal: &str, all: bool) -> Result<()> {
    let sig = parse_signal(signal)?;
    let c = load(root, id)?;
    if all {
        for pid in container_pids(&c) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::try_from(sig).ok());
        }
        return Ok(());
    }
    if c.status() == Status::Stopped {
        return Err(Error::NotRunning(id.into()).into());
    }
    let pidfd = sys::pidfd_open(Pid::from_raw(c.state.pid)).map_err(|_| Error::NotRunning(id.into()))?;
    // The pidfd pins the process; check it is still ours before signalling.
    if !alive(c.state.pid, c.state.pid_start) {
        return Err(Error::NotRunning(id.into()).into());
    }
    sys::pidfd_send_signal(pidfd.as_fd(), sig).map_err(|_| Error::NotRunning(id.into()))?;
    Ok(())
}

/// `KILL`, `SIGKILL`, `9`.
fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(Error::Signal(s.into()).into());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse::<nix::sys::signal::Signal>().map(|sig| sig as i32).map_err(|_| Error::Signal(s.into()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_number_and_name() {
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("NOPE").unwrap_err().to_string().contains("NOPE"));
    }
}
