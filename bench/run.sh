#!/usr/bin/env bash
# bench/run.sh — crs against a bare httputil.ReverseProxy, same fake upstream,
# same load, interleaved (bare, crs, bare, crs … over several rounds) so that
# machine drift weighs on both alike. Writes a markdown table to stdout and to
# bench/results/latest.md (raw loadgen JSON lines in bench/results/latest.jsonl).
#
# Usage: bash bench/run.sh
# Knobs (environment): ROUNDS (3), TTFB_DURATION (4s), LOAD_DURATION (6s),
# HOLD (1000 streams), HOLD_DELTAS (200), HOLD_DELAY (20ms), DELTAS (50).
#
# Only 127.0.0.1 is used. Every process started here is stopped on exit.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
TTFB_DURATION=${TTFB_DURATION:-4s}
LOAD_DURATION=${LOAD_DURATION:-6s}
HOLD=${HOLD:-1000}
HOLD_DELTAS=${HOLD_DELTAS:-200}
HOLD_DELAY=${HOLD_DELAY:-20ms}
DELTAS=${DELTAS:-50}
UPSTREAM_KEY=sk-bench-upstream

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS_DIR=$ROOT/bench/results
WORK=$(mktemp -d "${TMPDIR:-/tmp}/crs-bench.XXXXXX")
BIN=$WORK/bin
PIDS=()
started_at=$(date +%s)

log() { printf '[bench %3ds] %s\n' "$(($(date +%s) - started_at))" "$*" >&2; }

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if ((rc != 0)); then
		log "failed (exit $rc); last lines of each process log:"
		for f in "$WORK"/*.err; do
			[[ -s $f ]] || continue
			echo "--- $(basename "$f")" >&2
			tail -n 5 "$f" >&2
		done
	fi
	local pid
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for _ in $(seq 50); do
		local alive=0
		for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.1
	done
	for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Each held stream costs a socket in the generator, two in the proxy and one
# in the fake upstream.
need_fds=$((HOLD * 3 + 1024))
cur_fds=$(ulimit -n)
if [[ $cur_fds != unlimited ]] && ((cur_fds < need_fds)); then
	ulimit -n "$need_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
	log "raised open-file limit from $cur_fds to $(ulimit -n)"
fi

log "building into $BIN"
cd "$ROOT"
mkdir -p "$BIN"
go build -o "$BIN/crs" ./cmd/crs
go build -o "$BIN/fakeanthropic" ./internal/fakeupstream/cmd/fakeanthropic
go build -o "$BIN/bareproxy" ./bench/bareproxy
go build -o "$BIN/loadgen" ./bench/loadgen
go build -o "$BIN/report" ./bench/report

# start_printing_url NAME CMD… starts a process that prints its base URL as
# the first stdout line; sets STARTED_PID and STARTED_URL.
start_printing_url() {
	local name=$1
	shift
	"$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
	STARTED_PID=$!
	PIDS+=("$STARTED_PID")
	for _ in $(seq 100); do
		if [[ -s $WORK/$name.out ]]; then
			STARTED_URL=$(head -n 1 "$WORK/$name.out")
			return 0
		fi
		kill -0 "$STARTED_PID" 2>/dev/null || break
		sleep 0.1
	done
	log "$name did not start"
	return 1
}

# free_port prints a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# init_crs NAME UPSTREAM_URL: a fresh data dir with one api-key account on the
# upstream and one relay key (in CRS_KEY), without serving it yet.
init_crs() {
	local name=$1 upstream=$2 dir=$WORK/$1-data
	mkdir -p "$dir"
	"$BIN/crs" accounts add --platform claude --type api-key --name "$name" \
		--api-key "$UPSTREAM_KEY" --base-url "$upstream" --json --data-dir "$dir" >"$WORK/$name.account.json"
	CRS_KEY=$("$BIN/crs" keys create --name "$name" --json --data-dir "$dir" |
		sed -n 's/.*"key" *: *"\([^"]*\)".*/\1/p')
	[[ $CRS_KEY == cr_* ]] || {
		log "could not create a relay key for $name"
		return 1
	}
}

# serve_crs NAME UPSTREAM_URL: crs serving the data dir of init_crs NAME;
# sets STARTED_PID and STARTED_URL once /health answers.
serve_crs() {
	local name=$1 upstream=$2 dir=$WORK/$1-data port
	port=$(free_port)
	HOST=127.0.0.1 PORT=$port DATA_DIR=$dir LOG_LEVEL=warn CLAUDE_API_URL=$upstream \
		ADMIN_USERNAME=bench ADMIN_PASSWORD=bench-password-not-secret SHUTDOWN_TIMEOUT=2s \
		"$BIN/crs" serve >>"$WORK/$name.out" 2>>"$WORK/$name.err" &
	STARTED_PID=$!
	PIDS+=("$STARTED_PID")
	STARTED_URL=http://127.0.0.1:$port
	for _ in $(seq 150); do
		curl -fsS -o /dev/null --max-time 1 "$STARTED_URL/health" 2>/dev/null && return 0
		kill -0 "$STARTED_PID" 2>/dev/null || break
		sleep 0.1
	done
	log "$name did not become healthy"
	return 1
}

# start_crs NAME UPSTREAM_URL: init_crs, then serve_crs.
start_crs() {
	init_crs "$1" "$2"
	serve_crs "$1" "$2"
}

