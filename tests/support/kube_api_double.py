#!/usr/bin/env python3
"""A small stateful Kubernetes API server for ecoboot's tests and sandbox (test support only).

It copies what ../shared/reference/kube-api-facts.md lists about a real kube-apiserver:
HTTPS with a CA and a client certificate generated at start (an admin.conf like kubeadm's),
discovery (/api, /api/v1, /apis, /apis/G/V) that kubectl and kube-rs accept, CRUD on any
resource, server-side apply (create-on-apply, field managers, 409 conflicts, force, no-op
re-applies), CRDs whose kinds enter discovery shortly after creation, CRD schema type checks,
the 262144-byte annotation limit, `Status` error bodies, Nodes, and status subresources.

Fake controllers stand in for what a real cluster runs (kubelet, kube-controller-manager,
ArgoCD): Deployments/StatefulSets/DaemonSets become ready, Nodes become Ready once the CNI
DaemonSet `calico-node` is ready, ArgoCD creates AppProject `default` and its initial admin
secret, and Applications get sync/health status written on the main object (the Application
CRD has no status subresource). The root app (source path argocd/components) gets the
reference system's child Applications.

Test hooks on a second, plain-HTTP port (loopback only):
  GET  /_double/stats             request and write counters (no-op applies and the writes of
                                  validate's probe pods, probe_writes, counted apart) and
                                  a log of CRD establishment and custom-resource creation
  GET  /_double/objects?kind=K    stored objects of a kind (all when no kind)
  POST /_double/hold              {"kind","name", ...}: keep an object in a state
                                  (Application: "health"/"sync"/"condition"; Node: "ready": false,
                                  "calico": false (Calico not Ready on that node only); Pod: "ready": false;
                                  Deployment/StatefulSet/DaemonSet: "ready": false)
  POST /_double/unhold            same body: drop the hold
  POST /_double/edit              {"kind","name","namespace"?,"merge": {...},"manager"?}:
                                  a hand edit (an Update by manager kubectl-edit)
  POST /_double/delete            {"kind","name","namespace"?}
  POST /_double/create            {"object": {...}}: store an object as a controller would
  GET  /_double/snapshot          the object store (what the simulated etcdctl snapshot saves)
  POST /_double/restore           replace the object store with a snapshot (a restored etcd)
  POST /_double/issue-admin       a new admin client certificate (one year) as an admin.conf,
                                  for the simulated `kubeadm certs renew`
  GET  /_double/events            API server version, kubelet version, cordon and eviction changes,
                                  in order (what upgrade tests replay)

The API listens on 127.0.0.1 and, with the same port, on 127.0.1.1 (the fleet's control-plane
node, for ecoboot's `apiAccess: direct`).

Usage: kube_api_double.py DIR [--no-controllers]
Writes DIR/{ca.crt,admin.conf,port,hook_port} and prints "ready <port> <hook_port>".
"""

import base64
import calendar
import copy
import hashlib
import json
import os
import re
import secrets
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import yaml  # PyYAML: kubectl sends apply patches as YAML; kube-rs sends JSON
except ImportError:  # pragma: no cover
    yaml = None

ANNOTATION_LIMIT = 262144
CRD_ESTABLISH_DELAY = 0.3
CONTROLLER_DELAY = 0.4
ROOT_CHILDREN = [  # the reference system's argocd/components (seed-system.md section 4)
    ("foundations", "-1"), ("infrastructure", "0"), ("platform", "10"), ("monitoring", "20"),
    ("data-operators", "25"), ("data-clusters", "30"), ("gitops-tools", "50"), ("workers", "60"),
]

LOCK = threading.RLock()
RV = [1000]
OBJECTS = {}  # (group, plural, namespace, name) -> object
OWNERS = {}  # same key -> {manager: {"op": "Apply"|"Update", "paths": set(tuple)}}
HOLDS = {}  # (kind, name) -> hold dict
STATS = {"log": [], "requests": {}, "creates": 0, "updates": 0, "deletes": 0, "applies_changed": 0,
         "applies_noop": 0, "conflicts": 0, "by_manager": {}}
CONTROLLERS = True
# What an upgrade test replays: API server version changes, kubelet versions and cordons, in order.
EVENTS = []
DEFAULT_VERSION = "v1.36.2"

V = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]


def res(name, kind, namespaced, short=(), status=True):
    return {"name": name, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
            "verbs": V, "shortNames": list(short), "status": status}


# group -> version -> [resource]
BUILTIN = {
    "": {"v1": [
        res("namespaces", "Namespace", False, ["ns"]), res("nodes", "Node", False, ["no"]),
        res("pods", "Pod", True, ["po"]), res("services", "Service", True, ["svc"]),
        res("configmaps", "ConfigMap", True, ["cm"], False), res("secrets", "Secret", True, (), False),
        res("serviceaccounts", "ServiceAccount", True, ["sa"], False),
        res("endpoints", "Endpoints", True, ["ep"], False), res("events", "Event", True, ["ev"], False),
    ]},
    "apps": {"v1": [
        res("deployments", "Deployment", True, ["deploy"]), res("daemonsets", "DaemonSet", True, ["ds"]),
        res("statefulsets", "StatefulSet", True, ["sts"]), res("replicasets", "ReplicaSet", True, ["rs"]),
    ]},
    "rbac.authorization.k8s.io": {"v1": [
        res("roles", "Role", True, (), False), res("rolebindings", "RoleBinding", True, (), False),
        res("clusterroles", "ClusterRole", False, (), False),
        res("clusterrolebindings", "ClusterRoleBinding", False, (), False),
    ]},
    "networking.k8s.io": {"v1": [
        res("networkpolicies", "NetworkPolicy", True, ["netpol"], False),
        res("ingresses", "Ingress", True, ["ing"]),
    ]},
    "policy": {"v1": [res("poddisruptionbudgets", "PodDisruptionBudget", True, ["pdb"])]},
    "apiextensions.k8s.io": {"v1": [
        res("customresourcedefinitions", "CustomResourceDefinition", False, ["crd", "crds"]),
    ]},
    "coordination.k8s.io": {"v1": [res("leases", "Lease", True, (), False)]},
    "certificates.k8s.io": {"v1": [res("certificatesigningrequests", "CertificateSigningRequest", False, ["csr"])]},
}
CUSTOM = {}  # group -> version -> [resource] (from Established CRDs)
SCHEMAS = {}  # (group, version, plural) -> openAPIV3Schema


def next_rv():
    RV[0] += 1
    return str(RV[0])


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def groups():
    merged = {}
    for src in (BUILTIN, CUSTOM):
        for g, vs in src.items():
            for v, rs in vs.items():
                merged.setdefault(g, {}).setdefault(v, []).extend(rs)
    return merged


