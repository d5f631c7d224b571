//! The exec trampoline's machine code: what a container process runs for the
//! instant between exprun's last step and the command (see
//! `selfexe/trampoline.rs`, which wraps it in an ELF file in a sealed memfd).
//!
//! It is assembled into exprun's read-only data, never executed there, and
//! copied out by [`trampoline_code`]. Position-independent, no libc, no
//! relocations. What it does, from the stack the kernel hands a new program:
//!
//! ```text
//! argv[0]  the channel's fd, in decimal     argv[2]  the channel report's JSON up to the errno
//! argv[1]  the command's path               argv[3]  the stderr report up to the errno
//! argv[4..] the command's own argv          envp     the command's environment
//!
//! fewer than 4 arguments: exit_group(126)
//! fcntl(channel, F_SETFD, FD_CLOEXEC)       (else close it: it must not reach the command)
//! execve(argv[1], &argv[4], envp)
//! on failure, with the errno in decimal:
//!   sendmsg(channel, argv[2] errno "}}", MSG_NOSIGNAL)
//!   and if nobody reads the channel: writev(2, argv[3] errno "\n")
//!   exit_group(127 for ENOENT, else 126)
//! ```

/// The trampoline's code, or `None` on an architecture it is not written for
/// (there exprun re-executes itself from a protected copy instead).
pub fn trampoline_code() -> Option<&'static [u8]> {
    imp::code()
}

#[cfg(target_arch = "x86_64")]
mod imp {
    // Intel syntax (Rust's default for x86). Registers kept across the
    // syscalls (which clobber only rax, rcx, r11): rbp the initial stack,
    // rbx the channel fd, r12 the errno, r13/r14 the digits.
    std::arch::global_asm!(
        ".pushsection .rodata.exprun_trampoline,\"a\"",
        ".globl exprun_trampoline_start",
        ".globl exprun_trampoline_end",
        "exprun_trampoline_start:",
        "    mov rbp, rsp",
        // Fewer than four arguments: not started by init (a container that
        // runs the trampoline again through /proc/self/exe); exit 126.
        "    cmp qword ptr [rbp], 4",
        "    jb .Ltr_refuse",
        // The channel's fd from argv[0].
        "    mov rsi, [rbp + 8]",
        "    xor ebx, ebx",
        ".Ltr_digit:",
        "    movzx eax, byte ptr [rsi]",
        "    test eax, eax",
        "    jz .Ltr_parsed",
        "    imul ebx, ebx, 10",
        "    lea ebx, [rbx + rax - 48]",
        "    inc rsi",
        "    jmp .Ltr_digit",
        ".Ltr_parsed:",
        // fcntl(fd, F_SETFD, FD_CLOEXEC); if that fails, close(fd).
        "    mov edi, ebx",
        "    mov esi, 2",
        "    mov edx, 1",
        "    mov eax, 72",
        "    syscall",
        "    test rax, rax",
        "    jz .Ltr_exec",
        "    mov edi, ebx",
        "    mov eax, 3",
        "    syscall",
        "    mov ebx, -1",
        ".Ltr_exec:",
        // execve(argv[1], &argv[4], envp); envp is &argv[argc + 1].
        "    mov rdi, [rbp + 16]",
        "    lea rsi, [rbp + 40]",
        "    mov rax, [rbp]",
        "    lea rdx, [rbp + rax * 8 + 16]",
        "    mov eax, 59",
        "    syscall",
        // It failed: r12 = errno, its decimal digits at [rsp + 32) going down.
        "    mov r12, rax",
        "    neg r12",
        "    sub rsp, 256",
        "    lea rdi, [rsp + 32]",
        "    mov eax, r12d",
        "    mov ecx, 10",
        ".Ltr_div:",
        "    xor edx, edx",
        "    div ecx",
        "    add dl, 48",
        "    dec rdi",
        "    mov [rdi], dl",
        "    test eax, eax",
        "    jnz .Ltr_div",
        "    mov r14, rdi",
        "    lea r13, [rsp + 32]",
        "    sub r13, rdi",
        // iovec[3] at rsp + 48: argv[2], the digits, "}}".
        "    mov rdi, [rbp + 24]",
        "    call .Ltr_strlen",
        "    mov [rsp + 48], rdi",
        "    mov [rsp + 56], rax",
        "    mov [rsp + 64], r14",
        "    mov [rsp + 72], r13",
        "    lea rax, [rip + .Ltr_json_end]",
        "    mov [rsp + 80], rax",
        "    mov qword ptr [rsp + 88], 2",
        // struct msghdr at rsp + 96: no name, the iovecs, no control.
        "    xor eax, eax",
        "    mov [rsp + 96], rax",
        "    mov [rsp + 104], rax",
        "    lea rax, [rsp + 48]",
        "    mov [rsp + 112], rax",
        "    mov qword ptr [rsp + 120], 3",
        "    xor eax, eax",
        "    mov [rsp + 128], rax",
        "    mov [rsp + 136], rax",
        "    mov [rsp + 144], rax",
        // sendmsg(fd, &msghdr, MSG_NOSIGNAL)
        "    mov edi, ebx",
        "    lea rsi, [rsp + 96]",
        "    mov edx, 0x4000",
        "    mov eax, 46",
        "    syscall",
        "    test rax, rax",
        "    jns .Ltr_exit",
        // Nobody reads the channel: writev(2, argv[3], the digits, "\n").
        "    mov rdi, [rbp + 32]",
        "    call .Ltr_strlen",
        "    mov [rsp + 48], rdi",
        "    mov [rsp + 56], rax",
        "    lea rax, [rip + .Ltr_newline]",
        "    mov [rsp + 80], rax",
        "    mov qword ptr [rsp + 88], 1",
        "    mov edi, 2",
        "    lea rsi, [rsp + 48]",
        "    mov edx, 3",
        "    mov eax, 20",
        "    syscall",
        ".Ltr_exit:",
        // exit_group(errno == ENOENT ? 127 : 126)
        "    mov edi, 126",
        "    cmp r12d, 2",
        "    jne .Ltr_status",
        "    mov edi, 127",
        ".Ltr_status:",
        "    mov eax, 231",
        "    syscall",
        ".Ltr_refuse:",
        "    mov edi, 126",
        "    mov eax, 231",
        "    syscall",
        "    ud2",
        // rax = strlen(rdi); rdi is kept.
        ".Ltr_strlen:",
        "    xor eax, eax",
        ".Ltr_strlen_next:",
        "    cmp byte ptr [rdi + rax], 0",
        "    je .Ltr_strlen_done",
        "    inc rax",
        "    jmp .Ltr_strlen_next",
        ".Ltr_strlen_done:",
        "    ret",
        ".Ltr_json_end:",
        // "}}" (braces are doubled in an asm! template).
        "    .ascii \"}}}}\"",
        ".Ltr_newline:",
        "    .ascii \"\\n\"",
        "exprun_trampoline_end:",
        ".popsection",
    );

    extern "C" {
        static exprun_trampoline_start: u8;
        static exprun_trampoline_end: u8;
    }

    pub fn code() -> Option<&'static [u8]> {
        let start = std::ptr::addr_of!(exprun_trampoline_start);
        let end = std::ptr::addr_of!(exprun_trampoline_end);
        let len = (end as usize).checked_sub(start as usize)?;
        // SAFETY: the two symbols bound one block of bytes that the assembler
        // put in exprun's read-only data above, start before end; it lives as
        // long as the program and nothing writes it.
        Some(unsafe { std::slice::from_raw_parts(start, len) })
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    pub fn code() -> Option<&'static [u8]> {
        None
    }
}
