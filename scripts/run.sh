#!/usr/bin/env bash
# Starts a loopback redis-server and jobgate with config/example.json, then prints a
# curl command that enqueues a job. Ctrl-C stops both. Keys, the self-signed
# certificate and Redis's files live in run/, made on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

config=config/example.json
jobgate=build/jobgate
redis_port=$(jq -r '.redis.port // 6379' "$config")
http_address=$(jq -r '.listen.cleartext' "$config")
tls_address=$(jq -r '.listen.tls.address' "$config")

mkdir -p run/keys run/tls run/redis
if [ ! -f run/keys/dev-hs256.key ]; then
    (umask 077 && openssl rand 32 >run/keys/dev-hs256.key)
fi
# jobgate signs with dev-sign; workers hold dev-workers.seal.key and dev-sign.sign.pub.
[ -f run/keys/dev-sign.sign.key ] || "$jobgate" keygen --kind sign --kid dev-sign --dir run/keys >/dev/null
[ -f run/keys/dev-workers.seal.key ] || "$jobgate" keygen --kind seal --kid dev-workers --dir run/keys >/dev/null
if [ ! -f run/tls/cert.pem ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout run/tls/key.pem -out run/tls/cert.pem 2>/dev/null
fi

if redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
    echo "jobgate: something already answers on Redis port $redis_port; stop it first" >&2
    exit 1
fi
redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$PWD/run/redis" \
    --save "" --appendonly no --daemonize yes --pidfile "$PWD/run/redis/redis.pid" \
    --logfile "$PWD/run/redis/redis.log"

jobgate_pid=""
stop() {
    [ -n "$jobgate_pid" ] && kill "$jobgate_pid" 2>/dev/null && wait "$jobgate_pid" 2>/dev/null
    redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
    rm -f run/jobgate.pid
}
trap stop EXIT
trap 'exit 0' INT TERM

"$jobgate" check-config --config "$config"
"$jobgate" serve --config "$config" 2>run/jobgate.log &
jobgate_pid=$!
echo "$jobgate_pid" >run/jobgate.pid
for _ in $(seq 50); do
    curl -sf "http://$http_address/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
if ! curl -sf "http://$http_address/readyz" >/dev/null 2>&1; then
    echo "jobgate did not become ready; see run/jobgate.log:" >&2
    tail -5 run/jobgate.log >&2
    exit 1
fi

token=$("$jobgate" token --config "$config" --tenant acme --subject developer \
    --scope "tier:standard" --ttl 86400)
cat <<TXT

jobgate is serving on http://$http_address (h2c and HTTP/1.1) and https://$tls_address (h2, self-signed),
Redis on 127.0.0.1:$redis_port. Logs: run/jobgate.log. Ctrl-C stops both.

Enqueue a job:

curl --http2-prior-knowledge -i http://$http_address/v1/queues/mailers/jobs \\
  -H 'Authorization: Bearer $token' \\
  -H 'Content-Type: application/json' \\
  -d '{"class":"SendWelcomeEmail","args":[{"user_id":42}]}'

See it where Resque workers look, then check it as a worker would:

redis-cli -p $redis_port LRANGE resque:queue:mailers 0 -1
redis-cli -p $redis_port --raw LRANGE resque:queue:mailers 0 -1 | $jobgate verify --keys run/keys

TXT
wait "$jobgate_pid"
