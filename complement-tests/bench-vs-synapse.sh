#!/usr/bin/env bash
# Plexus and Synapse side by side, in one run on one machine (docs/benchmarks.md, "Plexus and
# Synapse side by side").
#
#   complement-tests/bench-vs-synapse.sh [bench load flags...]   e.g. --senders 5 --rooms 50
#
# 1. Builds Plexus and the load tool (`bench load`) in release.
# 2. Installs Synapse (PyPI matrix-synapse, pinned like the interop tests) into a virtual
#    environment, reused while it holds that version: $PLEXUS_SYNAPSE_VENV, or
#    <target dir>/synapse-venv.
# 3. Starts Synapse on loopback (SQLite, a fresh directory), runs every scenario of the load tool
#    against it with --pid, and stops it.
# 4. Starts Plexus on loopback (a fresh data directory), runs the same, and stops it.
# 5. Prints both runs side by side with the ratios Plexus/Synapse and the targets.
#
# Both servers get the same treatment: a shared secret for /_synapse/admin/v1/register (how the
# tool makes its accounts), every rate limit on but raised to 10,000 per second with a burst of
# 10,000, and logging at warning level (so that neither writes a line per request). Everything
# else is each server's default. The machine should be otherwise idle: each scenario reports the
# CPU other programs took while it ran.
set -euo pipefail

SYNAPSE_VERSION=1.163.2 # keep in step with complement-tests/src/synapse.rs
SECRET=bench-vs-synapse-shared-secret
START_TIMEOUT=120 # seconds; Synapse's first start migrates a fresh database
SETTLE=2          # seconds between a server answering and the tool starting

repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
venv=${PLEXUS_SYNAPSE_VENV:-$target/synapse-venv}
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-vs-synapse.XXXXXX")
server_pid=

log() { echo "[bench-vs-synapse] $*" >&2; }

stop_server() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid"
        for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    server_pid=
}
trap stop_server EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until $1 answers /_matrix/client/versions, or fails with the log file $2.
wait_for() {
    for _ in $(seq $((START_TIMEOUT * 10))); do
        if curl -sf "$1/_matrix/client/versions" >/dev/null; then
            sleep "$SETTLE"
            return 0
        fi
        if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    log "the server at $1 did not come up; its log:"
    tail -50 "$2" >&2
    exit 1
}

log "building Plexus and the load tool in release (in $target)"
(cd "$repo" && cargo build --release --quiet -p plexus --bin plexus &&
    cargo build --release --quiet -p complement-tests --bin bench)
bench=$target/release/bench

python=$venv/bin/python
check="import synapse, sys; sys.exit(0 if synapse.__version__.startswith('$SYNAPSE_VERSION') else 1)"
if ! "$python" -c "$check" 2>/dev/null; then
    log "installing matrix-synapse $SYNAPSE_VERSION into $venv"
    python3 -m venv --clear "$venv"
    "$python" -m pip install --quiet --disable-pip-version-check "matrix-synapse==$SYNAPSE_VERSION"
fi

# Synapse ----------------------------------------------------------------------------------------
dir=$work/synapse
mkdir -p "$dir"
port=$(free_port)
cat >"$dir/log.yaml" <<EOF
version: 1
formatters:
  plain: {format: '%(asctime)s %(levelname)s %(name)s %(message)s'}
handlers:
  console: {class: logging.StreamHandler, formatter: plain}
root: {level: WARNING, handlers: [console]}
disable_existing_loggers: false
EOF
# Every rate limit Synapse $SYNAPSE_VERSION has, raised; the rest are Synapse's defaults.
raised='{per_second: 10000, burst_count: 10000}'
cat >"$dir/homeserver.yaml" <<EOF
server_name: localhost
pid_file: $dir/homeserver.pid
report_stats: false
listeners:
  - {port: $port, bind_addresses: ['127.0.0.1'], type: http, tls: false, x_forwarded: false,
     resources: [{names: [client], compress: false}]}
database: {name: sqlite3, args: {database: $dir/homeserver.db}}
log_config: $dir/log.yaml
media_store_path: $dir/media
signing_key_path: $dir/signing.key
registration_shared_secret: $SECRET
enable_registration: false
macaroon_secret_key: bench-vs-synapse-macaroon-secret
form_secret: bench-vs-synapse-form-secret
trusted_key_servers: []
suppress_key_server_warning: true
rc_message: $raised
rc_registration: $raised
rc_registration_token_validity: $raised
rc_login: {address: $raised, account: $raised, failed_attempts: $raised}
rc_joins: {local: $raised, remote: $raised}
rc_joins_per_room: $raised
rc_invites: {per_room: $raised, per_user: $raised, per_issuer: $raised}
rc_third_party_invite: $raised
rc_admin_redaction: $raised
rc_room_creation: $raised
rc_presence: {per_user: $raised}
rc_delayed_event_mgmt: $raised
rc_reports: $raised
rc_media_create: $raised
rc_3pid_validation: $raised
EOF
# `python -m` puts the working directory first on sys.path: run Synapse from its own directory,
# so that no stray module elsewhere shadows one of its dependencies.
cd "$dir"
"$python" -m synapse.app.homeserver --config-path "$dir/homeserver.yaml" --generate-keys >/dev/null
log "starting Synapse $SYNAPSE_VERSION on 127.0.0.1:$port ($dir)"
"$python" -m synapse.app.homeserver --config-path "$dir/homeserver.yaml" >"$dir/synapse.log" 2>&1 &
server_pid=$!
wait_for "http://127.0.0.1:$port" "$dir/synapse.log"
log "running the load tool against Synapse (pid $server_pid)"
"$bench" load --homeserver "http://127.0.0.1:$port" --register "$SECRET" --pid "$server_pid" \
    --label "Synapse $SYNAPSE_VERSION" --out "$work/synapse.json" "$@" | tee "$work/synapse.txt"
stop_server

# Plexus -----------------------------------------------------------------------------------------
dir=$work/plexus
mkdir -p "$dir"
port=$(free_port)
raised='{ per_second = 10000.0, burst = 10000 }'
cat >"$dir/plexus.toml" <<EOF
server_name = "localhost"
listen = ["127.0.0.1:$port"]
data_dir = "$dir/data"

[log]
level = "warn"

[registration]
shared_secret = "$SECRET"

[rate_limits]
enabled = true
login = $raised
failed_login = $raised
registration = $raised
message = $raised
EOF
commit=$(git -C "$repo" rev-parse --short HEAD)
log "starting Plexus ($commit) on 127.0.0.1:$port ($dir)"
"$target/release/plexus" serve --config "$dir/plexus.toml" >"$dir/plexus.log" 2>&1 &
server_pid=$!
wait_for "http://127.0.0.1:$port" "$dir/plexus.log"
log "running the load tool against Plexus (pid $server_pid)"
"$bench" load --homeserver "http://127.0.0.1:$port" --register "$SECRET" --pid "$server_pid" \
    --label "Plexus $commit" --out "$work/plexus.json" "$@" | tee "$work/plexus.txt"
stop_server

# Side by side -----------------------------------------------------------------------------------
echo
"$bench" load-compare "$work/synapse.json" "$work/plexus.json" | tee "$work/comparison.txt"
log "both runs, their figures (JSON) and the servers' logs are in $work"
