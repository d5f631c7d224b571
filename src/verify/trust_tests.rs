use super::*;
use crate::spec::options::{HostMount, TmpfsMount, Ulimit};

fn request() -> RunOptions {
    serde_json::from_value(serde_json::json!({
        "image": "busybox", "command": ["true"], "entrypoint": null, "env": [], "workdir": null,
        "user": null, "hostname": null, "volumes": [], "inputs": [], "outputs": [], "tmpfs": [],
        "memory": null, "cpus": null, "pids_limit": null, "network": "none", "name": null,
        "keep": false, "read_only": false, "tty": false, "interactive": false, "cap_add": [],
        "cap_drop": [], "ulimits": [], "cgroup_parent": null
    }))
    .unwrap()
}

fn mount(src: &str, dst: &str, readonly: bool) -> HostMount {
    HostMount { source: src.into(), destination: dst.into(), readonly, keep: Default::default() }
}

const RLIMITS: &[(&str, u64, u64)] = &[("RLIMIT_NOFILE", 1024, 4096)];

fn audit_of(o: &RunOptions, provided: &[PathBuf]) -> Vec<Finding> {
    let host: Vec<(String, u64, u64)> = RLIMITS.iter().map(|(n, s, h)| (n.to_string(), *s, *h)).collect();
    audit(o, &AuditContext { host_rlimits: &host, provided })
}

fn allows(findings: &[Finding]) -> Vec<String> {
    findings.iter().map(|f| f.allow.clone().unwrap_or_else(|| format!("never {}", f.field))).collect()
}

#[test]
fn the_default_profile_asks_for_nothing() {
    let mut o = request();
    o.cap_drop = vec!["ALL".into()];
    o.cap_add = vec!["CAP_CHOWN".into()];
    o.tmpfs =
        vec![TmpfsMount { destination: "/tmp".into(), options: vec!["size=64m".into(), "noexec".into()] }];
    o.ulimits = vec![Ulimit { name: "RLIMIT_NOFILE".into(), soft: 10, hard: 4096 }];
    o.inputs = vec![mount("/copy/0", "/in", false)];
    o.outputs = vec![mount("/fresh/out", "/out", false)];
    assert_eq!(audit_of(&o, &["/copy/0".into(), "/fresh/out".into()]), vec![]);
    assert_eq!(validate(&o), Ok(()));
}

#[test]
fn every_privilege_is_found_with_the_allow_that_permits_it() {
    let mut o = request();
    o.volumes = vec![
        mount("/", "/host", false),
        mount("/srv/data", "/data", true),
        mount("/dev/fuse", "/dev/fuse", false),
    ];
    o.cap_add = vec!["CAP_SYS_ADMIN".into(), "CAP_CHOWN".into()];
    o.network = Network::Host;
    o.seccomp = SeccompChoice::Unconfined;
    o.tmpfs = vec![TmpfsMount { destination: "/t".into(), options: vec!["dev".into(), "suid".into()] }];
    o.outputs = vec![HostMount {
        keep: crate::record::files::Keep { suid: true, dev: false },
        ..mount("/o", "/out", false)
    }];
    o.ulimits = vec![Ulimit { name: "RLIMIT_NOFILE".into(), soft: 10, hard: u64::MAX }];
    o.env = vec![("API_TOKEN".into(), "<redacted hmac-sha256:00 key:k>".into()), ("A".into(), "1".into())];
    assert_eq!(
        allows(&audit_of(&o, &["/o".into()])),
        [
            "output:/out:suid",
            "mount:/:rw",
            "mount:/srv/data",
            "device:/dev/fuse",
            "cap:SYS_ADMIN",
            "network:host",
            "seccomp:unconfined",
            "tmpfs:/t:dev",
            "tmpfs:/t:suid",
            "ulimit:nofile",
            "env:API_TOKEN",
        ]
    );
    o.cap_add = vec!["ALL".into()];
    let f = audit_of(&request_with(|r| r.cap_add = vec!["ALL".into()]), &[]);
    assert_eq!(allows(&f), ["cap:ALL"]);
    let profile: oci_spec::runtime::LinuxSeccomp =
        serde_json::from_str(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).unwrap();
    let digest = profile_digest(&profile);
    let f = audit_of(
        &request_with(|r| {
            r.seccomp = SeccompChoice::File { path: "/p.json".into(), profile: profile.clone() }
        }),
        &[],
    );
    assert_eq!(allows(&f), [format!("seccomp:{digest}")]);
    assert_eq!(parse_allow(&format!("seccomp:{digest}")).unwrap(), format!("seccomp:{digest}"));
}

