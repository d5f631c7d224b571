# Helpers the guest cases source (`. "$GUEST_LIB"`). A case is a POSIX sh
# script that exits 0 when every check passed; `fail` says why and exits 1.
set -eu

fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }

# expect_eq WHAT GOT WANT
expect_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; ok "$1 = $3"; }

# On exit: run ON_EXIT (a case's own clean-up), release a container
# start_waiting left waiting (a check failed), then remove the case's
# directories (CLEANUP).
SYNC=
WAITING=
CLEANUP=
ON_EXIT=
cleanup() {
  [ -z "$ON_EXIT" ] || eval "$ON_EXIT" || true
  if [ -n "$SYNC" ]; then
    touch "$SYNC/go"
    [ -z "$WAITING" ] || wait "$WAITING" || true
    rm -rf "$SYNC"
  fi
  [ -z "$CLEANUP" ] || rm -rf $CLEANUP
}
trap cleanup EXIT

# A fresh exprun root on the guest's ext4 disk with the busybox fixture
# imported as busybox:latest; sets ROOT, removed on exit.
fresh_root() {
  ROOT=$(mktemp -d /var/tmp/exprun-guest.XXXXXX)
  CLEANUP="$CLEANUP $ROOT"
  exprun --root "$ROOT" image import --name busybox:latest "$GUEST_SHARE/busybox-oci" > /dev/null
}

# A busybox OCI bundle (config.json from `exprun spec`) in a fresh directory;
# sets B, removed on exit.
busybox_bundle() {
  B=$(mktemp -d /var/tmp/exprun-guest-bundle.XXXXXX)
  CLEANUP="$CLEANUP $B"
  mkdir "$B/rootfs"
  archive=$GUEST_SHARE/busybox-docker.tar
  layer=$(tar -xOf "$archive" manifest.json | jq -r '.[0].Layers[0]')
  tar -xOf "$archive" "$layer" | tar -x -C "$B/rootfs"
  exprun spec -b "$B"
}

# The major and minor numbers of the guest's disk (/dev/vda); sets MAJ, MIN.
disk_numbers() {
  MAJ=$(cut -d: -f1 /sys/block/vda/dev)
  MIN=$(cut -d: -f2 /sys/block/vda/dev)
}

# xr ARGS...: exprun with this case's root.
xr() { exprun --root "$ROOT" "$@"; }

# The cgroup v2 directory of a process, as the kernel reports it.
cgroup_of() {
  p=$(sed -n 's/^0:://p' "/proc/$1/cgroup")
  [ -n "$p" ] || fail "process $1 has no cgroup v2 path"
  echo "/sys/fs/cgroup$p"
}

# wait_for_pid PATTERN [STARTER]: the pid of the one process whose full
# command line matches PATTERN (pgrep -f), waiting up to 60 s for it to start;
# failing at once if the process STARTER (the exprun that starts it) ends first.
wait_for_pid() {
  i=0
  while [ $i -lt 600 ]; do
    pid=$(pgrep -f -- "$1" | head -n1 || true)
    if [ -n "$pid" ]; then echo "$pid"; return 0; fi
    if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then
      fail "the process that was to start '$1' ended first" >&2
    fi
    sleep 0.1
    i=$((i + 1))
  done
  fail "no process matching '$1' after 60 s" >&2
}

# A field of the newest run record of ROOT (a jq filter).
record() {
  rec=$(ls -t "$ROOT"/runs/*/record.json | head -n1)
  jq -r "$1" "$rec"
}

# kill_and_wait_stopped ID [GLOBAL-FLAGS...]: SIGKILL the bundle container ID
# in ROOT and wait (up to 20 s) until its state says stopped.
kill_and_wait_stopped() {
  id=$1
  shift
  xr "$@" kill "$id" KILL
  i=0
  while [ "$(xr state "$id" | jq -r .status)" != stopped ]; do
    i=$((i + 1))
    [ $i -lt 100 ] || fail "the container $id did not stop after SIGKILL"
    sleep 0.2
  done
}

# Nothing of ROOT's runs is left: no live container directory, no cgroup any
# record names, no mount under ROOT, no process mentioning ROOT.
assert_no_leftovers() {
  live=$(ls -A "$ROOT/containers" 2>/dev/null || true)
  [ -z "$live" ] || fail "run directories left behind: $live"
  for rec in "$ROOT"/runs/*/record.json; do
    [ -e "$rec" ] || continue
    for d in $(jq -r '.cgroup.dirs // {} | .[]' "$rec"); do
      [ ! -e "$d" ] || fail "cgroup left behind: $d"
    done
  done
  if grep -qF -- "$ROOT" /proc/self/mountinfo; then
    fail "mounts under $ROOT left behind: $(grep -F -- "$ROOT" /proc/self/mountinfo)"
  fi
  for c in /proc/[0-9]*/cmdline; do
    cmd=$(tr '\0' ' ' < "$c" 2>/dev/null || true)
    case "$cmd" in
      *"$ROOT"*) fail "process left behind: $cmd" ;;
    esac
  done
  ok "nothing left behind"
}

# xrun ARGS...: `exprun run` in ROOT, with the runner's delegated cgroup as
# parent (a systemd service's own cgroup holds its processes, so cgroup v2's
# "no internal processes" rule keeps it from having children with controllers).
xrun() { exprun --root "$ROOT" run --cgroup-parent "$GUEST_CGROUP_PARENT" "$@"; }

# start_waiting TAG RUN-OPTIONS...: start a busybox container in the background
# that waits until finish_waiting; sets CG to its cgroup directory.
start_waiting() {
  tag=$1
  shift
  SYNC=$(mktemp -d /var/tmp/exprun-guest-sync.XXXXXX)
  xrun -v "$SYNC:/sync" "$@" busybox:latest \
    sh -c "while [ ! -e /sync/go ]; do sleep 1; done # wait-$tag" &
  WAITING=$!
  pid=$(wait_for_pid "^sh -c while .*# wait-$tag" "$WAITING")
  CG=$(cgroup_of "$pid")
  ok "container running in $CG"
}

# finish_waiting: let the container of start_waiting exit, and check it did.
finish_waiting() {
  touch "$SYNC/go"
  code=0
  wait "$WAITING" || code=$?
  rm -rf "$SYNC"
  SYNC=
  WAITING=
  [ "$code" -eq 0 ] || fail "the waiting container exited with $code"
}
