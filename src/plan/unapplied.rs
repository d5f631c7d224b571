//! Config fields exprun does not apply. Each is refused by name when a config
//! sets it, so that no container runs with a setting silently dropped (the
//! runtime spec: a runtime that cannot apply a setting must fail).

use oci_spec::runtime::{Process, Spec};

use super::{Error, Result};

/// Refuse the first field of `p` (the config's process, or `exec --process`'s)
/// that exprun would not apply.
pub(super) fn refuse_in_process(p: &Process) -> Result<()> {
    let unset = |s: &Option<String>| s.as_deref().is_none_or(str::is_empty);
    let set: [(bool, &'static str, &str); 4] = [
        (!unset(p.selinux_label()), "selinuxLabel", "exprun has no SELinux support"),
        (p.io_priority().is_some(), "ioPriority", "exprun does not set I/O priorities"),
        (p.scheduler().is_some(), "scheduler", "exprun does not set scheduling policies"),
        (
            p.exec_cpu_affinity().is_some(),
            "execCPUAffinity",
            "exprun does not set the CPU affinity of its own steps",
        ),
    ];
    match set.into_iter().find(|(is_set, _, _)| *is_set) {
        Some((_, field, why)) => Err(Error::Process { field, why: format!("{why}; remove the field") }),
        None => Ok(()),
    }
}

/// Refuse the first field of the config outside `process` that exprun would
/// not apply.
pub(super) fn refuse_in_config(spec: &Spec) -> Result<()> {
    let linux = &*super::linux_of(spec);
    let other_os = [
        (spec.solaris().is_some(), "solaris"),
        (spec.windows().is_some(), "windows"),
        (spec.vm().is_some(), "vm"),
        (spec.zos().is_some(), "zos"),
    ];
    let set: Vec<(bool, &str, &str)> = other_os
        .into_iter()
        .map(|(is_set, field)| (is_set, field, "exprun runs Linux containers, not this kind"))
        .chain([
            (
                linux.mount_label().as_deref().is_some_and(|l| !l.is_empty()),
                "linux.mountLabel",
                "exprun has no SELinux support",
            ),
            (linux.intel_rdt().is_some(), "linux.intelRdt", "exprun has no Intel RDT support"),
            (linux.memory_policy().is_some(), "linux.memoryPolicy", "exprun does not set memory policies"),
            (
                linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()),
                "linux.netDevices",
                "exprun moves no network device into a container",
            ),
            (
                linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty()),
                "linux.timeOffsets",
                "exprun makes no time namespace",
            ),
        ])
        .collect();
    match set.into_iter().find(|(is_set, _, _)| *is_set) {
        Some((_, field, why)) => Err(Error::Config(format!("{field}: {why}; remove the field"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        let mut base = serde_json::json!({"ociVersion": "1.2.0", "process": {"args": ["true"], "cwd": "/",
            "user": {"uid": 0, "gid": 0}}, "root": {"path": "rootfs"}, "linux": {}});
        for (k, v) in json.as_object().unwrap() {
            match (k.as_str(), v) {
                ("process" | "linux", serde_json::Value::Object(fields)) => {
                    for (f, x) in fields {
                        base[k][f] = x.clone();
                    }
                }
                _ => base[k] = v.clone(),
            }
        }
        serde_json::from_value(base).unwrap()
    }

    fn refusal(json: serde_json::Value) -> String {
        let s = spec(json);
        let p = s.process().clone().unwrap();
        refuse_in_process(&p).and_then(|()| refuse_in_config(&s)).unwrap_err().to_string()
    }

    #[test]
    fn each_field_exprun_does_not_apply_is_refused_by_name() {
        for (json, field) in [
            (
                serde_json::json!({"process": {"selinuxLabel": "system_u:system_r:container_t:s0"}}),
                "selinuxLabel",
            ),
            (
                serde_json::json!({"process": {"ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 0}}}),
                "ioPriority",
            ),
            (serde_json::json!({"process": {"scheduler": {"policy": "SCHED_IDLE"}}}), "scheduler"),
            (serde_json::json!({"process": {"execCPUAffinity": {"final": "0"}}}), "execCPUAffinity"),
            (
                serde_json::json!({"linux": {"mountLabel": "system_u:object_r:container_file_t:s0"}}),
                "linux.mountLabel",
            ),
            (serde_json::json!({"linux": {"intelRdt": {"closID": "x"}}}), "linux.intelRdt"),
            (
                serde_json::json!({"linux": {"timeOffsets": {"monotonic": {"secs": 1, "nanosecs": 0}}}}),
                "linux.timeOffsets",
            ),
            (serde_json::json!({"linux": {"netDevices": {"eth9": {}}}}), "linux.netDevices"),
            (serde_json::json!({"windows": {"layerFolders": []}}), "windows"),
        ] {
            let e = refusal(json.clone());
            assert!(e.contains(field) && e.contains("remove the field"), "{json}: {e}");
        }
    }

    #[test]
    fn empty_labels_and_a_plain_config_pass() {
        let s = spec(serde_json::json!({"process": {"selinuxLabel": ""}, "linux": {"mountLabel": ""}}));
        refuse_in_process(&s.process().clone().unwrap()).unwrap();
        refuse_in_config(&s).unwrap();
    }
}
