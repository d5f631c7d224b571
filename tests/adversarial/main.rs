#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The adversarial suite: each test performs an attack that a hostile image,
//! bundle, container or other local user could try, and asserts both that it
//! is refused and that nothing on the host changed (see `host`).
//! docs/security.md has the table of attacks and the test for each.

#[path = "../common/mod.rs"]
mod common;

mod artifact;
mod bind_proc_sys;
mod build;
mod cdi;
mod cgroup_devices;
mod devices;
mod evil_registry;
mod exec_cgroup;
mod host;
mod image;
mod inputs_cache;
mod layout;
mod ns_join;
mod outputs;
mod preserve_fds;
mod propagation;
mod record_size;
mod record_store;
mod registry;
mod replay;
mod rootless;
mod runtime;
mod seccomp;
mod seccomp_listener;
mod secrets;
mod selfexe;
mod store;
mod terminal;
mod userns_maps;
mod verify;
