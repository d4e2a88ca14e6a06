#!/usr/bin/env bash
# A real one-node SLURM cluster on loopback for tests/test_slurm.py (recipe: shared/docs/platform.md).
#   tests/slurm/start.sh STATE_DIR     -> munged (unless one runs), slurmctld, slurmd; waits for `sinfo` idle
#   tests/slurm/stop.sh STATE_DIR      -> stops exactly the daemons this script started
# Needs root and apt (Debian/Ubuntu). Writes /etc/slurm/slurm.conf (the plugin's job step clears SLURM_CONF,
# so the file must be at its default place); refuses to replace one it did not write.
# Exit codes: 0 ready; 2 not root; 3 no apt and no SLURM; 4 a foreign slurm.conf; 1 anything else.
set -euo pipefail

STATE=${1:?usage: start.sh STATE_DIR}
MARKER="# written by trickbench tests/slurm/start.sh"
CONF=/etc/slurm/slurm.conf
log() { echo "slurm-test: $*" >&2; }

[[ $(id -u) -eq 0 ]] || { log "needs root (to install packages and run slurmd)"; exit 2; }

# ---------------------------------------------------------------------------------------------- packages
have_slurm() { command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sinfo >/dev/null \
               && command -v munged >/dev/null; }
if ! have_slurm; then
    command -v apt-get >/dev/null || { log "SLURM is not installed and apt-get is not available"; exit 3; }
    PKGS=(slurmctld slurmd slurm-client munge)
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${PKGS[@]}" >"$STATE.apt.log" 2>&1; then
        log "apt-get install failed; running apt-get update first"
        apt-get update >>"$STATE.apt.log" 2>&1 || { log "apt-get update failed (see $STATE.apt.log)"; exit 3; }
        apt-get install -y --no-install-recommends "${PKGS[@]}" >>"$STATE.apt.log" 2>&1 \
            || { log "apt-get install ${PKGS[*]} failed (see $STATE.apt.log)"; exit 3; }
    fi
    have_slurm || { log "packages installed but the SLURM commands are missing"; exit 1; }
fi

# ------------------------------------------------------------------------------------------------ config
if [[ -e $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
    log "$CONF exists and was not written by this script; not touching a real SLURM installation"
    exit 4
fi
mkdir -p "$STATE"/{state,spool,log,run}
HOST=$(hostname -s)
CPUS=$(nproc)
REAL=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
MEM=$(( ${REAL:-2000} * 9 / 10 ))
mkdir -p /etc/slurm
cat >"$CONF" <<EOF
$MARKER (state in $STATE)
ClusterName=trickbench-test
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
MinJobAge=300
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
: >"$STATE/started"   # the daemons stop.sh may stop, one name per line

# ----------------------------------------------------------------------------------------------- daemons
# munge: reuse a running munged (someone else's), else start one as the munge user
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already running; reusing it"
else
    [[ -s /etc/munge/munge.key ]] || { mungekey --create --force 2>/dev/null || create-munge-key -f; }
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge/munge.key
    chmod 0755 /run/munge
    rm -f /run/munge/munged.pid
    runuser -u munge -- munged </dev/null >>"$STATE/log/munged.out" 2>&1
    for _ in $(seq 50); do [[ -s /run/munge/munged.pid ]] && break; sleep 0.1; done
    cp /run/munge/munged.pid "$STATE/run/munged.pid"
    echo munged >>"$STATE/started"
    munge -n | unmunge >/dev/null || { log "munged does not answer"; exit 1; }
fi

# the daemons fork into the background; their stdio goes to files, not to the caller's pipes
slurmctld -i </dev/null >>"$STATE/log/slurmctld.out" 2>&1
echo slurmctld >>"$STATE/started"
slurmd </dev/null >>"$STATE/log/slurmd.out" 2>&1
echo slurmd >>"$STATE/started"

for i in $(seq 120); do
    state=$(sinfo -h -o %t 2>/dev/null | head -1 || true)
    if [[ $state == idle ]]; then
        log "ready after ${i}x0.5 s: $(sinfo -h -o '%P %D %t %c CPUs %m MB')"
        exit 0
    fi
    if [[ $state == down* || $state == drain* || $state == inval* ]]; then
        scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true
    fi
    sleep 0.5
done
log "the node did not become idle (state: ${state:-none}); logs in $STATE/log"
tail -20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
exit 1
