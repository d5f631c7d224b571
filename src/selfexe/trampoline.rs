//! The exec trampoline: a program of about 300 bytes in a sealed memfd through
//! which a container process execs its command, so that exprun need not
//! re-execute itself to keep its binary out of the container's reach.
//!
//! Only the process that makes the command's `execve` matters for
//! CVE-2019-5736: a command that resolves to `/proc/self/exe` runs that
//! process's executable, dumpable, in the container. Through the trampoline,
//! that executable is the trampoline itself: a memfd sealed against writes,
//! growing and shrinking, so `/proc/<pid>/exe` of it cannot be opened for
//! writing (`EPERM`), and running it again only runs the trampoline. exprun's
//! own binary is never the executable of a process the container can see: the
//! container's init and exec'd processes are clones of exprun, non-dumpable
//! until they exec (spawn/init.rs), and they exec the trampoline.
//!
//! The trampoline (its code: `sys/trampoline.rs`) sets close-on-exec on the
//! parent/child channel, which init left open for it, then execs the command
//! with init's arguments and environment, so the command starts exactly as it
//! would from init; if that execve fails it reports the errno on the channel
//! in the protocol's own JSON (`ToParent::ExecFailed`), or on stderr when
//! nobody reads the channel (`exprun create` has exited), and exits 127 or 126.
//!
//! What it asks of a container's seccomp profile, installed before init execs
//! it: `execveat` and `fcntl`, allowed without conditions
//! ([`crate::seccomp::Filter::allows_exec_trampoline`]). A profile that does
//! not allow them, a kernel that will not execute a memfd (`vm.memfd_noexec`
//! = 2) and an architecture the trampoline is not written for (anything but
//! x86_64) get the re-exec from a protected copy instead.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{OwnedFd, RawFd};
use std::path::Path;

use nix::fcntl::{FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

/// Where the program's one segment is mapped: anywhere (a position-independent
/// executable), the kernel picks the address.
const ELF_HEADER: usize = 64;
const PROGRAM_HEADER: usize = 56;
const HEADERS: usize = ELF_HEADER + 2 * PROGRAM_HEADER;

/// The trampoline as a complete ELF executable, or `None` on an architecture
/// it is not written for.
pub fn program() -> Option<Vec<u8>> {
    crate::sys::trampoline_code().map(elf)
}

/// A 64-bit little-endian ELF executable of `code`, entered at its first
/// byte: one read-and-execute segment holding the headers and the code, and a
/// non-executable stack.
fn elf(code: &[u8]) -> Vec<u8> {
    const EM_X86_64: u16 = 62;
    const ET_DYN: u16 = 3;
    const PT_LOAD: u32 = 1;
    const PT_GNU_STACK: u32 = 0x6474_e551;
    const PF_R: u32 = 4;
    const PF_W: u32 = 2;
    const PF_X: u32 = 1;
    let size = (HEADERS + code.len()) as u64;
    let mut f = Vec::with_capacity(HEADERS + code.len());
    // e_ident: magic, 64-bit, little-endian, version 1, System V ABI.
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&ET_DYN.to_le_bytes());
    f.extend_from_slice(&EM_X86_64.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes()); // e_version
    f.extend_from_slice(&(HEADERS as u64).to_le_bytes()); // e_entry
    f.extend_from_slice(&(ELF_HEADER as u64).to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no sections
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    f.extend_from_slice(&(ELF_HEADER as u16).to_le_bytes());
    f.extend_from_slice(&(PROGRAM_HEADER as u16).to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes()); // e_phnum
    f.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    let mut segment = |kind: u32, flags: u32, size: u64, align: u64| {
        f.extend_from_slice(&kind.to_le_bytes());
        f.extend_from_slice(&flags.to_le_bytes());
        f.extend_from_slice(&0u64.to_le_bytes()); // p_offset
        f.extend_from_slice(&0u64.to_le_bytes()); // p_vaddr
        f.extend_from_slice(&0u64.to_le_bytes()); // p_paddr
        f.extend_from_slice(&size.to_le_bytes()); // p_filesz
        f.extend_from_slice(&size.to_le_bytes()); // p_memsz
        f.extend_from_slice(&align.to_le_bytes());
    };
    segment(PT_LOAD, PF_R | PF_X, size, 0x1000);
    segment(PT_GNU_STACK, PF_R | PF_W, 0, 16);
    debug_assert_eq!(f.len(), HEADERS);
    f.extend_from_slice(code);
    f
}

/// The trampoline in a new memfd, sealed against any change, close-on-exec:
/// containers get it only as the executable of the process that runs it.
pub fn sealed() -> io::Result<OwnedFd> {
    let program = program().ok_or_else(|| io::Error::other("no exec trampoline for this architecture"))?;
    let flags = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
    // MFD_EXEC (Linux 6.3) keeps the memfd executable where `vm.memfd_noexec`
    // would otherwise make it not; older kernels do not know the flag.
    let fd = match memfd_create(c"exprun-exec", flags | MFdFlags::from_bits_retain(libc::MFD_EXEC)) {
        Err(nix::errno::Errno::EINVAL) => memfd_create(c"exprun-exec", flags)?,
        other => other?,
    };
    let mut f = File::from(fd);
    f.write_all(&program)?;
    let seals =
        SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE;
    nix::fcntl::fcntl(&f, FcntlArg::F_ADD_SEALS(seals))?;
    Ok(f.into())
}

/// What the trampoline reports when the command's execve fails, each up to
/// the errno it appends in decimal: on the channel (then `}}`), on stderr
/// (then a newline).
pub struct Reports {
    /// The channel's message, e.g. `{"ExecFailed":{"exe":"/bin/x","errno":`.
    pub channel: String,
    /// The line for stderr, e.g. `exprun: cannot execute /bin/x: errno `.
    pub stderr: String,
}

/// The trampoline's argv for running `exe` with `args`, reporting on
/// `channel`: the layout `sys/trampoline.rs` reads. `None` when a string holds
/// a NUL byte.
pub fn arguments(channel: RawFd, exe: &Path, args: &[String], reports: &Reports) -> Option<Vec<CString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut argv = vec![
        CString::new(channel.to_string()).ok()?,
        CString::new(exe.as_os_str().as_bytes()).ok()?,
        CString::new(reports.channel.as_str()).ok()?,
        CString::new(reports.stderr.as_str()).ok()?,
    ];
    for a in args {
        argv.push(CString::new(a.as_str()).ok()?);
    }
    Some(argv)
}

#[cfg(test)]
#[path = "trampoline_tests.rs"]
mod tests;
