#!/usr/bin/env bash
# A private Docker Engine for the integration tests, and the ML image built on it offline.
#
#   docker/test-engine.sh start   install docker.io + debootstrap if missing, start dockerd, wait until it answers
#   docker/test-engine.sh image   build the ML image (cloud-tasks-ml:test) with no registry and no network
#   docker/test-engine.sh stop    stop dockerd by its pid file
#   docker/test-engine.sh env     print this engine's DOCKER_HOST, the image's name and dockerd's log file
#
# dockerd gets its own socket, data root, exec root and pid file, and neither a bridge nor
# iptables rules, so it never clashes with another engine on the machine. No registry can be
# reached here: the base image is made with debootstrap from the machine's Debian mirror, and
# the wheels of `cloud_tasks[ml]` are downloaded on the host (where pip trusts the intercepting
# proxy's CA) and installed in the build with --no-index. The debootstrap tarball, the wheels
# and the engine's data root (with the built image) are kept between runs; a fresh machine
# builds them in a few minutes. Needs root.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${CLOUD_TASKS_TEST_CACHE:-/var/cache/cloud-tasks-tests}
# Short: containerd puts unix sockets under the exec root, and their paths are limited to 108 bytes.
RUN_DIR=${CLOUD_TASKS_TEST_RUN:-/run/cloud-tasks-tests}
SOCKET=$RUN_DIR/docker.sock
PIDFILE=$RUN_DIR/dockerd.pid
LOG=$CACHE/dockerd.log
BASE_IMAGE=cloud-tasks-base:bookworm
IMAGE=${CLOUD_TASKS_TEST_IMAGE:-cloud-tasks-ml:test}
WHEELS=$REPO/docker/wheels
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
START_TIMEOUT=${START_TIMEOUT:-60}
STOP_TIMEOUT=${STOP_TIMEOUT:-60}
export DOCKER_HOST=unix://$SOCKET

log() { echo "test-engine: $*" >&2; }
die() { log "$*"; exit 1; }

# The client of the installed engine (a newer client elsewhere on PATH may want buildx for `build`).
docker() { if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else command docker "$@"; fi; }

install_packages() {
  local missing=()
  command -v dockerd > /dev/null || missing+=(docker.io)
  command -v debootstrap > /dev/null || missing+=(debootstrap)
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]}"
  # No service is started by the install (policy-rc.d, no init system): dockerd is started below.
  # Wait for the dpkg lock rather than fail, should another apt-get be running.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    "${missing[@]}" > /dev/null
}

