#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Cloning right after threads were joined. A joined thread still counts in
//! /proc/self/stat for a moment, so a clone that checked the count once
//! refused about one run in ten after hashing inputs or unpacking layers.
//! Runs without libtest's harness, which would add its own threads.

use exprun::sys::{clone_process, Forked};

fn main() {
    let items: Vec<u32> = (0..4).collect();
    for round in 0..2000 {
        exprun::parallel::in_parallel(&items, 2, |i| Ok::<_, ()>(std::hint::black_box(i * 2))).unwrap();
        match clone_process(0, None) {
            Ok(Forked::Child) => std::process::exit(0),
            Ok(Forked::Parent { pid, .. }) => {
                let status = nix::sys::wait::waitpid(pid, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(pid, 0), "round {round}");
            }
            Err(e) => panic!("round {round}: clone after joined threads refused: {e}"),
        }
    }
    println!("single_threaded: 2000 clones right after joined threads: ok");
}