def find_resource(group, version, plural):
    for r in groups().get(group, {}).get(version, []):
        if r["name"] == plural:
            return r
    return None


def find_kind(kind):
    for g, vs in groups().items():
        for v, rs in vs.items():
            for r in rs:
                if r["kind"] == kind:
                    return g, v, r
    return None


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details


def status_body(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


# ---- field ownership (server-side apply) ----

SKIP_META = {"name", "namespace", "resourceVersion", "uid", "creationTimestamp", "managedFields",
             "generation", "selfLink"}


def leaf_paths(obj, prefix=()):
    out = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not prefix and k in ("apiVersion", "kind"):
                continue
            if prefix == ("metadata",) and k in SKIP_META:
                continue
            if isinstance(v, dict) and v:
                out |= leaf_paths(v, prefix + (k,))
            else:
                out.add(prefix + (k,))
    return out


def get_path(obj, path):
    for p in path:
        if not isinstance(obj, dict) or p not in obj:
            return None
        obj = obj[p]
    return obj


def del_path(obj, path):
    parents = []
    for p in path[:-1]:
        if not isinstance(obj, dict) or p not in obj:
            return
        parents.append((obj, p))
        obj = obj[p]
    if isinstance(obj, dict):
        obj.pop(path[-1], None)
    for parent, key in reversed(parents):  # prune emptied maps
        if parent[key] == {}:
            del parent[key]


def merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)


def merge_patch(dst, patch):
    for k, v in patch.items():
        if v is None:
            dst.pop(k, None)
        elif isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge_patch(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)


def fields_v1(paths):
    tree = {}
    for path in sorted(paths):
        node = tree
        for p in path:
            node = node.setdefault("f:" + p, {})
    return tree


def managed_fields(key, api_version):
    return [{"manager": m, "operation": o["op"], "apiVersion": api_version, "time": o["time"],
             "fieldsType": "FieldsV1", "fieldsV1": fields_v1(o["paths"])}
            for m, o in sorted(OWNERS.get(key, {}).items()) if o["paths"]]


def path_str(path):
    return "." + ".".join(path)


# ---- validation ----

def check_annotations(obj):
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    size = sum(len(k) + len(str(v)) for k, v in ann.items())
    if size > ANNOTATION_LIMIT:
        raise ApiError(422, "Invalid",
                       f'{obj.get("kind")} "{obj["metadata"].get("name")}" is invalid: metadata.annotations: '
                       f"Too long: must have at most {ANNOTATION_LIMIT} bytes")


TYPES = {"string": str, "object": dict, "array": list, "boolean": bool}


def check_schema(value, schema, path, errors):
    if not isinstance(schema, dict) or value is None:
        return
    t = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        ok = isinstance(value, (int, str)) and not isinstance(value, bool)
        if not ok:
            errors.append(f"{path} in body must be of type int-or-string")
        return
    if t in TYPES and not isinstance(value, TYPES[t]):
        errors.append(f"{path} in body must be of type {t}: \"{type(value).__name__}\"")
        return
    if t == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        errors.append(f"{path} in body must be of type integer")
        return
    if isinstance(value, dict):
        for k, sub in (schema.get("properties") or {}).items():
            if k in value:
                check_schema(value[k], sub, f"{path}.{k}", errors)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            check_schema(item, schema["items"], f"{path}[{i}]", errors)


def validate(group, version, plural, obj):
    check_annotations(obj)
    schema = SCHEMAS.get((group, version, plural))
    if schema:
        errors = []
        for k in ("spec", "status"):
            if k in obj:
                check_schema(obj[k], (schema.get("properties") or {}).get(k), k, errors)
        if errors:
            raise ApiError(422, "Invalid",
                           f'{obj.get("kind")}.{group} "{obj["metadata"].get("name")}" is invalid: '
                           + "; ".join(errors))


# ---- storage ----

def stamp(obj, key, api_version):
    """`obj` as served: with its managedFields."""
    obj["metadata"]["managedFields"] = managed_fields(key, api_version)
    return obj


SERVICE_IPS = [9]  # the last host number handed out; 10.96.0.1 is the kubernetes Service


def created(obj, key):
    m = obj["metadata"]
    m.setdefault("uid", str(uuid.uuid4()))
    m.setdefault("creationTimestamp", now())
    m["resourceVersion"] = next_rv()
    m["generation"] = 1
    if key[0] == "" and key[1] == "namespaces":
        obj.setdefault("status", {"phase": "Active"})
        m.setdefault("labels", {})["kubernetes.io/metadata.name"] = m["name"]
    if key[1] == "customresourcedefinitions":
        threading.Timer(CRD_ESTABLISH_DELAY, establish_crd, args=(m["name"],)).start()
    if key[0] == "" and key[1] == "services":
        # kube-apiserver allocates a cluster IP from the service CIDR (10.96.0.0/12 here).
        spec = obj.setdefault("spec", {})
        if spec.get("type") != "ExternalName" and not spec.get("clusterIP"):
            SERVICE_IPS[0] += 1
            ip = f"10.96.{SERVICE_IPS[0] // 256}.{SERVICE_IPS[0] % 256}"
            spec["clusterIP"], spec["clusterIPs"] = ip, [ip]


def establish_crd(name):
    with LOCK:
        crd = OBJECTS.get(("apiextensions.k8s.io", "customresourcedefinitions", "", name))
        if not crd:
            return
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        g = spec.get("group", "")
        for v in spec.get("versions", []):
            if not v.get("served", True):
                continue
            rs = CUSTOM.setdefault(g, {}).setdefault(v["name"], [])
            rs[:] = [r for r in rs if r["name"] != names.get("plural")]
            has_status = bool((v.get("subresources") or {}).get("status") is not None)
            rs.append({"name": names.get("plural"), "singularName": names.get("singular", ""),
                       "namespaced": spec.get("scope") == "Namespaced", "kind": names.get("kind"),
                       "verbs": V, "shortNames": names.get("shortNames", []), "status": has_status})
            SCHEMAS[(g, v["name"], names.get("plural"))] = (v.get("schema") or {}).get("openAPIV3Schema")
        crd["status"] = {"conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "lastTransitionTime": now()},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "lastTransitionTime": now()}],
            "acceptedNames": names, "storedVersions": [v["name"] for v in spec.get("versions", []) if v.get("storage")]}
        crd["metadata"]["resourceVersion"] = next_rv()
        STATS["log"].append(f"established {name}")


PROBE_NAMESPACE = "ecoboot-validate"


def count(what, key):
    """Counts a write; the short-lived probe pods of `ecoboot validate` (namespace
    ecoboot-validate) are counted apart as probe_writes: they are not changes to the cluster."""
    if key[2] == PROBE_NAMESPACE:
        STATS["probe_writes"] = STATS.get("probe_writes", 0) + 1
    else:
        STATS[what] += 1


