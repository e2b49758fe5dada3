"""Checks of deploy/ that no off-the-shelf validator makes; run by validate.sh in its venv.

Each subcommand prints one line per thing it checked and exits 1 if anything is wrong.
The metric names, their types and the config tree below are the service's interface: when
the service changes one, change it here and the dashboard/rules checks follow.
"""

import json
import re
import sys
from pathlib import Path

import promql_parser
import yaml

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent

METRICS = {
    "beckon_pings_total": "counter",
    "beckon_dead_letters_total": "counter",
    "beckon_offers_total": "counter",
    "beckon_suppressions_total": "counter",
    "beckon_presence_events_total": "counter",
    "beckon_profiles_total": "counter",
    "beckon_ping_to_offer_latency_seconds": "histogram",
    "beckon_batch_duration_seconds": "histogram",
    "beckon_consumer_lag_messages": "gauge",
    "beckon_fences_loaded": "gauge",
    "beckon_beacons_loaded": "gauge",
    "beckon_campaigns_loaded": "gauge",
    "beckon_reloads_total": "counter",
    "beckon_devices_tracked": "gauge",
    "beckon_assigned_partitions": "gauge",
    "beckon_restore_duration_seconds": "histogram",
    "beckon_transactions_total": "counter",
}
# Prometheus' own per-target series, and the client library's default process metrics.
EXTRA_NAMES = {"up"}
EXTRA_PREFIXES = ("process_",)



class Optional:
    """A key the file may leave out (the service has a default)."""

    def __init__(self, spec):
        self.spec = spec


# The config tree of beckon.yaml: a dict is a section, a set the allowed values, None any scalar.
TOPICS = ("pings", "profiles", "offers", "presence", "dead_letters", "state")
PIPELINE_NUMBERS = (
    "batch_max",
    "batch_linger_ms",
    "in_flight_batches",
    "shutdown_grace_s",
    "prefetch_kbytes",
    "commit_interval_ms",
)
CONFIG = {
    "kafka": {
        "brokers": None,
        "group_id": None,
        # Static membership: unique per instance, so set per pod (BECKON_INSTANCE_ID), not here.
        "instance_id": Optional(None),
        "topics": {k: None for k in TOPICS},
        "client": dict,  # librdkafka passthrough: any keys
    },
    "world": {"fences": None, "beacons": None, "campaigns": None, "reload_interval_s": int},
    "http": {"listen": None},
    "pipeline": Optional(
        {k: Optional(int) for k in PIPELINE_NUMBERS}
        | {"guarantee": Optional({"at_least_once", "exactly_once"})}
    ),
    "engine": Optional(
        {"retention_days": Optional(int), "presence": Optional(dict), "caps": Optional(dict)}
    ),
    # level: a tracing filter ("info", "info,rdkafka=warn"), so any string.
    "log": {"format": {"text", "json"}, "level": None},
}

errors = []


def ok(msg):
    print(f"  ok: {msg}")


def fail(msg):
    errors.append(msg)
    print(f"  FAIL: {msg}")


def done():
    sys.exit(1 if errors else 0)


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


# ---------------------------------------------------------------------------- config


def check_tree(where, value, spec):
    if isinstance(spec, Optional):
        spec = spec.spec
    if spec is None:
        if isinstance(value, (dict, list)) or value is None:
            fail(f"{where}: expected a scalar, got {value!r}")
    elif spec is dict:
        if not isinstance(value, dict):
            fail(f"{where}: expected a mapping, got {value!r}")
    elif spec is int:
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            fail(f"{where}: expected a positive integer, got {value!r}")
    elif isinstance(spec, set):
        if value not in spec:
            fail(f"{where}: {value!r} is not one of {sorted(spec)}")
    else:
        if not isinstance(value, dict):
            fail(f"{where}: expected a mapping, got {value!r}")
            return
        for key in value.keys() - spec.keys():
            fail(f"{where}.{key}: unknown key (the service denies unknown fields)")
        for key in spec.keys() - value.keys():
            if not isinstance(spec[key], Optional):
                fail(f"{where}.{key}: missing")
        for key in spec.keys() & value.keys():
            check_tree(f"{where}.{key}", value[key], spec[key])


def listen_port(cfg):
    return int(str(cfg["http"]["listen"]).rsplit(":", 1)[1])


