#!/usr/bin/env bash
# Stop the daemons tests/slurm/start.sh STATE_DIR started (by their pid files), and only those.
set -uo pipefail

STATE=${1:?usage: stop.sh STATE_DIR}
log() { echo "slurm-test: $*" >&2; }
[[ -f $STATE/started ]] || { log "nothing started in $STATE"; exit 0; }

# cancel what is left of the test's jobs first, so slurmd has no job steps to keep alive
command -v scancel >/dev/null && scancel --user="$(id -un)" 2>/dev/null || true

stop() {  # name pidfile
    local name=$1 pidfile=$2 pid
    grep -qx "$name" "$STATE/started" || return 0
    [[ -s $pidfile ]] || { log "$name: no pid file $pidfile"; return 0; }
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name ($pid) ignored SIGTERM for 10 s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    log "$name ($pid) stopped"
}

stop slurmd "$STATE/run/slurmd.pid"
stop slurmctld "$STATE/run/slurmctld.pid"
stop munged "$STATE/run/munged.pid"
rm -f "$STATE/started"
# the configuration start.sh wrote for this state dir (never someone else's)
if grep -qF "# written by trickbench tests/slurm/start.sh (state in $STATE)" /etc/slurm/slurm.conf 2>/dev/null; then
    rm -f /etc/slurm/slurm.conf
fi
exit 0