def record(manager, op, key, paths, take=True):
    owners = OWNERS.setdefault(key, {})
    if take:
        for m, o in owners.items():
            if m != manager:
                o["paths"] -= paths
    owners[manager] = {"op": op, "paths": set(paths), "time": now()}
    STATS["by_manager"].setdefault(manager, 0)
    STATS["by_manager"][manager] += 1


def apply(key, r, group, version, body, manager, force):
    """Server-side apply; returns (object, http code)."""
    previous = copy.deepcopy(OBJECTS.get(key))
    api_version = f"{group}/{version}" if group else version
    body = copy.deepcopy(body)
    if r.get("status") and "status" in body:
        del body["status"]  # status belongs to the status subresource
    body.setdefault("metadata", {})
    paths = leaf_paths(body)
    existing = OBJECTS.get(key)
    if existing is None:
        obj = body
        obj["apiVersion"], obj["kind"] = api_version, r["kind"]
        obj["metadata"]["name"] = key[3]
        if key[2]:
            obj["metadata"]["namespace"] = key[2]
        validate(group, version, key[1], obj)
        created(obj, key)
        OWNERS[key] = {}
        record(manager, "Apply", key, paths)
        OBJECTS[key] = obj
        observe(key, previous, obj)
        count("creates", key)
        if group not in BUILTIN:
            STATS["log"].append(f"created {r['kind']} {key[3]}")
        return obj, 201
    owners = OWNERS.setdefault(key, {})
    conflicts = []
    for p in sorted(paths):
        if get_path(existing, p) == get_path(body, p):
            continue
        for m, o in owners.items():
            if m != manager and p in o["paths"]:
                conflicts.append((m, p))
    if conflicts and not force:
        STATS["conflicts"] += 1
        detail = "\n".join(f'conflict with "{m}": {path_str(p)}' for m, p in conflicts)
        n = len(conflicts)
        raise ApiError(409, "Conflict",
                       f"Apply failed with {n} conflict{'s' if n > 1 else ''}: {detail}")
    new = copy.deepcopy(existing)
    mine = owners.get(manager, {"paths": set()})["paths"]
    others = set().union(*[o["paths"] for m, o in owners.items() if m != manager]) if owners else set()
    for p in mine - paths:
        if p not in others:
            del_path(new, p)
    merge(new, body)
    validate(group, version, key[1], new)
    before_owners = {m: set(o["paths"]) for m, o in owners.items()}
    record(manager, "Apply", key, paths, take=force)
    after_owners = {m: set(o["paths"]) for m, o in OWNERS[key].items()}
    if new == existing and before_owners == after_owners:
        STATS["applies_noop"] += 1
        return existing, 200
    bump(new, existing)
    OBJECTS[key] = new
    observe(key, previous, new)
    STATS["applies_changed"] += 1
    return new, 200


def bump(new, old):
    new["metadata"]["resourceVersion"] = next_rv()
    if new.get("spec") != old.get("spec"):
        new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1


def observe(key, old, new):
    """Appends what upgrade tests replay: cordons and kubelet versions of Nodes, and the API
    server's version (kubeadm-config) whenever they change."""
    if key[:2] == ("", "nodes"):
        for what, path in (("cordoned", ("spec", "unschedulable")),
                           ("kubelet", ("status", "nodeInfo", "kubeletVersion"))):
            before = get_path(old, path) if old is not None else None
            after = get_path(new, path)
            if before != after and not (what == "cordoned" and not before and not after):
                log_event(what, key[3], after)
    if key == ("", "configmaps", "kube-system", "kubeadm-config"):
        pattern = r"kubernetesVersion:\s*\"?(v[0-9.]+)"
        version = lambda o: re.search(pattern, ((o or {}).get("data") or {}).get("ClusterConfiguration", ""))
        before, after = version(old), version(new)
        if after and (not before or before.group(1) != after.group(1)):
            log_event("apiserver", "", after.group(1))


def update(key, r, group, version, new, manager, subresource=None):
    """An Update operation (PUT, merge patch, status writes): takes ownership of changed fields."""
    old = OBJECTS.get(key)
    api_version = f"{group}/{version}" if group else version
    new["apiVersion"], new["kind"] = api_version, r["kind"]
    if subresource == "status":
        keep = copy.deepcopy(old)
        keep["status"] = new.get("status")
        new = keep
    elif r.get("status") and old is not None:
        new["status"] = old.get("status")
    new.setdefault("metadata", {}).pop("managedFields", None)
    for f in ("uid", "creationTimestamp", "resourceVersion", "generation"):
        if old is not None and f in old["metadata"]:
            new["metadata"][f] = old["metadata"][f]
    validate(group, version, key[1], new)
    observe(key, old, new)
    changed = {p for p in leaf_paths(new) if old is None or get_path(old, p) != get_path(new, p)}
    if old is None:
        created(new, key)
        OWNERS[key] = {}
    elif new == old:
        return old
    else:
        bump(new, old)
    prev = OWNERS.get(key, {}).get(manager, {"paths": set()})["paths"]
    record(manager, "Update", key, prev | changed)
    count("updates" if key in OBJECTS else "creates", key)
    OBJECTS[key] = new
    return new


# ---- HTTP ----

PATH = re.compile(r"^/(?:api/(?P<cv>v1)|apis/(?P<g>[^/]+)/(?P<v>[^/]+))"
                  r"(?:/namespaces/(?P<ns>[^/]+)(?=/))?/(?P<res>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$")


def labels_match(obj, selector):
    if not selector:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in selector.split(","):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k.rstrip("=")) != v:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def fields_match(obj, selector):
    """`spec.nodeName=X` and `metadata.name=X` field selectors (what drains use)."""
    for term in (selector or "").split(","):
        if "=" not in term:
            continue
        path, want = term.split("=", 1)
        have = obj
        for part in path.rstrip("=").split("."):
            have = (have or {}).get(part) if isinstance(have, dict) else None
        if (have or "") != want:
            return False
    return True


def cluster_version():
    """What kube-apiserver runs: kubeadm records it in kube-system/kubeadm-config on init and on
    every `kubeadm upgrade apply`."""
    cm = OBJECTS.get(("", "configmaps", "kube-system", "kubeadm-config"))
    text = ((cm or {}).get("data") or {}).get("ClusterConfiguration", "")
    m = re.search(r"kubernetesVersion:\s*\"?(v[0-9.]+)", text)
    return m.group(1) if m else DEFAULT_VERSION


def log_event(what, node, value):
    EVENTS.append({"t": time.time(), "what": what, "node": node, "value": value})


