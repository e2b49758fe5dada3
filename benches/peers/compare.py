#!/usr/bin/env python3
"""Compare beckon's geofence matching with PostGIS and shapely, and time all three.

Normally started by run.sh, which installs the dependencies, starts a throwaway
PostgreSQL cluster, generates the data and runs `beckon match` first.  See README.md.

Semantics (shared/CONTRACTS.md §1): polygons cover a point planar in (lon, lat)
degrees, boundary included, holes excluded; circles contain a point whose haversine
distance to the centre on a sphere of radius 6 371 008.8 m is <= radius_m.

Exit status: 0 all agree (boundary cases excused), 1 a failure was found,
2 the harness could not run (unreadable input, PostgreSQL error, crash).
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import sys
import time

import numpy as np
import shapely
from shapely import STRtree

R_CONTRACT = 6371008.8  # CONTRACTS §1
# PostGIS, geography with use_spheroid=false: sphere of the WGS84 mean radius (2a+b)/3.
WGS84_A = 6378137.0
WGS84_B = WGS84_A - WGS84_A / 298.257223563
R_POSTGIS = (2.0 * WGS84_A + WGS84_B) / 3.0  # 6371008.7714...
EPS_DEG = 1e-9  # excuse window: distance to a boundary, degrees
EPS_M = EPS_DEG * math.pi / 180.0 * R_CONTRACT  # the same, on the contract sphere: ~1.112e-4 m
MAX_SHOWN = 20


def log(msg):
    print(f"[compare] {msg}", file=sys.stderr, flush=True)


class HarnessError(Exception):
    pass


# --------------------------------------------------------------------------- fences

class Fences:
    """Every fence of the file, indexed 0..n-1 in file order (polygons and circles alike)."""

    def __init__(self, path):
        with open(path, "rb") as f:
            doc = json.load(f)
        if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
            feats = doc.get("features") or []
        elif isinstance(doc, list):
            feats = doc
        else:
            raise HarnessError(f"{path}: not a GeoJSON FeatureCollection")
        self.ids = []
        self.kind = []  # 'polygon' | 'multipolygon' | 'circle'
        self.geom = []  # shapely geometry for polygons, None for circles
        self.circle = []  # (lon, lat, radius_m) for circles, None for polygons
        self.with_holes = 0
        self.skipped = []  # (id, reason)
        for n, feat in enumerate(feats):
            fid = feat.get("id")
            if fid is None:
                fid = (feat.get("properties") or {}).get("id")
            if fid is None:
                self.skipped.append((f"#{n}", "feature has no id"))
                continue
            fid = str(fid)
            g = feat.get("geometry") or {}
            t = g.get("type")
            props = feat.get("properties") or {}
            if t in ("Polygon", "MultiPolygon"):
                try:
                    shp = shapely.geometry.shape(g)
                except Exception as e:  # noqa: BLE001
                    self.skipped.append((fid, f"unreadable geometry: {e}"))
                    continue
                polys = [shp] if t == "Polygon" else list(shp.geoms)
                if any(len(p.interiors) for p in polys):
                    self.with_holes += 1
                self._add(fid, t.lower(), shp, None)
            elif t == "Point":
                lon, lat = g["coordinates"][:2]
                r = props.get("radius_m")
                if not isinstance(r, (int, float)) or isinstance(r, bool) or not r > 0:
                    self.skipped.append((fid, "Point without a positive radius_m"))
                    continue
                self._add(fid, "circle", None, (float(lon), float(lat), float(r)))
            else:
                self.skipped.append((fid, f"geometry type {t!r} is not a fence"))
        self.n = len(self.ids)
        self.index = {fid: k for k, fid in enumerate(self.ids)}
        if len(self.index) != self.n:
            raise HarnessError(f"{path}: duplicate fence ids")
        kind = np.array(self.kind, dtype=object)
        self.poly_idx = np.flatnonzero(kind != "circle")
        self.circ_idx = np.flatnonzero(kind == "circle")
        self.polys = np.array([self.geom[k] for k in self.poly_idx], dtype=object)
        c = np.array([self.circle[k] for k in self.circ_idx], dtype=float).reshape(-1, 3)
        self.c_lon, self.c_lat, self.c_r = c[:, 0], c[:, 1], c[:, 2]
        # per fence index, for the boundary checks
        self.boundary = np.empty(self.n, dtype=object)
        if len(self.polys):
            self.boundary[self.poly_idx] = shapely.boundary(self.polys)
        self.cf_lon = np.full(self.n, np.nan)
        self.cf_lat = np.full(self.n, np.nan)
        self.cf_r = np.full(self.n, np.nan)
        self.cf_lon[self.circ_idx] = self.c_lon
        self.cf_lat[self.circ_idx] = self.c_lat
        self.cf_r[self.circ_idx] = self.c_r
        self.is_circle = np.zeros(self.n, dtype=bool)
        self.is_circle[self.circ_idx] = True
        self.invalid_polys = [self.ids[k] for k, ok in
                              zip(self.poly_idx, shapely.is_valid(self.polys)) if not ok] \
            if len(self.polys) else []

    def _add(self, fid, kind, geom, circle):
        self.ids.append(fid)
        self.kind.append(kind)
        self.geom.append(geom)
        self.circle.append(circle)


# --------------------------------------------------------------------------- pings

RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))$")


def ts_ok(ts):
    m = RFC3339.match(ts)
    if not m:
        return False
    y, mo, d, h, mi, s = (int(m.group(k)) for k in range(1, 7))
    if not (1 <= mo <= 12 and h <= 23 and mi <= 59 and s <= 60):
        return False
    if m.group(9) is not None and not (int(m.group(9)) <= 23 and int(m.group(10)) <= 59):
        return False
    try:
        datetime.date(y, mo, d)
    except ValueError:
        return False
    return True


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def classify(line):
    """('loc', lat, lon) | ('beacon', None, None) | ('invalid', reason, None)."""
    try:
        p = json.loads(line)
    except ValueError:
        return ("invalid", "bad JSON", None)
    if not isinstance(p, dict):
        return ("invalid", "not an object", None)
    t = p.get("type")
    if t == "beacon":
        return ("beacon", None, None)
    if t != "location":
        return ("invalid", f"type {t!r}", None)
    dev = p.get("device_id")
    if not isinstance(dev, str) or not 1 <= len(dev) <= 128:
        return ("invalid", "device_id", None)
    ts = p.get("ts")
    if not isinstance(ts, str) or not ts_ok(ts):
        return ("invalid", "ts", None)
    lat, lon = p.get("lat"), p.get("lon")
    if not is_num(lat) or not -90 <= lat <= 90:
        return ("invalid", "lat", None)
    if not is_num(lon) or not -180 <= lon <= 180:
        return ("invalid", "lon", None)
    acc = p.get("accuracy_m")
    if acc is not None and (not is_num(acc) or acc < 0):
        return ("invalid", "accuracy_m", None)
    return ("loc", float(lat), float(lon))


class Pings:
    def __init__(self, path):
        with open(path, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()  # a final newline ends the last line, it does not start a new one
        self.n_lines = len(lines)
        self.n_beacon = 0
        self.invalid = {}  # reason -> count
        self.invalid_lines = []
        loc_i, loc_lat, loc_lon = [], [], []
        for i, raw in enumerate(lines):
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            kind, a, b = classify(raw)
            if kind == "loc":
                loc_i.append(i)
                loc_lat.append(a)
                loc_lon.append(b)
            elif kind == "beacon":
                self.n_beacon += 1
            else:
                self.invalid[a] = self.invalid.get(a, 0) + 1
                self.invalid_lines.append(i)
        self.line = np.array(loc_i, dtype=np.int64)  # line index of each location ping
        self.lat = np.array(loc_lat, dtype=float)
        self.lon = np.array(loc_lon, dtype=float)
        self.n = len(self.line)
        self.pos = np.full(self.n_lines, -1, dtype=np.int64)  # line index -> position
        self.pos[self.line] = np.arange(self.n)

    def latlon(self, i):
        k = self.pos[i]
        return (float(self.lat[k]), float(self.lon[k])) if k >= 0 else (None, None)


# --------------------------------------------------------------------------- geometry helpers

def haversine_m(lat1, lon1, lat2, lon2, radius):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dl = np.radians(lon2) - np.radians(lon1)
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2.0 * radius * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def circle_boxes(lon, lat, r):
    """Bounding boxes (lon/lat degrees) of spherical caps; returns (xmin, ymin, xmax, ymax, owner).

    Conservative (slightly grown).  A cap that reaches a pole spans all longitudes; one that
    crosses the antimeridian is split into two boxes."""
    d = r / R_CONTRACT * (1 + 1e-9) + 1e-12  # angular radius, radians, grown a little
    dd = np.degrees(d) + 1e-9
    ymin = np.maximum(lat - dd, -90.0)
    ymax = np.minimum(lat + dd, 90.0)
    polar = (lat + dd >= 90.0) | (lat - dd <= -90.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.sin(d) / np.cos(np.radians(lat))
    full = polar | ~(s < 1.0)
    dlon = np.where(full, 180.0, np.degrees(np.arcsin(np.clip(s, 0.0, 1.0))) + 1e-9)
    xmin, xmax = lon - dlon, lon + dlon
    owner = np.arange(len(lon))
    xmin = np.where(full, -180.0, xmin)
    xmax = np.where(full, 180.0, xmax)
    west = ~full & (xmin < -180.0)  # wraps over -180: [xmin+360, 180] and [-180, xmax]
    east = ~full & (xmax > 180.0)  # wraps over +180: [xmin, 180] and [-180, xmax-360]
    ex_xmin = np.concatenate([xmin[west] + 360.0, np.full(east.sum(), -180.0)])
    ex_xmax = np.concatenate([np.full(west.sum(), 180.0), xmax[east] - 360.0])
    ex_ymin = np.concatenate([ymin[west], ymin[east]])
    ex_ymax = np.concatenate([ymax[west], ymax[east]])
    ex_owner = np.concatenate([owner[west], owner[east]])
    xmin = np.where(west, -180.0, xmin)
    xmax = np.where(east, 180.0, xmax)
    return (np.concatenate([xmin, ex_xmin]), np.concatenate([ymin, ex_ymin]),
            np.concatenate([xmax, ex_xmax]), np.concatenate([ymax, ex_ymax]),
            np.concatenate([owner, ex_owner]))


def keys_of(lines, fidx, nf):
    k = np.asarray(lines, dtype=np.int64) * nf + np.asarray(fidx, dtype=np.int64)
    return np.unique(k)


# --------------------------------------------------------------------------- beckon

def read_beckon(path, stderr_path, pings, fences):
    """Returns (keys, error_mask over lines, problems list, summary dict, summary line)."""
    nf = max(fences.n, 1)
    err = np.zeros(pings.n_lines, dtype=bool)
    seen = np.zeros(pings.n_lines, dtype=bool)
    err_reasons = {}
    lines_i, fidx = [], []
    problems = []  # (i, text) – contract violations of beckon's output format
    with open(path, "rb") as f:
        for n, raw in enumerate(f):
            raw = raw.strip()
            if not raw:
                continue
            try:
                o = json.loads(raw)
                i = o["i"]
                fl = o["fences"]
                assert isinstance(i, int) and isinstance(fl, list)
            except Exception:  # noqa: BLE001
                problems.append((None, f"output line {n + 1} is not {{\"i\":…,\"fences\":[…]}}: "
                                       f"{raw[:120]!r}"))
                continue
            if not 0 <= i < pings.n_lines:
                problems.append((None, f"output line {n + 1}: i={i} is not an input line"))
                continue
            if seen[i]:
                problems.append((i, "two output lines for this input line"))
                continue
            seen[i] = True
            if o.get("error") is not None:
                err[i] = True
                reason = str(o["error"])[:60]
                err_reasons[reason] = err_reasons.get(reason, 0) + 1
            if any(not isinstance(x, str) for x in fl) or fl != sorted(set(fl)):
                problems.append((i, f"fence ids not unique strings sorted ascending: {fl[:10]}"))
            for fid in fl:
                k = fences.index.get(fid)
                if k is None:
                    problems.append((i, f"unknown fence id {fid!r}"))
                else:
                    lines_i.append(i)
                    fidx.append(k)
    missing = np.flatnonzero(~seen)
    if len(missing):
        problems.append((int(missing[0]), f"{len(missing)} input lines have no output line "
                                          f"(first: {missing[:5].tolist()})"))
    keys = keys_of(lines_i, fidx, nf)
    summary, line = {}, ""
    if stderr_path and os.path.exists(stderr_path):
        with open(stderr_path, encoding="utf-8", errors="replace") as f:
            tail = [ln.strip() for ln in f if ln.strip()]
        if tail:
            line = tail[-1]
            for k, v in re.findall(r"([A-Za-z_][A-Za-z0-9_.]*)=(\S+)", line):
                try:
                    summary[k] = float(v)
                except ValueError:
                    summary[k] = v
    return keys, err, err_reasons, problems, summary, line


# --------------------------------------------------------------------------- shapely

def run_shapely(fences, pings, repeat):
    nf = max(fences.n, 1)
    out = {"version": shapely.__version__, "geos": ".".join(map(str, shapely.geos_version))}
    pts = shapely.points(pings.lon, pings.lat)  # array construction: not timed

    def best(fn):
        ts, res = [], None
        for _ in range(repeat):
            t0 = time.perf_counter()
            res = fn()
            ts.append(time.perf_counter() - t0)
        return min(ts), res

    # polygons, as specified: tree over the fences, points queried with covered_by
    t0 = time.perf_counter()
    ptree = STRtree(fences.polys)
    ptree.query(shapely.points([[0.0, 0.0]]))
    out["poly_tree_build_s"] = time.perf_counter() - t0
    out["poly_s"], res = best(lambda: ptree.query(pts, predicate="covered_by"))
    poly_keys = keys_of(pings.line[res[0]], fences.poly_idx[res[1]], nf)

    # polygons, the other way round: tree over the points, each fence prepared, covers
    t0 = time.perf_counter()
    qtree = STRtree(pts)
    qtree.query(shapely.points([[0.0, 0.0]]))
    out["pts_tree_build_s"] = time.perf_counter() - t0
    out["poly_alt_s"], res2 = best(lambda: qtree.query(fences.polys, predicate="covers"))
    alt_keys = keys_of(pings.line[res2[1]], fences.poly_idx[res2[0]], nf)
    out["poly_alt_diff"] = np.setxor1d(alt_keys, poly_keys, assume_unique=True)

    # circles: tree over cap bounding boxes, haversine on the candidate pairs
    xmin, ymin, xmax, ymax, owner = circle_boxes(fences.c_lon, fences.c_lat, fences.c_r)
    boxes = shapely.box(xmin, ymin, xmax, ymax)
    t0 = time.perf_counter()
    ctree = STRtree(boxes)
    ctree.query(shapely.points([[0.0, 0.0]]))
    out["circle_tree_build_s"] = time.perf_counter() - t0
    c_lat, c_lon, c_r, lat, lon = fences.c_lat, fences.c_lon, fences.c_r, pings.lat, pings.lon

    def circles():
        pi, bi = ctree.query(pts)
        ci = owner[bi]
        d = haversine_m(lat[pi], lon[pi], c_lat[ci], c_lon[ci], R_CONTRACT)
        m = d <= c_r[ci]
        return pi[m], ci[m]

    out["circle_s"], (cpi, cci) = best(circles)
    circ_keys = keys_of(pings.line[cpi], fences.circ_idx[cci], nf)
    out["total_s"] = out["poly_s"] + out["circle_s"]
    out["best_total_s"] = min(out["poly_s"], out["poly_alt_s"]) + out["circle_s"]
    out["keys"] = np.union1d(poly_keys, circ_keys)
    return out


# --------------------------------------------------------------------------- PostGIS

def run_postgis(fences, pings, dsn, repeat, workers, plans_path):
    import psycopg

    nf = max(fences.n, 1)
    out = {}
    conn = psycopg.connect(dsn, autocommit=True)
    cur = conn.cursor()
    cur.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    cur.execute("SELECT version(), postgis_lib_version(), postgis_geos_version()")
    out["pg_version"], out["postgis_version"], out["postgis_geos"] = cur.fetchone()
    out["pg_version"] = out["pg_version"].split(" on ")[0]
    cur.execute("SET jit = off")
    for t in ("fence_poly", "fence_circle", "ping"):
        cur.execute(f"DROP TABLE IF EXISTS {t}")
    cur.execute("CREATE UNLOGGED TABLE fence_poly (idx int NOT NULL, geom geometry(Geometry, 4326))")
    cur.execute("CREATE UNLOGGED TABLE fence_circle (idx int NOT NULL, "
                "centre geography(Point, 4326), radius_m float8 NOT NULL)")
    cur.execute("CREATE UNLOGGED TABLE ping (i int NOT NULL, geom geometry(Point, 4326), "
                "geog geography(Point, 4326))")

    def ewkb(geoms):
        return shapely.to_wkb(shapely.set_srid(geoms, 4326), hex=True, include_srid=True)

    t0 = time.perf_counter()
    with cur.copy("COPY fence_poly (idx, geom) FROM STDIN") as cp:
        if len(fences.polys):
            for k, h in zip(fences.poly_idx.tolist(), ewkb(fences.polys).tolist()):
                cp.write(f"{k}\t{h}\n")
    with cur.copy("COPY fence_circle (idx, centre, radius_m) FROM STDIN") as cp:
        if len(fences.circ_idx):
            hx = ewkb(shapely.points(fences.c_lon, fences.c_lat)).tolist()
            for k, h, r in zip(fences.circ_idx.tolist(), hx, fences.c_r.tolist()):
                cp.write(f"{k}\t{h}\t{r!r}\n")
    chunk = 200_000
    with cur.copy("COPY ping (i, geom, geog) FROM STDIN") as cp:
        for s in range(0, pings.n, chunk):
            hx = ewkb(shapely.points(pings.lon[s:s + chunk], pings.lat[s:s + chunk])).tolist()
            cp.write("".join(f"{i}\t{h}\t{h}\n" for i, h in zip(pings.line[s:s + chunk].tolist(), hx)))
    cur.execute("SET maintenance_work_mem = '256MB'")
    cur.execute("CREATE INDEX ON fence_poly USING gist (geom)")
    cur.execute("CREATE INDEX ON fence_circle USING gist (centre)")
    cur.execute("CREATE INDEX ON ping USING gist (geom)")
    cur.execute("CREATE INDEX ON ping USING gist (geog)")
    cur.execute("ANALYZE fence_poly")
    cur.execute("ANALYZE fence_circle")
    cur.execute("ANALYZE ping")
    out["load_s"] = time.perf_counter() - t0

    q_poly = "FROM fence_poly f JOIN ping p ON ST_Covers(f.geom, p.geom)"
    # The planner tends to put the pings outside and probe the fence index once per ping, so
    # every ST_Covers call sees another polygon.  Also time the other order (one index scan of
    # the pings per fence; PostGIS then caches each polygon's edge tree) and keep the faster.
    q_poly_lat = ("FROM fence_poly f CROSS JOIN LATERAL "
                  "(SELECT p.i FROM ping p WHERE ST_Covers(f.geom, p.geom) OFFSET 0) p")
    q_circ = ("FROM fence_circle c JOIN ping p "
              "ON ST_DWithin(c.centre, p.geog, c.radius_m, false)")

    def timed(q):
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            cur.execute(f"SELECT count(*) {q}")
            cur.fetchone()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    def plan(q):
        cur.execute(f"EXPLAIN SELECT count(*) {q}")
        return "\n".join(r[0] for r in cur.fetchall())

    cur.execute("SET max_parallel_workers_per_gather = 0")
    # fetch the result rows first (untimed); this also warms the caches for the timed runs
    def fetch(cols, q):
        buf = bytearray()
        with cur.copy(f"COPY (SELECT {cols} {q}) TO STDOUT") as cp:
            for block in cp:
                buf += block
        a = np.array(bytes(buf).split(), dtype=np.int64).reshape(-1, 2)
        return a[:, 0], a[:, 1]

    a_i, a_f = fetch("p.i, f.idx", q_poly_lat)
    b_i, b_f = fetch("p.i, c.idx", q_circ)

    plans = []
    queries = (("poly_join", q_poly), ("poly_lateral", q_poly_lat), ("circle", q_circ))
    for name, q in queries:
        plans.append(f"-- {name}, max_parallel_workers_per_gather = 0\n{plan(q)}\n")
        out[f"{name}_s"] = timed(q)
    out["poly_s"] = min(out["poly_join_s"], out["poly_lateral_s"])
    out["total_s"] = out["poly_s"] + out["circle_s"]

    if workers > 0:
        cur.execute(f"SET max_parallel_workers_per_gather = {int(workers)}")
        used = []
        for name, q in queries:
            p = plan(q)
            if "Gather" in p:
                used.append(name)
            plans.append(f"-- {name}, max_parallel_workers_per_gather = {workers}\n{p}\n")
            out[f"par_{name}_s"] = timed(q)
        out["par_poly_s"] = min(out["par_poly_join_s"], out["par_poly_lateral_s"])
        out["par_total_s"] = out["par_poly_s"] + out["par_circle_s"]
        out["par_workers"] = workers
        out["par_used"] = used
        cur.execute("SET max_parallel_workers_per_gather = 0")
    if plans_path:
        with open(plans_path, "w") as f:
            f.write("\n".join(plans))

    out["keys"] = keys_of(np.concatenate([a_i, b_i]), np.concatenate([a_f, b_f]), nf)
    conn.close()
    return out


# --------------------------------------------------------------------------- comparison

def boundary_near(fences, pings, lines, fidx, postgis):
    """For each (line, fence) pair: is the ping within 1e-9° of that fence's boundary?"""
    near = np.zeros(len(lines), dtype=bool)
    if not len(lines):
        return near
    pos = pings.pos[lines]
    circ = fences.is_circle[fidx]
    pm = ~circ
    if pm.any():
        pts = shapely.points(pings.lon[pos[pm]], pings.lat[pos[pm]])
        near[pm] = shapely.distance(pts, fences.boundary[fidx[pm]]) <= EPS_DEG
    if circ.any():
        c = fidx[circ]
        args = (pings.lat[pos[circ]], pings.lon[pos[circ]], fences.cf_lat[c], fences.cf_lon[c])
        d = haversine_m(*args, R_CONTRACT)
        ok = np.abs(d - fences.cf_r[c]) <= EPS_M
        if postgis:  # PostGIS measures on its own sphere: excuse its edge too
            d2 = haversine_m(*args, R_POSTGIS)
            ok |= np.abs(d2 - fences.cf_r[c]) <= EPS_M
        near[circ] = ok
    return near


