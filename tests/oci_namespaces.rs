#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `linux.namespaces` as runtime-spec 1.2 says, each bundle run by exprun and by
//! runc in the same test where runc can run it without changing the host: a
//! type not listed is the runtime's, a mount or UTS namespace may be joined by
//! path, and a new user namespace takes the config's id maps.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use common::bundle::{bundle, oci, remove_parent_cgroups, runc, runc_run, shim};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// The bundle's config, with /dev as containerd mounts it (runc's nodes do
/// not open on `exprun spec`'s nodev /dev) and a writable root.
fn config(b: &Path) -> serde_json::Value {
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    for m in cfg["mounts"].as_array_mut().unwrap() {
        if m["destination"] == "/dev" {
            m["options"] = serde_json::json!(["nosuid", "strictatime", "mode=755", "size=65536k"]);
        }
    }
    cfg["root"]["readonly"] = serde_json::json!(false);
    cfg
}

fn set_config(b: &Path, cfg: &serde_json::Value) {
    std::fs::write(b.join("config.json"), cfg.to_string()).unwrap();
}

fn link(path: &str) -> String {
    std::fs::read_link(path).unwrap().to_string_lossy().into_owned()
}

/// A process in new mount and UTS namespaces, to be joined by path; killed
/// and reaped on drop.
struct Holder(std::process::Child);