def pdbs_for(pod):
    ns = pod["metadata"].get("namespace", "")
    labels = pod["metadata"].get("labels") or {}
    out = []
    for (g, plural, bns, _), b in OBJECTS.items():
        if g == "policy" and plural == "poddisruptionbudgets" and bns == ns:
            want = (((b.get("spec") or {}).get("selector") or {}).get("matchLabels")) or {}
            if want and all(labels.get(k) == v for k, v in want.items()):
                out.append(b)
    return out


def evict(key, pod, name):
    """POST pods/{name}/eviction as kube-apiserver answers it (see kube-api-facts.md)."""
    if pod is None:
        raise ApiError(404, "NotFound", f'pods "{name}" not found')
    running = (pod.get("status") or {}).get("phase") == "Running"
    if running:
        for b in pdbs_for(pod):
            st = b.get("status") or {}
            bname = b["metadata"]["name"]
            cause = None
            if st.get("observedGeneration", 0) < b["metadata"].get("generation", 1):
                cause = f"The disruption budget {bname} is still being processed by the server."
            elif st.get("disruptionsAllowed", 0) <= 0:
                cause = (f"The disruption budget {bname} needs {st.get('desiredHealthy', 0)} healthy pods "
                         f"and has {st.get('currentHealthy', 0)} currently")
            if cause:
                raise ApiError(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.",
                               {"causes": [{"reason": "DisruptionBudget", "message": cause}]})
        for b in pdbs_for(pod):
            st = dict(b.get("status") or {})
            st["disruptionsAllowed"] = st.get("disruptionsAllowed", 0) - 1
            st.setdefault("disruptedPods", {})[name] = now()
            bkey = ("policy", "poddisruptionbudgets", b["metadata"]["namespace"], b["metadata"]["name"])
            set_status(bkey, st, "kube-apiserver")
    new = copy.deepcopy(pod)
    new["metadata"]["deletionTimestamp"] = now()
    OBJECTS[key] = new
    log_event("evicted", (pod.get("spec") or {}).get("nodeName", ""), f"{key[2]}/{name}")

    def gone():
        with LOCK:
            OBJECTS.pop(key, None)
            OWNERS.pop(key, None)
    threading.Timer(0.3, gone).start()
    return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def decode(raw, ctype):
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        if yaml is None:
            raise ApiError(415, "UnsupportedMediaType", "YAML bodies need PyYAML")
        return yaml.safe_load(raw)


def reply(handler, code, body):
    """Sends `body` as text (str) or JSON, with its length (keep-alive clients need it)."""
    text = isinstance(body, str)
    data = body.encode() if text else json.dumps(body).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "text/plain" if text else "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self, method):
        url = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with LOCK:
            STATS["requests"][method] = STATS["requests"].get(method, 0) + 1
        try:
            if not self.connection.getpeercert():
                raise ApiError(401, "Unauthorized", "Unauthorized")
            with LOCK:
                code, body = self.route(method, url.path, q, raw)
        except ApiError as e:
            code, body = e.code, status_body(e.code, e.reason, e.message)
            if e.details:
                body["details"] = e.details
        except Exception as e:  # noqa: BLE001 (a double must answer, not hang)
            code, body = 500, status_body(500, "InternalError", f"double: {e!r}")
        reply(self, code, body)

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def route(self, method, path, q, raw):
        if path in ("/healthz", "/readyz", "/livez"):
            return 200, "ok"
        if path == "/version":
            v = cluster_version()
            return 200, {"major": "1", "minor": v.split(".")[1], "gitVersion": v, "platform": "linux/amd64"}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]}
        if path == "/apis":
            gl = []
            for g, vs in sorted(groups().items()):
                if not g:
                    continue
                versions = [{"groupVersion": f"{g}/{v}", "version": v} for v in sorted(vs)]
                gl.append({"name": g, "versions": versions, "preferredVersion": versions[0]})
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": gl}
        m = re.match(r"^/(?:api/(v1)|apis/([^/]+)/([^/]+))/?$", path)
        if m:
            g, v = ("", "v1") if m.group(1) else (m.group(2), m.group(3))
            rs = groups().get(g, {}).get(v)
            if rs is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            out = []
            for r in rs:
                out.append({k: r[k] for k in ("name", "singularName", "namespaced", "kind", "verbs", "shortNames")})
                if r.get("status"):
                    out.append({"name": r["name"] + "/status", "singularName": "", "namespaced": r["namespaced"],
                                "kind": r["kind"], "verbs": ["get", "patch", "update"]})
            return 200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{g}/{v}" if g else v,
                         "resources": out}
        m = PATH.match(path)
        if not m:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        g, v = ("", "v1") if m.group("cv") else (m.group("g"), m.group("v"))
        plural, ns, name, sub = m.group("res"), m.group("ns") or "", m.group("name"), m.group("sub")
        r = find_resource(g, v, plural)
        if r is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not r["namespaced"]:
            ns = ""
        elif ns and plural != "namespaces" and method in ("POST", "PUT", "PATCH") and \
                ("", "namespaces", "", ns) not in OBJECTS:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found')
        gr = f"{plural}.{g}" if g else plural
        api_version = f"{g}/{v}" if g else v
        manager = q.get("fieldManager") or self.headers.get("User-Agent", "unknown").split("/")[0]
        if name is None:
            if method == "GET":
                items = [copy.deepcopy(o) for (og, op, ons, _), o in sorted(OBJECTS.items())
                         if og == g and op == plural and (not ns or ons == ns) and labels_match(o, q.get("labelSelector"))
                         and fields_match(o, q.get("fieldSelector"))]
                for i in items:
                    i["apiVersion"] = api_version
                return 200, {"kind": r["kind"] + "List", "apiVersion": api_version,
                             "metadata": {"resourceVersion": str(RV[0])}, "items": items}
            if method == "POST":
                body = decode(raw, self.headers.get("Content-Type"))
                name = (body.get("metadata") or {}).get("name")
                if not name:
                    raise ApiError(422, "Invalid", f"{r['kind']} is invalid: metadata.name: Required value")
                key = (g, plural, ns, name)
                if key in OBJECTS:
                    raise ApiError(409, "AlreadyExists", f'{gr} "{name}" already exists')
                if ns:
                    body["metadata"]["namespace"] = ns
                return 201, update(key, r, g, v, body, manager)
            raise ApiError(405, "MethodNotAllowed", f"{method} not allowed on a collection")
        key = (g, plural, ns, name)
        obj = OBJECTS.get(key)
        if method == "GET":
            if obj is None:
                raise ApiError(404, "NotFound", f'{gr} "{name}" not found')
            return 200, stamp(copy.deepcopy(obj), key, api_version)
        if method == "DELETE":
            if obj is None:
                raise ApiError(404, "NotFound", f'{gr} "{name}" not found')
            del OBJECTS[key]
            OWNERS.pop(key, None)
            count("deletes", key)
            if plural == "namespaces":
                for k in [k for k in OBJECTS if k[2] == name]:
                    del OBJECTS[k]
            return 200, status_body(200, "", "") | {"status": "Success"}
        body = decode(raw, self.headers.get("Content-Type"))
        if plural == "pods" and sub == "eviction" and method == "POST":
            return evict(key, obj, name)
        if plural == "certificatesigningrequests" and sub == "approval" and method in ("PUT", "PATCH"):
            # The approval subresource writes status.conditions (Approved/Denied) only.
            sub = "status"
        if sub not in (None, "status"):
            raise ApiError(404, "NotFound", f"subresource {sub} not supported")
        if method == "PUT":
            if obj is None and sub:
                raise ApiError(404, "NotFound", f'{gr} "{name}" not found')
            rv = (body.get("metadata") or {}).get("resourceVersion")
            if obj is not None and rv and rv != obj["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {gr} "{name}": '
                               "the object has been modified; please apply your changes to the latest version and try again")
            out = update(key, r, g, v, body, manager, sub)
            return 200, stamp(copy.deepcopy(out), key, api_version)
        if method == "PATCH":
            ctype = (self.headers.get("Content-Type") or "").split(";")[0]
            if ctype == "application/apply-patch+yaml":
                if not q.get("fieldManager"):
                    raise ApiError(422, "Invalid", "PatchOptions.meta.k8s.io is invalid: fieldManager: Required value: is required for apply patch")
                for f in ("apiVersion", "kind"):
                    if not body.get(f):
                        raise ApiError(400, "BadRequest", f"{f} must be set in an apply patch")
                if body.get("apiVersion") != api_version or body.get("kind") != r["kind"]:
                    raise ApiError(400, "BadRequest",
                                   f"the apply patch is a {body.get('apiVersion')} {body.get('kind')}, the URL a {api_version} {r['kind']}")
                out, code = apply(key, r, g, v, body, q["fieldManager"], q.get("force") == "true")
                return code, stamp(copy.deepcopy(out), key, api_version)
            if obj is None:
                raise ApiError(404, "NotFound", f'{gr} "{name}" not found')
            if ctype == "application/json-patch+json":
                raise ApiError(415, "UnsupportedMediaType", "json-patch is not supported by the double")
            new = copy.deepcopy(obj)
            merge_patch(new, body)
            out = update(key, r, g, v, new, manager, sub)
            return 200, stamp(copy.deepcopy(out), key, api_version)
        raise ApiError(405, "MethodNotAllowed", method)


