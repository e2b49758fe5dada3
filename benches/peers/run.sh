#!/usr/bin/env bash
# Peer comparison: beckon vs PostGIS vs shapely, correctness and speed, on one data set.
#
#   bash benches/peers/run.sh [--fences N] [--pings M] [--seed S] [--out DIR] [--beckon PATH]
#                             [--skip-postgis] [--skip-shapely] [--repeat K] [--regen]
#                             [--fences-file F --pings-file P]
#
# Installs what it needs (Debian postgresql + PostGIS, a Python venv with shapely/numpy/psycopg),
# generates the data with `beckon gen` (kept between runs while the parameters are the same),
# runs `beckon match`, starts a throwaway PostgreSQL cluster on a unix socket in a temp dir,
# runs compare.py and removes the cluster again.  Writes DIR/report.md.  See README.md.
#
# Exit status: 0 pass, 1 beckon disagrees with a reference, 2 the harness could not run.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

FENCES=10000
PINGS=1000000
SEED=42
OUT="$REPO/target/peers"
BECKON="$REPO/target/release/beckon"
SKIP_PG=0
SKIP_SH=0
REPEAT=1
REGEN=0
FENCES_FILE=""
PINGS_FILE=""
VENV="${BECKON_PEERS_VENV:-$HOME/.cache/beckon-peers-venv}"

say() { echo "[peers] $*" >&2; }
die() { echo "[peers] error: $*" >&2; exit 2; }
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  arg=$1
  val=""
  case "$arg" in
    --*=*) val=${arg#*=}; arg=${arg%%=*} ;;
  esac
  case "$arg" in
    --fences|--pings|--seed|--out|--beckon|--repeat|--fences-file|--pings-file)
      if [ -z "$val" ]; then
        [ $# -ge 2 ] || die "$arg needs a value"
        val=$2
        shift
      fi
      case "$arg" in
        --fences) FENCES=$val ;;
        --pings) PINGS=$val ;;
        --seed) SEED=$val ;;
        --out) OUT=$val ;;
        --beckon) BECKON=$val ;;
        --repeat) REPEAT=$val ;;
        --fences-file) FENCES_FILE=$val ;;
        --pings-file) PINGS_FILE=$val ;;
      esac ;;
    --skip-postgis) SKIP_PG=1 ;;
    --skip-shapely) SKIP_SH=1 ;;
    --regen) REGEN=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

for v in "$FENCES" "$PINGS" "$SEED" "$REPEAT"; do
  [[ "$v" =~ ^[0-9]+$ ]] || die "not a non-negative integer: $v"
