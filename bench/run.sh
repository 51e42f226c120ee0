#!/usr/bin/env bash
# Measures the enqueue pipeline against its floors, in one run on this machine:
#   enqueue  h2load POSTing jobs through the whole pipeline into Redis: token, policy,
#            tenant rate (local and in Redis, set high enough never to refuse), queue
#            depth check, strict parse, schema, one sealed field, Ed25519 signature,
#            Redis write
#   light    the same with 20 requests in flight (about half the rate), for latency
#   bare     the enqueue run without a tenant rate or depth cap: what those checks cost
#   alone    the enqueue run again with every job signed alone (jobs_per_signature 1)
#   batch    POST .../jobs:batch with BATCH jobs a request; its rate is in jobs/s
#   keys     single jobs from a Node client without Idempotency-Key, with a new key per
#            request and with one key for all (replays): what the keys cost
#   floor    the same server answering GET /healthz (no auth, no parse, no Redis)
#   redis    redis-benchmark RPUSH with 16-command pipelines
# and prints req/s, p50/p99 latency, jobgate CPU microseconds per request and the
# ratio to the floor. Settings: REQUESTS, CLIENTS, STREAMS, THREADS (environment).
set -euo pipefail
cd "$(dirname "$0")/.."

requests=${REQUESTS:-200000}
clients=${CLIENTS:-50}
streams=${STREAMS:-10}
threads=${THREADS:-2}
batch=${BATCH:-100}
jobgate=${JOBGATE:-build/jobgate}

work=$(mktemp -d)
redis_port=""
jobgate_pid=""
cleanup() {
    [ -n "$jobgate_pid" ] && kill "$jobgate_pid" 2>/dev/null && wait "$jobgate_pid" 2>/dev/null
    [ -n "$redis_port" ] && redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        ss -Htln "sport = :$port" | grep -q . || { echo "$port"; return; }
    done
}

# Seconds of CPU (user + system) a process has used so far.
cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

# Seconds of CPU Redis has used so far.
redis_cpu_seconds() {
    redis-cli -p "$redis_port" info cpu |
        awk -F: '/^used_cpu_(sys|user):/ {sum += $2} END {printf "%.6f", sum}'
}

# Bytes of memory Redis uses now.
redis_memory() {
    redis-cli -p "$redis_port" info memory | awk -F: '/^used_memory:/ {print $2 + 0}'
}

# Percentile P (0-100) of the third column of h2load log files.
percentile_ms() {
    cat "$2".* | awk '{print $3}' | sort -n |
        awk -v p="$1" '{v[NR] = $1} END {i = int(NR * p / 100); if (i < 1) i = 1; printf "%.2f", v[i] / 1000}'
}

# cpu_mark: notes the CPU jobgate and Redis have used so far; cpu_per_request N then
# prints what each used since, in microseconds per request: "jobgate redis".
cpu_mark() {
    cpu_mark_jobgate=$(cpu_seconds "$jobgate_pid")
    cpu_mark_redis=$(redis_cpu_seconds)
}
cpu_per_request() {
    awk -v j0="$cpu_mark_jobgate" -v j1="$(cpu_seconds "$jobgate_pid")" \
        -v r0="$cpu_mark_redis" -v r1="$(redis_cpu_seconds)" -v n="$1" \
        'BEGIN {printf "%.1f %.1f", (j1 - j0) * 1e6 / n, (r1 - r0) * 1e6 / n}'
}