# ---- fake controllers ----

def obj_of(kind, name, ns=None):
    found = find_kind(kind)
    if not found:
        return None, None
    g, v, r = found
    for key, o in OBJECTS.items():
        if key[0] == g and key[1] == r["name"] and key[3] == name and (ns is None or key[2] == ns):
            return key, o
    return None, None


def held(kind, name):
    return HOLDS.get((kind, name))


def set_status(key, status, manager):
    obj = OBJECTS[key]
    if obj.get("status") == status:
        return
    new = copy.deepcopy(obj)
    new["status"] = status
    version = obj["apiVersion"].split("/")[-1]
    r = find_resource(key[0], version, key[1])
    update(key, dict(r, status=False), key[0], version, new, manager)


def age(obj):
    t = obj["metadata"].get("creationTimestamp")
    return time.time() - calendar.timegm(time.strptime(t, "%Y-%m-%dT%H:%M:%SZ")) if t else 0


def pdb_controller():
    """The disruption controller: healthy pods against minAvailable/maxUnavailable."""
    for key, b in list(OBJECTS.items()):
        if key[:2] != ("policy", "poddisruptionbudgets"):
            continue
        spec = b.get("spec") or {}
        want = ((spec.get("selector") or {}).get("matchLabels")) or {}
        pods = [p for (g, pl, ns, _), p in OBJECTS.items() if (g, pl) == ("", "pods") and ns == key[2]
                and want and all(((p["metadata"].get("labels") or {}).get(k)) == v for k, v in want.items())]
        healthy = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running"
                      and not p["metadata"].get("deletionTimestamp"))
        expected = len(pods)
        if "minAvailable" in spec:
            desired = int(spec["minAvailable"])
        else:
            desired = max(0, expected - int(spec.get("maxUnavailable", 0)))
        old = b.get("status") or {}
        st = {"observedGeneration": b["metadata"].get("generation", 1), "currentHealthy": healthy,
              "desiredHealthy": desired, "expectedPods": expected,
              "disruptionsAllowed": max(0, healthy - desired),
              "disruptedPods": {k: v for k, v in (old.get("disruptedPods") or {}).items()
                                if ("", "pods", key[2], k) in OBJECTS}}
        if {k: old.get(k) for k in st} != st:
            set_status(key, st, "kube-controller-manager")


