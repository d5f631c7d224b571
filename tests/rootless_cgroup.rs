#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Rootless runs in a cgroup2 subtree delegated to the user the way systemd
//! delegates `user@UID.service`: the directory and its `cgroup.procs` and
//! `cgroup.subtree_control` belong to the user.
//!
//! Limits are checked against the controllers the subtree was given. On a
//! hybrid host the cgroup2 hierarchy may hold none (the machines this project
//! is developed on keep every controller on v1, and their v1 hierarchies cannot
//! be unmounted to free one): a limit is then refused, naming the controller,
//! and a run without limits still gets its cgroup, for its processes and CPU
//! figures (`cgroup.procs`, `cpu.stat` and `cgroup.kill` need no controller).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::rootless::{rootless_bundle, Home};
use common::{fixture_dir, privileged};

/// A cgroup delegated to the test's user, removed on drop.
struct Delegation {
    /// The delegated cgroup; exprun is started in its child `cli`.
    delegated: PathBuf,
}

fn mountinfo() -> Vec<(PathBuf, String, String)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            let (fstype, options) = (r.next()?, r.nth(1)?);
            Some((PathBuf::from(point), fstype.to_string(), options.to_string()))
        })
        .collect()
}

fn controllers(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn retry<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Delegation {
    /// A cgroup delegated to `h`'s user, or why there cannot be one here.
    fn set_up(h: &Home) -> Result<Self, String> {
        let mount = mountinfo()
            .into_iter()
            .find(|(_, fstype, _)| fstype == "cgroup2")
            .map(|(p, _, _)| p)
            .ok_or("no cgroup2 hierarchy is mounted")?;
        // What systemd's Delegate=yes does: the directory and the files through
        // which processes move and controllers are passed on belong to the user.
        let d = Delegation { delegated: mount.join(format!("exprun-delegated-{}", std::process::id())) };
        for dir in [d.delegated.clone(), d.delegated.join("cli")] {
            std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
            for f in ["", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"] {
                std::os::unix::fs::chown(dir.join(f), Some(h.uid), Some(h.gid)).unwrap();
            }
        }
        Ok(d)
    }

    fn has(&self, ctrl: &str) -> bool {
        controllers(&self.delegated).iter().any(|c| c == ctrl)
    }

    /// `exprun ARGS` as the user, started in the delegated subtree's `cli` cgroup.
    fn spawn(&self, h: &Home, args: &[&str]) -> Child {
        self.spawn_command(h, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    fn spawn_command(&self, h: &Home, args: &[&str]) -> Command {
        let inner = h.command(&common::exprun_bin(), args);
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("echo $$ > \"$1/cgroup.procs\" && shift && exec \"$@\"")
            .arg("sh")
            .arg(self.delegated.join("cli"))
            .arg(inner.get_program())
            .args(inner.get_args())
            .stdin(Stdio::null());
        cmd
    }

    /// [`Self::spawn`], to completion, with no pipe a container could keep open.
    fn run_detached(&self, h: &Home, args: &[&str]) -> bool {
        let mut cmd = self.spawn_command(h, args);
        cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success()
    }

    fn run(&self, h: &Home, args: &[&str]) -> (i32, String, String) {
        let out = self.spawn(h, args).wait_with_output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
    }

    /// A run cgroup with processes in it.
    fn running(&self) -> Option<PathBuf> {
        let busy = |p: &PathBuf| std::fs::read_to_string(p.join("cgroup.procs")).is_ok_and(|s| !s.is_empty());
        self.runs().into_iter().find(busy)
    }

    /// The run cgroups exprun made in the delegated subtree.
    fn runs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.delegated)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir() && p.file_name().unwrap().to_string_lossy().starts_with("exprun-"))
            .collect()
    }
}

impl Drop for Delegation {
    fn drop(&mut self) {
        common::remove_cgroup_tree(&self.delegated);
    }
}

