# Waits for the integration tests (sourced, not run):
#
#   . "$(dirname "$0")/lib_wait.sh"
#
# A fixed sleep before a check either wastes time or, on a loaded machine, decides the
# result. Here a wait polls a check until it holds, up to a deadline, and when the deadline
# passes it says what it waited for and what the check last saw.
#
# The functions work under `set -u` and `set -e` alike.

# rd_wait_for DESCRIPTION TIMEOUT_S CMD...: runs CMD every 0.1 s until it succeeds, and
# returns 0 then. After TIMEOUT_S seconds (a decimal is fine) it prints "timed out after
# TIMEOUT_S s waiting for DESCRIPTION; the last check said: ..." and returns 1.
#
# CMD runs in this shell, so that it may set variables for what follows; its output is kept,
# not shown, and is in RD_WAIT_SAID afterwards. A check says what it saw:
#
#   delivered() { st=$(db "SELECT state FROM outbox"); echo "outbox: $st"; [ "$st" = done ]; }
#   rd_wait_for "the delivery" 20 delivered || fail "not delivered"
rd_wait_for() {
    local what=$1 timeout=$2 out rc now deadline
    shift 2
    out=$(mktemp)
    deadline=$(($(rd_now_us) + $(rd_seconds_to_us "$timeout")))
    while :; do
        rc=0
        "$@" >"$out" 2>&1 || rc=$?
        RD_WAIT_SAID=$(tail -c 2000 "$out")
        [ $rc -eq 0 ] && break
        now=$(rd_now_us)
        if [ "$now" -ge $deadline ]; then
            echo "timed out after $timeout s waiting for $what; the last check said: ${RD_WAIT_SAID:-(nothing)}"
            break
        fi
        sleep 0.1
    done
    rm -f "$out"
    return $rc
}

# rd_now_us: microseconds since the epoch (from bash's clock, without a process).
rd_now_us() {
    local t=$EPOCHREALTIME
    echo $((10#${t/[.,]/}))
}

# rd_seconds_to_us SECONDS: SECONDS (an integer or a decimal such as 0.5) in microseconds.
rd_seconds_to_us() {
    local whole=${1%%.*} frac=000000
    [[ $1 == *.* ]] && frac=${1#*.}000000
    echo $((${whole:-0} * 1000000 + 10#${frac:0:6}))
}
