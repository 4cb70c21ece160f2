#!/usr/bin/env bash
# bench/shared.sh — crs on its embedded store against crs on Redis (shared
# mode), same fake upstream, same load: 32 concurrent streams of Claude
# Code-shaped conversations (session header), interleaved over several
# rounds so machine drift weighs on every mode alike. Shared mode runs twice:
# a key without limits, and a key with every limit (concurrency, rate window,
# daily cost), whose counters are the hot path's Redis work. The Redis round
# trips per request come from crs's own go-redis hook (crs_store_round_trips_total
# on /metrics: a command, pipeline or script is one), read before and after
# each run; they include the background polls (2 per second).
#
# Usage: bash bench/shared.sh        (needs redis-server; starts its own, AOF everysec)
# Knobs: ROUNDS (3), DURATION (6s), CONCURRENCY (32), DELTAS (50).
# Writes the table to stdout and bench/results/shared.md. Only 127.0.0.1 is used;
# every process started here is stopped on exit.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-6s}
CONCURRENCY=${CONCURRENCY:-32}
DELTAS=${DELTAS:-50}
UPSTREAM_KEY=sk-bench-upstream
ENC_KEY=bench-encryption-key-0123456789abcdef0123
JWT=bench-jwt-secret-0123456789abcdef012345678

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/crs-shared-bench.XXXXXX")
BIN=$WORK/bin
PIDS=()
started_at=$(date +%s)
log() { printf '[shared-bench %3ds] %s\n' "$(($(date +%s) - started_at))" "$*" >&2; }

cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	if ((rc != 0)); then
		for f in "$WORK"/*.err; do [[ -s $f ]] && { echo "--- $(basename "$f")" >&2; tail -n 5 "$f" >&2; }; done
	fi
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	sleep 0.5
	for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 40000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
	done
	return 1
}

command -v redis-server >/dev/null || { log "redis-server not installed"; exit 1; }
log "building"
cd "$ROOT"
mkdir -p "$BIN"
go build -o "$BIN/crs" ./cmd/crs
go build -o "$BIN/fakeanthropic" ./internal/fakeupstream/cmd/fakeanthropic
go build -o "$BIN/loadgen" ./bench/loadgen
go build -o "$BIN/sharedreport" ./bench/sharedreport

REDIS_PORT=$(free_port)
mkdir -p "$WORK/redis"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$WORK/redis" --save "" \
	--appendonly yes --appendfsync everysec >"$WORK/redis.out" 2>"$WORK/redis.err" &
PIDS+=($!)
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
SHARED_ENV=(REDIS_URL=redis://127.0.0.1:$REDIS_PORT REDIS_KEY_PREFIX=bench: ENCRYPTION_KEY=$ENC_KEY JWT_SECRET=$JWT)

"$BIN/fakeanthropic" -deltas "$DELTAS" -keys "$UPSTREAM_KEY" -name fast >"$WORK/fake.out" 2>"$WORK/fake.err" &
PIDS+=($!)
for _ in $(seq 100); do [[ -s $WORK/fake.out ]] && break; sleep 0.1; done
FAKE_URL=$(head -n 1 "$WORK/fake.out")

declare -A URL KEY
# setup MODE DIR ENV… : one account, a plain key (and, for the shared store, a
# key with every limit), then serve.
crs_cli() { local dir=$1; shift; env "${ENVS[@]}" DATA_DIR="$dir" "$BIN/crs" "$@"; }
serve() {
	local name=$1 dir=$2 port
	port=$(free_port)
	env "${ENVS[@]}" HOST=127.0.0.1 PORT="$port" DATA_DIR="$dir" LOG_LEVEL=warn CLAUDE_API_URL="$FAKE_URL" \
		ADMIN_USERNAME=bench ADMIN_PASSWORD=bench-password-not-secret SHUTDOWN_TIMEOUT=2s \
		"$BIN/crs" serve >"$WORK/$name.out" 2>"$WORK/$name.err" &
	PIDS+=($!)
	for _ in $(seq 150); do
		curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/health" 2>/dev/null && break
		sleep 0.1
	done
	BASE=http://127.0.0.1:$port
}
key_of() { sed -n 's/.*"key" *: *"\([^"]*\)".*/\1/p'; }

ENVS=()
mkdir -p "$WORK/embedded"
crs_cli "$WORK/embedded" accounts add --platform claude --type api-key --name a --api-key "$UPSTREAM_KEY" --base-url "$FAKE_URL" --json >/dev/null
KEY[embedded]=$(crs_cli "$WORK/embedded" keys create --name k --json | key_of)
serve embedded "$WORK/embedded"
URL[embedded]=$BASE

ENVS=("${SHARED_ENV[@]}")
mkdir -p "$WORK/shared"
crs_cli "$WORK/shared" accounts add --platform claude --type api-key --name a --api-key "$UPSTREAM_KEY" --base-url "$FAKE_URL" --json >/dev/null
KEY[shared]=$(crs_cli "$WORK/shared" keys create --name k --json | key_of)
KEY[shared-limits]=$(crs_cli "$WORK/shared" keys create --name limited --concurrency 64 --rate-window 1h \
	--rate-requests 100000000 --daily-cost 100000 --json | key_of)
serve shared "$WORK/shared"
URL[shared]=$BASE URL[shared-limits]=$BASE

trips() { curl -fsS "$1/metrics" | awk '$1 == "crs_store_round_trips_total" { printf "%.0f", $2 }'; }

RESULTS=$WORK/results.jsonl
: >"$RESULTS"
run() {
	local mode=$1 round=$2 before after
	[[ $mode == shared* ]] && before=$(trips "${URL[$mode]}")
	"$BIN/loadgen" -url "${URL[$mode]}/api/v1/messages" -key "${KEY[$mode]}" -concurrency "$CONCURRENCY" \
		-duration "$DURATION" -sessions 64 -label "$mode/$round" -json -max-time 60s >>"$RESULTS"
	if [[ $mode == shared* ]]; then
		after=$(trips "${URL[$mode]}")
		printf '{"label":"%s/%s","trips":%s}\n' "$mode" "$round" "$((after - before))" >>"$RESULTS"
	fi
	log "$mode round $round done"
}

log "warming up"
for m in embedded shared shared-limits; do
	"$BIN/loadgen" -url "${URL[$m]}/api/v1/messages" -key "${KEY[$m]}" -concurrency "$CONCURRENCY" -requests 500 -sessions 64 >/dev/null
done
modes=(embedded shared shared-limits)
for round in $(seq "$ROUNDS"); do
	# rotate the order each round
	order=("${modes[@]:$(((round - 1) % 3))}" "${modes[@]:0:$(((round - 1) % 3))}")
	for m in "${order[@]}"; do run "$m" "$round"; done
done

mkdir -p "$ROOT/bench/results"
note="Command: \`bash bench/shared.sh\` — $ROUNDS interleaved rounds of $CONCURRENCY concurrent streams for $DURATION each, 64 conversations (session header), fake Anthropic upstream with $DELTAS deltas per stream, no delay; Redis $(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p') on loopback with AOF everysec; total time $(($(date +%s) - started_at)) s."
"$BIN/sharedreport" -note "$note" <"$RESULTS" | tee "$ROOT/bench/results/shared.md"
