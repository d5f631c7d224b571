#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Shared helpers for the integration tests: the real exprun binary, a private
//! state root per test, the fixture image, visible skips, and leftover checks.

pub mod bundle;
pub mod registry;
pub mod rootless;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;

/// The exprun binary under test: `EXPRUN_TEST_BIN` where a test binary runs
/// away from its build (in the guest of tests/guest.rs), else this build's.
pub fn exprun_bin() -> PathBuf {
    match std::env::var_os("EXPRUN_TEST_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_exprun")),
    }
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether this process may run privileged tests. Prints `SKIP: <test>: <why>`
/// otherwise; under `CI=true` a skip is a failure.
pub fn privileged(test: &str) -> bool {
    let why = if !nix::unistd::geteuid().is_root() {
        Some("needs root")
    } else if !Path::new("/sys/fs/cgroup").exists() {
        Some("needs cgroups")
    } else {
        None
    };
    match why {
        None => true,
        Some(why) => {
            skip(test, why);
            false
        }
    }
}

/// Print `SKIP: <test>: <why>`; under `CI=true` a skip is a failure.
pub fn skip(test: &str, why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("test {test} cannot run here ({why}) and CI=true forbids skipping");
    }
    println!("SKIP: {test}: {why}");
}

static FIXTURES: Once = Once::new();

/// The fixture OCI layout, built by rootfs-fixtures/build.sh when missing;
/// `EXPRUN_TEST_FIXTURES` names a directory holding the built fixtures instead
/// (in the guest of tests/guest.rs, which has no build script).
pub fn fixture_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EXPRUN_TEST_FIXTURES") {
        return PathBuf::from(dir);
    }
    let out = repo().join("rootfs-fixtures/out");
    FIXTURES.call_once(|| {
        if !out.join("busybox-oci/index.json").exists()
            || !out.join("busybox-docker.tar").exists()
            || !out.join("builder-oci/index.json").exists()
        {
            let st = Command::new("bash")
                .arg(repo().join("rootfs-fixtures/build.sh"))
                .status()
                .expect("run build.sh");
            assert!(st.success(), "rootfs-fixtures/build.sh failed");
        }
    });
    out
}

/// A pinned value from rootfs-fixtures/pinned-digests.env.
pub fn pinned(key: &str) -> String {
    let text = std::fs::read_to_string(repo().join("rootfs-fixtures/pinned-digests.env")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} not in pinned-digests.env"))
        .to_string()
}

/// A private exprun state root, checked for leftovers when dropped.
pub struct TestRoot {
    pub dir: tempfile::TempDir,
}

impl TestRoot {
    /// An empty root.
    pub fn new() -> Self {
        Self { dir: tempfile::Builder::new().prefix("exprun-test-").tempdir().unwrap() }
    }

    /// A root with the busybox fixture imported as `busybox:latest`.
    pub fn with_busybox() -> Self {
        let r = Self::new();
        let out = r.exprun(
            &["image", "import", "--name", "busybox:latest"],
            Some(&fixture_dir().join("busybox-oci")),
        );
        assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
        r
    }

    /// A root with the s2i builder fixture imported as `builder:latest`.
    pub fn with_builder() -> Self {
        let r = Self::new();
        let out = r.exprun(
            &["image", "import", "--name", "builder:latest"],
            Some(&fixture_dir().join("builder-oci")),
        );
        assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
        r
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `exprun --root <root> ARGS [PATH]`, capturing output, stdin from /dev/null,
    /// with an environment that holds only PATH and a marker the container must
    /// not see.
    pub fn exprun(&self, args: &[&str], extra: Option<&Path>) -> Output {
        let mut cmd = self.command(args);
        if let Some(p) = extra {
            cmd.arg(p);
        }
        cmd.stdin(Stdio::null()).output().expect("spawn exprun")
    }

    /// `exprun --root <root> ARGS`, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(exprun_bin());
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("EXPRUN_TEST_HOST_MARKER", "host-secret-value")
            .arg("--root")
            .arg(self.path())
            .args(args);
        cmd
    }

