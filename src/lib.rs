//! exprun: a daemonless container runtime for reproducible experiments.
//!
//! # Code map
//!
//! - [`cli`]: argument parsing and the verbs; thin, calls into the modules below.
//! - [`run`]: `exprun run` from options to exit status, the ordered steps in one function.
//! - [`container`]: the runc-compatible lifecycle of OCI bundles, one file a verb
//!   (create, start, state, kill, delete, list, ...) over the same spawn path.
//! - [`image`]: the immutable, content-addressed image store (import, resolve, gc),
//!   and image references, as the store and as registries name images.
//! - [`registry`]: the OCI distribution client: pull, push, credentials, runs as artifacts.
//! - [`spec`]: image config + options → OCI runtime spec (no side effects).
//! - [`cdi`]: CDI spec files read and checked, named devices resolved to their container edits.
//! - [`plan`]: spec + host (a [`plan::Host`] value) → the run plan, validated; what spawn reads
//!   and the record stores.
//! - [`state`]: the state root: live run directories, locks, records, stale-run cleanup.
//! - [`cgroups`]: the host's cgroup layout, limits (through cgroups-rs), usage, removal; v1 and v2
//!   (where a run's cgroup goes is planned in [`plan::cgroup`]).
//! - [`spawn`]: the parent side (create half, start half, foreground wait), the
//!   protocol, and the container's init (child side).
//! - [`rootfs`]: overlay, mounts, /dev, pivot_root: run by the container's init.
//! - [`seccomp`]: OCI seccomp profiles compiled with libseccomp, cached by digest.
//! - [`hooks`]: OCI hooks (createRuntime, createContainer, startContainer, ...).
//! - [`outputs`]: `--output` directories opened so another user cannot redirect them.
//! - [`hostpath`]: a host path walked from `/`, following only trusted symlinks.
//! - [`record`]: the run record, host facts, input/output tree digests, diff, export.
//! - [`verify`]: replay a recorded run and compare its outputs with the original.
//! - [`build`]: `exprun build`, source-to-image: assemble in a recorded run, the
//!   writable layer captured as a deterministic layer, a new image in the store.
//! - [`log`]: `--debug` output with step timings.
//! - [`node`]: the node configuration file (where pod records go, their retention).
//! - [`userns`]: rootless image commands re-run in a user namespace with subordinate ids.
//! - [`selfexe`]: exprun re-executed from a copy no container can write (CVE-2019-5736).
//! - [`parallel`]: a few threads over a list's items (blob transfers, layer unpacking).
//! - [`fuzzing`]: entry points of the fuzz targets in `fuzz/`; not an API.
//! - [`sys`]: the raw syscalls nothing else wraps, and [`sys::Kernel`], the seam init
//!   and rootfs make their syscalls through; the one home of `unsafe`.
//! - [`digest`]: `sha256:` digests and hashing readers and writers.
//! - [`fsutil`]: atomic writes, advisory locks, random ids.
//! - [`glob`]: the one glob matcher (`--pass-env`, `.s2iignore`, tolerance rules).
//! - [`error`]: the top-level error and the exit-code contract.
//!
//! # Invariants
//!
//! - The image store never changes stored content and knows nothing of containers.
//! - Nothing before the plan has side effects; every bad combination is refused
//!   there with a message that names the field and what to do.
//! - The child side of spawn reads only the plan.
//! - A run leaves nothing behind that it was not asked to keep.

pub mod build;
pub mod cdi;
pub mod cgroups;
pub mod cli;
pub mod container;
pub mod digest;
pub mod error;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod glob;
pub mod hooks;
pub mod hostpath;
pub mod image;
pub mod log;
pub mod node;
pub mod outputs;
pub mod parallel;
pub mod plan;
pub mod record;
pub mod registry;
pub mod rootfs;
pub mod run;
pub mod seccomp;
pub mod selfexe;
pub mod spawn;
pub mod spec;
pub mod state;
pub mod sys;
pub mod userns;
pub mod verify;

pub use error::{Error, Result};
