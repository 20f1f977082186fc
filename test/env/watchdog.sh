#!/usr/bin/env bash
# watchdog.sh -- CMD ARGS...
#
# Runs CMD as a child and ties its life to the test process that spawned us. The test process holds
# the write end of our stdin pipe and never writes to it; when the test process dies for any reason
# (even SIGKILL) the kernel closes that pipe, our guard sees EOF and stops CMD. We were started with
# setsid, so our process group holds CMD and anything it forked: on the way out we signal the group
# and, if the parent is gone and WATCHDOG_CLEANUP is set, delete that directory.
#
# test/env/process.ts does not run this file by its path: it runs `bash -c 'eval
# "$DRAWBRIDGE_WATCHDOG_SCRIPT"' drawbridge-watchdog -- CMD ARGS...` with this text in that variable,
# so our command line does not name the checkout. A test run killed by its path (`pkill -f
# /path/to/checkout`) would otherwise take this watchdog with it and orphan CMD. And should we die
# anyway (SIGKILL by pid, or a pattern that matches CMD's own arguments), CMD is started with a
# parent-death signal (setpriv --pdeathsig KILL): it never outlives us.
#
# Environment:
#   WATCHDOG_STOP_SIGNAL  signal sent to CMD on a graceful stop (default TERM)
#   WATCHDOG_CLEANUP      directory to delete when the parent disappeared (optional)
# SIGTERM/SIGINT to this script forwards WATCHDOG_STOP_SIGNAL to CMD; we exit with CMD's status.
set -u
sig="${WATCHDOG_STOP_SIGNAL:-TERM}"
[[ "${1:-}" == "--" ]] && shift

unset DRAWBRIDGE_WATCHDOG_SCRIPT  # our own text: not for CMD's environment

exec 3<&0 0</dev/null  # fd 3: the parent pipe
# Linux delivers the parent-death signal when we (CMD's parent) exit, however we exit; CMD's own
# children do not inherit it, and are in our process group.
deathsig=()
command -v setpriv >/dev/null 2>&1 && deathsig=(setpriv --pdeathsig KILL --)
"${deathsig[@]}" "$@" 3<&- &
child=$!

(
  # Nobody may read our stdout/stderr once the parent is gone: writing there would raise SIGPIPE.
  trap '' PIPE
  exec >/dev/null 2>&1
  cat <&3              # returns only when the parent closed the pipe, i.e. it is gone
  kill "-$sig" "$child" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$child" 2>/dev/null || exit 0; sleep 0.1; done
  kill -KILL "$child" 2>/dev/null
) &
guard=$!

trap 'kill "-$sig" "$child" 2>/dev/null' TERM INT
while :; do
  wait "$child"; rc=$?
  kill -0 "$child" 2>/dev/null || break
done

trap '' TERM PIPE
if read -r -t 0 -u 3; then
  # EOF on the parent pipe: the test process is gone. Clean up after it.
  exec >/dev/null 2>&1
  kill -TERM -- "-$$" 2>/dev/null
  sleep 0.2
  kill -KILL "$guard" 2>/dev/null
  if [[ -n "${WATCHDOG_CLEANUP:-}" ]]; then
    # Retry: a dying server process may still be writing into it.
    for _ in 1 2 3 4 5; do rm -rf -- "$WATCHDOG_CLEANUP" 2>/dev/null; [[ -e "$WATCHDOG_CLEANUP" ]] || break; sleep 0.2; done
  fi
else
  kill "$guard" 2>/dev/null
  # Anything CMD left behind in our group goes with us (we ignore TERM ourselves).
  kill -TERM -- "-$$" 2>/dev/null
fi
exit "$rc"
