#!/usr/bin/env bash
# make demo: a server with embedded SQLite and one agent enrolled into it, in
# monitor mode, and the web console with an officer to sign in as, all on
# loopback. Ctrl-C stops both.
#
#   installer/dev/demo.sh BIN_DIR VAR_DIR
set -euo pipefail
bin=${1:?bin dir}
var=${2:?var dir}
addr=127.0.0.1:8443
adminaddr=127.0.0.1:8445
console=127.0.0.1:8444
mkdir -p "$var"
srvdir=$var/server
agentdir=$var/agent
log=$var/demo-logs
mkdir -p "$log"

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping…"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  echo "stopped. Data is kept in $var (make clean removes it)."
}
trap stop INT TERM EXIT

# 1. The server. On first start it creates the CA and the first admin token.
# TPM vendor roots: MAMORI_EK_ROOTS=/path/to/roots.pem (PEM, roots and
# intermediates, see docs/tpm.md "Adding vendor roots") makes a TPM key
# "attested" when its EK certificate chains to one; without it a TPM key is
# "TPM key, not attested" until an officer runs mamorictl tpm approve-ek.
ekroots=()
if [ -n "${MAMORI_EK_ROOTS:-}" ]; then ekroots=(--ek-roots "$MAMORI_EK_ROOTS"); fi
"$bin/mamori-server" serve --data "$srvdir" --listen "$addr" --admin-listen "$adminaddr" --console "$console" "${ekroots[@]}" \
  --admin-token-file "$srvdir/admin.token" >"$log/server.out" 2>"$log/server.log" &
pids+=($!)
for _ in $(seq 1 100); do
  [ -s "$srvdir/admin.token" ] && (exec 3<>/dev/tcp/127.0.0.1/8445) 2>/dev/null && break
  if ! kill -0 "${pids[0]}" 2>/dev/null; then cat "$log/server.log" >&2; echo "server did not start" >&2; exit 1; fi
  sleep 0.1
done
cat "$log/server.out"

# mamorictl talks to the admin API's port, never the agents'.
export MAMORI_SERVER=$adminaddr
export MAMORI_CA_FILE=$srvdir/ca.pem
# The first admin's token (admin.token) is single use: on the first run it
# is exchanged for a named token, kept in demo.token (0600).
if [ ! -s "$srvdir/demo.token" ]; then
  tokjson=$(MAMORI_TOKEN=$(cat "$srvdir/admin.token") "$bin/mamorictl" api-token create --name demo --expires 30d -o json)
  (umask 077; printf '%s' "$tokjson" | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p' | head -1 >"$srvdir/demo.token")
fi
MAMORI_TOKEN=$(cat "$srvdir/demo.token")
export MAMORI_TOKEN

# 2. A short report interval so the demo moves; still monitor mode.
"$bin/mamorictl" policy get -o json >"$var/policy.json"
sed -i -E -e 's/"report_?[iI]nterval": *"[^"]*"/"report_interval": "10s"/' -e 's/"max_?[rR]eport_?[aA]ge": *"[^"]*"/"max_report_age": "60s"/' "$var/policy.json"
"$bin/mamorictl" policy set "$var/policy.json" --reason "demo: report every 10 s" >/dev/null || true

# 3. An enrolment token, and the agent enrolled with it (pinned to the CA fingerprint).
tokjson=$("$bin/mamorictl" token create --expires 1h --uses 1 --note demo -o json)
token=$(printf '%s' "$tokjson" | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p' | head -1)
fp=$(printf '%s' "$tokjson" | sed -n 's/.*"ca_fingerprint": *"\([^"]*\)".*/\1/p;s/.*"caFingerprint": *"\([^"]*\)".*/\1/p' | head -1)
"$bin/mamori-agent" enroll --state-dir "$agentdir" --server "$addr" --token "$token" --ca-fingerprint "$fp"

# 4. An officer for the console (first run only): a random password in a
# 0600 file and a TOTP secret, printed once, for an authenticator app or
# oathtool.
if [ ! -s "$srvdir/console.password" ]; then
  (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$srvdir/console.password")
  "$bin/mamori-server" operator create --data "$srvdir" --name demo-officer --role officer \
    --password-file "$srvdir/console.password" >"$var/console-officer.txt"
  chmod 600 "$var/console-officer.txt"
fi
totp=$(sed -n 's/.*: \([A-Z2-7]\{16,\}\)$/\1/p' "$var/console-officer.txt" | head -1)

# 5. The agent, in the foreground of this script.
"$bin/mamori-agent" run --state-dir "$agentdir" 2>"$log/agent.log" &
pids+=($!)
sleep 2

cat <<TXT

mamori demo is running: server on $addr (agents) and $adminaddr (mamorictl), one agent (monitor mode), data in $var.
Logs: $log/server.log, $log/agent.log

Web console: https://$console/  (its certificate is from the demo's own CA,
$srvdir/ca.pem: the browser warns unless you import that CA)
  login:    demo-officer
  password: $(cat "$srvdir/console.password")
  TOTP:     secret $totp — add it to an authenticator app, or: oathtool --totp -b $totp

Try, in another terminal:
  export MAMORI_SERVER=$adminaddr MAMORI_CA_FILE=$srvdir/ca.pem MAMORI_TOKEN=\$(cat $srvdir/demo.token)
  $bin/mamorictl fleet
  $bin/mamorictl devices
  $bin/mamorictl device show $(hostname)
  $bin/mamorictl events
  LANG=ja_JP.UTF-8 $bin/mamorictl devices

Ctrl-C stops both.
TXT
"$bin/mamorictl" devices || true
wait "${pids[@]}"
