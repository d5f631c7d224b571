use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::mounts::{holding_mount, unescape_mountinfo};
use super::propagation_name;
use crate::sys::{Call, RecordingKernel};

#[test]
fn the_holding_mount_is_the_deepest_above_the_path_and_unescaped() {
    let info = "22 1 0:21 / / rw - ext4 /dev/vda rw\n\
                30 22 0:30 / /run rw - tmpfs tmpfs rw\n\
                31 30 0:31 / /run/a\\040b rw - tmpfs tmpfs rw\n\
                32 30 0:32 / /run/ab rw - tmpfs tmpfs rw\n\
                33 30 0:33 / /run/a\\040b rw - tmpfs over rw\n";
    assert_eq!(holding_mount(info, Path::new("/run/a b/rootfs")), Some("/run/a b".into()));
    assert_eq!(holding_mount(info, Path::new("/run/abc")), Some("/run".into()));
    assert_eq!(holding_mount(info, Path::new("/run/ab")), Some("/run/ab".into()));
    assert_eq!(holding_mount(info, Path::new("/srv")), Some("/".into()));
    assert_eq!(unescape_mountinfo("/x\\134y\\011"), PathBuf::from("/x\\y\t"));
    assert_eq!(propagation_name(MsFlags::MS_SHARED | MsFlags::MS_REC), "rshared");
}

/// A plan for a bundle in `dir` from oci-spec's default config (mounts /proc,
/// /dev, ..., masked and read-only paths), with a sysctl, a hostname, a
/// read-only root and no_new_privs; no user namespace, so that init waits for
/// nobody.
pub(crate) fn plan_fixture(dir: &Path) -> crate::plan::RunPlan {
    use crate::plan::PlanContext;
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    let mut config = serde_json::to_value(oci_spec::runtime::Spec::default()).unwrap();
    config["root"] = serde_json::json!({ "path": dir.join("rootfs"), "readonly": true });
    config["hostname"] = "box".into();
    config["process"]["noNewPrivileges"] = true.into();
    config["linux"]["sysctl"] = serde_json::json!({ "net.ipv4.ip_forward": "1" });
    let spec = serde_json::from_value(config).unwrap();
    let mut host = crate::plan::host::fixtures::root_v1();
    let rootfs = crate::plan::host::FileId { dir: true, dev: 1, ino: 2 };
    host.paths.insert(dir.join("rootfs"), Ok(rootfs));
    let mut plan = crate::plan::build(
        spec,
        PlanContext::bundle("0123456789abcdef0123456789abcdef", dir, &dir.join("state"), &host),
    )
    .unwrap();
    plan.user_ns = None;
    plan
}

/// The index of the first call `is` accepts; fails naming `what` and the log.
pub(crate) fn first(calls: &[Call], what: &str, is: impl Fn(&Call) -> bool) -> usize {
    calls.iter().position(is).unwrap_or_else(|| panic!("no {what} in {calls:#?}"))
}

/// The index of the last call `is` accepts; fails naming `what` and the log.
pub(crate) fn last(calls: &[Call], what: &str, is: impl Fn(&Call) -> bool) -> usize {
    calls.iter().rposition(is).unwrap_or_else(|| panic!("no {what} in {calls:#?}"))
}

fn mount_at(call: &Call) -> Option<(&Path, MsFlags)> {
    match call {
        Call::Mount { target, flags, .. } => Some((target.as_path(), *flags)),
        _ => None,
    }
}

fn assemble(dir: &Path) -> (crate::plan::RunPlan, Vec<Call>) {
    let plan = plan_fixture(dir);
    let k = RecordingKernel::default();
    super::build(&k, &plan, None, || Ok(())).unwrap();
    (plan, k.calls())
}