# The pid in a pid file if that process runs and its command line holds $2 (a stale pid file may name another process).
live_pid() {
  local pid
  pid=$(cat "$1" 2> /dev/null) || return 1
  [ -n "$pid" ] && { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2> /dev/null | grep -q -- "$2" || return 1
  echo "$pid"
}
engine_pid() { live_pid "$PIDFILE" "--host=unix://$SOCKET"; }

# Whether a process runs (an exited one not yet reaped by its parent is a zombie: gone).
alive() {
  local state
  state=$(ps -o stat= -p "$1" 2> /dev/null) && [[ $state != Z* ]]
}

# Send SIGTERM, wait (bounded), then SIGKILL.
terminate() {
  local pid=$1 name=$2 deadline=$((SECONDS + STOP_TIMEOUT))
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2> /dev/null || return 0
  while alive "$pid"; do
    if [ $SECONDS -ge $deadline ]; then
      log "$name still running after ${STOP_TIMEOUT}s: killed"
      kill -KILL "$pid" 2> /dev/null || true
      return
    fi
    sleep 0.5
  done
}

start() {
  install_packages
  if engine_pid > /dev/null && docker version > /dev/null 2>&1; then # left by an interrupted run: reused
    log "dockerd already running ($DOCKER_HOST)"
    return
  fi
  mkdir -p "$CACHE/docker" "$RUN_DIR/exec"
  rm -f "$SOCKET" "$PIDFILE"
  log "starting dockerd on $DOCKER_HOST (log: $LOG)"
  setsid dockerd --host="unix://$SOCKET" --pidfile="$PIDFILE" --data-root="$CACHE/docker" \
    --exec-root="$RUN_DIR/exec" --storage-driver=vfs --bridge=none --iptables=false --ip-masq=false \
    >> "$LOG" 2>&1 < /dev/null &
  local launched=$! deadline=$((SECONDS + START_TIMEOUT))
  until docker version > /dev/null 2>&1; do
    if ! kill -0 "$launched" 2> /dev/null || [ $SECONDS -ge $deadline ]; then
      tail -n 30 "$LOG" >&2
      die "dockerd did not answer within ${START_TIMEOUT}s"
    fi
    sleep 1
  done
  log "dockerd $(docker version --format '{{.Server.Version}}') answers (pid $(cat "$PIDFILE"))"
}

stop() {
  local pid
  if pid=$(engine_pid); then
    terminate "$pid" dockerd # it stops its containers and its containerd
  else
    log "dockerd is not running"
  fi
  # A dockerd that had to be killed may leave its containerd behind.
  if pid=$(live_pid "$RUN_DIR/exec/containerd/containerd.pid" "$RUN_DIR/exec/containerd") && alive "$pid"; then
    terminate "$pid" containerd
  fi
  # ... and may leave its data root mounted on itself (the engine's shutdown unmounts it).
  if mountpoint -q "$CACHE/docker"; then umount "$CACHE/docker"; fi
  rm -f "$PIDFILE" "$SOCKET"
}

# The machine's Debian mirror for bookworm, from the apt sources (deb822 or one-line format).
debian_mirror() {
  local uri
  uri=$(awk 'BEGIN { RS = "" }
    /(^|\n)Types:[^\n]*deb/ && /(^|\n)Suites:([^\n]*[ \t])?bookworm([ \t\n]|$)/ {
      if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { u = substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", u); print u; exit }
    }' /etc/apt/sources.list.d/*.sources 2> /dev/null || true)
  if [ -z "$uri" ]; then
    uri=$(awk '$1 == "deb" { for (i = 3; i <= NF; i++) if ($i == "bookworm") { print $(i - 1); exit } }' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2> /dev/null || true)
  fi
  echo "${DEBIAN_MIRROR:-${uri:-http://deb.debian.org/debian}}"
}

# cloud-tasks-base:bookworm: Debian minbase with Python 3.11 and venv, from a cached debootstrap tarball.
base_image() {
  docker image inspect "$BASE_IMAGE" > /dev/null 2>&1 && return
  local tarball=$CACHE/base-bookworm.tar
  if [ ! -s "$tarball" ]; then
    local root mirror
    mirror=$(debian_mirror)
    root=$(mktemp -d "$CACHE/debootstrap.XXXXXX")
    log "debootstrap bookworm from $mirror"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" \
      > "$CACHE/debootstrap.log" 2>&1 || { tail -n 30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    chmod 755 "$root" # mktemp made it 0700: as the image's / it would lock the non-root user out
    tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  log "importing $BASE_IMAGE"
  # An imported tarball has no environment: give it Debian's PATH (the Dockerfile extends $PATH).
  docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' "$tarball" "$BASE_IMAGE" > /dev/null
}

# The wheels of cloud_tasks[ml] (and its build backend) for CPython 3.11 on bookworm's glibc, in docker/wheels/.
download_wheels() {
  local requirements stamp=$WHEELS/.requirements
  requirements=$("$PYTHON" - "$REPO/pyproject.toml" << 'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join([*project["build-system"]["requires"], *project["project"]["dependencies"],
                 *project["project"]["optional-dependencies"]["ml"]]))
PY
  )
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$requirements" ] && return
  log "downloading wheels into $WHEELS"
  find "$WHEELS" -name '*.whl' -delete # those of other requirements would be offered to the build too
  mapfile -t specs <<< "$requirements"
  # pip does not widen a manylinux_2_X tag to older glibcs: list every one up to bookworm's 2.36.
  local platforms=(--platform manylinux2014_x86_64) minor
  for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
  "$PYTHON" -m pip download --dest "$WHEELS" --only-binary=:all: --implementation cp --python-version 3.11 \
    --abi cp311 "${platforms[@]}" "${specs[@]}" > "$CACHE/pip-download.log" 2>&1 \
    || { tail -n 30 "$CACHE/pip-download.log" >&2; die "pip download failed (log: $CACHE/pip-download.log)"; }
  echo "$requirements" > "$stamp"
}

image() {
  start
  base_image
  download_wheels
  log "building $IMAGE (offline)"
  # --network=none: the build must not need any network; the legacy builder caches every step.
  docker build --network=none -f "$REPO/docker/Dockerfile" -t "$IMAGE" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg EXTRAS=ml \
    --build-arg PIP_OPTIONS="--no-index --find-links=/src/docker/wheels" "$REPO" > "$CACHE/build.log" 2>&1 \
    || { tail -n 40 "$CACHE/build.log" >&2; die "docker build failed (log: $CACHE/build.log)"; }
  # vfs stores every layer as a full copy: drop the layers of images a rebuild replaced.
  docker image prune --force > /dev/null
  log "$IMAGE built: $(docker image inspect --format '{{.Id}}' "$IMAGE")"
}

case "${1:-}" in
  start | stop | image) [ "$(id -u)" -eq 0 ] || die "needs root (installs packages, runs dockerd)" ;;
esac
case "${1:-}" in
  start) start ;;
  stop) stop ;;
  image) image ;;
  env) printf 'DOCKER_HOST=%s\nIMAGE=%s\nDOCKERD_LOG=%s\n' "$DOCKER_HOST" "$IMAGE" "$LOG" ;;
  *) die "usage: $0 start|image|stop|env" ;;
esac
