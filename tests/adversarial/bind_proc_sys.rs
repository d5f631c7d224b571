//! A hostile bundle that binds the host's /proc and /sys through a symlink as
//! the mount's source, with recursive attributes (`rro`, `rnosuid`, `rnodev`,
//! `rnoexec`): mount_setattr(AT_RECURSIVE) must change only the container's
//! copies, never the host's /proc and /sys mounts (whose flags a wrong target
//! would change for the whole host), and every copy below the bind, the
//! cgroup hierarchies included, must be read-only in the container.

use std::process::Stdio;

use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use crate::common::bundle::{bundle, oci, shim};
use crate::host::{Marker, Snapshot};

/// The host's mountinfo lines of /proc, /sys and the mounts below them.
fn host_proc_sys() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|m| ["/proc", "/sys"].iter().any(|p| m == *p || m.starts_with(&format!("{p}/"))))
        })
        .map(str::to_string)
        .collect()
}

const ATTACK: &str = "awk '$5 ~ /^\\/h(proc|sys)/ {print $5, $6}' /proc/self/mountinfo > /dev/shm/m; \
    v=$(cat /hproc/sys/kernel/printk_ratelimit); \
    echo $v > /hproc/sys/kernel/printk_ratelimit 2>/dev/null && echo wrote-proc; \
    mkdir /hsys/fs/cgroup/pids/exprun-attack 2>/dev/null && echo made-cgroup; \
    echo attack > /hsys/kernel/uevent_helper 2>/dev/null && echo wrote-sys; \
    echo done; sleep 60";

#[test]
fn recursive_attributes_on_a_bind_of_the_hosts_proc_and_sys_through_a_symlink_stay_in_the_container() {
    let Some(t) = shim(
        "recursive_attributes_on_a_bind_of_the_hosts_proc_and_sys_through_a_symlink_stay_in_the_container",
    ) else {
        return;
    };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sh", "-c", ATTACK]);
    let (to_proc, to_sys) = (work.join("to-proc"), work.join("to-sys"));
    std::os::unix::fs::symlink("/proc", &to_proc).unwrap();
    std::os::unix::fs::symlink("/sys", &to_sys).unwrap();
    let cfg_path = b.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    let mounts = cfg["mounts"].as_array_mut().unwrap();
    mounts.push(serde_json::json!({"destination": "/hproc", "type": "bind", "source": to_proc,
        "options": ["rbind", "rro", "rnosuid", "rnodev", "rnoexec"]}));
    mounts.push(serde_json::json!({"destination": "/hsys", "type": "bind", "source": to_sys,
        "options": ["rbind", "rro", "rnosuid", "rnoexec"]}));
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let log = work.join("log.json");
    let pid_file = work.join("init.pid");
    let out_file = work.join("out");
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    let host_before = host_proc_sys();
    let st = r
        .command(&["run", "-d", "-b", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), "c"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_file).unwrap())
        .status()
        .unwrap();
    assert!(st.success(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    let init = Pid::from_raw(std::fs::read_to_string(&pid_file).unwrap().parse().unwrap());
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(&out_file).unwrap().contains("done") {
        assert!(t0.elapsed().as_secs() < 10, "the container did not finish its attack");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(out.trim(), "done", "a write through the read-only binds went through: {out}");
    assert!(!std::path::Path::new("/sys/fs/cgroup/pids/exprun-attack").exists());
    let inside = std::fs::read_to_string(format!("/proc/{init}/root/dev/shm/m")).unwrap();
    let lines: Vec<&str> = inside.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("/hsys/fs/cgroup")), "no submount was bound: {inside}");
    for l in &lines {
        let (point, opts) = l.split_once(' ').unwrap();
        let opts: Vec<&str> = opts.split(',').collect();
        assert!(
            opts.contains(&"ro") && opts.contains(&"nosuid") && opts.contains(&"noexec"),
            "{point}: {opts:?}"
        );
    }
    assert_eq!(
        host_proc_sys(),
        host_before,
        "the host's /proc or /sys mounts changed while the container ran"
    );
    assert_eq!(oci(r, &log, &["kill", "c", "KILL"]).0, 0);
    waitpid(init, None).unwrap();
    let (code, _, err) = oci(r, &log, &["delete", "c"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(host_proc_sys(), host_before, "the host's /proc or /sys mounts changed");
    Snapshot::take(&marker, &[r.path()])
        .assert_same_as(&before, "recursive attributes on a bind of /proc, /sys");
    r.assert_no_leftovers();
}
