#!/usr/bin/env bash
# Starts a Docker engine for the docker test suite if none answers. Idempotent.
# No bridge, no iptables: function containers run with --network none, and nothing
# here may use Docker's bridge network. Never fails: without an engine the docker
# tests themselves fail under CI=true, with a clearer message than this script could give.
set -u
if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "start-dockerd: WARNING: dockerd is not installed; docker tests will not find an engine" >&2
  exit 0
fi
log="${DOCKERD_LOG:-/tmp/dockerd.log}"
pidfile=/var/run/docker.pid
pid=""
if [ -f "$pidfile" ]; then
  old="$(cat "$pidfile" 2>/dev/null)"
  if [ -n "$old" ] && grep -qs '^dockerd$' "/proc/$old/comm" && ! grep -qs '^State:[[:space:]]*Z' "/proc/$old/status"; then
    pid="$old"  # a dockerd still starting up: wait for it rather than start a second one
  else
    rm -f "$pidfile"  # left by a killed dockerd; dockerd refuses to start while it exists
  fi
fi
if [ -z "$pid" ]; then
  nohup dockerd --bridge=none --iptables=false --ip-masq=false >"$log" 2>&1 &
  pid=$!
  echo "start-dockerd: started dockerd (pid $pid, log $log)"
fi
for _ in $(seq 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  kill -0 "$pid" 2>/dev/null || break  # it exited: no point waiting out the minute
  sleep 1
done
echo "start-dockerd: WARNING: dockerd is not answering (waited up to 60 s); see $log" >&2
tail -n 20 "$log" >&2 || true
exit 0
