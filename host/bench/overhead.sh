#!/usr/bin/env bash
# Gateway overhead benchmark (issue 4): a fixed-reply nginx upstream, the gateway with the
# default `hybrid` policy on, and LiteLLM's proxy (1 worker) in front of the same upstream,
# measured with oha in one run.
#
#   bash host/bench/overhead.sh
#
# Env knobs:
#   SWITCHYARD_BIN   gateway binary (default target/debug/switchyard: deps at opt-level 3,
#                    the switchyard crate at opt-level 1; use target/release/switchyard for
#                    release figures)
#   DURATION         seconds per measurement (default 10)
#   C_HIGH           concurrency of the throughput runs (default 32)
#   SKIP_LITELLM=1   leave LiteLLM out
#   POLICY           shipped policy the gateway runs (default hybrid; a name from
#                    target/policies); `learned` also loads its trained router
#                    (policies/learned/router.bin) as the `router` classifier
#   PROMPT           the user message every request sends (default "Classify: great
#                    product")
#   WARM_INSTANCES   the policy's warm_instances (default 16, what the embedded default
#                    gives the shipped hybrid policy; 0 = a fresh instance per decision)
#   LEDGER_URL       also run a second gateway on this PostgreSQL ledger (`[ledger] url`),
#                    measured as `gateway_pg` beside the SQLite one; "start" starts a
#                    throwaway local server (initdb in the temp dir). Both gateways then
#                    give the `default` tenant a hard cap, so every reservation is the
#                    capped one (on PostgreSQL, a conditional statement per request).
#   REPLICAS=N       (with LEDGER_URL) N gateways on the PostgreSQL ledger behind the
#                    nginx load balancer, measured as `lb_1` (the balancer in front of one
#                    of them) and `lb_N` (in front of all N): the aggregate RPS of N replicas
#                    against one, each through the same balancer
#   UI=1             give the gateway an admin token, so the dashboard and admin API are
#                    mounted (what an operator runs); nobody watches unless WATCH=1
#   WATCH=1          (implies UI=1) a dashboard watcher on /admin/events for the whole run;
#                    the report counts the decisions it received and the ones it missed
#   RATE=N           also send the gateway N requests/s for DURATION (oha -q, c=C_HIGH):
#                    latency at a fixed load, e.g. RATE=1000 with and without WATCH=1
#   NGINX_PORT / GW_PORT / LITELLM_PORT / GW_PG_PORT / PG_PORT / LB_PORT
#                    (defaults 18181 / 18182 / 18183 / 18184 / 18185 / 18186; replica i
#                    listens on GW_PG_PORT + 10 + i, the balancers on LB_PORT and LB_PORT + 1)
#
# Installs what is missing: nginx (apt), oha (cargo install into target/bench-tools),
# litellm[proxy] (venv in target/bench-venv). Writes target/bench-overhead.json.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10}"
C_HIGH="${C_HIGH:-32}"
NGINX_PORT="${NGINX_PORT:-18181}"
GW_PORT="${GW_PORT:-18182}"
LITELLM_PORT="${LITELLM_PORT:-18183}"
SKIP_LITELLM="${SKIP_LITELLM:-0}"
WARM_INSTANCES="${WARM_INSTANCES:-16}"
LEDGER_URL="${LEDGER_URL:-}"
GW_PG_PORT="${GW_PG_PORT:-18184}"
PG_PORT="${PG_PORT:-18185}"
REPLICAS="${REPLICAS:-1}"
LB_PORT="${LB_PORT:-18186}"
WATCH="${WATCH:-0}"
UI="${UI:-$WATCH}"
RATE="${RATE:-}"
ADMIN_TOKEN=""
[ "$UI" = 1 ] && ADMIN_TOKEN="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
BIN="${SWITCHYARD_BIN:-$ROOT/target/debug/switchyard}"
POLICY_NAME="${POLICY:-hybrid}"
POLICY="$ROOT/target/policies/$POLICY_NAME.wasm"
PROMPT="${PROMPT:-Classify: great product}"
CLASSIFIERS=""
[ "$POLICY_NAME" = learned ] && CLASSIFIERS=$'[classifiers]\nrouter = "'"$ROOT"$'/policies/learned/router.bin"'

