//! OCI hooks: programs the config asks the runtime to run at fixed points of a
//! container's life, each given the container's state as JSON on stdin.
//!
//! | kind | run by | when | namespaces |
//! | --- | --- | --- | --- |
//! | prestart, createRuntime | exprun create | namespaces and mounts made, before pivot_root | the runtime's |
//! | createContainer | init | right after those, before pivot_root | the container's |
//! | startContainer | init | after `start`, before the command's execve | the container's |
//! | poststart | exprun start | after the command was released | the runtime's |
//! | poststop | exprun delete | after the container is gone | the runtime's |
//!
//! A failing prestart, createRuntime, createContainer or startContainer hook
//! fails the operation; a failing poststart or poststop hook is only reported,
//! as the runtime spec says.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A hook refused in the config, or one that failed: each names the kind
/// (`prestart`, `poststop`, ...) and the hook's path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The hook's path is relative.
    #[error("{kind} hook {}: the path must be absolute", path.display())]
    RelativePath {
        /// The kind of hook.
        kind: &'static str,
        /// Its path.
        path: PathBuf,
    },
    /// The hook's timeout is zero or negative.
    #[error("{kind} hook {}: timeout must be positive", path.display())]
    Timeout {
        /// The kind of hook.
        kind: &'static str,
        /// Its path.
        path: PathBuf,
    },
    /// The program could not be started, or waited for.
    #[error("{kind} hook {}: {op}: {source}", path.display())]
    Io {
        /// The kind of hook.
        kind: &'static str,
        /// Its path.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The program exited unsuccessfully.
    #[error("{kind} hook {}: {status}: {stderr}", path.display())]
    Failed {
        /// The kind of hook.
        kind: &'static str,
        /// Its path.
        path: PathBuf,
        /// How it ended.
        status: ExitStatus,
        /// What it wrote on stderr, trimmed.
        stderr: String,
    },
    /// The program ran past its timeout and was killed.
    #[error("{kind} hook {}: timed out after {seconds} s", path.display())]
    TimedOut {
        /// The kind of hook.
        kind: &'static str,
        /// Its path.
        path: PathBuf,
        /// The timeout.
        seconds: u64,
    },
}

/// One hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    /// Absolute path of the program.
    pub path: PathBuf,
    /// argv, including argv[0].
    #[serde(default)]
    pub args: Vec<String>,
    /// The whole environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Seconds before it is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// Every hook of a container, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hooks {
    /// Deprecated prestart hooks (run with createRuntime).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prestart: Vec<Hook>,
    /// createRuntime.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub create_runtime: Vec<Hook>,
    /// createContainer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub create_container: Vec<Hook>,
    /// startContainer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub start_container: Vec<Hook>,
    /// poststart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub poststart: Vec<Hook>,
    /// poststop.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub poststop: Vec<Hook>,
}

impl Hooks {
    /// The hooks of an OCI config, checked.
    pub fn from_spec(h: Option<&oci_spec::runtime::Hooks>) -> Result<Self, Error> {
        let Some(h) = h else { return Ok(Self::default()) };
        let conv =
            |kind: &'static str, v: &Option<Vec<oci_spec::runtime::Hook>>| -> Result<Vec<Hook>, Error> {
                v.iter()
                    .flatten()
                    .map(|h| {
                        if !h.path().is_absolute() {
                            return Err(Error::RelativePath { kind, path: h.path().clone() });
                        }
                        let timeout = match h.timeout() {
                            Some(t) if t <= 0 => return Err(Error::Timeout { kind, path: h.path().clone() }),
                            t => t.map(|t| t as u64),
                        };
                        Ok(Hook {
                            path: h.path().clone(),
                            args: h.args().clone().unwrap_or_else(|| vec![h.path().display().to_string()]),
                            env: h.env().clone().unwrap_or_default(),
                            timeout,
                        })
                    })
                    .collect()
            };
        #[allow(deprecated)]
        let prestart = conv("prestart", h.prestart())?;
        Ok(Self {
            prestart,
            create_runtime: conv("createRuntime", h.create_runtime())?,
            create_container: conv("createContainer", h.create_container())?,
            start_container: conv("startContainer", h.start_container())?,
            poststart: conv("poststart", h.poststart())?,
            poststop: conv("poststop", h.poststop())?,
        })
    }

    /// Whether init must stop before pivot_root for exprun to run hooks.
    pub fn need_sync(&self) -> bool {
        !(self.prestart.is_empty()
            && self.create_runtime.is_empty()
            && self.create_container.is_empty()
            && self.start_container.is_empty())
    }
}

/// The state JSON hooks get on stdin.
pub fn state_json(id: &str, status: &str, pid: i32, bundle: &str, annotations: &serde_json::Value) -> String {
    serde_json::json!({
        "ociVersion": "1.2.0",
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
        "annotations": annotations,
    })
    .to_string()
}

/// Run `hooks` in order, each with `state` on stdin; the first failure stops.
pub fn run_all(kind: &'static str, hooks: &[Hook], state: &str) -> Result<(), Error> {
    for h in hooks {
        run(kind, h, state)?;
    }
    Ok(())
}

fn run(kind: &'static str, h: &Hook, state: &str) -> Result<(), Error> {
    let io_err = |op: &'static str| move |source| Error::Io { kind, path: h.path.clone(), op, source };
    let mut cmd = Command::new(&h.path);
    if let Some((argv0, rest)) = h.args.split_first() {
        use std::os::unix::process::CommandExt;
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for e in &h.env {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err("cannot start it"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine.
        let _ = stdin.write_all(state.as_bytes());
    }
    let deadline = h.timeout.map(|t| Instant::now() + Duration::from_secs(t));
    loop {
        if let Some(status) = child.try_wait().map_err(io_err("waiting for it"))? {
            if status.success() {
                return Ok(());
            }
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return Err(Error::Failed { kind, path: h.path.clone(), status, stderr: err.trim().to_string() });
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::TimedOut {
                kind,
                path: h.path.clone(),
                seconds: h.timeout.unwrap_or_default(),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(script: &str) -> Hook {
        Hook {
            path: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![],
            timeout: Some(5),
        }
    }

    #[test]
    fn hooks_get_the_state_and_failures_name_the_hook() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("state");
        let h = hook(&format!("cat > {}", out.display()));
        run_all("poststart", &[h], "{\"id\":\"x\"}").unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"id\":\"x\"}");
        let e = run_all("createRuntime", &[hook("echo nope >&2; exit 2")], "{}").unwrap_err();
        assert!(matches!(&e, Error::Failed { kind: "createRuntime", stderr, .. } if stderr == "nope"), "{e}");
        assert!(e.to_string().starts_with("createRuntime hook /bin/sh: exit status: 2: nope"), "{e}");
        let mut slow = hook("sleep 5");
        slow.timeout = Some(1);
        let e = run_all("x", &[slow], "{}").unwrap_err();
        assert!(matches!(e, Error::TimedOut { seconds: 1, .. }), "{e}");
    }
}