    /// `exprun run ARGS` in this root; returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let mut full = vec!["run"];
        full.extend_from_slice(args);
        let out = self.exprun(&full, None);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The records of this root, parsed.
    pub fn records(&self) -> Vec<serde_json::Value> {
        let runs = self.path().join("runs");
        let mut v = Vec::new();
        for e in std::fs::read_dir(&runs).into_iter().flatten().flatten() {
            let p = e.path().join("record.json");
            if p.exists() {
                v.push(hydrated(&p));
            }
        }
        v.sort_by_key(|r: &serde_json::Value| r["time"]["created"].as_str().unwrap_or("").to_string());
        v
    }

    /// The newest record.
    pub fn last_record(&self) -> serde_json::Value {
        let mut r = self.records();
        assert!(!r.is_empty(), "no run record in {}", self.path().display());
        // Records are created at second precision; the last one written wins ties.
        r.sort_by_key(|r| {
            let id = r["run_id"].as_str().unwrap().to_string();
            std::fs::metadata(self.path().join("runs").join(id).join("record.json"))
                .unwrap()
                .modified()
                .unwrap()
        });
        r.pop().unwrap()
    }

    /// Everything a run may leave behind, checked: no live run directories, no
    /// cgroup of any recorded run, no mount and no process mentioning this root.
    pub fn assert_no_leftovers(&self) {
        let containers = self.path().join("containers");
        let live: Vec<_> =
            std::fs::read_dir(&containers).into_iter().flatten().flatten().map(|e| e.path()).collect();
        assert!(live.is_empty(), "run directories left behind: {live:?}");
        for r in self.records() {
            for (_, dir) in r["cgroup"]["dirs"].as_object().into_iter().flatten() {
                let dir = dir.as_str().unwrap();
                assert!(!Path::new(dir).exists(), "cgroup left behind: {dir}");
            }
        }
        let root = self.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&root), "mounts under {root} left behind");
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                assert!(!cmdline.contains(&root), "process left behind: {cmdline}");
            }
        }
        let verify = self.path().join("verify");
        let scratch: Vec<_> =
            std::fs::read_dir(&verify).into_iter().flatten().flatten().map(|e| e.path()).collect();
        assert!(scratch.is_empty(), "verify scratch left behind: {scratch:?}");
        let build = self.path().join("build");
        let scratch: Vec<_> =
            std::fs::read_dir(&build).into_iter().flatten().flatten().map(|e| e.path()).collect();
        assert!(scratch.is_empty(), "build scratch left behind: {scratch:?}");
        let tmp = self.path().join("store/tmp");
        let stray: Vec<_> =
            std::fs::read_dir(&tmp).into_iter().flatten().flatten().map(|e| e.path()).collect();
        assert!(stray.is_empty(), "store temp files left behind: {stray:?}");
    }
}

/// A record.json as JSON, its shared parts (`{"$object": DIGEST}`, kept once
/// in `runs/.objects/sha256/`, the run id written `{run_id}`) put back: the
/// record as `exprun runs show --json` gives it.
pub fn hydrated(record: &Path) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    let dir = record.parent().unwrap();
    let id = dir.file_name().unwrap().to_str().unwrap();
    let objects = dir.parent().unwrap().join(".objects/sha256");
    for (_, field) in v.as_object_mut().unwrap().iter_mut() {
        let Some(digest) = field.get("$object").and_then(|d| d.as_str()) else { continue };
        let hex = digest.strip_prefix("sha256:").unwrap();
        let text = std::fs::read_to_string(objects.join(hex)).unwrap().replace("{run_id}", id);
        *field = serde_json::from_str(&text).unwrap();
    }
    v
}

/// Kill every process in the cgroup `top` and the cgroups below it, then remove
/// them, deepest first; each for up to 5 s, since the kernel frees a cgroup a
/// moment after its last process is gone.
pub fn remove_cgroup_tree(top: &Path) {
    let mut dirs = vec![top.to_path_buf()];
    let mut i = 0;
    while i < dirs.len() {
        for e in std::fs::read_dir(&dirs[i]).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(e.path());
            }
        }
        i += 1;
    }
    for d in &dirs {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()).filter(|p| *p > 0) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
    }
    for d in dirs.iter().rev() {
        let t0 = std::time::Instant::now();
        while std::fs::remove_dir(d).is_err() && d.exists() && t0.elapsed().as_secs() < 5 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
