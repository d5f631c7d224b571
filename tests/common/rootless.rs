#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! An unprivileged user for the rootless tests, made (and removed) by the test,
//! with a home holding its XDG_DATA_HOME and XDG_RUNTIME_DIR.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::exprun_bin;

/// The unprivileged user the tests run exprun as.
pub const USER: &str = "exprun-rootless-test";

/// The user's uid and gid, and whether this test made the user (and removes it).
pub fn user() -> (u32, u32, bool) {
    let id = |flag: &str| Command::new("id").args([flag, USER]).output().unwrap();
    let mut made = false;
    if !id("-u").status.success() {
        let added = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/bin/sh", USER])
            .status();
        assert!(added.unwrap().success(), "useradd {USER} failed");
        made = true;
    }
    let num = |flag: &str| String::from_utf8_lossy(&id(flag).stdout).trim().parse().unwrap();
    (num("-u"), num("-g"), made)
}

/// A home for the user, removed with the value.
pub struct Home {
    /// The home directory.
    dir: tempfile::TempDir,
    /// The user's uid.
    pub uid: u32,
    /// The user's gid.
    pub gid: u32,
    made_user: bool,
}

impl Drop for Home {
    fn drop(&mut self) {
        for f in ["/etc/subuid", "/etc/subgid"] {
            if let Ok(text) = std::fs::read_to_string(f) {
                let kept: String = text
                    .lines()
                    .filter(|l| !l.starts_with(&format!("{USER}:")))
                    .map(|l| format!("{l}\n"))
                    .collect();
                let _ = std::fs::write(f, kept);
            }
        }
        if self.made_user {
            let _ = Command::new("userdel").arg(USER).status();
        }
    }
}

impl Home {
    pub fn new() -> Self {
        let (uid, gid, made_user) = user();
        let dir = tempfile::Builder::new().prefix("exprun-rootless-").tempdir().unwrap();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let runtime = dir.path().join("run");
        std::fs::create_dir(&runtime).unwrap();
        std::os::unix::fs::chown(&runtime, Some(uid), Some(gid)).unwrap();
        Home { dir, uid, gid, made_user }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The state root exprun picks for the user: $XDG_DATA_HOME/exprun.
    pub fn root(&self) -> PathBuf {
        self.path().join("data/exprun")
    }

    /// The user's $XDG_RUNTIME_DIR, where live runs go.
    pub fn runtime(&self) -> PathBuf {
        self.path().join("run")
    }

    /// `exprun ARGS` as the user, with a clean environment.
    pub fn exprun(&self, args: &[&str]) -> (i32, String, String) {
        let out: Output = self.command(&exprun_bin(), args).stdin(Stdio::null()).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The binary `bin` with `args`, as the user, with a clean environment.
    pub fn command(&self, bin: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args([&format!("--reuid={}", self.uid), &format!("--regid={}", self.gid), "--clear-groups"])
            .arg("env")
            .arg("-i")
            .arg(format!("HOME={}", self.path().display()))
            .arg(format!("XDG_DATA_HOME={}", self.path().join("data").display()))
            .arg(format!("XDG_RUNTIME_DIR={}", self.runtime().display()))
            .arg("PATH=/usr/bin:/bin")
            .arg(bin)
            .args(args);
        cmd
    }

    /// `image rm busybox:latest` and `image gc`, as the user.
    pub fn remove_image(&self) {
        for args in [&["image", "rm", "busybox:latest"][..], &["image", "gc"]] {
            let (code, _, err) = self.exprun(args);
            assert_eq!(code, 0, "{args:?}: {err}");
        }
    }

    pub fn assert_no_leftovers(&self) {
        assert!(!self.root().join("containers").exists(), "live runs go under $XDG_RUNTIME_DIR");
        assert!(self.runtime().join("exprun/containers").is_dir());
        let live: Vec<_> = std::fs::read_dir(self.runtime().join("exprun/containers"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(live.is_empty(), "run directories left behind: {live:?}");
        let home = self.path().display().to_string();
        assert!(
            !std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&home),
            "mounts left behind"
        );
        let procs = Command::new("pgrep").args(["-f", &home]).output().unwrap();
        assert!(procs.stdout.is_empty(), "processes left behind: {}", String::from_utf8_lossy(&procs.stdout));
    }
}

/// A bundle in `work` of the fixture's base layer with a config that
/// `exprun spec --rootless`, run as `h`'s user, wrote; the command is `args`.
pub fn rootless_bundle(h: &Home, work: &std::path::Path, args: &[&str]) -> PathBuf {
    let bundle = super::bundle::bundle(work, &["true"]);
    std::fs::remove_file(bundle.join("config.json")).unwrap();
    let chown = Command::new("chown").args(["-R", &format!("{}:{}", h.uid, h.gid)]).arg(work).status();
    assert!(chown.unwrap().success());
    let (code, _, err) = h.exprun(&["spec", "--rootless", "-b", bundle.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    edit_config(&bundle, |c| {
        c["process"]["terminal"] = false.into();
        c["process"]["args"] = serde_json::json!(args);
    });
    bundle
}

/// Rewrite the bundle's config.json through `edit`.
pub fn edit_config(bundle: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}