def cmd_config():
    """Every YAML/JSON file parses; beckon.yaml (and the ConfigMap's copy) has the config tree."""
    for path in sorted(DEPLOY.rglob("*")):
        if path.suffix in (".yaml", ".yml"):
            try:
                list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
                ok(f"{path.relative_to(ROOT)} is YAML")
            except yaml.YAMLError as e:
                fail(f"{path.relative_to(ROOT)}: {e}")
        elif path.suffix == ".json":
            try:
                json.loads(path.read_text(encoding="utf-8"))
                ok(f"{path.relative_to(ROOT)} is JSON")
            except ValueError as e:
                fail(f"{path.relative_to(ROOT)}: {e}")
    if errors:
        done()
    example = load_yaml(DEPLOY / "beckon.yaml")
    check_tree("deploy/beckon.yaml", example, CONFIG)
    ok("deploy/beckon.yaml has the config tree (sections, keys, log format)")
    cm = load_yaml(DEPLOY / "k8s/configmap.yaml")
    in_cluster = yaml.safe_load(cm["data"]["beckon.yaml"])
    check_tree("k8s/configmap.yaml data.beckon.yaml", in_cluster, CONFIG)
    ok("k8s ConfigMap's beckon.yaml has the config tree")
    for key in ("group_id", "topics"):
        if in_cluster["kafka"][key] != example["kafka"][key]:
            fail(f"k8s ConfigMap kafka.{key} differs from deploy/beckon.yaml")
    ok("ConfigMap and deploy/beckon.yaml agree on the consumer group and topics")
    done()


# ---------------------------------------------------------------------------- PromQL

KIDS = {
    "MatrixSelector": ("vector_selector",),
    "Call": ("args",),
    "AggregateExpr": ("expr", "param"),
    "BinaryExpr": ("lhs", "rhs"),
    "ParenExpr": ("expr",),
    "SubqueryExpr": ("expr",),
    "UnaryExpr": ("expr",),
}


def selectors(expr):
    """Metric names of every vector selector in a PromQL expression."""
    names = []

    def walk(node):
        kind = type(node).__name__
        if kind == "VectorSelector":
            names.append(node.name)
            return
        for attr in KIDS.get(kind, ()):
            child = getattr(node, attr)
            for c in child if isinstance(child, list) else [child]:
                if c is not None:
                    walk(c)

    walk(promql_parser.parse(expr))
    return names


def known_names(recorded):
    names = set(EXTRA_NAMES) | set(recorded)
    for name, kind in METRICS.items():
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def check_names(where, expr, known):
    try:
        used = selectors(expr)
    except Exception as e:  # the parser's own error type varies by version
        fail(f"{where}: does not parse: {e}")
        return
    if not used:
        fail(f"{where}: selects no metric")
    for name in used:
        if not name:
            fail(f"{where}: a selector without a metric name")
        elif name not in known and not name.startswith(EXTRA_PREFIXES):
            fail(f"{where}: unknown metric {name!r}")


GRAFANA_VARS = re.compile(r"\$(?:\{[A-Za-z_][A-Za-z0-9_:]*\}|[A-Za-z_][A-Za-z0-9_]*)")


def grafana_to_promql(expr):
    """Grafana's interval macros become a duration, other variables a match-all regex."""
    expr = re.sub(r"\$(__rate_interval|__interval|__range)\b", "5m", expr)
    return GRAFANA_VARS.sub(".*", expr)


def dashboard_panels(panels):
    for p in panels:
        yield p
        yield from dashboard_panels(p.get("panels", []))


def cmd_promql(rules_out):
    """Metric names in rules.yml and the dashboard; the dashboard's queries as a rules file
    (rules_out) for promtool to parse."""
    rules = load_yaml(DEPLOY / "prometheus/rules.yml")
    recorded = [r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r]
    known = known_names(recorded)
    n = 0
    for g in rules["groups"]:
        for r in g["rules"]:
            check_names(f"rules.yml {r.get('record') or r.get('alert')}", r["expr"], known)
            n += 1
    ok(f"rules.yml: {n} expressions use only the service's metrics and {len(recorded)} recording rules")

    dash = json.loads((DEPLOY / "grafana/dashboards/beckon.json").read_text(encoding="utf-8"))
    ids, exprs = set(), []
    for p in dashboard_panels(dash["panels"]):
        title = p.get("title", "?")
        if p["id"] in ids:
            fail(f"dashboard: panel id {p['id']} ({title}) used twice")
        ids.add(p["id"])
        if p["type"] == "row":
            continue
        if not p.get("targets"):
            fail(f"dashboard panel {title!r}: no queries")
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            if not expr.strip():
                fail(f"dashboard panel {title!r} {t.get('refId')}: empty query")
                continue
            exprs.append((f"{title} {t.get('refId')}", grafana_to_promql(expr)))
    for var in dash.get("templating", {}).get("list", []):
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        m = re.fullmatch(r"\s*label_values\((.+),\s*[A-Za-z_][A-Za-z0-9_]*\)\s*", query or "")
        if var.get("type") == "query":
            if not m:
                fail(f"dashboard variable {var['name']}: expected label_values(selector, label)")
            else:
                exprs.append((f"variable {var['name']}", grafana_to_promql(m.group(1))))
    for where, expr in exprs:
        check_names(f"dashboard {where}", expr, known)
    ok(f"dashboard: {len(ids)} panels with unique ids; {len(exprs)} queries use only known metrics")
    group = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(exprs)]}]}
    Path(rules_out).write_text(yaml.safe_dump(group, sort_keys=False), encoding="utf-8")
    done()


