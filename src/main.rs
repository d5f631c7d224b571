//! The `exprun` binary: parse, dispatch, map the outcome to an exit status.

fn main() {
    std::process::exit(exprun::cli::main());
}
