#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Config fields of runtime-spec 1.2 that the other files exercise only
//! through `exprun run` of an image, or not at all: one bundle sets them all
//! and exprun and runc run it in the same test, and what the container's
//! process sees in the kernel (`/proc/self/status`, its limits, its names, its
//! sysctls, masked and read-only paths) must be the same; then the fields
//! exprun cannot apply are refused by name.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::bundle::{bundle, edit_for_runc as edit, oci, remove_parent_cgroups, runc, runc_run, shim};

/// What the process sees of its fields, one `name=value` line each.
const PROBE: &str = "echo args=$0,$1; echo cwd=$(pwd); echo env=$FOO; echo ids=$(id -u):$(id -g):$(id -G); \
    echo umask=$(umask); echo nofile=$(ulimit -Sn):$(ulimit -Hn); \
    grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status | tr -d '\\t' | sed 's/:/=/'; \
    echo oom=$(cat /proc/self/oom_score_adj); echo hostname=$(hostname); \
    echo domainname=$(cat /proc/sys/kernel/domainname); \
    echo ip_forward=$(cat /proc/sys/net/ipv4/ip_forward); \
    echo masked=$(ls -A /secret | wc -l):$(cat /proc/kcore 2>/dev/null | wc -c); \
    touch /data/x 2>/dev/null && echo data=writable || echo data=read-only; \
    touch /tmp/x && echo tmp=writable; echo personality=$(cat /proc/self/personality); \
    grep -E '^(Seccomp|Speculation_Store_Bypass):' /proc/self/status | tr -d '\t' | sed 's/:/=/'; \
    mkdir /tmp/d 2>&1 | sed 's/.*: /mkdir=/'";

