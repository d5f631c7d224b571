//! A hostile bundle on a shared host mount (as every mount is on a systemd
//! host) that sets `linux.rootfsPropagation` to `shared` or `rshared` and
//! mounts over directories of its root: the container's root is shared, but
//! nothing it mounts may show in the host's mountinfo, while it runs or after.
//! Only a bind of a shared host volume (containerd's Bidirectional) sends
//! mounts back, as tests/oci_mounts.rs shows.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::wait::waitpid;

use crate::common::bundle::{bundle, oci, run_detached, shim};
use crate::host::{Marker, Snapshot};

/// A shared tmpfs the test mounts, unmounted with what is below it on drop.
struct SharedTmpfs(PathBuf);

impl SharedTmpfs {
    fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let st =
            Command::new("mount").args(["-t", "tmpfs", "-o", "mode=755", "exprun-test"]).arg(dir).status();
        assert!(st.unwrap().success());
        let fs = SharedTmpfs(dir.to_path_buf());
        assert!(Command::new("mount").arg("--make-shared").arg(dir).status().unwrap().success());
        fs
    }
}

impl Drop for SharedTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-R").arg(&self.0).status();
    }
}

/// The host's mountinfo lines that show a container's mount: its source name,
/// or a mount point below `under`.
fn leaked(under: &Path) -> Vec<String> {
    let p = format!("{}/", under.display());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains("attack-") || l.split(' ').nth(4).is_some_and(|m| m.starts_with(&p)))
        .map(str::to_string)
        .collect()
}

const ATTACK: &str = "mount -t tmpfs attack-opt /opt && mount -t tmpfs attack-tmp /tmp && \
                      mount --bind /opt /home && echo mounted; sleep 60";

#[test]
fn a_shared_root_sends_none_of_the_containers_mounts_to_the_host() {
    let Some(t) = shim("a_shared_root_sends_none_of_the_containers_mounts_to_the_host") else { return };
    let r = &t.r;
    let fs = SharedTmpfs::new(&t.work.path().join("bundles"));
    let b = bundle(&fs.0, &["sh", "-c", ATTACK]);
    let log = t.work.path().join("log.json");
    let pid_file = t.work.path().join("init.pid");
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    let cfg_path = b.join("config.json");
    let base: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    for propagation in ["shared", "rshared"] {
        let mut cfg = base.clone();
        cfg["linux"]["rootfsPropagation"] = propagation.into();
        for set in ["bounding", "effective", "permitted"] {
            cfg["process"]["capabilities"][set].as_array_mut().unwrap().push("CAP_SYS_ADMIN".into());
        }
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        let init = run_detached(r, &b, &pid_file, "c");
        // Wait until the container has made its mounts.
        let inside = format!("/proc/{init}/mountinfo");
        let t0 = std::time::Instant::now();
        let mut seen = String::new();
        while seen.matches("attack-").count() < 3 {
            assert!(t0.elapsed().as_secs() < 10, "{propagation}: the container made no mounts: {seen}");
            std::thread::sleep(std::time::Duration::from_millis(20));
            seen = std::fs::read_to_string(&inside).unwrap_or_default();
        }
        let root = seen.lines().find(|l| l.split(' ').nth(4) == Some("/")).unwrap();
        assert!(root.contains("shared:"), "{propagation}: the container's root is not shared: {root}");
        assert_eq!(
            leaked(&fs.0),
            Vec::<String>::new(),
            "{propagation}: the host sees the container's mounts"
        );
        assert_eq!(oci(r, &log, &["kill", "c", "KILL"]).0, 0);
        waitpid(init, None).unwrap();
        let (code, _, err) = oci(r, &log, &["delete", "c"]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            leaked(&fs.0),
            Vec::<String>::new(),
            "{propagation}: the container's mounts stayed on the host"
        );
    }
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "a shared root mounting inside");
    r.assert_no_leftovers();
}