fn request_with(f: impl FnOnce(&mut RunOptions)) -> RunOptions {
    let mut o = request();
    f(&mut o);
    o
}

#[test]
fn host_paths_the_replay_does_not_provide_are_never_allowed() {
    let o = request_with(|r| {
        r.inputs = vec![mount("/etc", "/etc", false)];
        r.outputs = vec![mount("/root/.ssh", "/out", false)];
        r.cgroup_parent = Some("/system.slice".into());
    });
    let f = audit_of(&o, &[]);
    assert_eq!(allows(&f), ["never inputs[0]", "never outputs[0]", "never cgroup_parent"]);
    assert!(f[0].instead.as_deref().unwrap().contains("--input PATH:/etc"), "{f:?}");
    assert!(f[0].what.contains("/etc"), "{f:?}");
}

#[test]
fn allow_names_are_normalised_and_checked() {
    for (given, want) in [
        ("cap:sys_admin", "cap:SYS_ADMIN"),
        ("cap:CAP_SYS_ADMIN", "cap:SYS_ADMIN"),
        ("cap:all", "cap:ALL"),
        ("network:host", "network:host"),
        ("seccomp:unconfined", "seccomp:unconfined"),
        ("mount:/srv/data", "mount:/srv/data"),
        ("mount:/:rw", "mount:/:rw"),
        ("device:/dev/fuse", "device:/dev/fuse"),
        ("env:HF_TOKEN", "env:HF_TOKEN"),
        ("tmpfs:/t:dev", "tmpfs:/t:dev"),
        ("output:/out:suid", "output:/out:suid"),
        ("ulimit:nofile", "ulimit:nofile"),
    ] {
        assert_eq!(parse_allow(given).unwrap(), want, "{given}");
    }
    for bad in [
        "cap:FLY",
        "network:container:x",
        "seccomp:off",
        "seccomp:sha256:abc",
        "mount:rel",
        "mount:/a/../b",
        "privileged",
        "pid:host",
        "tmpfs:/t:exec",
        "ulimit:bogus",
        "env:A=B",
    ] {
        let e = parse_allow(bad).unwrap_err().to_string();
        assert!(e.contains("--allow") && e.contains(bad), "{bad}: {e}");
    }
    assert!(parse_allow("pid:host").unwrap_err().to_string().contains("cap:NAME, network:host"));
}

#[test]
fn a_request_exprun_run_could_not_have_written_is_refused_by_field() {
    let cases: Vec<(RunOptions, &str)> = vec![
        (request_with(|r| r.volumes = vec![mount("/a/../etc", "/x", true)]), "volumes[0].source"),
        (request_with(|r| r.volumes = vec![mount("relative", "/x", true)]), "volumes[0].source"),
        (request_with(|r| r.volumes = vec![mount("/a:b", "/x", true)]), "volumes[0].source"),
        (request_with(|r| r.inputs = vec![mount("/a", "/", true)]), "inputs[0].destination"),
        (request_with(|r| r.outputs = vec![mount("/a", "/x/../y", true)]), "outputs[0].destination"),
        (request_with(|r| r.workdir = Some("w".into())), "workdir"),
        (request_with(|r| r.hostname = Some("-x".into())), "hostname"),
        (request_with(|r| r.cap_add = vec!["SYS_ADMIN".into()]), "cap_add"),
        (request_with(|r| r.cap_drop = vec!["CAP_FLY".into()]), "cap_drop"),
        (
            request_with(|r| r.ulimits = vec![Ulimit { name: "RLIMIT_X".into(), soft: 1, hard: 1 }]),
            "ulimits[0]",
        ),
        (
            request_with(|r| r.ulimits = vec![Ulimit { name: "RLIMIT_CORE".into(), soft: 2, hard: 1 }]),
            "ulimits[0]",
        ),
        (
            request_with(|r| {
                r.tmpfs = vec![TmpfsMount { destination: "/t".into(), options: vec!["rbind".into()] }]
            }),
            "tmpfs[0].options",
        ),
        (request_with(|r| r.memory = Some(1)), "memory"),
        (request_with(|r| r.pids_limit = Some(0)), "pids_limit"),
        (request_with(|r| r.cpus = Some(f64::NAN)), "cpus"),
        (request_with(|r| r.env = vec![("A B".into(), "1".into())]), "env[0]"),
        (request_with(|r| r.command = vec!["a\0b".into()]), "command word 1"),
        (request_with(|r| r.unpin = vec!["seccomp".into()]), "unpin"),
        (request_with(|r| r.umask = Some(0o1777)), "umask"),
    ];
    for (o, field) in cases {
        let (f, why) = validate(&o).unwrap_err();
        assert_eq!(f, field, "{why}");
    }
}