TOOLS="$ROOT/target/bench-tools"
VENV="$ROOT/target/bench-venv"
OUT_JSON="$ROOT/target/bench-overhead.json"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ------------------------------------------------------------------ installs
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
NGINX="$(command -v nginx || true)"
[ -z "$NGINX" ] && [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx
if [ -z "$NGINX" ]; then
  log "installing nginx"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq nginx-light >/dev/null 2>&1 || $SUDO apt-get install -y -qq nginx >/dev/null
  NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
fi
[ -x "$NGINX" ] || die "nginx not found"

OHA="$(command -v oha || true)"
[ -z "$OHA" ] && [ -x "$TOOLS/bin/oha" ] && OHA="$TOOLS/bin/oha"
if [ -z "$OHA" ]; then
  log "installing oha into $TOOLS (cargo install, a few minutes)"
  cargo install oha --locked --root "$TOOLS" >&2
  OHA="$TOOLS/bin/oha"
fi

if [ "$SKIP_LITELLM" != 1 ] && [ ! -x "$VENV/bin/litellm" ]; then
  log "installing litellm[proxy] into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'litellm[proxy]'
fi

if [ ! -x "$BIN" ]; then
  log "building $BIN"
  case "$BIN" in
    */target/release/*) cargo build --release -p switchyard >&2 ;;
    *) cargo build -p switchyard >&2 ;;
  esac
fi
[ -f "$POLICY" ] || bash policies/build.sh rust >&2
[ -f "$POLICY" ] || die "no policy component $POLICY (POLICY names one in target/policies)"

# ------------------------------------------------------------------ processes
TMP="$(mktemp -d /tmp/switchyard-bench.XXXXXX)"
PIDS=()
PG_STOP=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ "${#PG_STOP[@]}" = 0 ] || "${PG_STOP[@]}" >/dev/null 2>&1 || true
  [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # url, seconds, [auth header]
  local url="$1" secs="$2" i
  for ((i = 0; i < secs * 10; i++)); do
    if curl -fsS -o /dev/null ${3:+-H "$3"} "$url" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

REPLY='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"positive"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13}}'

[ "$REPLICAS" -gt 1 ] && [ -z "$LEDGER_URL" ] && die "REPLICAS needs LEDGER_URL (replicas share a PostgreSQL ledger)"
# The load balancers in front of the replicas (REPLICAS > 1): LB_PORT to the first only,
# LB_PORT + 1 to all of them; keep-alive connections to the gateways, as a deployment has.
BALANCERS=""
if [ "$REPLICAS" -gt 1 ]; then
  all=""
  for ((i = 1; i <= REPLICAS; i++)); do all+="server 127.0.0.1:$((GW_PG_PORT + 10 + i));"; done
  BALANCERS="
  upstream one_replica { server 127.0.0.1:$((GW_PG_PORT + 11)); keepalive 64; }
  upstream all_replicas { $all keepalive 64; }
  server {
    listen 127.0.0.1:$LB_PORT;
    location / { proxy_pass http://one_replica; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
  }
  server {
    listen 127.0.0.1:$((LB_PORT + 1));
    location / { proxy_pass http://all_replicas; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
  }"
fi

mkdir -p "$TMP/nginx/logs"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location /v1/chat/completions {
      default_type application/json;
      return 200 '$REPLY';
    }
  }
$BALANCERS
}
EOF
"$NGINX" -e "$TMP/nginx/logs/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" \
  >"$TMP/nginx/stdout.log" 2>&1 &
PIDS+=($!)
UP="http://127.0.0.1:$NGINX_PORT"
wait_http "$UP/v1/chat/completions" 10 || { cat "$TMP/nginx/logs/error.log" >&2; die "nginx did not start"; }
log "nginx upstream on $UP"

if [ "$LEDGER_URL" = start ]; then
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
  [ -x "$PG_BIN/initdb" ] || die "LEDGER_URL=start needs PostgreSQL's server binaries (apt install postgresql)"
  PG_RUN=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the postgres user"
    chown postgres "$TMP"; PG_RUN=(runuser -u postgres --)
  fi
  "${PG_RUN[@]}" "$PG_BIN/initdb" -D "$TMP/pg" -U switchyard --auth=trust >/dev/null
  "${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$TMP/pg" -l "$TMP/pg.log" -w \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $TMP" start >/dev/null
  PG_STOP=("${PG_RUN[@]}" "$PG_BIN/pg_ctl" -D "$TMP/pg" -m fast -w stop)
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U switchyard bench
  LEDGER_URL="postgres://switchyard@127.0.0.1:$PG_PORT/bench"
  log "throwaway PostgreSQL on port $PG_PORT"
fi
TENANTS=""
[ -n "$LEDGER_URL" ] && TENANTS=$'[tenants.default]\nhard_cap_usd = 1000000'

mkdir -p "$TMP/gw/cache"
cat >"$TMP/gw/switchyard.toml" <<EOF
[server]
listen = "127.0.0.1:$GW_PORT"

[policy]
path = "$POLICY"
cache_dir = "$TMP/gw/cache"
warm_instances = $WARM_INSTANCES

[[backends]]
name = "bench"
kind = "openai_compatible"
base_url = "$UP/v1"
models = ["gpt-4o-mini"]

[ledger]
path = "$TMP/gw/ledger.db"

$TENANTS

$CLASSIFIERS
EOF
SWITCHYARD_ADMIN_TOKEN="$ADMIN_TOKEN" RUST_LOG=warn "$BIN" serve --config "$TMP/gw/switchyard.toml" \
  >"$TMP/gw/log" 2>&1 &
GW_PID=$!
PIDS+=($GW_PID)
GW="http://127.0.0.1:$GW_PORT"
wait_http "$GW/readyz" 120 || {
  grep -v '^ *[0-9]*: *0x' "$TMP/gw/log" | tail -20 >&2
  curl -sS "$GW/readyz" >&2 || true
  kill -0 "$GW_PID" 2>/dev/null || log "the gateway exited"
  die "gateway not ready"
}
sleep 1
RSS_IDLE_KB="$(awk '/^VmRSS/ {print $2}' "/proc/$GW_PID/status")"
RSS_IDLE_ANON_KB="$(awk '/^RssAnon/ {print $2}' "/proc/$GW_PID/status")"
PROFILE="$(case "$BIN" in */release/*) echo release ;; */debug/*) echo "debug (deps opt-level 3, crate opt-level 1)" ;; *) echo custom ;; esac)"
log "gateway $BIN [$PROFILE] on $GW (warm_instances $WARM_INSTANCES), idle RSS ${RSS_IDLE_KB} kB (anon ${RSS_IDLE_ANON_KB} kB)"

if [ -n "$LEDGER_URL" ]; then
  mkdir -p "$TMP/gwpg"
  sed -e "s#^listen = .*#listen = \"127.0.0.1:$GW_PG_PORT\"#" \
      -e "s#^path = \"$TMP/gw/ledger.db\"#url = \"$LEDGER_URL\"#" \
      "$TMP/gw/switchyard.toml" >"$TMP/gwpg/switchyard.toml"
  RUST_LOG=warn "$BIN" serve --config "$TMP/gwpg/switchyard.toml" >"$TMP/gwpg/log" 2>&1 &
  PIDS+=($!)
  GWPG="http://127.0.0.1:$GW_PG_PORT"
  wait_http "$GWPG/readyz" 120 || { tail -20 "$TMP/gwpg/log" >&2; die "PostgreSQL gateway not ready"; }
  log "gateway on the PostgreSQL ledger on $GWPG"
  for ((i = 1; i <= REPLICAS && REPLICAS > 1; i++)); do
    mkdir -p "$TMP/replica$i"
    sed -e "s#^listen = .*#listen = \"127.0.0.1:$((GW_PG_PORT + 10 + i))\"#" \
        "$TMP/gwpg/switchyard.toml" >"$TMP/replica$i/switchyard.toml"
    RUST_LOG=warn "$BIN" serve --config "$TMP/replica$i/switchyard.toml" >"$TMP/replica$i/log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$((GW_PG_PORT + 10 + i))/readyz" 120 || { tail -20 "$TMP/replica$i/log" >&2; die "replica $i not ready"; }
  done
  [ "$REPLICAS" -gt 1 ] && log "$REPLICAS replicas on the PostgreSQL ledger behind nginx on :$LB_PORT (one) and :$((LB_PORT + 1)) (all)"
fi

PROMPT_JSON="$(printf '%s' "$PROMPT" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')"
GW_BODY='{"model":"auto","messages":[{"role":"user","content":'"$PROMPT_JSON"'}],"max_tokens":16}'
UP_BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":'"$PROMPT_JSON"'}],"max_tokens":16}'
probe="$(curl -sS -w ' HTTP %{http_code}' -H 'content-type: application/json' -d "$GW_BODY" "$GW/v1/chat/completions")"
case "$probe" in *"HTTP 200") ;; *) tail -20 "$TMP/gw/log" >&2; die "gateway probe failed: $probe" ;; esac

LL_KEY=""
if [ "$SKIP_LITELLM" != 1 ]; then
  LL_KEY="sk-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  mkdir -p "$TMP/litellm"
  cat >"$TMP/litellm/config.yaml" <<EOF
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: $UP/v1
      api_key: sk-dummy
litellm_settings:
  telemetry: false
  set_verbose: false
EOF
  (cd "$TMP/litellm" && LITELLM_MASTER_KEY="$LL_KEY" LITELLM_LOG=ERROR \
    LITELLM_LOCAL_MODEL_COST_MAP=True NO_DOCS=True \
    exec "$VENV/bin/litellm" --config "$TMP/litellm/config.yaml" --host 127.0.0.1 \
    --port "$LITELLM_PORT" --num_workers 1) >"$TMP/litellm/log" 2>&1 &
  PIDS+=($!)
  LL="http://127.0.0.1:$LITELLM_PORT"
  wait_http "$LL/health/liveliness" 180 || { tail -30 "$TMP/litellm/log" >&2; die "litellm not ready"; }
  probe="$(curl -sS -w ' HTTP %{http_code}' -H 'content-type: application/json' \
    -H "authorization: Bearer $LL_KEY" -d "$UP_BODY" "$LL/v1/chat/completions")"
  case "$probe" in *"HTTP 200") ;; *) tail -30 "$TMP/litellm/log" >&2; die "litellm probe failed: $probe" ;; esac
  log "litellm $("$VENV/bin/pip" show litellm 2>/dev/null | awk '/^Version/ {print $2}') on $LL"
fi

# ------------------------------------------------------------------ measurements
# run NAME CONC URL BODY [auth header]: a short warm-up, then DURATION seconds of load.
run() {
  local name="$1" conc="$2" url="$3" body="$4" auth="${5:-}"
  local args=(--no-tui -w --output-format json -m POST -H 'content-type: application/json' -d "$body")
  [ -n "$auth" ] && args+=(-H "$auth")
  "$OHA" "${args[@]}" -c "$conc" -z 2s "$url" >/dev/null 2>&1 || true
  log "measuring $name at c=$conc for ${DURATION}s"
  "$OHA" "${args[@]}" -c "$conc" -z "${DURATION}s" "$url" >"$TMP/$name.c$conc.json"
}
# gw_metrics TAG: the gateway's policy counters so far (sums over all labels).
gw_metrics() {
  curl -fsS "$GW/metrics" | awk -v tag="$1" '
    /^switchyard_policy_fallback_decisions_total/ {fb += $NF}
    /^switchyard_policy_failures_total/ {pf += $NF}
    /^switchyard_policy_decision_seconds_sum/ {ds += $NF}
    /^switchyard_policy_decision_seconds_count/ {dc += $NF}
    /^switchyard_requests_total/ {rq += $NF}
    END {printf "%s %d %d %d %.9f %d\n", tag, rq, fb, pf, ds, dc}' >>"$TMP/gw_metrics.txt" || true
}
if [ "$WATCH" = 1 ]; then
  curl -sSN -H "authorization: Bearer $ADMIN_TOKEN" "$GW/admin/events" >"$TMP/events.txt" 2>&1 &
  PIDS+=($!)
  sleep 0.5
  grep -q '^event: ready' "$TMP/events.txt" || die "the dashboard watcher did not connect: $(head -c 300 "$TMP/events.txt")"
  log "a dashboard watcher follows /admin/events"
fi
gw_metrics start
TARGETS=(direct gateway)
run direct 1 "$UP/v1/chat/completions" "$UP_BODY"
run gateway 1 "$GW/v1/chat/completions" "$GW_BODY"
gw_metrics c1
if [ -n "$LEDGER_URL" ]; then
  TARGETS+=(gateway_pg)
  run gateway_pg 1 "$GWPG/v1/chat/completions" "$GW_BODY"
fi
if [ "$SKIP_LITELLM" != 1 ]; then
  TARGETS+=(litellm)
  run litellm 1 "$LL/v1/chat/completions" "$UP_BODY" "authorization: Bearer $LL_KEY"
fi
run direct "$C_HIGH" "$UP/v1/chat/completions" "$UP_BODY"
gw_metrics pre_high
run gateway "$C_HIGH" "$GW/v1/chat/completions" "$GW_BODY"
gw_metrics high
[ -n "$LEDGER_URL" ] && run gateway_pg "$C_HIGH" "$GWPG/v1/chat/completions" "$GW_BODY"
if [ "$REPLICAS" -gt 1 ]; then
  TARGETS+=(lb_1 "lb_$REPLICAS")
  for c in 1 "$C_HIGH"; do
    run lb_1 "$c" "http://127.0.0.1:$LB_PORT/v1/chat/completions" "$GW_BODY"
    run "lb_$REPLICAS" "$c" "http://127.0.0.1:$((LB_PORT + 1))/v1/chat/completions" "$GW_BODY"
  done
fi
[ "$SKIP_LITELLM" != 1 ] && run litellm "$C_HIGH" "$LL/v1/chat/completions" "$UP_BODY" "authorization: Bearer $LL_KEY"
if [ -n "$RATE" ]; then
  log "measuring the gateway at $RATE requests/s for ${DURATION}s"
  "$OHA" --no-tui -w --output-format json -m POST -H 'content-type: application/json' -d "$GW_BODY" \
    -c "$C_HIGH" -q "$RATE" -z "${DURATION}s" "$GW/v1/chat/completions" >"$TMP/rate.json"
fi
gw_metrics end
sleep 2
RSS_AFTER_KB="$(awk '/^VmRSS/ {print $2}' "/proc/$GW_PID/status")"

# ------------------------------------------------------------------ report
LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"
UI="$UI" WATCH="$WATCH" RATE="$RATE" POLICY_NAME="$POLICY_NAME" PROMPT="$PROMPT" \
python3 - "$TMP" "$C_HIGH" "$OUT_JSON" "$RSS_IDLE_KB" "$RSS_AFTER_KB" "$RSS_IDLE_ANON_KB" "$BIN" "$PROFILE" "$LOAD" "$(nproc)" "$WARM_INSTANCES" "${TARGETS[@]}" <<'PY'
import json, os, sys
tmp, c_high, out, rss_idle, rss_after, rss_anon, binary, profile, load, cores, warm = sys.argv[1:12]
targets = sys.argv[12:]
ui, watch, rate = os.environ["UI"] == "1", os.environ["WATCH"] == "1", os.environ["RATE"]
policy, prompt = os.environ["POLICY_NAME"], os.environ["PROMPT"]

def stats(name, c):
    d = json.load(open(f"{tmp}/{name}.c{c}.json"))
    codes = d.get("statusCodeDistribution", {})
    ok = codes.get("200", 0)
    total = sum(codes.values()) + sum(d.get("errorDistribution", {}).values())
    p = d["latencyPercentiles"]
    return {
        "requests": total, "ok": ok, "non_200": total - ok,
        "errors": d.get("errorDistribution", {}),
        "rps": d["summary"]["requestsPerSec"],
        "p50_us": p["p50"] * 1e6, "p99_us": p["p99"] * 1e6,
    }

res = {t: {"c1": stats(t, 1), f"c{c_high}": stats(t, c_high)} for t in targets}
hi = f"c{c_high}"
d1 = res["direct"]["c1"]
report = {
    "binary": binary, "profile": profile, "cores": int(cores), "loadavg_at_end": load,
    "warm_instances": int(warm), "policy": policy, "prompt_chars": len(prompt),
    "concurrency_high": int(c_high), "results": res,
    "gateway_idle_rss_kb": int(rss_idle), "gateway_rss_after_load_kb": int(rss_after),
    "gateway_idle_rss_anon_kb": int(rss_anon),
    "added_latency_us": {}, "ratios": {},
}
for t in targets[1:]:
    report["added_latency_us"][t] = {
        "p50": res[t]["c1"]["p50_us"] - d1["p50_us"],
        "p99": res[t]["c1"]["p99_us"] - d1["p99_us"],
    }
g = res["gateway"][hi]["rps"]
report["ratios"]["gateway_rps_over_direct"] = g / res["direct"][hi]["rps"]
if "litellm" in res:
    report["ratios"]["gateway_rps_over_litellm"] = g / max(res["litellm"][hi]["rps"], 1e-9)
# Policy counters of the gateway per phase (includes the 2 s warm-ups).
try:
    m = {}
    for line in open(f"{tmp}/gw_metrics.txt"):
        tag, rq, fb, pf, ds, dc = line.split()
        m[tag] = (int(rq), int(fb), int(pf), float(ds), int(dc))
    pol = {}
    for name, a, b in (("c1", "start", "c1"), (hi, "pre_high", "high")):
        if a in m and b in m:
            d = [y - x for x, y in zip(m[a], m[b])]
            pol[name] = {"requests": d[0], "policy_fallback_decisions": d[1],
                         "policy_failures": d[2],
                         "policy_decision_mean_us": d[3] / d[4] * 1e6 if d[4] else None}
    report["gateway_policy"] = pol
except OSError:
    pol = {}
report["ui"], report["watching"] = ui, watch
if rate:
    d = json.load(open(f"{tmp}/rate.json"))
    p = d["latencyPercentiles"]
    codes = d.get("statusCodeDistribution", {})
    report["fixed_rate"] = {"target_rps": float(rate), "rps": d["summary"]["requestsPerSec"],
                            "p50_us": p["p50"] * 1e6, "p99_us": p["p99"] * 1e6,
                            "non_200": sum(codes.values()) - codes.get("200", 0)}
if watch:
    text = open(f"{tmp}/events.txt", errors="replace").read()
    got = text.count("event: decision")
    lagged = sum(int(line.split(":", 1)[1]) for line in text.splitlines()
                 if line.startswith("data:") and line.split(":", 1)[1].strip().isdigit())
    m = {}
    for line in open(f"{tmp}/gw_metrics.txt"):
        tag, rq, *_ = line.split()
        m[tag] = int(rq)
    served = m.get("end", 0) - m.get("start", 0)
    report["watcher"] = {"decisions_received": got, "missed_reported": lagged,
                         "gateway_requests": served}
json.dump(report, open(out, "w"), indent=2)

print(f"\nSwitchyard overhead benchmark  UI {'on' if ui else 'off'}, "
      f"{'one dashboard watcher' if watch else 'nobody watching'}")
print(f"\nSwitchyard overhead benchmark  binary={binary} [{profile}]  cores={cores}  load={load}")
print(f"policy {policy} (warm_instances {warm}), prompt of {len(prompt)} characters")
print(f"{'target':<11}{'c=1 p50 µs':>12}{'c=1 p99 µs':>12}{'added p50':>11}{'added p99':>11}"
      f"{f'c={c_high} RPS':>12}{f'c={c_high} p99 ms':>14}{'non-200':>9}")
for t in targets:
    a, b = res[t]["c1"], res[t][hi]
    add = report["added_latency_us"].get(t)
    fmt = lambda v: f"{v:>11.0f}" if v is not None else f"{'-':>11}"
    bad = a["non_200"] + b["non_200"]
    print(f"{t:<11}{a['p50_us']:>12.0f}{a['p99_us']:>12.0f}{fmt(add and add['p50'])}{fmt(add and add['p99'])}"
          f"{b['rps']:>12.0f}{b['p99_us']/1000:>14.2f}{bad:>9}")
for t in targets:
    if res[t][hi]["p99_us"] > 1e6:
        print(f"NOTE: {t} p99 at c={c_high} is > 1 s: its RPS is not sustained under the 1 s bound")
r = report["ratios"]
print(f"gateway RPS / direct RPS  = {r['gateway_rps_over_direct']*100:.1f} %   (target >= 15 %)")
if "gateway_pg" in res:
    r["gateway_pg_rps_over_gateway"] = res["gateway_pg"][hi]["rps"] / g
    json.dump(report, open(out, "w"), indent=2)
    a = report["added_latency_us"]
    print(f"PostgreSQL ledger vs SQLite: added p50 {a['gateway_pg']['p50']:.0f} vs {a['gateway']['p50']:.0f} µs, "
          f"p99 {a['gateway_pg']['p99']:.0f} vs {a['gateway']['p99']:.0f} µs at c=1; "
          f"RPS at c={c_high} {r['gateway_pg_rps_over_gateway']*100:.1f} % of SQLite's")
lbs = [t for t in targets if t.startswith("lb_") and t != "lb_1"]
if lbs:
    n = lbs[0]
    r["replicas_rps_over_one"] = res[n][hi]["rps"] / max(res["lb_1"][hi]["rps"], 1e-9)
    json.dump(report, open(out, "w"), indent=2)
    print(f"{n[3:]} replicas behind nginx vs one: {res[n][hi]['rps']:.0f} vs {res['lb_1'][hi]['rps']:.0f} "
          f"RPS at c={c_high} = {r['replicas_rps_over_one']:.2f} x  (on {cores} cores, shared with "
          f"the load generator, nginx and PostgreSQL)")
if "gateway_rps_over_litellm" in r:
    print(f"gateway RPS / LiteLLM RPS = {r['gateway_rps_over_litellm']:.1f} x   (target >= 100 x)")
print(f"gateway added p99 at c=1  = {report['added_latency_us']['gateway']['p99']:.0f} µs   (target <= 400 µs)")
print(f"gateway idle RSS          = {int(rss_idle)/1024:.1f} MB (anon {int(rss_anon)/1024:.1f} MB; after load {int(rss_after)/1024:.1f} MB)   (target <= 25 MB)")
for name, p in pol.items():
    mean = p["policy_decision_mean_us"]
    print(f"gateway policy at {name}: {p['policy_fallback_decisions']} fallback decisions "
          f"({p['policy_failures']} failures) of {p['requests']} requests, mean decision "
          + (f"{mean:.0f} µs" if mean is not None else "-"))
if "fixed_rate" in report:
    f = report["fixed_rate"]
    print(f"gateway at {f['target_rps']:.0f} req/s: {f['rps']:.0f} req/s served, p50 {f['p50_us']:.0f} µs, "
          f"p99 {f['p99_us']:.0f} µs, non-200 {f['non_200']}")
if "watcher" in report:
    w = report["watcher"]
    print(f"dashboard watcher: {w['decisions_received']} decisions received of {w['gateway_requests']} "
          f"requests, {w['missed_reported']} reported missed (lagged)")
print(f"JSON: {out}")
PY