#[test]
fn the_old_root_is_detached_only_after_pivot_root_and_made_a_slave_first() {
    let dir = tempfile::tempdir().unwrap();
    let (_, calls) = assemble(dir.path());
    let pivot = first(&calls, "pivot_root", |c| matches!(c, Call::PivotRoot(..)));
    let slave = first(&calls, "the old root made a slave", |c| {
        mount_at(c).is_some_and(|(t, f)| t == Path::new(".") && f.contains(MsFlags::MS_SLAVE))
    });
    let detach = first(&calls, "the old root detached", |c| matches!(c, Call::UmountDetach(_)));
    assert!(
        pivot < slave && slave < detach,
        "pivot_root {pivot}, slave {slave}, detach {detach}: {calls:#?}"
    );
    let enter =
        first(&calls, "chdir into the root", |c| matches!(c, Call::Chdir(p) if p.ends_with("rootfs")));
    assert!(enter < pivot, "pivot_root at {pivot} before entering the new root at {enter}");
}

#[test]
fn sysctls_come_before_the_read_only_paths_and_those_after_every_mount_in_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, calls) = assemble(dir.path());
    let root = std::fs::canonicalize(dir.path().join("rootfs")).unwrap();
    let sysctl =
        last(&calls, "sysctl write", |c| matches!(c, Call::WriteFile(p, _) if p.starts_with("/proc/sys")));
    let readonly = first(&calls, "read-only path bind", |c| {
        mount_at(c).is_some_and(|(t, _)| plan.readonly_paths.iter().any(|p| p == t))
    });
    let masked = first(&calls, "masked path", |c| {
        mount_at(c).is_some_and(|(t, _)| plan.masked_paths.iter().any(|p| p == t))
    });
    let in_root = last(&calls, "mount in the new root", |c| {
        mount_at(c).is_some_and(|(t, _)| t.starts_with(&root) && t != root)
    });
    assert!(sysctl < readonly, "sysctl at {sysctl} after the read-only paths at {readonly}: {calls:#?}");
    assert!(
        in_root < readonly && in_root < masked,
        "a mount in the root at {in_root} after the read-only ({readonly}) or masked ({masked}) paths: {calls:#?}"
    );
}

#[test]
fn the_read_only_remount_of_the_root_is_the_last_write_of_the_rootfs() {
    let dir = tempfile::tempdir().unwrap();
    let (_, calls) = assemble(dir.path());
    let ro = last(&calls, "read-only remount of /", |c| {
        mount_at(c)
            .is_some_and(|(t, f)| t == Path::new("/") && f.contains(MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY))
    });
    let propagation = MsFlags::MS_SHARED | MsFlags::MS_SLAVE | MsFlags::MS_PRIVATE | MsFlags::MS_UNBINDABLE;
    for c in &calls[ro + 1..] {
        let only_propagation =
            mount_at(c).is_some_and(|(t, f)| t == Path::new("/") && propagation.contains(f));
        assert!(only_propagation, "{c:?} after the read-only remount of /: {calls:#?}");
    }
}

#[test]
fn the_host_side_is_isolated_before_anything_is_mounted() {
    let dir = tempfile::tempdir().unwrap();
    let (_, calls) = assemble(dir.path());
    let root = std::fs::canonicalize(dir.path().join("rootfs")).unwrap();
    let bind_root = first(&calls, "the root bound onto itself", |c| {
        mount_at(c).is_some_and(|(t, f)| t == root && f.contains(MsFlags::MS_BIND))
    });
    assert!(
        matches!(&calls[0], Call::Mount { target, source: None, .. } if target == Path::new("/")),
        "the first call is not the propagation of /: {calls:#?}"
    );
    // The default propagation (rslave) made the holder a slave already: no
    // second propagation call comes between.
    assert_eq!(bind_root, 1, "the root is bound right after the propagation of /: {calls:#?}");
}

#[test]
fn only_a_recursive_slave_or_private_root_leaves_the_holder_alone() {
    use super::mounts::holder_already_isolated;
    let rec = MsFlags::MS_REC;
    assert!(holder_already_isolated(rec | MsFlags::MS_SLAVE));
    assert!(holder_already_isolated(rec | MsFlags::MS_PRIVATE));
    for p in [
        MsFlags::MS_SLAVE,
        MsFlags::MS_PRIVATE,
        MsFlags::MS_SHARED,
        rec | MsFlags::MS_SHARED,
        rec | MsFlags::MS_UNBINDABLE,
        MsFlags::MS_UNBINDABLE,
    ] {
        assert!(!holder_already_isolated(p), "{} needs the holder isolated", propagation_name(p));
    }
}
