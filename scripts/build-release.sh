#!/usr/bin/env bash
# Build exprun as it is meant to be installed: a static-pie binary (glibc linked
# in). No dynamic loader at start-up: about 0.5 ms less per invocation and 1 MiB
# less RSS than the default dynamic build (docs/benchmarks.md).
#
# The static C runtime is only set for the target (--target), so that build
# scripts and proc macros, which must be dynamic, still build. Prints the path of
# the binary on stdout.
#
# Relative relocations are packed (-z pack-relative-relocs, DT_RELR, glibc
# 2.36+): the start-up code reads 6 KiB of them instead of 476 KiB of
# .rela.dyn, and the binary stays position-independent (ASLR).
#
# The linker puts the functions of a run's path (scripts/hot-functions.txt,
# made by scripts/hot-functions.sh) together at the start of .text, so that a
# run maps about half as much of the binary (docs/benchmarks.md, "Peak RSS").
# They are passed to the final link only (cargo rustc), so dependencies build
# exactly as without. EXPRUN_FUNCTION_ORDER names another list; set empty,
# none is used.
set -euo pipefail
cd "$(dirname "$0")/.."
triple="$(uname -m)-unknown-linux-gnu"
order=${EXPRUN_FUNCTION_ORDER-$PWD/scripts/hot-functions.txt}
# The list names x86_64 symbols, and only lld (rustc's default linker for
# x86_64 Linux) takes it.
[ "$(uname -m)" = x86_64 ] || order=''
link=(-C "link-arg=-Wl,-z,pack-relative-relocs")
if [ -n "$order" ]; then
    [ -r "$order" ] || { echo "build-release: no function order list at $order" >&2; exit 1; }
    # Names the build does not have (the list is older than the code) are
    # skipped; the count below says how current the list is.
    # Cargo relinks when the arguments change, not when a file they name
    # does: the linker gets a copy named by the list's digest.
    target_dir=${CARGO_TARGET_DIR:-$PWD/target}
    mkdir -p "$target_dir"
    copy="$target_dir/hot-functions-$(sha256sum <"$order" | cut -c1-16).txt"
    [ -f "$copy" ] || cp "$order" "$copy"
    link+=(-C "link-arg=-Wl,--symbol-ordering-file=$copy" -C "link-arg=-Wl,--no-warn-symbol-ordering")
fi
# libseccomp is linked statically too (Debian's libseccomp-dev ships libseccomp.a).
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" LIBSECCOMP_LINK_TYPE=static \
    LIBSECCOMP_LIB_PATH="/usr/lib/$(uname -m)-linux-gnu" \
    cargo rustc --release --locked --target "$triple" --bin exprun -- "${link[@]}" >&2
bin="${CARGO_TARGET_DIR:-$PWD/target}/$triple/release/exprun"
if [ -n "$order" ] && command -v nm >/dev/null; then
    found=$(nm --defined-only "$bin" | awk 'NR == FNR { have[$3] = 1; next } $1 in have { n++ } END { print n + 0 }' - "$order")
    echo "build-release: $found of $(wc -l <"$order") functions of $order are in this build" >&2
fi
echo "$bin"
