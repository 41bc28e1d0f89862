# Ports for the integration tests that listen on TCP (sourced, not run):
#
#   . "$(dirname "$0")/lib_ports.sh"
#
# A fixed range or one derived from $$ lets two tests run by `ctest -j` pick the same port.
# Here the kernel picks them (a socket bound to port 0 gets one that nothing holds), and a
# server that still loses its port (another process bound it between the pick and the
# start) is noticed from its own log and started again on new ports by rd_retry_port.
#
# The functions work under `set -u` and `set -e` alike.

RD_PY=/usr/bin/python3
# The status a start function returns when its server could not bind its port.
RD_PORT_TAKEN=75
# What the servers the tests start say when their port is taken: radraft serve and web
# ("cannot listen on"), DCMTK's storescp ("Address already in use"), Orthanc ("is
# privileged or already in use").
RD_BIND_FAILURE='already in use|cannot listen on'

# rd_free_port: prints one TCP port that is free on every local address.
rd_free_port() {
    rd_free_ports 1
}

# rd_free_ports N: prints N distinct free TCP ports on one line, separated by spaces
# (all N are bound at once, so the kernel cannot hand out one twice).
rd_free_ports() {
    "$RD_PY" -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("", 0))
print(*[s.getsockname()[1] for s in socks])
for s in socks:
    s.close()
' "$1"
}

# rd_pid_listens PID PORT...: true when process PID itself holds a listening socket on each
# PORT (read from /proc, so that another process answering on the port does not count);
# otherwise says which ports it does not listen on.
rd_pid_listens() {
    "$RD_PY" - "$@" <<'PY'
import os, sys
pid, want = sys.argv[1], {int(p) for p in sys.argv[2:]}
listening = {}  # socket inode -> port, for listening sockets on the ports wanted
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        rows = open(table).read().splitlines()[1:]
    except OSError:
        continue
    for row in rows:
        col = row.split()
        port = int(col[1].rsplit(":", 1)[1], 16)
        if col[3] == "0A" and port in want:  # 0A: TCP_LISTEN
            listening[col[9]] = port
held = set()
try:
    fds = os.listdir(f"/proc/{pid}/fd")
except OSError:
    sys.exit(f"process {pid} is gone")
for fd in fds:
    try:
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        continue
    if target.startswith("socket:[") and target[8:-1] in listening:
        held.add(listening[target[8:-1]])
missing = sorted(want - held)
if missing:
    sys.exit(f"process {pid} does not listen on port(s) {' '.join(map(str, missing))}")
PY
}

# rd_log_size FILE: prints the size of FILE in bytes (0 when it does not exist), for the
# OFFSET of rd_wait_listening when a log is appended to across restarts.
rd_log_size() {
    if [ -e "$1" ]; then wc -c <"$1"; else echo 0; fi
}

# rd_wait_listening WHAT PID LOG OFFSET TIMEOUT_S PORT...: waits until process PID listens
# on every PORT. Returns 0 then; RD_PORT_TAKEN when the process exited and its log (from
# byte OFFSET on) says a port was taken; 1, saying what it saw and the end of the log, when
# the process exited for another reason or did not listen within TIMEOUT_S seconds.
rd_wait_listening() {
    local what=$1 pid=$2 log=$3 off=$4 timeout=$5 said="" deadline
    shift 5
    deadline=$((SECONDS + timeout + 1))
    while :; do
        said=$(rd_pid_listens "$pid" "$@" 2>&1) && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            if tail -c +$((off + 1)) "$log" 2>/dev/null | grep -aqiE "$RD_BIND_FAILURE"; then
                echo "note: $what could not listen on port(s) $*: $(tail -c +$((off + 1)) "$log" |
                    grep -aiE -m1 "$RD_BIND_FAILURE")"
                return $RD_PORT_TAKEN
            fi
            echo "$what (pid $pid) exited before it listened on port(s) $*; the end of $log:"
            tail -c +$((off + 1)) "$log" 2>/dev/null | tail -n 20
            return 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            echo "$what: not listening after $timeout s ($said); the end of $log:"
            tail -c +$((off + 1)) "$log" 2>/dev/null | tail -n 20
            return 1
        fi
        sleep 0.1
    done
}

# rd_retry_port TRIES FUNCTION ARGS...: runs FUNCTION ARGS... until it returns anything but
# RD_PORT_TAKEN, at most TRIES times, and returns what it last returned (1 when every try
# lost its port). FUNCTION picks new ports (rd_free_port) each time it is called.
rd_retry_port() {
    local tries=$1 i rc
    shift
    for ((i = 1; i <= tries; i++)); do
        rc=0
        "$@" || rc=$?
        [ $rc -eq $RD_PORT_TAKEN ] || return $rc
        echo "note: $1 lost a port to another process (try $i of $tries); new ports"
    done
    echo "$1 lost a port to another process on each of $tries tries"
    return 1
}

# rd_start_storescp DIR [OPTION...]: starts DCMTK's storescp on a port the kernel picks,
# writing what it receives under DIR (created) with the storescp OPTIONs, its output
# appended to storescp.log; sets SCP (its pid) and SCP_PORT once it listens. A port taken
# by another process meanwhile is picked again; returns non-zero when storescp did not start.
rd_start_storescp() { mkdir -p "$1" && rd_retry_port 5 rd__storescp_once "$@"; }
rd__storescp_once() {
    local dir=$1 off
    shift
    SCP_PORT=$(rd_free_port)
    off=$(rd_log_size storescp.log)
    storescp -od "$dir" "$@" $SCP_PORT >>storescp.log 2>&1 &
    SCP=$!
    rd_wait_listening storescp $SCP storescp.log "$off" 20 $SCP_PORT
}

# rd_hold_ports N: N free ports that the kernel picks, kept bound (not listening) by a
# background process until it is killed or the calling shell exits; sets RD_PORTS to them
# (separated by spaces) and RD_HOLDER to the process. While held a port refuses connections
# as if nothing were there, yet no other process can take it: not an outgoing connection's
# ephemeral port, not another test's rd_free_port. A server that binds with SO_REUSEADDR
# (DCMTK's tools, Orthanc, radraft serve and web) still listens on it. This is for a port
# that must stay the same while its server is down: a destination queued before its peer
# starts, a peer stopped and started again.
rd_hold_ports() {
    local ready
    ready=$(mktemp)
    "$RD_PY" - "$$" "$1" >"$ready" 2>&1 <<'PY' &
import os, socket, sys, time
parent, n = int(sys.argv[1]), int(sys.argv[2])
socks = [socket.socket() for _ in range(n)]
for s in socks:
    # Bound first without SO_REUSEADDR, so that the kernel picks a port no socket holds;
    # the option set afterwards lets a server that sets it too listen on the port.
    s.bind(("", 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
print(*[s.getsockname()[1] for s in socks], flush=True)
while os.getppid() == parent:
    time.sleep(0.5)
PY
    RD_HOLDER=$!
    while kill -0 $RD_HOLDER 2>/dev/null && ! grep -q . "$ready"; do sleep 0.05; done
    RD_PORTS=$(cat "$ready")
    rm -f "$ready"
    if ! [[ $RD_PORTS =~ ^[0-9\ ]+$ ]]; then
        echo "cannot hold $1 port(s): $RD_PORTS"
        return 1
    fi
}