#[test]
fn fields_exprun_does_not_know_are_named() {
    let mut raw = serde_json::to_value(request_with(|r| r.volumes = vec![mount("/a", "/b", true)])).unwrap();
    assert_eq!(unknown_fields(&raw).unwrap(), Vec::<String>::new());
    raw["privileged"] = true.into();
    raw["devices"] = serde_json::json!([]);
    raw["sysctls"] = serde_json::json!({"kernel.x": null});
    raw["volumes"][0]["propagation"] = "rshared".into();
    raw["volumes"][0]["keep"] = serde_json::json!({"suid": false});
    raw["storage_size"] = serde_json::Value::Null;
    assert_eq!(unknown_fields(&raw).unwrap(), ["request.privileged", "request.volumes[0].propagation"]);
    raw["network"] = "container:other".into();
    let (field, why) = unknown_fields(&raw).unwrap_err();
    assert!(field == "request" && why.contains("container:other"), "{why}");
}

#[test]
fn the_hosts_ipc_is_allowed_by_name_and_dev_shm_conflicts_are_refused() {
    use crate::spec::shm::Ipc;
    // A request recorded before the options reads as the default.
    assert_eq!((request().shm_size, request().ipc), (None, Ipc::Private));
    let f = audit_of(&request_with(|r| r.ipc = Ipc::Host), &[]);
    assert_eq!(allows(&f), ["ipc:host"]);
    assert!(f[0].what.contains("IPC namespace and /dev/shm"), "{f:?}");
    assert_eq!(parse_allow("ipc:host").unwrap(), "ipc:host");
    assert!(parse_allow("ipc:container:x").is_err());
    let both = request_with(|r| {
        r.ipc = Ipc::Host;
        r.shm_size = Some(1 << 30);
    });
    let (field, why) = validate(&both).unwrap_err();
    assert_eq!(field, "shm_size");
    assert!(why.contains("--ipc host and --shm-size"), "{why}");
    assert_eq!(validate(&request_with(|r| r.shm_size = Some(0))).unwrap_err().0, "shm_size");
    assert_eq!(validate(&request_with(|r| r.shm_size = Some(8 << 30))), Ok(()));
}

#[test]
fn devices_are_allowed_by_path_or_cdi_name_and_bad_ones_refused_by_field() {
    let node = crate::spec::devices::DeviceRequest {
        host: "/dev/nvidia0".into(),
        container: "/dev/nvidia0".into(),
        perms: "rwm".into(),
        kind: 'c',
        major: 195,
        minor: 0,
        mode: 0o666,
        uid: 0,
        gid: 0,
    };
    let cdi = crate::cdi::Device {
        name: "nvidia.com/gpu=0".into(),
        spec: "/etc/cdi/nvidia.yaml".into(),
        sha256: "00".into(),
    };
    let o = request_with(|r| {
        r.devices.nodes = vec![node.clone()];
        r.devices.cdi = vec![cdi.clone()];
    });
    assert_eq!(allows(&audit_of(&o, &[])), ["device:/dev/nvidia0", "cdi:nvidia.com/gpu=0"]);
    assert_eq!(parse_allow("cdi:nvidia.com/gpu=0").unwrap(), "cdi:nvidia.com/gpu=0");
    assert!(parse_allow("cdi:gpu").is_err());
    assert!(validate(&o).is_ok());
    for (f, field) in [
        (
            Box::new(|r: &mut RunOptions| r.devices.nodes[0].container = "/etc/x".into())
                as Box<dyn FnOnce(&mut RunOptions)>,
            "devices.nodes[0].container",
        ),
        (Box::new(|r: &mut RunOptions| r.devices.nodes[0].perms = "rwx".into()), "devices.nodes[0].perms"),
        (Box::new(|r: &mut RunOptions| r.devices.cdi[0].name = "gpu".into()), "devices.cdi[0].name"),
    ] {
        let mut bad = o.clone();
        f(&mut bad);
        assert_eq!(validate(&bad).unwrap_err().0, field);
    }
}
