//! The seccomp agent of a filter with SCMP_ACT_NOTIFY rules: the process
//! listening on `linux.seccomp.listenerPath` gets the filter's notify fd with
//! the container process's state, as the runtime spec describes.
//!
//! exprun connects to the agent before the clone (the socket is a host path,
//! which init can no longer reach once it has pivoted) and hands init the
//! connection and, once the pid is known, the state message. Init installs the
//! filter where it always does, then sends the message with the notify fd as
//! SCM_RIGHTS and closes both: exprun may have exited by then (`create`
//! returns before `start`).

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};

use super::Error;
use crate::seccomp::{Filter, Listener};

/// The connection to the agent of `filter`, when it has one.
pub fn connect(filter: Option<&Filter>) -> Result<Option<OwnedFd>, Error> {
    let Some(l) = filter.and_then(|f| f.listener.as_ref()) else { return Ok(None) };
    let stream = UnixStream::connect(&l.path).map_err(|e| Error::Io {
        op: "connecting to the seccomp agent (linux.seccomp.listenerPath)",
        source: io::Error::new(e.kind(), format!("{}: {e}", l.path.display())),
    })?;
    Ok(Some(OwnedFd::from(stream)))
}

/// The spec's "container process state": the fd names, the pid, the
/// listener's metadata and the container's state JSON (`state`).
pub fn message(listener: &Listener, pid: i32, state: &str) -> String {
    let state: serde_json::Value = serde_json::from_str(state).unwrap_or_default();
    serde_json::json!({
        "ociVersion": "1.2.0",
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": listener.metadata.clone().unwrap_or_default(),
        "state": state,
    })
    .to_string()
}

/// Send `message` with `notify` to the agent (init, right after installing
/// the filter).
pub fn send(agent: &OwnedFd, message: &str, notify: OwnedFd) -> io::Result<()> {
    let fds = [notify.as_raw_fd()];
    let iov = [IoSlice::new(message.as_bytes())];
    let sent = sendmsg::<UnixAddr>(
        agent.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    if sent != message.len() {
        return Err(io::Error::other(format!("sent {sent} of {} bytes of the state", message.len())));
    }
    Ok(())
}