log "starting fake upstreams, bare proxy and crs"
start_printing_url fake "$BIN/fakeanthropic" -deltas "$DELTAS" -keys "$UPSTREAM_KEY" -name fast
FAKE_URL=$STARTED_URL
start_printing_url fake-hold "$BIN/fakeanthropic" -deltas "$HOLD_DELTAS" -delta-delay "$HOLD_DELAY" -keys "$UPSTREAM_KEY" -name hold
FAKE_HOLD_URL=$STARTED_URL

declare -A PID URL KEY
start_printing_url bare "$BIN/bareproxy" -upstream "$FAKE_URL" -upstream-key "$UPSTREAM_KEY"
PID[bare]=$STARTED_PID URL[bare]=$STARTED_URL/api/v1/messages
start_crs crs "$FAKE_URL"
PID[crs]=$STARTED_PID URL[crs]=$STARTED_URL/api/v1/messages KEY[crs]=$CRS_KEY
# The bare proxy ignores the client's key; send it one of the same shape.
KEY[bare]=$CRS_KEY

# The memory of held streams is measured on fresh processes each round: a Go
# process keeps heap it once used for minutes, so a second hold on the same
# process would measure the first one's leftovers.
init_crs crs-hold "$FAKE_HOLD_URL"
KEY[crs-hold]=$CRS_KEY KEY[bare-hold]=$CRS_KEY

# stop_proc PID: SIGTERM, wait (bounded), SIGKILL; forget the pid so the exit
# trap never signals a number the system may have reused.
stop_proc() {
	local pid=$1 keep=() p
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

# start_hold_proxies: fresh bare-hold and crs-hold, each having served one
# slow stream, so lazy start-up work is in the idle RSS and not the peak.
start_hold_proxies() {
	start_printing_url bare-hold "$BIN/bareproxy" -upstream "$FAKE_HOLD_URL" -upstream-key "$UPSTREAM_KEY"
	PID[bare-hold]=$STARTED_PID URL[bare-hold]=$STARTED_URL/api/v1/messages
	serve_crs crs-hold "$FAKE_HOLD_URL"
	PID[crs-hold]=$STARTED_PID URL[crs-hold]=$STARTED_URL/api/v1/messages
	local warm=() p pid
	for p in bare-hold crs-hold; do
		"$BIN/loadgen" -url "${URL[$p]}" -key "${KEY[$p]}" -concurrency 1 -requests 1 -max-time 60s >/dev/null &
		warm+=($!)
	done
	for pid in "${warm[@]}"; do wait "$pid"; done
}

RESULTS=$WORK/results.jsonl
: >"$RESULTS"

# load PROC LABEL ARGS…: one loadgen run against PROC watching its pid.
load() {
	local proc=$1 label=$2
	shift 2
	"$BIN/loadgen" -url "${URL[$proc]}" -key "${KEY[$proc]}" -watch-pid "${PID[$proc]}" \
		-label "$label" -json "$@" >"$WORK/run.json"
	cat "$WORK/run.json" >>"$RESULTS"
	sed -e 's/,"ttfb_samples_us":\[[^]]*\]//' "$WORK/run.json" |
		sed -n 's/.*"requests":\([0-9]*\),"ok":\([0-9]*\),"errors":\([0-9]*\).*"req_per_sec":\([0-9.]*\).*"ttfb_p50_ms":\([0-9.]*\).*"ttfb_p99_ms":\([0-9.]*\).*/requests \1 ok \2 errors \3, \4 req\/s, TTFB p50 \5 ms p99 \6 ms/p' |
		while read -r line; do log "$label: $line"; done
}

log "warming up (connections, caches)"
for p in bare crs; do
	"$BIN/loadgen" -url "${URL[$p]}" -key "${KEY[$p]}" -concurrency 32 -requests 500 -max-time 60s >/dev/null
done

for round in $(seq "$ROUNDS"); do
	# Alternate which proxy goes first, so neither always runs on a machine
	# the other one just warmed (or heated).
	order=(bare crs)
	((round % 2 == 0)) && order=(crs bare)
	log "round $round of $ROUNDS (${order[*]})"
	for p in "${order[@]}"; do
		load "$p" "a/$p/$round" -concurrency 1 -duration "$TTFB_DURATION" -body-bytes 300 -samples -max-time 60s
	done
	for p in "${order[@]}"; do
		load "$p" "b/$p/$round" -concurrency 32 -duration "$LOAD_DURATION" -body-bytes 300 -max-time 60s
	done
	for p in "${order[@]}"; do
		load "$p" "c/$p/$round" -concurrency 32 -duration "$LOAD_DURATION" -body-bytes 65536 -max-time 60s
	done
	start_hold_proxies
	for p in "${order[@]}"; do
		load "$p-hold" "d/$p/$round" -hold "$HOLD" -body-bytes 300 -timeout 120s -max-time 150s
	done
	stop_proc "${PID[bare-hold]}"
	stop_proc "${PID[crs-hold]}"
done

mkdir -p "$RESULTS_DIR"
cp "$RESULTS" "$RESULTS_DIR/latest.jsonl"
note="Command: \`bash bench/run.sh\` — $ROUNDS interleaved rounds; a: 1 stream for $TTFB_DURATION; b, c: 32 streams for $LOAD_DURATION; d: $HOLD streams of $HOLD_DELTAS deltas $HOLD_DELAY apart. Upstream: fake Anthropic, $DELTAS deltas per stream, no delay. Total time $(($(date +%s) - started_at)) s."
"$BIN/report" -go "$(go env GOVERSION)" -note "$note" <"$RESULTS" >"$RESULTS_DIR/latest.md"
cat "$RESULTS_DIR/latest.md"
log "done: $RESULTS_DIR/latest.md"