# ---------------------------------------------------------------------------- compose


def cmd_compose(v1_out):
    """Bind mounts and build inputs exist; pings/profiles partitions as KEDA expects; writes a
    copy without the top-level `name` (which docker-compose 1.29 predates) to v1_out."""
    compose = load_yaml(DEPLOY / "compose.yaml")
    for svc, spec in compose["services"].items():
        for vol in spec.get("volumes", []):
            src = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if src.startswith((".", "/")):
                if (DEPLOY / src).exists():
                    ok(f"compose {svc}: mount source {src} exists")
                else:
                    fail(f"compose {svc}: mount source {src} does not exist")
        build = spec.get("build")
        if build:
            ctx = (DEPLOY / build["context"]).resolve()
            dockerfile = ctx / build.get("dockerfile", "Dockerfile")
            if (ctx / "Cargo.toml").exists() and dockerfile.exists():
                ok(f"compose {svc}: build context {build['context']} holds Cargo.toml and {build.get('dockerfile')}")
            else:
                fail(f"compose {svc}: build context/dockerfile not found")
    beckon = compose["services"]["beckon"]
    grace = str(beckon.get("stop_grace_period", "10s"))
    if not re.fullmatch(r"\d+s", grace) or int(grace[:-1]) < 30:
        fail(f"compose beckon: stop_grace_period {grace} is under the 30 s drain")
    else:
        ok(f"compose beckon: stop_grace_period {grace} covers the 30 s drain")
    init = compose["services"]["kafka-init"]
    script = init["command"][0]
    for topic in load_yaml(DEPLOY / "beckon.yaml")["kafka"]["topics"].values():
        if f"--topic {topic} " not in script:
            fail(f"compose kafka-init does not create {topic}")
    if not re.search(r"--topic beckon\.profiles .*cleanup\.policy=compact", script):
        fail("compose kafka-init: beckon.profiles is not compacted")
    ok("compose kafka-init creates the five topics of beckon.yaml, profiles compacted")
    v1 = {k: v for k, v in compose.items() if k != "name"}
    Path(v1_out).write_text(yaml.safe_dump(v1, sort_keys=False), encoding="utf-8")
    done()


def compose_partitions():
    return int(load_yaml(DEPLOY / "compose.yaml")["services"]["kafka-init"]["environment"]["PARTITIONS"])


# ---------------------------------------------------------------------------- Kubernetes

SCALEDOBJECT_SPEC_KEYS = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
    "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "advanced", "triggers", "fallback",
}
KAFKA_TRIGGER_KEYS = {
    "bootstrapServers", "bootstrapServersFromEnv", "consumerGroup", "consumerGroupFromEnv",
    "topic", "topicFromEnv", "lagThreshold", "activationLagThreshold", "offsetResetPolicy",
    "allowIdleConsumers", "scaleToZeroOnInvalidOffset", "excludePersistentLag", "version",
    "partitionLimitation", "limitToPartitionsWithLag", "sasl", "tls", "unsafeSsl",
}