# run_h2load NAME URL [h2load options...]: prints "req/s p50 p99 cpu_us_per_request
# redis_cpu_us_per_request".
run_h2load() {
    local name=$1 url=$2 output rate cpu
    shift 2
    cpu_mark
    output=$(h2load -n "$requests" -c "$clients" -m "$streams" -t 1 \
        --log-file="$work/$name.log.0" "$@" "$url")
    cpu=$(cpu_per_request "$requests")
    if ! grep -q "requests: $requests total, $requests started, $requests done, $requests succeeded" <<<"$output"; then
        echo "$name: not every request succeeded:" >&2
        grep -E '^(requests|status codes):' <<<"$output" >&2
        exit 1
    fi
    rate=$(grep -oE '[0-9.]+ req/s' <<<"$output" | head -1 | cut -d' ' -f1)
    echo "$rate $(percentile_ms 50 "$work/$name.log") $(percentile_ms 99 "$work/$name.log") $cpu"
}

# run_keyed KEYS: POSTs the job keyed_requests times through bench/keyed_post.mjs with
# Idempotency-Keys (none, unique or same); prints "req/s jobgate_cpu_us_per_request
# redis_cpu_us_per_request". The Node client, not jobgate, sets its rate.
run_keyed() {
    local rate
    cpu_mark
    rate=$(node bench/keyed_post.mjs "http://127.0.0.1:$http_port/v1/queues/mailers/jobs" \
        "$token" "$work/job.json" "$1" "$keyed_requests" 10 10)
    echo "$rate $(cpu_per_request "$keyed_requests")"
}

redis_port=$(free_port)
http_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
    --daemonize yes --logfile "$work/redis.log" --dir "$work"
openssl rand 32 >"$work/hs256.key"
"$jobgate" keygen --kind sign --kid bench-sign --dir "$work" >/dev/null
"$jobgate" keygen --kind seal --kid bench-workers --dir "$work" >/dev/null
jq --arg key "$work/hs256.key" --arg listen "127.0.0.1:$http_port" --arg schemas "$PWD/schemas" \
    --arg work "$work" --argjson redis_port "$redis_port" --argjson threads "$threads" \
    '.threads = $threads | .listen = {cleartext: $listen} | .redis.port = $redis_port
     | .redis.max_in_flight = 100000 | .auth.keys = [{kid: "bench", alg: "HS256", file: $key}]
     | .envelope.signing_key = {kid: "bench-sign", file: "\($work)/bench-sign.sign.key"}
     | .envelope.sealing_keys = {"bench-workers": {file: "\($work)/bench-workers.seal.pub"}}
     | .tiers |= map_values(.seal_to = "bench-workers")
     | .tenants = {"*": {jobs_per_second: 1000000000, burst: 1000000000}}
     | .queues.mailers.max_depth = 1000000000
     | .classes |= with_entries(.value.schema = "\($schemas)/\(.key).json")' \
    config/example.json >"$work/config.json"

