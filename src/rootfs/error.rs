//! The root filesystem's error: which operation failed, on which path, and why.

use std::io;
use std::path::PathBuf;

/// A root filesystem step failed: `op` on `path`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", self.step())]
pub struct Error {
    /// What was being done.
    pub op: Op,
    /// The path it was done to (in the container after pivot_root).
    pub path: PathBuf,
    /// The underlying error.
    pub source: io::Error,
}

/// The operations of the root filesystem's assembly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Giving a mount the propagation (`rslave`, `private`, ...) named.
    Propagation(String),
    /// Making the mount that holds the root a slave or private.
    Isolate,
    /// Binding a bundle's root directory onto itself.
    BindRoot,
    /// Opening a directory on the host.
    Open,
    /// Creating a directory of the run on the host.
    Create,
    /// Setting the mode of the writable layer's top.
    SetMode,
    /// Writing one of the run's files.
    Write,
    /// Entering a directory.
    Enter,
    /// Mounting the writable layer's tmpfs.
    WritableTmpfs,
    /// Mounting the image's overlay of this many layers.
    Overlay(usize),
    /// Resolving a path inside the container.
    Resolve,
    /// Opening a directory inside the container.
    OpenInside,
    /// Creating a file to mount on inside the container.
    CreateMountPoint,
    /// Creating a directory inside the container.
    CreateDir,
    /// Remounting a mount with new flags.
    Remount,
    /// Binding the source named at the path.
    Bind(String),
    /// Setting the flags of a bind mount.
    BindFlags,
    /// Mounting a filesystem of a type, with options.
    Mount {
        /// The filesystem type.
        fstype: String,
        /// The options, empty when none.
        data: String,
    },
    /// Setting a mount's propagation.
    SetPropagation,
    /// Setting a mount's recursive attributes.
    RecursiveAttrs,
    /// Making a device node.
    Node,
    /// Binding the host's device node read-only.
    HostNode,
    /// Linking a /dev entry to the target named.
    Link(String),
    /// Opening the old root.
    OpenOldRoot,
    /// pivot_root.
    PivotRoot,
    /// Entering the old root.
    EnterOldRoot,
    /// Making the old root a slave.
    SlaveOldRoot,
    /// Detaching the old root.
    DetachOldRoot,
    /// Entering the new root.
    EnterNewRoot,
    /// Setting the sysctl named (the path is its file) to the value.
    Sysctl {
        /// The key, as config.json names it.
        key: String,
        /// The value.
        value: String,
    },
    /// Binding a read-only path onto itself.
    ReadonlyBind,
    /// Remounting a path read-only.
    ReadonlyRemount,
    /// Covering a masked path.
    Mask,
    /// The OCI hooks run before pivot_root.
    Hooks,
}

impl Error {
    /// The failed step in words, with its path.
    pub fn step(&self) -> String {
        let p = self.path.display();
        match &self.op {
            Op::Propagation(kind) => format!("setting the propagation of {p} ({kind})"),
            Op::Isolate => format!("isolating the mount that holds {p}"),
            Op::BindRoot => format!("binding the root filesystem {p}"),
            Op::Open => format!("opening {p}"),
            Op::Create => format!("creating {p}"),
            Op::SetMode => format!("setting the mode of {p}"),
            Op::Write => format!("writing {p}"),
            Op::Enter => format!("entering {p}"),
            Op::WritableTmpfs => format!("mounting the writable layer's tmpfs at {p}"),
            Op::Overlay(layers) => format!("mounting the image overlay at {p} ({layers} layers)"),
            Op::Resolve => format!("resolving {p} in the container"),
            Op::OpenInside => format!("opening {p} in the container"),
            Op::CreateMountPoint => format!("creating the mount point {p} in the container"),
            Op::CreateDir => format!("creating the directory {p} in the container"),
            Op::Remount => format!("remounting {p}"),
            Op::Bind(source) => format!("binding {source} at {p}"),
            Op::BindFlags => format!("setting the flags of the bind mount at {p}"),
            Op::Mount { fstype, data } if data.is_empty() => format!("mounting {fstype} at {p}"),
            Op::Mount { fstype, data } => format!("mounting {fstype} at {p} with options {data}"),
            Op::SetPropagation => format!("setting propagation of {p}"),
            Op::RecursiveAttrs => format!("setting the recursive attributes (rro, rnosuid, ...) of {p}"),
            Op::Node => format!("making the device node {p}"),
            Op::HostNode => format!("binding the host's {p} read-only"),
            Op::Link(target) => format!("linking {p} to {target}"),
            Op::OpenOldRoot => "opening the old root".into(),
            Op::PivotRoot => "pivot_root".into(),
            Op::EnterOldRoot => "entering the old root".into(),
            Op::SlaveOldRoot => "making the old root a slave".into(),
            Op::DetachOldRoot => "detaching the old root".into(),
            Op::EnterNewRoot => "entering the new root".into(),
            Op::Sysctl { key, value } => format!("setting sysctl {key} = {value}"),
            Op::ReadonlyBind => format!("binding read-only path {p}"),
            Op::ReadonlyRemount if self.path == std::path::Path::new("/") => "remounting / read-only".into(),
            Op::ReadonlyRemount => format!("remounting {p} read-only"),
            Op::Mask => format!("masking {p}"),
            Op::Hooks => "OCI hooks".into(),
        }
    }
}

/// `r`, its error as `op` on `path`.
pub fn at<T, E: Into<io::Error>>(r: Result<T, E>, op: Op, path: impl Into<PathBuf>) -> Result<T, Error> {
    r.map_err(|e| Error { op, path: path.into(), source: e.into() })
}