def cmd_k8s(scaledobject_json):
    """Kustomization lists every manifest; the Deployment, Service, ConfigMap and ScaledObject
    agree with each other and with the config; writes the ScaledObject as JSON for the KEDA
    schema check."""
    k8s = DEPLOY / "k8s"
    kust = load_yaml(k8s / "kustomization.yaml")
    listed = set(kust["resources"])
    present = {p.name for p in k8s.glob("*.yaml")} - {"kustomization.yaml"}
    for name in sorted(listed - present):
        fail(f"kustomization lists {name}, which does not exist")
    for name in sorted(present - listed):
        fail(f"k8s/{name} is not in kustomization.yaml")
    ok(f"kustomization.yaml lists exactly the {len(present)} manifests")

    docs = {}
    for name in sorted(present):
        for doc in yaml.safe_load_all((k8s / name).read_text(encoding="utf-8")):
            docs[(doc["kind"], doc["metadata"]["name"])] = doc
            if "namespace" in doc["metadata"]:
                fail(f"k8s/{name}: sets a namespace (the manifests are namespace-agnostic)")
    dep = docs[("Deployment", "beckon")]
    cm = docs[("ConfigMap", "beckon-config")]
    so = docs[("ScaledObject", "beckon")]
    cfg = yaml.safe_load(cm["data"]["beckon.yaml"])
    port = listen_port(cfg)

    pod = dep["spec"]["template"]
    c = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    if ports.get("metrics") != port:
        fail(f"Deployment metrics port {ports.get('metrics')} != http.listen port {port}")
    if pod["metadata"]["annotations"].get("prometheus.io/port") != str(port):
        fail("Deployment prometheus.io/port annotation does not match http.listen")
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        got = c.get(probe, {}).get("httpGet", {}).get("path")
        if got != path:
            fail(f"Deployment {probe} path {got!r}, expected {path}")
    ok(f"Deployment: metrics port {port} and scrape annotation match http.listen; probes on /livez and /readyz")
    grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
    if grace < 35:
        fail(f"terminationGracePeriodSeconds {grace} leaves no margin over the 30 s drain")
    sc, csc = pod["spec"].get("securityContext", {}), c.get("securityContext", {})
    if not (sc.get("runAsNonRoot") and csc.get("readOnlyRootFilesystem")
            and csc.get("allowPrivilegeEscalation") is False):
        fail("Deployment: not non-root with a read-only root filesystem")
    if "replicas" in dep["spec"]:
        fail("Deployment sets replicas, which fights the ScaledObject")
    ok(f"Deployment: grace {grace}s, non-root, read-only root fs, replicas left to KEDA")
    args = c.get("args", [])
    conf = args[args.index("--config") + 1] if "--config" in args else None
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    cm_volumes = {v["name"] for v in pod["spec"].get("volumes", [])
                  if v.get("configMap", {}).get("name") == "beckon-config"}
    if not conf or not any(conf == f"{mounts.get(v)}/beckon.yaml" for v in cm_volumes):
        fail(f"Deployment --config {conf} is not beckon.yaml in the mounted ConfigMap")
    ok(f"Deployment reads {conf} from the ConfigMap")
    svc = docs[("Service", "beckon")]
    labels = pod["metadata"]["labels"]
    for kind, sel in (("Service", svc["spec"]["selector"]),
                      ("PodDisruptionBudget", docs[("PodDisruptionBudget", "beckon")]["spec"]["selector"]["matchLabels"]),
                      ("Deployment selector", dep["spec"]["selector"]["matchLabels"])):
        if any(labels.get(k) != v for k, v in sel.items()):
            fail(f"{kind} selector {sel} does not match the pod labels")
    ok("Service, PDB and Deployment selectors match the pod labels")

    spec = so["spec"]
    for key in spec.keys() - SCALEDOBJECT_SPEC_KEYS:
        fail(f"ScaledObject spec.{key}: not a ScaledObject field")
    if spec["scaleTargetRef"].get("name") != dep["metadata"]["name"]:
        fail("ScaledObject scaleTargetRef is not the Deployment")
    kafka = [t for t in spec["triggers"] if t["type"] == "kafka"]
    if len(kafka) != 1:
        fail("ScaledObject needs exactly one kafka trigger")
    else:
        meta = kafka[0]["metadata"]
        for key in meta.keys() - KAFKA_TRIGGER_KEYS:
            fail(f"ScaledObject kafka trigger metadata.{key}: not a kafka scaler parameter")
        if meta.get("topic") != cfg["kafka"]["topics"]["pings"]:
            fail(f"kafka trigger topic {meta.get('topic')} is not the pings topic")
        if meta.get("consumerGroup") != cfg["kafka"]["group_id"]:
            fail(f"kafka trigger consumerGroup {meta.get('consumerGroup')} is not group_id")
        for key in ("lagThreshold", "bootstrapServers"):
            if key not in meta:
                fail(f"kafka trigger metadata.{key} missing")
        if not all(isinstance(v, str) for v in meta.values()):
            fail("kafka trigger metadata values must be strings")
    partitions = compose_partitions()
    if spec.get("maxReplicaCount") != partitions:
        fail(f"maxReplicaCount {spec.get('maxReplicaCount')} != pings partitions {partitions}")
    if not 1 <= spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 0):
        fail("minReplicaCount must be in 1..=maxReplicaCount")
    ok(f"ScaledObject: known fields, targets the Deployment, kafka trigger on "
       f"{cfg['kafka']['topics']['pings']}/{cfg['kafka']['group_id']}, maxReplicaCount = {partitions} partitions")
    Path(scaledobject_json).write_text(json.dumps(so), encoding="utf-8")
    done()


