//! bpf(2): loading BPF programs and attaching them to cgroups.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `BPF_PROG_LOAD`, `BPF_PROG_ATTACH` and `BPF_PROG_QUERY` from `<linux/bpf.h>`.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_QUERY: libc::c_long = 16;

/// The `BPF_PROG_LOAD` part of `union bpf_attr` (up to `expected_attach_type`).
#[repr(C)]
#[derive(Default)]
struct BpfProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BpfProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// The `BPF_PROG_QUERY` part of `union bpf_attr` (up to `prog_cnt`).
#[repr(C)]
#[derive(Default)]
struct BpfProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// `bpf(cmd, attr, size)`.
///
/// # Safety
///
/// `attr` must be the part of `union bpf_attr` that `cmd` reads, and every
/// pointer inside it must be valid for what the kernel does with it during the
/// call.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller vouches for `attr`; its size is passed with it.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// Load a BPF program of `prog_type` (`BPF_PROG_TYPE_*`) made of `insns`
/// (`struct bpf_insn`, 8 bytes each), named `name` (at most 15 bytes). On a
/// refusal the verifier's log, when it gave one, is returned with the error.
pub fn bpf_prog_load(
    prog_type: u32,
    insns: &[[u8; 8]],
    license: &std::ffi::CStr,
    name: &str,
) -> Result<OwnedFd, (io::Error, String)> {
    let mut prog_name = [0u8; 16];
    let n = name.len().min(15);
    prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let load = |log: &mut [u8]| {
        let mut attr = BpfProgLoadAttr {
            prog_type,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: u32::from(!log.is_empty()),
            log_size: log.len() as u32,
            log_buf: if log.is_empty() { 0 } else { log.as_mut_ptr() as u64 },
            prog_name,
            ..Default::default()
        };
        // SAFETY: `insns` holds `insn_cnt` instructions and `license` is
        // NUL-terminated, both alive for the call; `log_buf` is null or valid
        // for writes of `log_size` bytes.
        let fd = unsafe { bpf(BPF_PROG_LOAD, &mut attr) }?;
        // SAFETY: the kernel returned a new fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    };
    load(&mut []).or_else(|e: io::Error| {
        let mut log = vec![0u8; 1 << 16];
        match load(&mut log) {
            Ok(fd) => Ok(fd),
            Err(_) => {
                let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                Err((e, String::from_utf8_lossy(&log[..end]).trim().to_string()))
            }
        }
    })
}

/// Attach the BPF program `prog` to `target` (a cgroup directory, for the
/// cgroup attach types) as `attach_type` (`BPF_CGROUP_*`) with `flags`
/// (`BPF_F_ALLOW_MULTI`, ...).
pub fn bpf_prog_attach(
    target: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    attach_type: u32,
    flags: u32,
) -> io::Result<()> {
    let mut attr = BpfProgAttachAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        attach_flags: flags,
        replace_bpf_fd: 0,
    };
    // SAFETY: the attr holds two open, borrowed fds and integers only.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr) }.map(drop)
}

/// The ids of the BPF programs attached to `target` (a cgroup directory) as
/// `attach_type`, itself only (not those inherited).
pub fn bpf_prog_query(target: BorrowedFd<'_>, attach_type: u32) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = BpfProgQueryAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_type,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    // SAFETY: `prog_ids` is valid for writes of `prog_cnt` u32s during the call.
    unsafe { bpf(BPF_PROG_QUERY, &mut attr) }?;
    ids.truncate((attr.prog_cnt as usize).min(ids.len()));
    Ok(ids)
}