def tolerates(tolerations, taint):
    """The scheduler's toleration match (k8s.io/api core/v1 Toleration.ToleratesTaint)."""
    for t in tolerations or []:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t["key"] == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def fits(workload, n):
    """Whether the pod template's nodeSelector matches Node `n` and it tolerates the Node's
    NoSchedule and NoExecute taints."""
    spec = ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}
    labels = n["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    taints = [t for t in (n.get("spec") or {}).get("taints") or [] if t.get("effect") in ("NoSchedule", "NoExecute")]
    return all(tolerates(spec.get("tolerations"), t) for t in taints)


def schedulable_nodes(workload, node_keys):
    """Ready, schedulable Nodes the workload fits on (what kube-scheduler's filters would leave)."""
    out = []
    for key in node_keys:
        n = OBJECTS[key]
        conds = (n.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
            continue
        if (n.get("spec") or {}).get("unschedulable"):
            continue
        if fits(workload, n):
            out.append(key[3])
    return out


def reconcile():
    pdb_controller()
    nodes = [k for k in OBJECTS if k[:2] == ("", "nodes")]
    cni_ready = False
    for key, o in list(OBJECTS.items()):
        g, plural, ns, name = key
        kind = o.get("kind")
        h = held(kind, name) or {}
        if g == "apps" and plural in ("deployments", "statefulsets"):
            want = (o.get("spec") or {}).get("replicas", 1)
            ready = 0 if h.get("ready") is False else want
            if ns == "argocd" and SIM_TIMINGS and age(o) < argocd_delay(nodes):
                ready = 0  # bench/realistic.sh: its images still pulling
            if ns == "kube-system" and name == "coredns" and not schedulable_nodes(o, nodes):
                ready = 0  # its pods stay Pending: no Ready node they tolerate
            st = {"observedGeneration": o["metadata"].get("generation", 1), "replicas": want,
                  "readyReplicas": ready, "availableReplicas": ready, "updatedReplicas": want}
            if plural == "deployments":
                st["conditions"] = [{"type": "Available", "status": "True" if ready >= want else "False",
                                     "reason": "MinimumReplicasAvailable" if ready >= want else "MinimumReplicasUnavailable",
                                     "message": "Deployment has minimum availability." if ready >= want
                                     else "Deployment does not have minimum availability."}]
            set_status(key, st, "kube-controller-manager")
        elif g == "apps" and plural == "daemonsets":
            want = len(nodes)
            ready = 0 if h.get("ready") is False else want
            if name == "calico-node" and ready:
                ready = sum(1 for k in nodes if calico_started(k[3]))
            set_status(key, {"observedGeneration": o["metadata"].get("generation", 1), "desiredNumberScheduled": want,
                             "currentNumberScheduled": want, "numberReady": ready, "numberAvailable": ready,
                             "updatedNumberScheduled": want, "numberMisscheduled": 0}, "kube-controller-manager")
            if name == "calico-node" and want and h.get("ready") is not False:
                cni_ready = True
    for key in nodes:
        o = OBJECTS[key]
        name = key[3]
        ready = cni_ready and calico_started(name) and (held("Node", name) or {}).get("ready") is not False
        cond = {"type": "Ready", "status": "True" if ready else "False",
                "reason": "KubeletReady" if ready else "KubeletNotReady",
                "message": "kubelet is posting ready status" if ready else
                "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
                "message:Network plugin returns error: cni plugin not initialized"}
        st = copy.deepcopy(o.get("status") or {})
        others = [c for c in st.get("conditions", []) if c.get("type") != "Ready"]
        old = [c for c in st.get("conditions", []) if c.get("type") == "Ready"]
        if old and old[0]["status"] == cond["status"]:
            continue
        st["conditions"] = others + [dict(cond, lastTransitionTime=now())]
        set_status(key, st, "kubelet")
    kubelet(nodes)
    argocd_controller()


def ds_nodes(ds, node_keys):
    """Nodes a DaemonSet's pods go on: those it fits on, Ready or not (the DaemonSet controller
    places pods on NotReady nodes too)."""
    return [key[3] for key in node_keys if fits(ds, OBJECTS[key])]


# bench/realistic.sh's time model (bench/timings.py): per-node calico_ready and argocd_ready
# delays in seconds, already scaled. Empty: no delays.
SIM_TIMINGS = json.load(open(os.environ["ECOBOOT_SIM_TIMINGS"])) if os.environ.get("ECOBOOT_SIM_TIMINGS") else {}


def holds_image(node, prefix):
    """Whether `node` reports (status.images, as kubelet does) an image named `prefix`:<tag>."""
    n = OBJECTS.get(("", "nodes", "", node)) or {}
    return any(name.startswith(prefix + ":") for i in (n.get("status") or {}).get("images") or []
               for name in i.get("names") or [])


def calico_started(node):
    """Whether calico-node had time to start on `node` under the model: its images pulled and
    the pods started, or only started where the node already holds them (a golden image)."""
    ds = OBJECTS.get(("apps", "daemonsets", "kube-system", "calico-node"))
    key = "calico_start" if holds_image(node, "quay.io/calico/node") else "calico_ready"
    return ds is not None and age(ds) >= SIM_TIMINGS.get(key, {}).get(node, 0)


def argocd_delay(nodes):
    """How long ArgoCD's workloads stay unavailable under the model: image pulls and start, or
    only the start when every node already holds ArgoCD's image (a golden image)."""
    prepulled = nodes and all(holds_image(k[3], "quay.io/argoproj/argocd") for k in nodes)
    return SIM_TIMINGS.get("argocd_start" if prepulled else "argocd_ready", 0)


def calico_ready(node):
    """Whether Calico runs Ready on `node`: its DaemonSet is there and ready, and no hold
    {"kind": "Node", "name": node, "calico": false} says otherwise."""
    ds = OBJECTS.get(("apps", "daemonsets", "kube-system", "calico-node"))
    if ds is None or (held("DaemonSet", "calico-node") or {}).get("ready") is False:
        return False
    return calico_started(node) and (held("Node", node) or {}).get("calico") is not False


def node_ready(node):
    n = OBJECTS.get(("", "nodes", "", node)) or {}
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (n.get("status") or {}).get("conditions") or [])


MIRRORS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


def kubelet(node_keys):
    """What the DaemonSet controller and each node's kubelet do for pods: DaemonSet pods on their
    nodes, the control plane's static (mirror) pods, and the phase of ecoboot's validation
    probes, which reach their target only over a working pod network (Calico Ready on both
    ends), as on a real node."""
    pods_r = find_kind("Pod")[2]
    nodes = sorted(k[3] for k in node_keys)
    index = {n: i + 1 for i, n in enumerate(nodes)}
    want = {}
    for key, ds in list(OBJECTS.items()):
        if key[:2] != ("apps", "daemonsets"):
            continue
        for node in ds_nodes(ds, node_keys):
            suffix = hashlib.sha1(f"{key[3]}/{node}".encode()).hexdigest()[:5]
            want[("", "pods", key[2], f"{key[3]}-{suffix}")] = (ds, node, None)
    for node in nodes:
        labels = OBJECTS[("", "nodes", "", node)]["metadata"].get("labels") or {}
        if "node-role.kubernetes.io/control-plane" in labels:
            for c in MIRRORS:
                want[("", "pods", "kube-system", f"{c}-{node}")] = (None, node, c)
    for pkey, (ds, node, mirror) in want.items():
        if pkey in OBJECTS:
            continue
        if ds is not None:
            tmpl = (ds.get("spec") or {}).get("template") or {}
            meta = {"name": pkey[3], "namespace": pkey[2], "labels": dict((tmpl.get("metadata") or {}).get("labels") or {}),
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": ds["metadata"]["name"],
                                         "uid": ds["metadata"]["uid"], "controller": True}]}
            spec = dict(copy.deepcopy(tmpl.get("spec") or {}), nodeName=node)
        else:
            meta = {"name": pkey[3], "namespace": "kube-system", "labels": {"component": mirror, "tier": "control-plane"},
                    "annotations": {"kubernetes.io/config.mirror": "mirror", "kubernetes.io/config.source": "file"}}
            spec = {"nodeName": node, "priorityClassName": "system-node-critical", "hostNetwork": True,
                    "containers": [{"name": mirror, "image": f"registry.k8s.io/{mirror}"}]}
        update(pkey, pods_r, "", "v1", {"metadata": meta, "spec": spec}, "kubelet")
    for pkey, p in list(OBJECTS.items()):
        if pkey[:2] != ("", "pods"):
            continue
        owners = p["metadata"].get("ownerReferences") or []
        mirror = "kubernetes.io/config.mirror" in (p["metadata"].get("annotations") or {})
        ds_owned = any(o.get("kind") == "DaemonSet" for o in owners)
        if (ds_owned or mirror) and pkey not in want:
            del OBJECTS[pkey]
            continue
        node = (p.get("spec") or {}).get("nodeName")
        role = (p["metadata"].get("labels") or {}).get("ecoboot.io/validate")
        if node not in index or not (ds_owned or mirror or role):
            continue
        set_status(pkey, pod_status(p, node, index[node], ds_owned, mirror, role), "kubelet")