impl Holder {
    fn new() -> Self {
        let child = Command::new("unshare").args(["--mount", "--uts", "sleep", "300"]).spawn().unwrap();
        let me = link("/proc/self/ns/uts");
        let t0 = std::time::Instant::now();
        while std::fs::read_link(format!("/proc/{}/ns/uts", child.id()))
            .ok()
            .map(|l| l.to_string_lossy().into_owned())
            == Some(me.clone())
        {
            assert!(t0.elapsed() < std::time::Duration::from_secs(5), "unshare did not run");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Holder(child)
    }

    fn ns(&self, t: &str) -> String {
        format!("/proc/{}/ns/{t}", self.0.id())
    }

    fn hostname(&self) -> String {
        let out = Command::new("nsenter")
            .args(["-t", &self.0.id().to_string(), "-u", "hostname"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_namespace_type_not_listed_is_the_runtimes_as_with_runc() {
    let test = "a_namespace_type_not_listed_is_the_runtimes_as_with_runc";
    let Some(t) = shim(test) else { return };
    let (r, work) = (&t.r, t.work.path());
    // A child left running: with no pid namespace to end it with init, the
    // runtime must.
    let b = bundle(
        work,
        &["sh", "-c", "sleep 987 & readlink /proc/self/ns/pid; readlink /proc/self/ns/mnt; echo $$"],
    );
    let log = work.join("log.json");
    // A hostPID pod: every namespace but pid.
    let mut cfg = config(&b);
    cfg["linux"]["namespaces"] = serde_json::json!([
        {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}
    ]);
    set_config(&b, &cfg);
    let (host_pid, host_mnt) = (link("/proc/self/ns/pid"), link("/proc/self/ns/mnt"));
    let check = |who: &str, (code, out, err): (i32, String, String)| {
        assert_eq!(code, 0, "{who}: {err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], host_pid, "{who}: the host's pid namespace");
        assert_ne!(lines[1], host_mnt, "{who}: a mount namespace of its own");
        assert_ne!(lines[2], "1", "{who}: not pid 1 in the host's pid namespace");
        let left = Command::new("pgrep").args(["-f", "^sleep 987$"]).output().unwrap();
        assert!(left.stdout.is_empty(), "{who}: the container's child outlived it");
    };
    let t0 = std::time::Instant::now();
    check("exprun", oci(r, &log, &["run", "-b", b.to_str().unwrap(), "hostpid"]));
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(3),
        "exprun waited for the child: {:?}",
        t0.elapsed()
    );
    if let Some(runc) = runc(test) {
        check("runc", runc_run(&runc, &work.join("runc-root"), &b, "hostpid"));
    }

    // No mount namespace: building the root would mount on the host's
    // (runc chroots there, and leaves its mounts on the host): refused.
    cfg["linux"]["namespaces"] = serde_json::json!([]);
    set_config(&b, &cfg);
    let (code, _, err) = oci(r, &log, &["create", "-b", b.to_str().unwrap(), "nomnt"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("linux.namespaces: no mount namespace is listed"), "{err}");
    // exprun's own mount namespace, by path: refused just the same.
    cfg["linux"]["namespaces"] = serde_json::json!([{"type": "mount", "path": "/proc/self/ns/mnt"}]);
    set_config(&b, &cfg);
    let (code, _, err) = oci(r, &log, &["create", "-b", b.to_str().unwrap(), "ownmnt"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("is exprun's own (or pid 1's) mount namespace"), "{err}");
    cfg["linux"]["namespaces"] = serde_json::json!([{"type": "mount", "path": "/proc/1/ns/mnt"}]);
    set_config(&b, &cfg);
    let (code, _, err) = oci(r, &log, &["create", "-b", b.to_str().unwrap(), "initmnt"]);
    assert_eq!(code, 125, "{err}");
    // (Where pid 1's namespaces cannot be opened, the path is refused as such.)
    assert!(err.contains("linux.namespaces[0]") && err.contains("/proc/1/ns/mnt"), "{err}");
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn a_mount_and_a_uts_namespace_joined_by_path_as_with_runc() {
    let test = "a_mount_and_a_uts_namespace_joined_by_path_as_with_runc";
    let Some(t) = shim(test) else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sh", "-c", "readlink /proc/self/ns/mnt; readlink /proc/self/ns/uts; hostname"]);
    let log = work.join("log.json");
    let host_name = nix::unistd::gethostname().unwrap();
    let mut cfg = config(&b);
    cfg["hostname"] = serde_json::json!("joined");
    let join = |cfg: &mut serde_json::Value, h: &Holder| {
        cfg["linux"]["namespaces"] = serde_json::json!([
            {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
            {"type": "uts", "path": h.ns("uts")}, {"type": "mount", "path": h.ns("mnt")}
        ]);
    };
    // Each runtime gets a holder of its own: the container's pivot_root moves
    // the root of every process in the mount namespace it joined.
    let check = |who: &str, h: &Holder, (code, out, err): (i32, String, String)| {
        assert_eq!(code, 0, "{who}: {err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines, [link(&h.ns("mnt")), link(&h.ns("uts")), "joined".to_string()], "{who}");
        assert_eq!(h.hostname(), "joined", "{who}: the hostname is set in the joined namespace");
    };
    let h = Holder::new();
    join(&mut cfg, &h);
    set_config(&b, &cfg);
    check("exprun", &h, oci(r, &log, &["run", "-b", b.to_str().unwrap(), "joined"]));
    if let Some(runc) = runc(test) {
        let h = Holder::new();
        join(&mut cfg, &h);
        set_config(&b, &cfg);
        check("runc", &h, runc_run(&runc, &work.join("runc-root"), &b, "joined"));
    }
    assert_eq!(nix::unistd::gethostname().unwrap(), host_name);

    // A hostname in exprun's own UTS namespace would be the host's: refused
    // (runc sets it, renaming the host; not run here).
    cfg["linux"]["namespaces"] =
        serde_json::json!([{"type": "pid"}, {"type": "mount"}, {"type": "uts", "path": "/proc/self/ns/uts"}]);
    set_config(&b, &cfg);
    let (code, _, err) = oci(r, &log, &["create", "-b", b.to_str().unwrap(), "ownuts"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("process hostname: the UTS namespace joined by path"), "{err}");
    cfg["linux"]["namespaces"] =
        serde_json::json!([{"type": "pid"}, {"type": "mount"}, {"type": "uts", "path": "/proc/1/ns/uts"}]);
    set_config(&b, &cfg);
    let (code, _, err) = oci(r, &log, &["create", "-b", b.to_str().unwrap(), "inituts"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("/proc/1/ns/uts"), "{err}");
    assert_eq!(nix::unistd::gethostname().unwrap(), host_name);
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn a_user_namespace_gets_the_configs_id_maps_as_with_runc() {
    let test = "a_user_namespace_gets_the_configs_id_maps_as_with_runc";
    let Some(t) = shim(test) else { return };
    let (r, work) = (&t.r, t.work.path());
    let script = "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; touch /tmp/made; \
                  chown 1001:1003 /tmp/made && echo chowned; stat -c '%u %g' /bin";
    let b = bundle(work, &["sh", "-c", script]);
    let log = work.join("log.json");
    let mut cfg = config(&b);
    cfg["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "user"}));
    cfg["linux"]["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    cfg["linux"]["gidMappings"] = serde_json::json!([
        {"containerID": 0, "hostID": 100000, "size": 1000},
        {"containerID": 1000, "hostID": 200000, "size": 10}
    ]);
    set_config(&b, &cfg);
    let made = b.join("rootfs/tmp/made");
    let expect = |who: &str, out: &str| {
        let lines: Vec<String> =
            out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        assert_eq!(
            lines,
            ["0 100000 65536", "0 100000 1000", "1000 200000 10", "0", "0", "chowned", "65534 65534"],
            "{who}: {out}"
        );
        let meta = std::fs::metadata(&made).unwrap();
        assert_eq!(
            (std::os::unix::fs::MetadataExt::uid(&meta), std::os::unix::fs::MetadataExt::gid(&meta)),
            (101001, 200003),
            "{who}: ids inside are the mapped host ids outside"
        );
        std::fs::remove_file(&made).unwrap();
    };

    // create and start, as the shim drives it (init opens the exec FIFO as
    // the mapped root).
    let pid_file = b.join("init.pid");
    let mut create = r
        .command(&["create", "-b", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), "userns"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = create.stdout.take().unwrap();
    assert!(create.wait().unwrap().success(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
    let init = Pid::from_raw(std::fs::read_to_string(&pid_file).unwrap().parse().unwrap());
    assert_ne!(link(&format!("/proc/{init}/ns/user")), link("/proc/self/ns/user"));
    assert_eq!(oci(r, &log, &["start", "userns"]).0, 0);
    let mut out = String::new();
    { stdout }.read_to_string(&mut out).unwrap();
    assert_eq!(waitpid(init, None).unwrap(), WaitStatus::Exited(init, 0), "{out}");
    expect("exprun", &out);
    assert_eq!(oci(r, &log, &["delete", "userns"]).0, 0);
    if let Some(runc) = runc(test) {
        let (code, out, err) = runc_run(&runc, &work.join("runc-root"), &b, "userns");
        assert_eq!(code, 0, "runc: {err}");
        expect("runc", &out);
    }

    // Maps the kernel would refuse are named before anything runs.
    cfg["linux"]["uidMappings"] = serde_json::json!([
        {"containerID": 0, "hostID": 100000, "size": 65536},
        {"containerID": 1000, "hostID": 300000, "size": 1}
    ]);
    set_config(&b, &cfg);
    let (code, _, err) = oci(r, &log, &["create", "-b", b.to_str().unwrap(), "overlap"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("linux.uidMappings: [1] overlaps [0]"), "{err}");
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn a_process_user_other_than_root_is_released_by_start_as_with_runc() {
    let test = "a_process_user_other_than_root_is_released_by_start_as_with_runc";
    let Some(t) = shim(test) else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sh", "-c", "id -u; id -g"]);
    let log = work.join("log.json");
    let mut cfg = config(&b);
    cfg["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
    // runc spec's capabilities: no CAP_DAC_OVERRIDE to open what is not the user's.
    let caps = serde_json::json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    cfg["process"]["capabilities"] =
        serde_json::json!({"bounding": caps, "effective": caps, "permitted": caps});
    // init opens the exec FIFO as the process's user, without a user namespace
    // and with one (where uid 1000 is 101000 outside).
    for userns in [false, true] {
        if userns {
            cfg["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "user"}));
            cfg["linux"]["uidMappings"] =
                serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            cfg["linux"]["gidMappings"] =
                serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        }
        set_config(&b, &cfg);
        let id = format!("user-{userns}");
        let pid_file = b.join("init.pid");
        let mut create = r
            .command(&["create", "-b", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), &id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = create.stdout.take().unwrap();
        assert!(create.wait().unwrap().success(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
        let init = Pid::from_raw(std::fs::read_to_string(&pid_file).unwrap().parse().unwrap());
        let (code, _, err) = oci(r, &log, &["start", &id]);
        assert_eq!(code, 0, "userns={userns}: {err}");
        let mut out = String::new();
        { stdout }.read_to_string(&mut out).unwrap();
        assert_eq!(waitpid(init, None).unwrap(), WaitStatus::Exited(init, 0), "{out}");
        assert_eq!(out, "1000\n1000\n", "exprun userns={userns}");
        assert_eq!(oci(r, &log, &["delete", &id]).0, 0);
        if let Some(runc) = runc(test) {
            let (code, out, err) = runc_run(&runc, &work.join("runc-root"), &b, &id);
            assert_eq!((code, out.as_str()), (0, "1000\n1000\n"), "runc userns={userns}: {err}");
        }
    }
    r.assert_no_leftovers();
    remove_parent_cgroups();
}