def compare(a_keys, b_keys, lines_compared, fences, pings, postgis):
    """Pings (line indices) in lines_compared: agreed / excused / failed."""
    nf = max(fences.n, 1)
    sel = np.zeros(pings.n_lines, dtype=bool)
    sel[lines_compared] = True
    a = a_keys[sel[a_keys // nf]]
    b = b_keys[sel[b_keys // nf]]
    diff = np.setxor1d(a, b, assume_unique=True)
    lines, fidx = diff // nf, diff % nf
    near = boundary_near(fences, pings, lines, fidx, postgis)
    failed = np.unique(lines[~near])
    excused = np.setdiff1d(np.unique(lines[near]), failed, assume_unique=True)
    n = int(sel.sum())
    circ = fences.is_circle[fidx]
    return {"compared": n, "agreed": n - len(failed) - len(excused), "excused": len(excused),
            "failed": len(failed), "failed_lines": failed,
            "near_poly": int((near & ~circ).sum()), "near_circle": int((near & circ).sum())}


def set_of(keys, i, fences):
    nf = max(fences.n, 1)
    lo, hi = np.searchsorted(keys, [i * nf, (i + 1) * nf])
    return sorted(fences.ids[k % nf] for k in keys[lo:hi].tolist())


# --------------------------------------------------------------------------- report

def rate(n, s):
    return n / s if s and s > 0 else float("nan")


def fmt_rate(x):
    if x is None or not isinstance(x, (int, float)) or math.isnan(x):
        return "—"
    return f"{x:,.0f}"


def fmt_ratio(a, b):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b or \
            math.isnan(a) or math.isnan(b):
        return "—"
    x = a / b
    return f"{x:,.1f}×" if x >= 10 else f"{x:.2f}×" if x >= 0.1 else f"{x:.3g}×"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fences", required=True)
    ap.add_argument("--pings", required=True)
    ap.add_argument("--beckon-out", required=True, help="stdout of `beckon match`")
    ap.add_argument("--beckon-stderr", help="stderr of `beckon match` (last line: key=value summary)")
    ap.add_argument("--report", help="also write the Markdown report here")
    ap.add_argument("--plans", help="write PostGIS query plans here")
    ap.add_argument("--dsn", help="libpq connection string of a PostgreSQL with PostGIS available")
    ap.add_argument("--skip-postgis", action="store_true")
    ap.add_argument("--skip-shapely", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="time each reference query N times, keep the best")
    ap.add_argument("--parallel-workers", type=int, default=os.cpu_count() or 2,
                    help="PostGIS: also time with this many parallel workers (0: don't)")
    args = ap.parse_args()

    t_start = time.perf_counter()
    log(f"loading fences {args.fences}")
    fences = Fences(args.fences)
    log(f"loading pings {args.pings}")
    pings = Pings(args.pings)
    log(f"{fences.n} fences, {pings.n_lines} ping lines ({pings.n} location)")
    log(f"reading beckon output {args.beckon_out}")
    bk_keys, bk_err, bk_err_reasons, problems, summary, summary_line = \
        read_beckon(args.beckon_out, args.beckon_stderr, pings, fences)
    nf = max(fences.n, 1)

    # line-level checks that do not need a reference
    problems = list(problems)
    loc_err = pings.line[bk_err[pings.line]]
    for i in loc_err[:MAX_SHOWN].tolist():
        problems.append((i, "beckon rejected a ping the harness reads as a valid location ping"))
    if len(loc_err) > MAX_SHOWN:
        problems.append((None, f"… {len(loc_err)} valid location pings rejected by beckon in all"))
    is_loc = np.zeros(pings.n_lines, dtype=bool)
    is_loc[pings.line] = True
    bk_lines = np.unique(bk_keys // nf)
    stray = bk_lines[~is_loc[bk_lines]]
    for i in stray[:MAX_SHOWN].tolist():
        problems.append((i, "beckon matched fences for a line that is not a valid location ping"))
    inval = np.array(pings.invalid_lines, dtype=np.int64)
    lenient = inval[~bk_err[inval]] if len(inval) else inval  # warning only

    compared = pings.line[~bk_err[pings.line]]
    refs = {}
    if not args.skip_postgis:
        if not args.dsn:
            raise HarnessError("--dsn is needed unless --skip-postgis")
        log("PostGIS: loading and querying")
        refs["PostGIS"] = run_postgis(fences, pings, args.dsn, args.repeat,
                                      args.parallel_workers, args.plans)
    if not args.skip_shapely:
        log("shapely: querying")
        refs["shapely"] = run_shapely(fences, pings, args.repeat)

    log("comparing")
    results = {}
    for name, r in refs.items():
        results[f"beckon vs {name}"] = compare(bk_keys, r["keys"], compared, fences, pings,
                                                name == "PostGIS")
    if len(refs) == 2:
        results["PostGIS vs shapely"] = compare(refs["PostGIS"]["keys"], refs["shapely"]["keys"],
                                                pings.line, fences, pings, True)

    failed_lines = set()
    for res in results.values():
        failed_lines.update(res["failed_lines"].tolist())
    exit_code = 1 if failed_lines or problems else 0

    # ---------------------------------------------------------------- report
    r = []
    w = r.append
    w("# beckon peer comparison: beckon vs PostGIS vs shapely\n")
    w(f"Verdict: **{'PASS' if exit_code == 0 else 'FAIL'}**"
      f" ({len(failed_lines)} pings with unexcused disagreements, {len(problems)} output problems)\n")
    w("## Data set\n")
    kinds = {k: fences.kind.count(k) for k in ("polygon", "multipolygon", "circle")}
    w(f"- fences: **{fences.n:,}** — Polygon {kinds['polygon']:,}, MultiPolygon {kinds['multipolygon']:,}, "
      f"circle {kinds['circle']:,}"
      + (f" (radius_m min {fences.c_r.min():,.1f} / median {np.median(fences.c_r):,.1f} / "
         f"max {fences.c_r.max():,.1f})" if len(fences.c_r) else "")
      + f"; {fences.with_holes:,} polygon fences have holes")
    if fences.skipped:
        w(f"- fence features skipped by the harness: {len(fences.skipped)} "
          f"(e.g. {fences.skipped[:3]})")
    if fences.invalid_polys:
        w(f"- **warning**: {len(fences.invalid_polys)} polygon fences are not OGC-valid per GEOS "
          f"(e.g. {fences.invalid_polys[:5]}); covers() on them is not well defined")
    inv_txt = ", ".join(f"{k}: {v}" for k, v in sorted(pings.invalid.items())) or "none"
    w(f"- ping lines: **{pings.n_lines:,}** — location {pings.n:,}, beacon {pings.n_beacon:,}, "
      f"not valid pings {sum(pings.invalid.values()):,} ({inv_txt})")
    w(f"- files: `{args.fences}`, `{args.pings}`")
    nm = len(np.unique(bk_keys // nf)) if len(bk_keys) else 0
    w(f"- beckon: {len(bk_keys):,} (ping, fence) matches; {nm:,} pings inside ≥ 1 fence "
      f"({100.0 * nm / max(pings.n, 1):.1f} % of location pings)")
    if bk_err.any():
        reasons = ", ".join(f"{k!r}: {v}" for k, v in sorted(bk_err_reasons.items(), key=lambda kv: -kv[1])[:5])
        w(f"- beckon reported {int(bk_err.sum())} lines as invalid ({reasons})")
    if len(lenient):
        w(f"- note: beckon accepted {len(lenient)} lines the harness reads as invalid "
          f"(first: {lenient[:5].tolist()}); not compared, not a failure")
    w("")
    w("## Correctness\n")
    w("A disagreement on a ping is excused only when the ping lies within 1e-9° of the boundary of "
      "every fence in the symmetric difference (polygons: planar distance to the boundary ≤ 1e-9°; "
      f"circles: |haversine − radius_m| ≤ {EPS_M:.4g} m, i.e. 1e-9° on the 6 371 008.8 m sphere).\n")
    w("| comparison | pings compared | agreed | excused at boundary | failed "
      "| boundary (ping, fence) pairs: polygon / circle |")
    w("|---|---:|---:|---:|---:|---:|")
    for name, res in results.items():
        w(f"| {name} | {res['compared']:,} | {res['agreed']:,} | {res['excused']:,} | "
          f"{'**' + format(res['failed'], ',') + '**' if res['failed'] else 0} | "
          f"{res['near_poly']:,} / {res['near_circle']:,} |")
    if not results:
        w("| (no reference ran) | | | | |")
    w("")
    w(f"PostGIS measures circles on its own sphere, the WGS84 mean radius {R_POSTGIS:.4f} m, "
      f"{R_CONTRACT - R_POSTGIS:.4f} m less than the contract's 6 371 008.8 m; at a 50 km radius that "
      f"shifts the circle's edge by {50000 * (R_CONTRACT - R_POSTGIS) / R_CONTRACT * 1000:.2f} mm, so it "
      "can only matter for pings within ~0.3 mm of a 50 km circle's edge (the harness excuses PostGIS "
      "circle disagreements within the window on either sphere).\n")
    if problems or failed_lines:
        w("### Failures\n")
        for i, text in problems[:MAX_SHOWN]:
            w(f"- {'line ' + str(i) + ': ' if i is not None else ''}{text}")
        if problems:
            w("")
        if failed_lines:
            w("| i | lat | lon | beckon | PostGIS | shapely |")
            w("|---:|---:|---:|---|---|---|")
            for i in sorted(failed_lines)[:MAX_SHOWN]:
                lat, lon = pings.latlon(i)
                cols = [json.dumps(set_of(bk_keys, i, fences))]
                for name in ("PostGIS", "shapely"):
                    cols.append(json.dumps(set_of(refs[name]["keys"], i, fences)) if name in refs else "—")
                w(f"| {i} | {lat!r} | {lon!r} | " + " | ".join(cols) + " |")
            if len(failed_lines) > MAX_SHOWN:
                w(f"\n… {len(failed_lines) - MAX_SHOWN} more")
            w("")

    w("## Speed\n")
    n = pings.n
    bc = summary.get("containing_per_s")
    be = summary.get("end_to_end_per_s")
    bc = bc if isinstance(bc, float) else None
    be = be if isinstance(be, float) else None
    bc_note = "from beckon's stderr"
    cs = summary.get("containing_s")
    if isinstance(cs, float) and cs > 0 and n > 0:
        # same denominator as the references: the location pings (beacon lines never reach the index)
        bc_note = (f"{n:,} location pings / containing_s {cs:g} s; beckon's own containing_per_s: "
                   f"{fmt_rate(bc)}")
        bc = n / cs
    w("| engine | what is timed | pings/s | beckon containing ÷ this | beckon end-to-end ÷ this |")
    w("|---|---|---:|---:|---:|")
    w(f"| beckon `containing` | matching index only, 1 core ({bc_note}) | {fmt_rate(bc)} | | |")
    w(f"| beckon end to end | `beckon match`: JSON in, JSON out, 1 core (from beckon's stderr) | {fmt_rate(be)} | | |")
    if "PostGIS" in refs:
        p = refs["PostGIS"]
        pr = rate(n, p["total_s"])
        w(f"| PostGIS | polygons {p['poly_s']:.2f} s (best of: planner's join {p['poly_join_s']:.2f} s, "
          f"per-fence LATERAL {p['poly_lateral_s']:.2f} s) + circle join {p['circle_s']:.2f} s; "
          f"1 backend, no parallel workers | {fmt_rate(pr)} | {fmt_ratio(bc, pr)} | {fmt_ratio(be, pr)} |")
        if "par_total_s" in p:
            pp = rate(n, p["par_total_s"])
            note = (f"parallel plan for: {', '.join(p['par_used'])}" if p["par_used"]
                    else "the planner chose no parallel plan")
            w(f"| PostGIS, parallel | polygons {p['par_poly_s']:.2f} s + circles {p['par_circle_s']:.2f} s, "
              f"max_parallel_workers_per_gather = {p['par_workers']} ({note}) | {fmt_rate(pp)} | {fmt_ratio(bc, pp)} | {fmt_ratio(be, pp)} |")
    if "shapely" in refs:
        s = refs["shapely"]
        sr = rate(n, s["total_s"])
        w(f"| shapely | STRtree(fences).query(points, 'covered_by') {s['poly_s']:.2f} s + circles "
          f"{s['circle_s']:.2f} s, 1 core | {fmt_rate(sr)} | {fmt_ratio(bc, sr)} | {fmt_ratio(be, sr)} |")
        sa = rate(n, s["poly_alt_s"] + s["circle_s"])
        w(f"| shapely, other way round | STRtree(points).query(fences, 'covers') (prepared fences) "
          f"{s['poly_alt_s']:.2f} s + circles {s['circle_s']:.2f} s | {fmt_rate(sa)} | "
          f"{fmt_ratio(bc, sa)} | {fmt_ratio(be, sa)} |")
    w("")
    w(f"Each reference is timed on the query alone (best of {args.repeat}), over the {n:,} location pings; "
      "loading, index/tree building and fetching the result rows are excluded. PostGIS times are the wall "
      "time of `SELECT count(*)` over each join, with `max_parallel_workers_per_gather = 0` (one core, "
      "like beckon's `containing`) and `jit = off`.")
    if "PostGIS" in refs:
        p = refs["PostGIS"]
        w(f"PostGIS load (COPY + GiST indexes + ANALYZE): {p['load_s']:.2f} s.")
    if "shapely" in refs:
        s = refs["shapely"]
        alt_note = ""
        d = s["poly_alt_diff"]
        if len(d):
            near = boundary_near(fences, pings, d // nf, d % nf, False)
            inval = set(fences.invalid_polys)
            n_inv = sum(fences.ids[k] in inval for k in (d % nf).tolist())
            alt_note = (f" The two shapely polygon queries differ on {len(d)} (ping, fence) pairs: "
                        f"{int(near.sum())} within 1e-9° of a boundary, {n_inv} on GEOS-invalid fences"
                        " (the first query's answer is the one compared).")
        w(f"shapely tree builds (not in the numbers above): fences {s['poly_tree_build_s'] * 1000:.1f} ms, "
          f"points {s['pts_tree_build_s'] * 1000:.1f} ms, circle boxes {s['circle_tree_build_s'] * 1000:.1f} ms."
          + alt_note)
    if "load_s" in summary:
        w(f"beckon load: {summary['load_s']} s.")
    w("")
    w(f"beckon's summary line: `{summary_line or '(none)'}`\n")
    w("## Machine\n")
    w(f"- CPU: {cpu_model()}, `nproc` = {os.cpu_count()}")
    w(f"- {platform.platform()}, Python {platform.python_version()}, numpy {np.__version__}")
    if "shapely" in refs:
        w(f"- shapely {refs['shapely']['version']} (GEOS {refs['shapely']['geos']})")
    if "PostGIS" in refs:
        p = refs["PostGIS"]
        w(f"- {p['pg_version']}, PostGIS {p['postgis_version']} (GEOS {p['postgis_geos']}); "
          "shared_buffers 256MB, work_mem 64MB, unlogged tables")
    w(f"\n_harness wall time {time.perf_counter() - t_start:.1f} s_")
    text = "\n".join(r) + "\n"
    sys.stdout.write(text)
    if args.report:
        with open(args.report, "w") as f:
            f.write(text)
    return exit_code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except HarnessError as e:
        log(f"error: {e}")
        sys.exit(2)
    except Exception:  # noqa: BLE001 - a crash of the harness is not a finding about beckon
        import traceback
        traceback.print_exc()
        sys.exit(2)