def pod_status(p, node, i, ds_owned, mirror, role):
    """A pod's status as its node's kubelet reports it."""
    host = (p.get("spec") or {}).get("hostNetwork")
    name = p["metadata"]["name"]
    if not host and not calico_ready(node):
        return {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"name": "c", "ready": False, "state": {"waiting": {
                    "reason": "ContainerCreating",
                    "message": "failed to setup network for sandbox: plugin type=\"calico\" failed (add): stat /var/lib/calico/nodename: no such file or directory"}}}]}
    ip = f"10.0.1.{i}" if host else f"192.168.{i}.{sum(map(ord, name)) % 250 + 2}"
    running = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": f"10.0.1.{i}"}
    if mirror or (ds_owned and role is None):
        ds = ((p["metadata"].get("ownerReferences") or [{}])[0]).get("name")
        ready = node_ready(node) or mirror or ds == "calico-node"
        if ds == "calico-node":
            ready = calico_ready(node)
        if (held("Pod", name) or {}).get("ready") is False:
            ready = False
        return dict(running, conditions=[{"type": "Ready", "status": "True" if ready else "False"}],
                    containerStatuses=[{"name": "c", "ready": ready, "restartCount": 0, "state": {"running": {}}}])
    if role == "server":
        return dict(running, conditions=[{"type": "Ready", "status": "True"}],
                    containerStatuses=[{"name": "c", "ready": True, "state": {"running": {}}}])
    # A client probe: connects to its target pod's IP (or resolves and connects, for DNS).
    ok, why = True, ""
    if role == "client":
        target = (p["metadata"].get("annotations") or {}).get("ecoboot.io/target-ip")
        peer = next((q for k, q in OBJECTS.items() if k[:2] == ("", "pods") and (q.get("status") or {}).get("podIP") == target), None)
        peer_node = ((peer or {}).get("spec") or {}).get("nodeName")
        if peer is None or not calico_ready(peer_node):
            ok, why = False, f"TIMEOUT: dial tcp {target}:8080: i/o timeout"
    elif role == "dns":
        dns = OBJECTS.get(("apps", "deployments", "kube-system", "coredns")) or {}
        if not ((dns.get("status") or {}).get("readyReplicas") or 0):
            ok, why = False, "DNS: lookup kubernetes.default.svc.cluster.local: i/o timeout"
    term = {"exitCode": 0 if ok else 1, "reason": "Completed" if ok else "Error", "message": why}
    return {"phase": "Succeeded" if ok else "Failed", "podIP": running["podIP"], "hostIP": running["hostIP"],
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "c", "ready": False, "state": {"terminated": term}}]}


