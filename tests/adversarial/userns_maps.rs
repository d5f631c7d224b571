//! A hostile bundle's user namespace maps, which exprun as root writes to
//! /proc/<init>/uid_map as given: overlapping ranges (one host id twice, or
//! one container id twice), a range of size 0, and ranges that run past the
//! last id. Each is refused naming the field and the range, before the
//! clone, and nothing is left.

use crate::common::bundle::{bundle, oci, shim};
use crate::host::{Marker, Snapshot};

#[test]
fn bad_uid_mappings_are_refused_by_name() {
    let Some(t) = shim("bad_uid_mappings_are_refused_by_name") else { return };
    let (r, work) = (&t.r, t.work.path());
    let b = bundle(work, &["true"]);
    let cfg_path = b.join("config.json");
    let base: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    let log = work.join("log.json");
    let marker = Marker::new();
    let before = Snapshot::take(&marker, &[r.path()]);
    let range = |c: u64, h: u64, s: u64| serde_json::json!({"containerID": c, "hostID": h, "size": s});
    let cases = [
        // The same container ids twice.
        (vec![range(0, 100_000, 1000), range(500, 200_000, 10)], "linux.uidMappings: [1] overlaps [0]"),
        // The same host ids twice (100500 to 100509 in both ranges).
        (vec![range(0, 100_000, 1000), range(1000, 100_500, 10)], "linux.uidMappings: [1] overlaps [0]"),
        (vec![range(0, 100_000, 0)], "linux.uidMappings: [0] has size 0"),
        (vec![range(0, 4_294_967_000, 1000)], "linux.uidMappings: [0] runs past the last id"),
        (
            vec![range(0, 100_000, 1), range(4_294_967_295, 1, 1)],
            "linux.uidMappings: [1] runs past the last id",
        ),
        // 2^32 itself does not fit the field.
        (vec![range(0, 100_000, 1 << 32)], "invalid value: integer `4294967296`, expected u32"),
        (vec![range(0, 1 << 32, 1)], "invalid value: integer `4294967296`, expected u32"),
    ];
    for (uids, says) in cases {
        let mut cfg = base.clone();
        cfg["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "user"}));
        cfg["linux"]["uidMappings"] = serde_json::json!(uids);
        cfg["linux"]["gidMappings"] = serde_json::json!([range(0, 100_000, 65536)]);
        std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        let (code, out, err) = oci(r, &log, &["run", "-b", b.to_str().unwrap(), "maps"]);
        assert_eq!(code, 125, "{uids:?} was not refused: {out}\n{err}");
        assert!(err.contains(says), "{uids:?}: {err}");
    }
    Snapshot::take(&marker, &[r.path()]).assert_same_as(&before, "bad uidMappings");
    r.assert_no_leftovers();
}
