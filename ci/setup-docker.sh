#!/usr/bin/env bash
# Installs and starts what the Docker lanes need: dockerd (Debian's docker.io), the gVisor
# runtime `runsc` registered as a Docker runtime, and a static busybox for the fixture images.
#
# Idempotent; needs root. Reuses a dockerd that already answers `docker info`. Nothing is pulled:
# the fixture images are built locally FROM scratch.
#
# Network rule: dockerd runs without its bridge and without touching iptables, and runsc runs
# with the host's network (its own netstack refuses to start in the root network namespace), so
# every sandbox container uses `network_mode: host` and talks to 127.0.0.1 only.
#
# Environment: DOCKER_SETUP_TIMEOUT (seconds to wait for the daemon, default 60),
# DOCKERD_LOG (default /var/log/dockerd.log).
set -euo pipefail

started_ns=$(date +%s%N)
timeout_secs=${DOCKER_SETUP_TIMEOUT:-60}
log=${DOCKERD_LOG:-/var/log/dockerd.log}
daemon_json=/etc/docker/daemon.json
socket=/var/run/docker.sock

die() {
    echo "setup-docker: ERROR: $*" >&2
    exit 1
}
say() { echo "setup-docker: $*"; }

[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages and starts dockerd)"

# 1. Packages, only when something is missing (apt-get update once, quietly).
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
[ -x /usr/bin/runsc ] || missing+=(runsc)
# A static busybox goes into FROM-scratch images (Debian's dynamic `busybox` is replaced).
file_is_static() { ! LC_ALL=C ldd "$1" >/dev/null 2>&1; }
if ! [ -x /bin/busybox ] || ! file_is_static /bin/busybox; then
    missing+=(busybox-static)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed"
fi
command -v dockerd >/dev/null 2>&1 || die "dockerd is not installed (package docker.io)"
command -v docker >/dev/null 2>&1 || die "the docker CLI is not installed (package docker.io)"
[ -x /usr/bin/runsc ] || die "/usr/bin/runsc is not installed (package runsc)"
file_is_static /bin/busybox || die "/bin/busybox is not static (install busybox-static)"

# 2. daemon.json: the runsc runtime with host networking, no bridge, no iptables.
want_json='{
  "runtimes": {
    "runsc": { "path": "/usr/bin/runsc", "runtimeArgs": ["--network=host"] }
  },
  "bridge": "none",
  "iptables": false,
  "ip6tables": false,
  "ip-forward": false,
  "ip-masq": false
}'
mkdir -p /etc/docker
if [ ! -f "$daemon_json" ] || [ "$(cat "$daemon_json")" != "$want_json" ]; then
    if [ -f "$daemon_json" ]; then
        cp "$daemon_json" "$daemon_json.bak.$(date +%s)"
        say "replacing $daemon_json (old copy kept beside it)"
    fi
    printf '%s\n' "$want_json" >"$daemon_json"
fi

docker_answers() { timeout 10 docker info >/dev/null 2>&1; }
has_runsc() { timeout 10 docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'; }

# 3. Start dockerd unless one already answers. A running daemon without runsc is reloaded
# (SIGHUP re-reads `runtimes` from daemon.json).
if docker_answers; then
    say "dockerd already answers"
    # SIGHUP makes dockerd re-read its configuration, `runtimes` included.
    if ! has_runsc && pid=$(cat /var/run/docker.pid 2>/dev/null); then
        say "reloading dockerd ($pid) for the runsc runtime"
        kill -HUP "$pid"
    fi
else
    if [ -e /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        rm -f "$socket" /var/run/docker.pid # left by a daemon that died
    fi
    say "starting dockerd (log: $log)"
    # setsid: the daemon outlives this script and its session.
    setsid dockerd --config-file "$daemon_json" >>"$log" 2>&1 </dev/null &
fi

# 4. Wait for the daemon (a bounded polling loop is the right tool in a setup script).
deadline=$(($(date +%s) + timeout_secs))
until docker_answers && has_runsc; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "--- last lines of $log ---" >&2
        tail -n 30 "$log" >&2 2>/dev/null || true
        if docker_answers; then
            die "dockerd answers but does not list the runsc runtime after ${timeout_secs}s (check $daemon_json)"
        fi
        die "dockerd did not answer on $socket within ${timeout_secs}s"
    fi
    sleep 0.2
done

runtimes=$(docker info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}')
server=$(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')
elapsed_ms=$((($(date +%s%N) - started_ns) / 1000000))
say "ready: dockerd $server, runtimes: ${runtimes}(${elapsed_ms} ms)"