# ---------------------------------------------------------------------------- Dockerfile


def cmd_dockerfile():
    """Every COPY from the context is let through by deploy/Dockerfile.dockerignore."""
    allowed = []
    for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines():
        line = line.strip()
        if line.startswith("!"):
            allowed.append(line[1:].rstrip("/"))
        elif line and not line.startswith("#") and line != "*":
            fail(f"Dockerfile.dockerignore: unexpected pattern {line!r} (the file is an allowlist)")
    text = (DEPLOY / "Dockerfile").read_text()
    sources = []
    for m in re.finditer(r"^COPY\s+(?!--from)(.+)$", text, re.M):
        sources += m.group(1).split()[:-1]
    for src in sources:
        src = src.rstrip("/")
        if not (ROOT / src).exists():
            fail(f"Dockerfile COPY {src}: not in the repository")
        elif not any(src == a or src.startswith(a + "/") for a in allowed):
            fail(f"Dockerfile COPY {src}: excluded by Dockerfile.dockerignore")
    ok(f"Dockerfile: {len(sources)} COPY sources exist and pass Dockerfile.dockerignore")
    for needle in ("USER 10001", "EXPOSE 9464", 'ENTRYPOINT ["/usr/local/bin/beckon"]',
                   'CMD ["run", "--config", "/etc/beckon/beckon.yaml"]'):
        if needle not in text:
            fail(f"Dockerfile: missing {needle}")
    if re.search(r"^HEALTHCHECK", text, re.M):
        fail("Dockerfile: HEALTHCHECK (orchestrators probe /livez and /readyz)")
    ok("Dockerfile: non-root user, EXPOSE 9464, ENTRYPOINT/CMD as documented, no HEALTHCHECK")
    done()


# ---------------------------------------------------------------------------- /metrics


def prometheus_text(lines):
    """OpenMetrics (as the prometheus-client crate writes it) to the Prometheus text format,
    which is what promtool 2.42 lints: counter families get their _total name back in HELP and
    TYPE, UNIT and EOF lines go."""
    counters = {m.group(1) for line in lines
                if (m := re.match(r"# TYPE (\S+) counter$", line)) and not m.group(1).endswith("_total")}
    out = []
    for line in lines:
        if line.startswith(("# UNIT ", "# EOF")):
            continue
        m = re.match(r"# (HELP|TYPE) (\S+)( .*)?$", line)
        if m and m.group(2) in counters:
            line = f"# {m.group(1)} {m.group(2)}_total{m.group(3) or ''}"
        out.append(line)
    return out


def cmd_metrics(path, text_out):
    """A scrape of the real service: types of the documented metrics; missing or undocumented
    beckon_* metrics are reported (a labelled metric may have no series yet). Writes the scrape
    in the Prometheus text format to text_out for promtool."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if "# EOF" in lines:
        print("  note: OpenMetrics scrape; promtool lints it converted to the Prometheus text format")
    Path(text_out).write_text("\n".join(prometheus_text(lines)) + "\n", encoding="utf-8")
    types = {}
    for line in lines:
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            types[m.group(1)] = m.group(2)
    for name, kind in METRICS.items():
        base = name[:-len("_total")] if kind == "counter" and name.endswith("_total") else name
        got = types.get(name) or types.get(base)
        if got is None:
            print(f"  note: {name} not in the scrape (no series yet?)")
        elif got != kind:
            fail(f"{name}: type {got}, expected {kind}")
        else:
            ok(f"{name} is a {kind}")
    documented = set(METRICS) | {n[:-len("_total")] for n in METRICS if n.endswith("_total")}
    for name in sorted(types):
        if name.startswith("beckon_") and name not in documented:
            print(f"  note: {name} is not in the documented metrics (dashboard and rules do not use it)")
    if "process_resident_memory_bytes" not in types:
        fail("process_resident_memory_bytes missing (the dashboard's RSS panel)")
    done()


if __name__ == "__main__":
    commands = {"config": cmd_config, "promql": cmd_promql, "compose": cmd_compose,
                "k8s": cmd_k8s, "dockerfile": cmd_dockerfile, "metrics": cmd_metrics}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: checks.py {{{'|'.join(commands)}}} [ARG]")
    commands[sys.argv[1]](*sys.argv[2:])
