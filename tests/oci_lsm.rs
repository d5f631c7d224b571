#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Settings that depend on what the host has: `process.apparmorProfile`
//! (applied where AppArmor is enabled, refused with the reason where it is
//! not) and huge page sizes (only the host's), each with runc on the same
//! bundle.

mod common;

use common::bundle::{bundle, edit_for_runc as edit, oci, remove_parent_cgroups, runc, runc_run, shim};

#[test]
fn an_apparmor_profile_is_applied_or_refused_with_the_reason() {
    let test = "an_apparmor_profile_is_applied_or_refused_with_the_reason";
    let Some(t) = shim(test) else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["cat", "/proc/self/attr/current"]);
    let log = work.join("log.json");
    // "unconfined" is a profile every AppArmor host has.
    edit(&b, |cfg| cfg["process"]["apparmorProfile"] = serde_json::json!("unconfined"));
    let enabled =
        std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.trim() == "Y");
    let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "aa"]);
    let runc_result = runc(test).map(|runc| runc_run(&runc, &work.join("runc-root"), &b, "aa"));
    if enabled {
        assert_eq!((code, out.trim()), (0, "unconfined"), "{err}");
        if let Some((code, out, err)) = runc_result {
            assert_eq!((code, out.trim()), (0, "unconfined"), "runc: {err}");
        }
    } else {
        assert_eq!(code, 125, "{err}");
        assert!(
            err.contains(
                "process apparmorProfile: \"unconfined\" cannot be applied: AppArmor is not enabled"
            ),
            "{err}"
        );
        // runc refuses it too, from inside init (writing /proc/self/attr/exec).
        if let Some((code, _, err)) = runc_result {
            assert_ne!(code, 0, "runc: {err}");
            assert!(err.contains("apparmor"), "runc: {err}");
        }
    }
    r.assert_no_leftovers();
    remove_parent_cgroups();
}

#[test]
fn a_huge_page_size_the_host_lacks_is_refused_by_field() {
    let test = "a_huge_page_size_the_host_lacks_is_refused_by_field";
    let Some(t) = shim(test) else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["true"]);
    let log = work.join("log.json");
    edit(&b, |cfg| {
        cfg["linux"]["resources"] = serde_json::json!({"hugepageLimits": [
            {"pageSize": "2MB", "limit": 4194304}, {"pageSize": "3MB", "limit": 1048576}
        ]})
    });
    let (code, _, err) = oci(r, &log, &["create", "-b", b.to_str().unwrap(), "huge"]);
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains("linux.resources.hugepageLimits[1].pageSize \"3MB\": not a huge page size of this host"),
        "{err}"
    );
    if let Some(runc) = runc(test) {
        let (code, _, err) = runc_run(&runc, &work.join("runc-root"), &b, "huge");
        assert_ne!(code, 0, "runc: {err}");
    }
    r.assert_no_leftovers();
    remove_parent_cgroups();
}