done
if [ -n "$FENCES_FILE" ] || [ -n "$PINGS_FILE" ]; then
  [ -n "$FENCES_FILE" ] && [ -n "$PINGS_FILE" ] || die "--fences-file and --pings-file go together"
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/install.log"
case "$BECKON" in /*) ;; *) BECKON="$PWD/$BECKON" ;; esac
[ -x "$BECKON" ] || die "no beckon binary at $BECKON (build it: cargo build --release, or pass --beckon PATH)"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null && SUDO="sudo" || true
fi

# ------------------------------------------------------------------ installs (idempotent)
PGVER=""
find_pg() {
  local v
  PGVER=""
  for v in $(ls /usr/lib/postgresql 2>/dev/null | sort -rn); do
    if [ -x "/usr/lib/postgresql/$v/bin/initdb" ] && [ -f "/usr/share/postgresql/$v/extension/postgis.control" ]; then
      PGVER=$v
      return 0
    fi
  done
  return 1
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y -q --no-install-recommends "$@" >>"$LOG" 2>&1; then
    say "apt-get install failed; running apt-get update and trying again"
    $SUDO apt-get update -q >>"$LOG" 2>&1 || true
    $SUDO apt-get install -y -q --no-install-recommends "$@" >>"$LOG" 2>&1 \
      || { tail -n 20 "$LOG" >&2; die "could not install: $*"; }
  fi
}

if [ "$SKIP_PG" = 0 ] && ! find_pg; then
  v=$(ls /usr/lib/postgresql 2>/dev/null | sort -rn | head -n1)
  v=${v:-15}
  say "installing PostgreSQL $v + PostGIS (log: $LOG)"
  apt_install postgresql "postgresql-$v-postgis-3"
  find_pg || die "PostGIS still not found after installing postgresql-$v-postgis-3"
fi

venv_ok() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - <<'EOF' 2>/dev/null
import numpy, psycopg, shapely
assert int(shapely.__version__.split(".")[0]) >= 2
EOF
}
if ! venv_ok; then
  say "creating the Python venv $VENV (log: $LOG)"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  if ! python3 -m venv "$VENV" >>"$LOG" 2>&1; then
    apt_install python3-venv
    rm -rf "$VENV"
    python3 -m venv "$VENV" >>"$LOG" 2>&1 || die "python3 -m venv failed"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check "shapely>=2" numpy "psycopg[binary]" >>"$LOG" 2>&1 \
    || { tail -n 20 "$LOG" >&2; die "pip install failed"; }
  venv_ok || die "the venv $VENV does not import shapely>=2, numpy and psycopg"
fi

# Long steps run as a background child that is waited for, so that a TERM to this script
# stops them at once (the EXIT trap below kills the child and removes the cluster).
CHILD=""
run_child() {
  local rc=0
  "$@" &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=""
  return "$rc"
}
PGTMP=""
PGBIN=""
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
cleanup() {
  if [ -n "$CHILD" ]; then kill "$CHILD" 2>/dev/null || true; wait "$CHILD" 2>/dev/null || true; fi
  if [ -n "$PGTMP" ] && [ -d "$PGTMP" ]; then
    if [ -f "$PGTMP/data/postmaster.pid" ]; then
      as_pg "$PGBIN/pg_ctl" -D "$PGTMP/data" -m immediate -s stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PGTMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ data
if [ -n "$FENCES_FILE" ]; then
  FENCES_JSON=$FENCES_FILE
  PINGS_JSONL=$PINGS_FILE
  [ -f "$FENCES_JSON" ] || die "no such file: $FENCES_JSON"
  [ -f "$PINGS_JSONL" ] || die "no such file: $PINGS_JSONL"
else
  FENCES_JSON="$OUT/fences.geojson"
  PINGS_JSONL="$OUT/pings.jsonl"
  STAMP="$OUT/gen.stamp"
  WANT="fences=$FENCES pings=$PINGS seed=$SEED"
  if [ "$REGEN" = 0 ] && [ -f "$FENCES_JSON" ] && [ -f "$PINGS_JSONL" ] && [ -f "$STAMP" ] \
     && [ "$(cat "$STAMP")" = "$WANT" ]; then
    say "reusing the data in $OUT ($WANT)"
  else
    say "beckon gen $WANT"
    rm -f "$STAMP"
    run_child "$BECKON" gen --fences "$FENCES" --pings "$PINGS" --seed "$SEED" --out "$OUT" >"$OUT/gen.log" 2>&1 \
      || { tail -n 20 "$OUT/gen.log" >&2; die "beckon gen failed"; }
    [ -f "$FENCES_JSON" ] && [ -f "$PINGS_JSONL" ] || die "beckon gen did not write $FENCES_JSON and $PINGS_JSONL"
    echo "$WANT" >"$STAMP"
  fi
fi

say "beckon match"
if ! run_child "$BECKON" match --fences "$FENCES_JSON" --pings "$PINGS_JSONL" >"$OUT/beckon.jsonl" 2>"$OUT/beckon.stderr"; then
  tail -n 20 "$OUT/beckon.stderr" >&2
  die "beckon match failed"
fi
# Timed best of K like the references: the first run's output is the one compared; later runs
# only time, and the fastest run's summary line is appended (compare.py reads the last line).
containing_s() { tail -n 1 "$1" | sed -n 's/.*containing_s=\([0-9.]*\).*/\1/p'; }
best="$OUT/beckon.stderr"
for k in $(seq 2 "$REPEAT"); do
  run_child "$BECKON" match --fences "$FENCES_JSON" --pings "$PINGS_JSONL" >/dev/null 2>"$OUT/beckon.stderr.$k" \
    || die "beckon match failed (timing run $k)"
  if awk -v a="$(containing_s "$OUT/beckon.stderr.$k")" -v b="$(containing_s "$best")" 'BEGIN { exit !(a < b) }'; then
    best="$OUT/beckon.stderr.$k"
  fi
done
[ "$best" = "$OUT/beckon.stderr" ] || tail -n 1 "$best" >>"$OUT/beckon.stderr"
say "$(tail -n 1 "$OUT/beckon.stderr")"

# ------------------------------------------------------------------ throwaway PostgreSQL

DSN=""
if [ "$SKIP_PG" = 0 ]; then
  PGBIN="/usr/lib/postgresql/$PGVER/bin"
  PGTMP=$(mktemp -d /tmp/beckon-peers-pg.XXXXXX)
  chmod 700 "$PGTMP"
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$PGTMP"; fi
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_pg "$PGBIN/initdb" -D "$PGTMP/data" -U postgres -A trust -E UTF8 --no-locale --no-sync \
    >"$PGTMP/initdb.log" 2>&1 || { cat "$PGTMP/initdb.log" >&2; die "initdb failed"; }
  cat >>"$PGTMP/data/postgresql.conf" <<EOF
# beckon peers: throwaway cluster, unix socket only
listen_addresses = ''
unix_socket_directories = '$PGTMP'
port = $PORT
shared_buffers = 256MB
work_mem = 64MB
maintenance_work_mem = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 4GB
jit = off
max_parallel_workers_per_gather = 0
EOF
  as_pg "$PGBIN/pg_ctl" -D "$PGTMP/data" -l "$PGTMP/server.log" -w -t 60 -s start \
    || { tail -n 20 "$PGTMP/server.log" >&2; die "PostgreSQL did not start"; }
  DSN="host=$PGTMP port=$PORT user=postgres dbname=postgres"
  say "PostgreSQL $PGVER up on unix socket $PGTMP/.s.PGSQL.$PORT"
fi

# ------------------------------------------------------------------ compare
args=(--fences "$FENCES_JSON" --pings "$PINGS_JSONL"
      --beckon-out "$OUT/beckon.jsonl" --beckon-stderr "$OUT/beckon.stderr"
      --report "$OUT/report.md" --repeat "$REPEAT")
if [ "$SKIP_PG" = 1 ]; then args+=(--skip-postgis); else args+=(--dsn "$DSN" --plans "$OUT/postgis_plans.txt"); fi
if [ "$SKIP_SH" = 1 ]; then args+=(--skip-shapely); fi

rc=0
run_child "$VENV/bin/python" "$HERE/compare.py" "${args[@]}" || rc=$?
if [ "$rc" -eq 0 ]; then say "PASS — report: $OUT/report.md"; else say "exit $rc — report: $OUT/report.md"; fi
exit "$rc"