#[test]
fn a_rootless_run_gets_its_cgroup_in_the_subtree_delegated_to_its_user() {
    let test = "a_rootless_run_gets_its_cgroup_in_the_subtree_delegated_to_its_user";
    if !privileged(test) {
        return;
    }
    let h = Home::new();
    let d = match Delegation::set_up(&h) {
        Ok(d) => d,
        Err(why) => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "{test} cannot run here ({why}) under CI=true"
            );
            println!("SKIP: {test}: {why}");
            return;
        }
    };
    let fixture = fixture_dir().join("busybox-oci");
    let (code, _, err) =
        h.exprun(&["image", "import", "--name", "busybox:latest", fixture.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");

    // A run without limits gets a cgroup beside exprun's own, made by the user,
    // and needs no --no-limits.
    // Inside, its own cgroup namespace and /sys/fs/cgroup.
    let script = "sleep 1; grep ^0:: /proc/self/cgroup; test -f /sys/fs/cgroup/cgroup.procs && echo own";
    let child = d.spawn(&h, &["run", "busybox:latest", "sh", "-c", script]);
    let dir = retry("the run's cgroup, with the container in it", || d.running());
    assert_eq!(std::fs::metadata(&dir).unwrap().uid(), h.uid, "made by the user");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).as_ref()),
        (Some(0), "0::/\nown\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.runs().is_empty(), "the run's cgroup is removed");
    let (code, json, err) = h.exprun(&["runs", "show", "--latest", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rec: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rec["cgroup"]["version"], "v2", "{:#}", rec["cgroup"]);
    assert_eq!(rec["cgroup"]["dirs"]["unified"], dir.display().to_string());
    assert!(rec["usage"]["cpu_user_us"].as_u64().is_some(), "{:#}", rec["usage"]);
    assert!(rec["usage"].get("unavailable").is_none(), "{:#}", rec["usage"]);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "no note for a run with a cgroup");

    // Limits: enforced where their controller was delegated, refused by name
    // where it was not. Twenty background sleeps under a limit of 12 tasks: sh
    // and at most 11 sleeps exist at once, counted without forking.
    let script =
        "for i in $(seq 20); do sleep 2 & done 2>/dev/null; set -- /proc/[0-9]*; echo procs=$#; wait";
    let args = ["run", "--pids-limit", "12", "--cpus", "0.5", "busybox:latest", "sh", "-c", script];
    if d.has("pids") && d.has("cpu") {
        let child = d.spawn(&h, &args);
        let dir = retry("the limited run's cgroup", || d.running());
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default().trim().to_string();
        assert_eq!(read("pids.max"), "12");
        assert_eq!(read("cpu.max"), "50000 100000");
        let out = child.wait_with_output().unwrap();
        let (stdout, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{err}");
        let procs: usize = stdout.trim().strip_prefix("procs=").unwrap().parse().unwrap();
        assert!((2..=12).contains(&procs), "{procs} processes under a limit of 12: {stdout}");
        let (_, json, _) = h.exprun(&["runs", "show", "--latest", "--json"]);
        let rec: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(rec["usage"]["pids_limit_hits"].as_u64().unwrap() >= 8, "{:#}", rec["usage"]);
    } else {
        let missing = if d.has("pids") { "cpu" } else { "pids" };
        let (code, _, err) = d.run(&h, &args);
        assert_eq!(code, 125, "{err}");
        assert!(err.contains(&format!("the {missing} controller is not delegated to you")), "{err}");
    }
    if !d.has("memory") {
        let (code, _, err) = d.run(&h, &["run", "--memory", "64m", "busybox:latest", "true"]);
        assert_eq!(code, 125);
        assert!(err.contains("--memory") && err.contains("memory controller is not delegated"), "{err}");
    }
    assert!(d.runs().is_empty(), "a refused run leaves no cgroup");

    // exprun killed mid-run: the next exprun removes the cgroup and the processes.
    let mut child = d.spawn(&h, &["run", "busybox:latest", "sleep", "60"]);
    let dir = retry("the killed run's cgroup", || d.running());
    // sh, setpriv and env exec in place: the child's pid is exprun's.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::SIGKILL).unwrap();
    child.wait().unwrap();
    let (code, _, err) = d.run(&h, &["gc"]);
    assert_eq!(code, 0, "{err}");
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(d.runs().is_empty());

    // A rootless bundle in the subtree: pause and resume through cgroup.freeze,
    // and an update whose controller was not delegated refused by name.
    let work = tempfile::tempdir().unwrap();
    let bundle = rootless_bundle(&h, work.path(), &["sleep", "60"]);
    let root = h.path().join("oci");
    let oci = |args: &[&str]| {
        let mut all = vec!["--root", root.to_str().unwrap()];
        all.extend_from_slice(args);
        d.run(&h, &all)
    };
    let create = ["--root", root.to_str().unwrap(), "create", "-b", bundle.to_str().unwrap(), "c1"];
    assert!(d.run_detached(&h, &create));
    let status = || {
        let (_, out, err) = oci(&["state", "c1"]);
        let s: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{err}"));
        s["status"].as_str().unwrap().to_string()
    };
    assert_eq!(oci(&["start", "c1"]).0, 0);
    let dir = retry("the container's cgroup", || d.running());
    assert_eq!(oci(&["pause", "c1"]).0, 0);
    assert_eq!(status(), "paused");
    assert_eq!(std::fs::read_to_string(dir.join("cgroup.freeze")).unwrap().trim(), "1");
    assert_eq!(oci(&["resume", "c1"]).0, 0);
    assert_eq!(status(), "running");
    if !d.has("pids") {
        let (code, _, err) = oci(&["update", "--pids-limit", "20", "c1"]);
        assert_eq!(code, 125);
        assert!(err.contains("the pids controller is not available there"), "{err}");
    }
    assert_eq!(oci(&["delete", "--force", "c1"]).0, 0);
    assert!(d.runs().is_empty(), "the container's cgroup is removed");

    h.remove_image();
    h.assert_no_leftovers();
}