def argocd_controller():
    key, sts = obj_of("StatefulSet", "argocd-application-controller")
    if not sts or not (sts.get("status") or {}).get("readyReplicas"):
        return
    ns = key[2]
    if find_kind("AppProject") and obj_of("AppProject", "default", ns)[0] is None:
        g, v, r = find_kind("AppProject")
        update((g, r["name"], ns, "default"), r, g, v,
               {"metadata": {"name": "default", "namespace": ns},
                "spec": {"sourceRepos": ["*"], "destinations": [{"namespace": "*", "server": "*"}],
                         "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}}, "argocd-server")
    if obj_of("Deployment", "argocd-server", ns)[0] and ("", "secrets", ns, "argocd-initial-admin-secret") not in OBJECTS:
        r = find_resource("", "v1", "secrets")
        pw = base64.b64encode(secrets.token_urlsafe(12).encode()).decode()
        update(("", "secrets", ns, "argocd-initial-admin-secret"), r, "", "v1",
               {"metadata": {"name": "argocd-initial-admin-secret", "namespace": ns},
                "type": "Opaque", "data": {"password": pw}}, "argocd-server")
    found = find_kind("Application")
    if not found:
        return
    g, v, r = found
    for akey, app in list(OBJECTS.items()):
        if akey[:2] != (g, r["name"]) or age(app) < CONTROLLER_DELAY:
            continue
        spec = app.get("spec") or {}
        project = spec.get("project", "default")
        h = held("Application", akey[3]) or {}
        if obj_of("AppProject", project, akey[2])[0] is None:
            st = {"sync": {"status": "Unknown"}, "health": {"status": "Unknown"},
                  "conditions": [{"type": "InvalidSpecError",
                                  "message": f'Application referencing project {project} which does not exist'}]}
        elif h.get("condition"):
            # What ArgoCD reports for a source it cannot render (e.g. a path that does not exist).
            st = {"sync": {"status": "Unknown"}, "health": {"status": "Healthy"},
                  "conditions": [dict(h["condition"], lastTransitionTime=now())]}
        else:
            st = {"sync": {"status": h.get("sync", "Synced"), "revision": "0" * 40},
                  "health": {"status": h.get("health", "Healthy")},
                  "operationState": {"phase": "Succeeded" if h.get("health", "Healthy") == "Healthy" else "Failed",
                                     "message": "successfully synced (all tasks run)" if not h else
                                     h.get("message", "one or more objects failed to apply")}}
            if (spec.get("source") or {}).get("path") == "argocd/components":
                for child, wave in ROOT_CHILDREN:
                    ckey = (g, r["name"], akey[2], child)
                    if ckey not in OBJECTS:
                        update(ckey, r, g, v, {"metadata": {
                            "name": child, "namespace": akey[2],
                            "annotations": {"argocd.argoproj.io/sync-wave": wave},
                            "labels": {"app.kubernetes.io/instance": akey[3]}},
                            "spec": {"project": project, "source": {"repoURL": (spec.get("source") or {}).get("repoURL"),
                                                                    "path": f"k8s/{child}"},
                                     "destination": spec.get("destination")}}, "argocd-application-controller")
        cur = app.get("status") or {}
        if {k: cur.get(k) for k in st} != st:
            new = copy.deepcopy(app)
            new.setdefault("status", {}).update(st)
            update(akey, dict(r, status=False), g, v, new, "argocd-application-controller")


def controller_loop():
    while True:
        time.sleep(0.2)
        if CONTROLLERS:
            with LOCK:
                try:
                    reconcile()
                except Exception as e:  # noqa: BLE001
                    print(f"double: controller error {e!r}", file=sys.stderr)


# ---- hooks ----

class Hooks(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body):
        reply(self, code, body)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        with LOCK:
            if url.path == "/_double/stats":
                return self.reply(200, STATS)
            if url.path == "/_double/events":
                return self.reply(200, EVENTS)
            if url.path == "/_double/snapshot":
                # The object store as etcd would hold it (what `etcdctl snapshot save` saves).
                owners = [[list(k), {m: dict(v, paths=[list(p) for p in v["paths"]])
                                     for m, v in o.items()}] for k, o in OWNERS.items()]
                return self.reply(200, {"revision": RV[0], "objects": [[list(k), o] for k, o in OBJECTS.items()],
                                        "owners": owners})
            if url.path == "/_double/objects":
                kind = q.get("kind")
                return self.reply(200, [o for o in OBJECTS.values() if not kind or o.get("kind") == kind])
        self.reply(404, {})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        path = urllib.parse.urlparse(self.path).path
        with LOCK:
            if path == "/_double/hold":
                HOLDS[(body["kind"], body["name"])] = body
                return self.reply(200, {"held": len(HOLDS)})
            if path == "/_double/unhold":
                HOLDS.pop((body["kind"], body["name"]), None)
                return self.reply(200, {"held": len(HOLDS)})
            if path == "/_double/restore":
                # An API server started on a restored etcd data directory: exactly the saved
                # objects, at their saved resource versions (later revisions continue from there).
                OBJECTS.clear()
                OWNERS.clear()
                for k, o in body["objects"]:
                    OBJECTS[tuple(k)] = o
                for k, o in body.get("owners", []):
                    OWNERS[tuple(k)] = {m: dict(v, paths={tuple(p) for p in v["paths"]})
                                        for m, v in o.items()}
                RV[0] = max(RV[0], int(body.get("revision", 0)))
                return self.reply(200, {"objects": len(OBJECTS)})
            if path == "/_double/issue-admin":
                return self.reply(200, {"admin_conf": issue_admin()})
            if path == "/_double/create":
                # What a workload controller would create (pods, budgets) for drain tests.
                obj = body["object"]
                g, v, r = find_kind(obj["kind"])
                m = obj["metadata"]
                key = (g, r["name"], m.get("namespace", "") if r["namespaced"] else "", m["name"])
                return self.reply(200, update(key, r, g, v, obj, body.get("manager", "test")))
            key, obj = obj_of(body["kind"], body["name"], body.get("namespace"))
            if obj is None:
                return self.reply(404, {"error": "not found"})
            if path == "/_double/edit":
                new = copy.deepcopy(obj)
                merge_patch(new, body["merge"])
                g, v, r = find_kind(body["kind"])
                update(key, r, g, v, new, body.get("manager", "kubectl-edit"))
                return self.reply(200, OBJECTS[key])
            if path == "/_double/delete":
                del OBJECTS[key]
                OWNERS.pop(key, None)
                return self.reply(200, {})
        self.reply(404, {})


def gen_certs(d):
    def sh(*args):
        subprocess.run(args, check=True, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    # kubeadm's lifetimes: the CA ten years, the server and admin certificates one year.
    sh("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
       "-subj", "/CN=kubernetes-ca", "-addext", "basicConstraints=critical,CA:TRUE",
       "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    for name, subj, ext in (
            ("server", "/CN=kube-apiserver",
             "subjectAltName=IP:127.0.0.1,IP:127.0.1.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default\n"
             "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=CA:FALSE"),
            ("admin", "/O=kubeadm:cluster-admins/CN=kubernetes-admin",
             "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=CA:FALSE")):
        sh("openssl", "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subj)
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext + "\n")
        sh("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
           "-CAcreateserial", "-out", f"{name}.crt", "-days", "365", "-extfile", f"{name}.ext")


def b64(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


ISSUER = {}


def admin_conf(d, port, name):
    """An admin.conf like kubeadm's, with the client certificate NAME.crt/NAME.key of DIR."""
    return f"""apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {b64(os.path.join(d, 'ca.crt'))}
    server: https://127.0.0.1:{port}
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
users:
- name: kubernetes-admin
  user:
    client-certificate-data: {b64(os.path.join(d, name + '.crt'))}
    client-key-data: {b64(os.path.join(d, name + '.key'))}
"""


def issue_admin():
    """A new admin client certificate from the cluster CA, one year from now (what `kubeadm
    certs renew` writes into admin.conf), returned as an admin.conf."""
    d = ISSUER["dir"]
    n = len([f for f in os.listdir(d) if f.startswith("admin-") and f.endswith(".crt")]) + 1
    name = f"admin-{n}"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *a: subprocess.run(a, check=True, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run("openssl", "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
        "-subj", "/O=kubeadm:cluster-admins/CN=kubernetes-admin")
    run("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", f"{name}.crt", "-days", "365", "-extfile", "admin.ext")
    return admin_conf(d, ISSUER["port"], name)


def main():
    global CONTROLLERS
    d = os.path.abspath(sys.argv[1])
    CONTROLLERS = "--no-controllers" not in sys.argv
    os.makedirs(d, exist_ok=True)
    if not os.path.exists(os.path.join(d, "admin.crt")):
        gen_certs(d)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "server.crt"), os.path.join(d, "server.key"))
    ctx.load_verify_locations(os.path.join(d, "ca.crt"))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    class TlsServer(ThreadingHTTPServer):
        daemon_threads = True

        def finish_request(self, request, client_address):  # handshake in the worker thread
            try:
                request = ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
            super().finish_request(request, client_address)

    api = TlsServer(("127.0.0.1", int(os.environ.get("DOUBLE_PORT", "0"))), Api)
    hooks = ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    hooks.daemon_threads = True
    port, hook_port = api.server_address[1], hooks.server_address[1]
    ISSUER.update(dir=d, port=port)
    conf = admin_conf(d, port, "admin")
    for name, text in (("admin.conf", conf), ("port", str(port)), ("hook_port", str(hook_port))):
        tmp = os.path.join(d, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, os.path.join(d, name))
    with LOCK:  # the namespaces a new cluster has
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            update(("", "namespaces", "", ns), find_resource("", "v1", "namespaces"), "", "v1",
                   {"metadata": {"name": ns}}, "kube-apiserver")
    try:  # also where the control-plane node lives in the fleet, for `apiAccess: direct`
        direct = TlsServer(("127.0.1.1", port), Api)
        threading.Thread(target=direct.serve_forever, daemon=True).start()
    except OSError as e:
        print(f"double: not listening on 127.0.1.1:{port}: {e}", file=sys.stderr)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    threading.Thread(target=controller_loop, daemon=True).start()
    print(f"ready {port} {hook_port}", flush=True)
    api.serve_forever()


if __name__ == "__main__":
    main()
