//! Device rules as a cgroup v2 device program (`BPF_PROG_TYPE_CGROUP_DEVICE`):
//! the kernel runs it on every open and mknod of a device node by a process in
//! the cgroup, with `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major;
//! u32 minor; }` (`access_type` is the access bits << 16 | the device type), and
//! allows the access when it returns 1.
//!
//! The program is built from the v1 semantics ([`Model`]): the rules become a
//! default and exceptions first, so v1 and v2 hosts decide alike. It tests each
//! exception in turn and returns the opposite of the default on the first that
//! decides, the default otherwise:
//!
//! ```text
//!   r2 = ctx->access_type; r3 = r2 >> 16; r2 &= 0xffff; r4 = ctx->major; r5 = ctx->minor
//!   per exception:  if w2 != type goto next; [if w4 != major goto next;] [if w5 != minor goto next;]
//!                   r6 = r3 & access
//!                   default deny:  if r6 != r3 goto next   (covers every access asked)
//!                   default allow: if r6 == 0 goto next    (shares one)
//!                   r0 = !default; exit
//!   next: ...
//!   r0 = default; exit
//! ```

use super::model::Model;
use super::DeviceRule;

/// One `struct bpf_insn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register.
    pub dst: u8,
    /// Source register.
    pub src: u8,
    /// Jump offset (instructions after the next one) or memory offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

/// The opcodes the program uses (`<linux/bpf_common.h>`, `<linux/bpf.h>`).
pub mod op {
    /// `r_dst = *(u32 *)(r_src + off)` (BPF_LDX | BPF_W | BPF_MEM).
    pub const LDX_W: u8 = 0x61;
    /// `r_dst = r_src` (BPF_ALU64 | BPF_MOV | BPF_X).
    pub const MOV_X: u8 = 0xbf;
    /// `r_dst = imm` (BPF_ALU64 | BPF_MOV | BPF_K).
    pub const MOV_K: u8 = 0xb7;
    /// `r_dst >>= imm` (BPF_ALU64 | BPF_RSH | BPF_K).
    pub const RSH_K: u8 = 0x77;
    /// `r_dst &= imm` (BPF_ALU64 | BPF_AND | BPF_K).
    pub const AND_K: u8 = 0x57;
    /// `if (u32)r_dst != (u32)imm goto +off` (BPF_JMP32 | BPF_JNE | BPF_K).
    pub const JNE32_K: u8 = 0x56;
    /// `if r_dst != r_src goto +off` (BPF_JMP | BPF_JNE | BPF_X).
    pub const JNE_X: u8 = 0x5d;
    /// `if r_dst == imm goto +off` (BPF_JMP | BPF_JEQ | BPF_K).
    pub const JEQ_K: u8 = 0x15;
    /// `return r0` (BPF_JMP | BPF_EXIT).
    pub const EXIT: u8 = 0x95;
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self { code, dst, src, off, imm }
    }

    /// The instruction as the kernel reads it (the register nibbles as
    /// little-endian bitfields lay them out: dst low, src high).
    pub fn encode(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.dst & 0xf) | (self.src << 4);
        b[2..4].copy_from_slice(&self.off.to_ne_bytes());
        b[4..8].copy_from_slice(&self.imm.to_ne_bytes());
        b
    }
}

/// The program for `rules` (see the module documentation).
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    use op::*;
    let model = Model::from_rules(rules);
    let mut p = vec![
        Insn::new(LDX_W, 2, 1, 0, 0),
        Insn::new(MOV_X, 3, 2, 0, 0),
        Insn::new(RSH_K, 3, 0, 0, 16),
        Insn::new(AND_K, 2, 0, 0, 0xffff),
        Insn::new(LDX_W, 4, 1, 4, 0),
        Insn::new(LDX_W, 5, 1, 8, 0),
    ];
    let decided = i32::from(!model.default_allow);
    for e in &model.exceptions {
        let numbers = [(4, e.major), (5, e.minor)];
        let mut block = vec![Insn::new(JNE32_K, 2, 0, 0, e.kind as i32)];
        block.extend(
            numbers.iter().filter_map(|&(reg, n)| n.map(|n| Insn::new(JNE32_K, reg, 0, 0, n as i32))),
        );
        block.push(Insn::new(MOV_X, 6, 3, 0, 0));
        block.push(Insn::new(AND_K, 6, 0, 0, e.access as i32));
        block.push(if model.default_allow {
            Insn::new(JEQ_K, 6, 0, 0, 0)
        } else {
            Insn::new(JNE_X, 6, 3, 0, 0)
        });
        block.push(Insn::new(MOV_K, 0, 0, 0, decided));
        block.push(Insn::new(EXIT, 0, 0, 0, 0));
        // Every jump goes to the next exception's block, just past this one.
        let len = block.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if matches!(insn.code, JNE32_K | JNE_X | JEQ_K) {
                insn.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(Insn::new(MOV_K, 0, 0, 0, i32::from(model.default_allow)));
    p.push(Insn::new(EXIT, 0, 0, 0, 0));
    p
}

#[cfg(test)]
mod tests;