#[test]
fn process_and_linux_fields_apply_as_with_runc() {
    let Some(t) = shim("process_and_linux_fields_apply_as_with_runc") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["sh", "-c", PROBE, "second"]);
    let rootfs = b.join("rootfs");
    std::fs::create_dir(rootfs.join("secret")).unwrap();
    std::fs::write(rootfs.join("secret/key"), "s3cret\n").unwrap();
    std::fs::create_dir(rootfs.join("data")).unwrap();
    std::fs::set_permissions(rootfs.join("data"), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    edit(&b, |c| {
        c["root"]["readonly"] = false.into();
        let p = &mut c["process"];
        p["cwd"] = "/tmp".into();
        p["env"].as_array_mut().unwrap().push("FOO=from-config".into());
        p["user"] = serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 0o027});
        p["rlimits"] = serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}]);
        p["capabilities"] = serde_json::json!({
            "bounding": ["CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL"],
            "effective": ["CAP_NET_RAW"],
            "permitted": ["CAP_NET_RAW", "CAP_KILL"],
            "inheritable": ["CAP_NET_RAW"],
            "ambient": ["CAP_NET_RAW"]
        });
        p["noNewPrivileges"] = true.into();
        p["oomScoreAdj"] = 123.into();
        let hook_out = work.join("hook.out");
        c["hooks"] = serde_json::json!({"createRuntime": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("echo \"$HOOK_VAR:$0:$EXPRUN_TEST_HOST_MARKER\" >> {}", hook_out.display()), "named"],
            "env": ["HOOK_VAR=from-hook"],
            "timeout": 5
        }]});
        c["hostname"] = "fields-host".into();
        c["domainname"] = "fields.example".into();
        let l = &mut c["linux"];
        l["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
        l["maskedPaths"].as_array_mut().unwrap().push("/secret".into());
        l["readonlyPaths"].as_array_mut().unwrap().push("/data".into());
        l["personality"] = serde_json::json!({"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]});
        l["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
        });
    });
    let log = work.join("log.json");
    let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "fields"]);
    assert_eq!(code, 0, "{err}");
    let want = [
        "args=second,",
        "cwd=/tmp",
        "env=from-config",
        "ids=1000:1000:1000 10 20",
        "umask=0027",
        "nofile=512:1024",
        "CapInh=0000000000002000",
        "CapPrm=0000000000002000",
        "CapEff=0000000000002000",
        "CapBnd=0000000000002021",
        "CapAmb=0000000000002000",
        "NoNewPrivs=1",
        "oom=123",
        "hostname=fields-host",
        "domainname=fields.example",
        "ip_forward=1",
        "masked=0:0",
        "data=read-only",
        "tmp=writable",
        "personality=00040000",
        "Seccomp=2",
    ];
    // The hook got its args and only its env (not exprun's).
    let hook_out = work.join("hook.out");
    assert_eq!(std::fs::read_to_string(&hook_out).unwrap(), "from-hook:named:\n");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..want.len()], want, "{err}");
    // SPEC_ALLOW: the filter does not turn on the speculative store bypass
    // mitigation (what the line says beside that depends on the CPU).
    assert!(
        lines[want.len()].starts_with("Speculation_Store_Bypass=") && !lines[want.len()].contains("force"),
        "{out}"
    );
    assert_eq!(lines[want.len() + 1..], ["mkdir=Function not implemented"], "{out}");
    if let Some(runc) = runc("process_and_linux_fields_apply_as_with_runc") {
        // Nor seccomp flags ("not yet supported by runc"): runc runs without them.
        edit(&b, |c| drop(c["linux"]["seccomp"].as_object_mut().unwrap().remove("flags")));
        let (code, runc_out, err) = runc_run(&runc, &work.join("runc-root"), &b, "fields-runc");
        assert_eq!(code, 0, "runc: {err}");
        // runc 1.1.5 (runtime-spec 1.0.2) knows neither `domainname` nor
        // `personality`, both 1.1's; without SPEC_ALLOW the last line differs.
        let comparable = |o: &str| {
            o.lines()
                .filter(|l| {
                    !["domainname=", "personality=", "Speculation_Store_Bypass="]
                        .iter()
                        .any(|p| l.starts_with(p))
                })
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(comparable(&runc_out), comparable(&out), "runc sees otherwise");
        assert_eq!(std::fs::read_to_string(&hook_out).unwrap(), "from-hook:named:\nfrom-hook:named:\n");
    }
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

/// A change to a bundle's config.
type Edit = Box<dyn Fn(&mut serde_json::Value)>;

#[test]
fn fields_exprun_cannot_apply_are_refused_by_name() {
    let Some(t) = shim("fields_exprun_cannot_apply_are_refused_by_name") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["true"]);
    let log = work.join("log.json");
    let saved = std::fs::read(b.join("config.json")).unwrap();
    let host_domainname = std::fs::read_to_string("/proc/sys/kernel/domainname").unwrap();
    let no_uts = |c: &mut serde_json::Value| {
        c["linux"]["namespaces"].as_array_mut().unwrap().retain(|n| n["type"] != "uts");
        c.as_object_mut().unwrap().remove("hostname");
    };
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|c| c["process"]["execCPUAffinity"] = serde_json::json!({"initial": "0"})),
            "execCPUAffinity",
        ),
        (
            Box::new(|c| c["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0".into()),
            "linux.mountLabel",
        ),
        (
            Box::new(|c| c["linux"]["memoryPolicy"] = serde_json::json!({"mode": "MPOL_BIND", "nodes": "0"})),
            "linux.memoryPolicy",
        ),
        (
            Box::new(|c| c["linux"]["netDevices"] = serde_json::json!({"eth9": {"name": "eth9"}})),
            "linux.netDevices",
        ),
        (
            Box::new(|c| c["linux"]["resources"] = serde_json::json!({"cpu": {"idle": 1}})),
            "linux.resources.cpu.idle",
        ),
        (
            Box::new(|c| c["linux"]["resources"] = serde_json::json!({"cpu": {"realtimePeriod": 1000000}})),
            "linux.resources.cpu.realtimePeriod",
        ),
        (
            Box::new(|c| c["linux"]["resources"] = serde_json::json!({"cpu": {"burst": 1000}})),
            "linux.resources.cpu.burst",
        ),
        (
            Box::new(|c| c["linux"]["resources"] = serde_json::json!({"memory": {"kernelTCP": 1048576}})),
            "linux.resources.memory.kernelTCP",
        ),
        (
            Box::new(|c| c["linux"]["resources"] = serde_json::json!({"memory": {"useHierarchy": false}})),
            "linux.resources.memory.useHierarchy",
        ),
        (
            Box::new(|c| {
                c["linux"]["resources"] =
                    serde_json::json!({"memory": {"limit": 67108864, "checkBeforeUpdate": true}})
            }),
            "linux.resources.memory.checkBeforeUpdate",
        ),
        (
            Box::new(|c| {
                c["linux"]["personality"] =
                    serde_json::json!({"domain": "LINUX", "flags": ["READ_IMPLIES_EXEC"]})
            }),
            "linux.personality.flags",
        ),
        (
            Box::new(|c| {
                c["linux"]["seccomp"] =
                    serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/nowhere"})
            }),
            "defaultAction SCMP_ACT_NOTIFY",
        ),
        (
            Box::new(
                |c| c["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}),
            ),
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        ),
        (
            Box::new(|c| {
                c["mounts"].as_array_mut().unwrap().push(serde_json::json!({"destination": "/m", "type": "bind", "source": "/tmp", "options": ["rbind", "idmap"]}))
            }),
            "mount /m",
        ),
        (
            Box::new(|c| {
                c["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "time"}))
            }),
            "time namespaces",
        ),
        (
            Box::new(move |c| {
                no_uts(c);
                c["domainname"] = "host.example".into()
            }),
            "domainname",
        ),
    ];
    for (set, named) in cases {
        std::fs::write(b.join("config.json"), &saved).unwrap();
        edit(&b, |c| set(c));
        let (code, _, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "refused"]);
        assert_eq!(code, 125, "{named}: {err}");
        assert!(err.contains(named), "{named}: {err}");
        assert_ne!(oci(r, &log, &["state", "refused"]).0, 0, "{named}: a container was left");
    }
    // Block I/O weights need files only the BFQ scheduler gives (v1).
    let blkio = std::path::Path::new("/sys/fs/cgroup/blkio");
    if blkio.is_dir() && !blkio.join("blkio.weight").exists() && !blkio.join("blkio.bfq.weight").exists() {
        let disk = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata("/").unwrap());
        let (major, minor) = (nix::sys::stat::major(disk), nix::sys::stat::minor(disk));
        for (resources, field) in [
            (serde_json::json!({"leafWeight": 300}), "linux.resources.blockIO.leafWeight"),
            (
                serde_json::json!({"weightDevice": [{"major": major, "minor": minor, "weight": 300}]}),
                "linux.resources.blockIO.weightDevice",
            ),
        ] {
            std::fs::write(b.join("config.json"), &saved).unwrap();
            edit(&b, |c| c["linux"]["resources"] = serde_json::json!({"blockIO": resources}));
            let (code, _, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "refused"]);
            assert_eq!(code, 125, "{field}: {err}");
            assert!(err.contains(field), "{field}: {err}");
        }
    }
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/domainname").unwrap(), host_domainname);
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

/// The verbs of runc that exprun does not have are refused, exit 125, as any
/// unknown verb: never a silent success.
#[test]
fn events_checkpoint_and_restore_are_refused() {
    for verb in ["events", "checkpoint", "restore"] {
        let out = std::process::Command::new(common::exprun_bin()).args([verb, "c"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{verb}: {err}");
        assert!(err.contains(&format!("unrecognized subcommand '{verb}'")), "{verb}: {err}");
    }
}