# reload JQ_FILTER: rewrites the config with the filter and waits until jobgate took it.
reloads=0
reload() {
    jq "$1" "$work/config.json" >"$work/next.json"
    mv "$work/next.json" "$work/config.json"
    reloads=$((reloads + 1))
    kill -HUP "$jobgate_pid"
    for _ in $(seq 50); do
        [ "$(grep -c '"reloaded' "$work/jobgate.log")" -ge "$reloads" ] && return
        sleep 0.1
    done
    echo "jobgate did not reload" >&2
    exit 1
}

"$jobgate" serve --config "$work/config.json" 2>"$work/jobgate.log" &
jobgate_pid=$!
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$http_port/readyz" >/dev/null && break
    sleep 0.1
done

token=$("$jobgate" token --config "$work/config.json" --kid bench --tenant acme \
    --scope "tier:standard" --ttl 3600)
# A password reset: its reset_token is secret, so every job seals one field.
printf '%s' '{"class":"SendPasswordReset","args":[{"user_id":42,"email":"ada@example.com",' \
    '"reset_token":"rst_5f2b8c1e9a7d4036b1e8c2f49d0a6e73","expires_at":"2026-12-03T21:00:00Z"}]}' \
    >"$work/job.json"

enqueue=$(run_h2load enqueue "http://127.0.0.1:$http_port/v1/queues/mailers/jobs" \
    -H "authorization: Bearer $token" -H "content-type: application/json" -d "$work/job.json")
# Latency under lighter load: 20 connections with one request each in flight, which
# comes to about half the throughput above. (h2load's --rps sends in bursts, which
# measures its own batching more than the server.)
half=$(clients=20 streams=1 run_h2load half "http://127.0.0.1:$http_port/v1/queues/mailers/jobs" \
    -H "authorization: Bearer $token" -H "content-type: application/json" -d "$work/job.json")
floor=$(run_h2load floor "http://127.0.0.1:$http_port/healthz")
# What was written is what a worker accepts: the last job verifies and opens.
redis-cli -p "$redis_port" --raw lindex resque:queue:mailers -1 |
    "$jobgate" verify --keys "$work" --queue mailers >/dev/null
written=$(redis-cli -p "$redis_port" llen resque:queue:mailers)
redis-cli -p "$redis_port" del resque:queue:mailers >/dev/null

# The same server without a tenant rate or a depth cap: what those checks cost.
reload 'del(.tenants) | .queues.mailers.max_depth = 0'
bare=$(run_h2load bare "http://127.0.0.1:$http_port/v1/queues/mailers/jobs" \
    -H "authorization: Bearer $token" -H "content-type: application/json" -d "$work/job.json")
written=$((written + $(redis-cli -p "$redis_port" llen resque:queue:mailers)))
redis-cli -p "$redis_port" del resque:queue:mailers >/dev/null

# Reloaded to sign every job alone, with the checks back: what signing together saves.
reload '.envelope.jobs_per_signature = 1
    | .tenants = {"*": {jobs_per_second: 1000000000, burst: 1000000000}}
    | .queues.mailers.max_depth = 1000000000'
alone=$(run_h2load alone "http://127.0.0.1:$http_port/v1/queues/mailers/jobs" \
    -H "authorization: Bearer $token" -H "content-type: application/json" -d "$work/job.json")
redis-cli -p "$redis_port" --raw lindex resque:queue:mailers -1 |
    "$jobgate" verify --keys "$work" --queue mailers >/dev/null
written=$((written + $(redis-cli -p "$redis_port" llen resque:queue:mailers)))
redis-cli -p "$redis_port" del resque:queue:mailers >/dev/null

# Batches of $batch jobs, signed 16 to a signature again, every check on.
reload '.envelope.jobs_per_signature = 16'
jq -c --argjson n "$batch" '{jobs: [range($n) as $i | .]}' "$work/job.json" >"$work/batch.json"
batch_requests=$((requests / batch))
batched=$(requests=$batch_requests clients=10 streams=2 run_h2load batch \
    "http://127.0.0.1:$http_port/v1/queues/mailers/jobs:batch" \
    -H "authorization: Bearer $token" -H "content-type: application/json" -d "$work/batch.json")
redis-cli -p "$redis_port" --raw lindex resque:queue:mailers -1 |
    "$jobgate" verify --keys "$work" --queue mailers >/dev/null
written=$((written + $(redis-cli -p "$redis_port" llen resque:queue:mailers)))
redis-cli -p "$redis_port" del resque:queue:mailers >/dev/null

# Single jobs again from a Node client, without Idempotency-Key, with a new key each,
# and with one key for all (a replay each, after the first): what the keys cost.
keyed_requests=$((requests / 4))
memory_start=$(redis_memory)
keys_none=$(run_keyed none)
memory_none=$(redis_memory)
keys_unique=$(run_keyed unique)
memory_unique=$(redis_memory)
remembered=$(redis-cli -p "$redis_port" --scan --pattern 'resque:jobgate:idempotency:*' | wc -l)
keys_same=$(run_keyed same)
keyed_written=$(redis-cli -p "$redis_port" llen resque:queue:mailers)
redis_rate=$(redis-benchmark -p "$redis_port" -t rpush -P 16 -n 1000000 -q |
    grep -oE '[0-9.]+ requests per second' | cut -d' ' -f1)

read -r enqueue_rate enqueue_p50 enqueue_p99 enqueue_cpu enqueue_redis <<<"$enqueue"
read -r half_rate half_p50 half_p99 half_cpu half_redis <<<"$half"
read -r floor_rate floor_p50 floor_p99 floor_cpu floor_redis <<<"$floor"
read -r alone_rate alone_p50 alone_p99 alone_cpu alone_redis <<<"$alone"
read -r bare_rate bare_p50 bare_p99 bare_cpu bare_redis <<<"$bare"
read -r batch_rate batch_p50 batch_p99 batch_cpu batch_redis <<<"$batched"
batch_jobs=$(awk -v r="$batch_rate" -v n="$batch" 'BEGIN {print r * n}')
batch_cpu=$(awk -v c="$batch_cpu" -v n="$batch" 'BEGIN {printf "%.1f", c / n}')
batch_redis=$(awk -v c="$batch_redis" -v n="$batch" 'BEGIN {printf "%.1f", c / n}')
echo "jobgate bench: $(date -u +%Y-%m-%d), $(nproc) cores, $threads jobgate threads," \
    "h2load -c $clients -m $streams, $requests requests, h2c"
# row NAME RATE P50 P99 CPU REDIS_CPU: one line of the table, with the rate's share of the floor.
row() {
    printf '%-8s %12.0f %9s %9s %12s %12s %9s\n' "$1" "$2" "$3" "$4" "$5" "$6" \
        "$(awk -v a="$2" -v b="$floor_rate" 'BEGIN {printf "%.0f%%", 100 * a / b}')"
}
printf '%-8s %12s %9s %9s %12s %12s %9s\n' path 'req/s' 'p50 ms' 'p99 ms' 'cpu us/req' \
    'redis us/req' 'of floor'
row enqueue "$enqueue_rate" "$enqueue_p50" "$enqueue_p99" "$enqueue_cpu" "$enqueue_redis"
row light "$half_rate" "$half_p50" "$half_p99" "$half_cpu" "$half_redis"
row bare "$bare_rate" "$bare_p50" "$bare_p99" "$bare_cpu" "$bare_redis"
row alone "$alone_rate" "$alone_p50" "$alone_p99" "$alone_cpu" "$alone_redis"
row batch "$batch_jobs" "$batch_p50" "$batch_p99" "$batch_cpu" "$batch_redis"
echo "(batch: jobs/s and CPU per job; its latencies are per request of $batch jobs)"
row floor "$floor_rate" "$floor_p50" "$floor_p99" "$floor_cpu" "$floor_redis"
printf '%-8s %12.0f\n' redis "$redis_rate"
# keyed NAME RESULT: one line of the Idempotency-Key table.
keyed() {
    read -r rate cpu redis_cpu <<<"$2"
    printf '%-8s %12.0f %12s %12s\n' "$1" "$rate" "$cpu" "$redis_cpu"
}
echo "Idempotency-Key, single jobs from a Node HTTP/2 client (-c 10 -m 10)," \
    "$keyed_requests requests a run:"
printf '%-8s %12s %12s %12s\n' keys 'req/s' 'cpu us/req' 'redis us/req'
keyed none "$keys_none"
keyed unique "$keys_unique"
keyed same "$keys_same"
echo "Redis memory per remembered key: $(((memory_unique - 2 * memory_none + memory_start) \
    / keyed_requests)) bytes; keys remembered after the unique run: $remembered of $keyed_requests"
echo "jobs in Redis after the keyed runs: $keyed_written of $((2 * keyed_requests + 1))"
expected=$((4 * requests + batch_requests * batch))
echo "jobs in Redis after the enqueue runs: $written of $expected"
[ "$remembered" -eq "$keyed_requests" ] && [ "$keyed_written" -eq "$((2 * keyed_requests + 1))" ] &&
    [ "$written" -eq "$expected" ]
