#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of moto_server, for ecoboot's AWS tests.

moto is a real AWS API emulator but more forgiving than AWS. This proxy adds, on request,
the AWS behaviours moto does not model, so ecoboot's handling of them is tested for real:

  throttle_every N           every Nth mutating call answers RequestLimitExceeded / Throttling
  fail {Action: [Code, n]}   the next n calls of Action fail with Code (n = -1: always)
  delay {Action: seconds}    sleep before forwarding (makes kill -9 land mid-call)
  profile_delay S            RunInstances fails "Invalid IAM Instance Profile" for S seconds
                             after the profile was created (IAM propagation)
  dependency {Action: n}     the first n calls answer DependencyViolation
  describe_lag S             new instances stay invisible to DescribeInstances for S seconds
                             (EC2 eventual consistency; bench/realistic.sh: pending -> running + boot)
  describe_lags {node: S}    the same per node (tag ecoboot.io/node): EC2's launch and boot times
                             vary per instance (bench/realistic.sh draws them from the model)
  registration_lag S         ELBv2 DescribeTargetHealth answers a target registered less than S
                             seconds ago as `initial` / Elb.RegistrationInProgress, as AWS does
                             for 3-5 minutes (moto registers at once)
  stop_lag S                 a stopped instance shows `stopping` for S seconds (moto stops at once)
  image_lag S                a new image shows `pending` for S seconds (moto makes it available at
                             once; AWS takes minutes to snapshot the disk)
  idempotent_tokens true     RunInstances ClientToken idempotency as in AWS: a repeated token
                             returns the original instance (with its current state)
  sg_references true         DeleteSecurityGroup answers DependencyViolation while another
                             group's rule references the group, as AWS does (moto deletes it)
  quota N | "denied"         Service Quotas GetServiceQuota answers N vCPUs, or AccessDenied
                             (moto offers no EC2 quota in this region)
  console {node: [fp, ...]}  GetConsoleOutput for the instance tagged ecoboot.io/node=node
                             answers a boot log with cloud-init's SSH host key fingerprint
                             block (moto's console text has none)
  (always)                   CreateImage tags the image's snapshots as its TagSpecification says
                             (moto raises NotImplementedError for ResourceType=snapshot): the
                             snapshot spec is taken out before forwarding and applied after
  fleet {"dir": D, "nodes": {name: N}}
                             EC2's disks on the sshd fleet (scripts/fleet.sh in D): an instance
                             tagged ecoboot.io/node=name (or ecoboot.io/role=name, the image
                             builder) runs on fleet node N. RunInstances writes
                             D/nodes/N/launched ("<instance> <image>"); CreateImage captures
                             node N's disk (its overlay upper dirs) as D/shared/images/<ami>.tar,
                             which the node simulator cloud-init unpacks on an instance launched
                             from that image (a golden image's content, as EBS would give it;
                             files the builder deleted, overlayfs whiteouts, listed in .whiteouts)

Listens on 127.0.0.1 only. Prints "ready <port>" when listening.
GET  /_proxy/stats              counts per action: forwarded and injected faults
POST /_proxy/config             replaces the fault config (JSON)
GET  /_proxy/inventory?cluster=C  resources tagged ecoboot.io/cluster=C, as JSON (read from moto)
POST /_proxy/imds_optional?cluster=C  sets HttpTokens=optional on the cluster's instances (an
                             instance launched before ecoboot required IMDSv2)
"""

import json
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MOTO = sys.argv[1].rstrip("/")
LOCK = threading.Lock()
CONFIG = {}
STATS = {}
TOKENS = {}  # ClientToken -> (response body, instance id)
CREATED = {}  # instance id -> creation time
NODE_OF = {}  # instance id -> its ecoboot.io/node tag
STOPPED = {}  # instance id -> StopInstances time
IMAGED = {}  # image id -> CreateImage time
REGISTERED = {}  # ELBv2 target id -> RegisterTargets time
STATE = {"calls": 0, "profile_at": None}
READ_PREFIXES = ("Describe", "Get", "List")


def bump(key):
    STATS[key] = STATS.get(key, 0) + 1


def ec2_error(code, message, status=400):
    body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>"
            f"<Message>{message}</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>")
    return status, body.encode()


def iam_error(code, message, status=400):
    body = (f"<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type>"
            f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>")
    return status, body.encode()


STATUS = {"EntityAlreadyExists": 409, "AccessDenied": 403, "UnauthorizedOperation": 403, "ExpiredToken": 403}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="text/xml"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/_proxy/stats"):
            with LOCK:
                return self.reply(200, json.dumps(STATS).encode(), "application/json")
        if self.path.startswith("/_proxy/inventory"):
            cluster = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)["cluster"][0]
            return self.reply(200, json.dumps(inventory(cluster)).encode(), "application/json")
        self.forward(b"")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path.startswith("/_proxy/imds_optional"):
            cluster = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)["cluster"][0]
            ec2, _ = clients()
            for r in ec2.describe_instances(Filters=[{"Name": "tag:ecoboot.io/cluster", "Values": [cluster]}])["Reservations"]:
                for i in r["Instances"]:
                    ec2.modify_instance_metadata_options(InstanceId=i["InstanceId"], HttpTokens="optional", HttpPutResponseHopLimit=1)
            return self.reply(200, b"{}", "application/json")
        if self.path.startswith("/_proxy/config"):
            with LOCK:
                CONFIG.clear()
                CONFIG.update(json.loads(body or b"{}"))
                STATE["calls"] = 0
            return self.reply(200, b"{}", "application/json")
        target = self.headers.get("X-Amz-Target", "")
        if target.startswith("ServiceQuotas"):  # ServiceQuotasV20190624.GetServiceQuota
            return self.service_quotas(target.split(".", 1)[1], body)
        form = urllib.parse.parse_qs(body.decode(errors="replace"))
        action = form.get("Action", [""])[0]
        iam = "/iam/" in self.headers.get("Authorization", "")
        error = iam_error if iam else ec2_error
        mutating = action and not action.startswith(READ_PREFIXES)
        with LOCK:
            bump(action)
            fault = None
            spec = CONFIG.get("fail", {}).get(action)
            if spec and spec[1] != 0:
                spec[1] -= 1
                fault = error(spec[0], f"injected {spec[0]}", STATUS.get(spec[0], 400))
            n = CONFIG.get("throttle_every")
            if fault is None and n and mutating:
                STATE["calls"] += 1
                if STATE["calls"] % n == 0:
                    fault = error("Throttling" if iam else "RequestLimitExceeded", "Rate exceeded", 400 if iam else 503)
            dep = CONFIG.get("dependency", {})
            if fault is None and dep.get(action, 0) > 0:
                dep[action] -= 1
                fault = error("DependencyViolation", "resource has a dependent object")
            pdelay = CONFIG.get("profile_delay")
            if fault is None and pdelay and action == "RunInstances":
                at = STATE["profile_at"]
                if at is None or time.time() - at < pdelay:
                    name = form.get("IamInstanceProfile.Name", ["?"])[0]
                    fault = error("InvalidParameterValue",
                                  f"Value ({name}) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name")
            if fault:
                bump("fault:" + action)
            delay = CONFIG.get("delay", {}).get(action, 0)
        if fault:
            return self.reply(*fault)
        if delay:
            time.sleep(delay)
        if action == "DeleteSecurityGroup" and CONFIG.get("sg_references"):
            gid = form.get("GroupId", [""])[0]
            ec2, _ = clients()
            refs = [g["GroupId"] for f in ("ip-permission.group-id", "egress.ip-permission.group-id")
                    for g in ec2.describe_security_groups(Filters=[{"Name": f, "Values": [gid]}])["SecurityGroups"]
                    if g["GroupId"] != gid]
            if refs:
                with LOCK:
                    bump("fault:DeleteSecurityGroup")
                return self.reply(*ec2_error("DependencyViolation", f"resource {gid} has a dependent object"))
        if action == "GetConsoleOutput" and CONFIG.get("console"):
            reply = console_output(form.get("InstanceId", [""])[0], CONFIG["console"])
            if reply:
                return self.reply(200, reply)
        token = form.get("ClientToken", [None])[0]
        if action == "RunInstances" and token and CONFIG.get("idempotent_tokens"):
            with LOCK:
                cached = TOKENS.get(token)
            if cached:
                with LOCK:
                    bump("replayed:RunInstances")
                return self.reply(200, with_current_state(cached, self.headers))
        snapshot_tags = []
        if action == "CreateImage":
            body, snapshot_tags = without_snapshot_tags(form)
        status, headers, data = self.forward(body, send=False)
        if status == 200 and snapshot_tags:
            tag_snapshots(data, snapshot_tags)
        if status == 200 and action in ("CreateInstanceProfile", "AddRoleToInstanceProfile"):
            STATE["profile_at"] = time.time()
        if status == 200 and action in ("RunInstances", "CreateImage") and CONFIG.get("fleet"):
            fleet_disk(action, form, data, CONFIG["fleet"])
        if status == 200 and action == "RunInstances":
            ids = re.findall(rb"<instanceId>(i-[0-9a-f]+)</instanceId>", data)
            node = instance_tags(form).get("ecoboot.io/node")
            with LOCK:
                for i in ids:
                    CREATED[i.decode()] = time.time()
                    if node:
                        NODE_OF[i.decode()] = node
                if token and CONFIG.get("idempotent_tokens") and ids:
                    TOKENS[token] = (data, ids[0].decode())
        if status == 200 and action == "DescribeInstances" and (CONFIG.get("describe_lag") or CONFIG.get("describe_lags")):
            data = hide_recent(data, CONFIG.get("describe_lag") or 0, CONFIG.get("describe_lags") or {})
        if status == 200 and action == "RegisterTargets":
            with LOCK:
                for k, v in form.items():
                    if re.fullmatch(r"Targets\.member\.\d+\.Id", k):
                        REGISTERED[v[0]] = time.time()
        if status == 200 and action == "DescribeTargetHealth" and CONFIG.get("registration_lag"):
            data = registering(data, CONFIG["registration_lag"])
        if status == 200 and action == "StopInstances":
            with LOCK:
                for i in form.get("InstanceId.1", []):
                    STOPPED[i] = time.time()
        if status == 200 and action == "CreateImage":
            m = re.search(rb"<imageId>(ami-[0-9a-f]+)</imageId>", data)
            with LOCK:
                if m:
                    IMAGED[m.group(1).decode()] = time.time()
        if status == 200 and action == "DescribeInstances" and CONFIG.get("stop_lag"):
            data = still(data, STOPPED, CONFIG["stop_lag"], rb"<instanceId>(i-[0-9a-f]+)</instanceId>",
                         rb"<code>80</code>\s*<name>stopped</name>", b"<code>64</code><name>stopping</name>")
        if status == 200 and action == "DescribeImages" and CONFIG.get("image_lag"):
            data = still(data, IMAGED, CONFIG["image_lag"], rb"<imageId>(ami-[0-9a-f]+)</imageId>",
                         rb"<imageState>available</imageState>", b"<imageState>pending</imageState>")
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def service_quotas(self, action, body):
        """Service Quotas (JSON protocol): moto answers GetServiceQuota for ec2 with
        NoSuchResourceException in this region, so the quota is configured here: a number (the
        applied value) or "denied" (a principal without servicequotas:GetServiceQuota)."""
        with LOCK:
            bump(action)
            quota = CONFIG.get("quota")
        kind = "application/x-amz-json-1.1"
        if quota is None:
            return self.forward(body)
        if quota == "denied":
            err = {"__type": "AccessDeniedException",
                   "Message": "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: "
                              "servicequotas:GetServiceQuota because no identity-based policy allows it"}
            return self.reply(400, json.dumps(err).encode(), kind)
        req = json.loads(body or b"{}")
        out = {"Quota": {"ServiceCode": req.get("ServiceCode"), "QuotaCode": req.get("QuotaCode"),
                         "QuotaName": "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
                         "Value": float(quota), "Unit": "None", "Adjustable": True, "GlobalQuota": False}}
        return self.reply(200, json.dumps(out).encode(), kind)

    def forward(self, body, send=True):
        req = urllib.request.Request(MOTO + self.path, data=body if self.command == "POST" else None,
                                     method=self.command)
        for k, v in self.headers.items():
            if k.lower() not in ("host", "content-length", "connection"):
                req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, headers, data = resp.status, resp.getheaders(), resp.read()
        except urllib.error.HTTPError as e:
            status, headers, data = e.code, e.headers.items(), e.read()
        if not send:
            return status, headers, data
        return self.reply(status, data, dict(headers).get("Content-Type", "text/xml"))


def without_snapshot_tags(form):
    """CreateImage's form without its snapshot TagSpecification (renumbered), and those tags."""
    specs, rest = {}, {}
    for k, v in form.items():
        m = re.fullmatch(r"TagSpecification\.(\d+)\.(.*)", k)
        if m:
            specs.setdefault(int(m.group(1)), {})[m.group(2)] = v[0]
        else:
            rest[k] = v[0]
    tags, n = [], 0
    for i in sorted(specs):
        spec = specs[i]
        if spec.get("ResourceType") == "snapshot":
            j = 1
            while f"Tag.{j}.Key" in spec:
                tags.append({"Key": spec[f"Tag.{j}.Key"], "Value": spec.get(f"Tag.{j}.Value", "")})
                j += 1
            continue
        n += 1
        for k, v in spec.items():
            rest[f"TagSpecification.{n}.{k}"] = v
    return urllib.parse.urlencode(rest).encode(), tags


def tag_snapshots(data, tags):
    """Tags the snapshots of the image CreateImage answered with."""
    m = re.search(rb"<imageId>(ami-[0-9a-f]+)</imageId>", data)
    if not m:
        return
    ec2, _ = clients()
    for image in ec2.describe_images(ImageIds=[m.group(1).decode()])["Images"]:
        snaps = [b["Ebs"]["SnapshotId"] for b in image.get("BlockDeviceMappings", []) if b.get("Ebs", {}).get("SnapshotId")]
        if snaps:
            ec2.create_tags(Resources=snaps, Tags=tags)


# Files of a node's disk that are the node's own, not the image's: the fleet's wiring, the
# bench's timings, boot identity and logs.
NOT_IMAGED = ("var/log/", "var/lib/ecoboot-sim/fleet-dir", "var/lib/ecoboot-sim/timings",
              "var/lib/ecoboot-sim/cluster-admin.conf", "var/lib/ecoboot-sim/cluster-hook-port",
              "var/lib/ecoboot-sim/boot_id", "var/lib/ecoboot-sim/boots", "var/lib/ecoboot-sim/seeded",
              "var/lib/ecoboot-sim/booted-instance")


def fleet_disk(action, form, data, fleet):
    """See `fleet` in the module doc."""
    import io
    import os
    import tarfile
    shared = os.path.join(fleet["dir"], "shared")
    os.makedirs(os.path.join(shared, "images"), exist_ok=True)
    placed_file = os.path.join(shared, "instance-nodes.json")
    try:
        placed = json.load(open(placed_file))
    except (OSError, ValueError):
        placed = {}
    if action == "RunInstances":
        tags = instance_tags(form)
        name = tags.get("ecoboot.io/node") or tags.get("ecoboot.io/role")
        n = fleet["nodes"].get(name)
        ids = re.findall(rb"<instanceId>(i-[0-9a-f]+)</instanceId>", data)
        if n is None or not ids:
            return
        instance = ids[0].decode()
        image = form.get("ImageId", [""])[0]
        with open(os.path.join(fleet["dir"], "nodes", str(n), "launched"), "w") as f:
            f.write(f"{instance} {image}\n")
        placed[instance] = n
        with open(placed_file, "w") as f:
            json.dump(placed, f)
        return
    m = re.search(rb"<imageId>(ami-[0-9a-f]+)</imageId>", data)
    n = placed.get(form.get("InstanceId", [""])[0])
    if not m or n is None:
        return
    node = os.path.join(fleet["dir"], "nodes", str(n), "ov")
    out = os.path.join(shared, "images", m.group(1).decode() + ".tar")
    deleted = []
    with tarfile.open(out + ".new", "w") as tar:
        for top in ("etc", "var", "opt", "usr/local"):
            upper = os.path.join(node, top, "upper")
            for root, dirs, files in os.walk(upper):
                dirs.sort()
                for entry in sorted(dirs + files):
                    path = os.path.join(root, entry)
                    rel = top + "/" + os.path.relpath(path, upper)
                    if any(rel == x or rel.startswith(x) for x in NOT_IMAGED):
                        continue
                    info = tar.gettarinfo(path, rel)
                    if info.isdir():
                        tar.addfile(info)
                    elif info.isfile():
                        with open(path, "rb") as f:
                            tar.addfile(info, f)
                    elif info.issym():
                        tar.addfile(info)
                    elif info.ischr() and info.devmajor == 0 and info.devminor == 0:
                        deleted.append(rel)  # an overlayfs whiteout: the builder deleted it
        # The base image's own files (scripts/fleet.sh seeds them) the builder deleted.
        try:
            base = open(os.path.join(shared, "base-files")).read().split()
        except OSError:
            base = []
        for rel in base:
            top = next((t for t in ("usr/local", "etc", "var", "opt") if rel.startswith(t + "/")), None)
            if top and not os.path.lexists(os.path.join(node, top, "upper", rel[len(top) + 1:])):
                deleted.append(rel)
        # What the builder deleted from the base image, for the unpacking node to delete too.
        listing = ("\n".join(deleted) + "\n").encode()
        info = tarfile.TarInfo(".whiteouts")
        info.size = len(listing)
        tar.addfile(info, io.BytesIO(listing))
    os.replace(out + ".new", out)


def with_current_state(cached, headers):
    """AWS answers a repeated ClientToken with the original instance as it is now."""
    data, instance = cached
    body = urllib.parse.urlencode({"Action": "DescribeInstances", "Version": "2016-11-15", "InstanceId.1": instance}).encode()
    req = urllib.request.Request(MOTO + "/", data=body, method="POST")
    req.add_header("Authorization", headers.get("Authorization", ""))
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    with urllib.request.urlopen(req, timeout=30) as resp:
        now = resp.read()
    m = re.search(rb"<instanceState>.*?</instanceState>", now, re.S)
    if m:
        data = re.sub(rb"<instanceState>.*?</instanceState>", m.group(0), data, count=1, flags=re.S)
    return data


def registering(data, lag):
    """DescribeTargetHealth with the targets registered less than `lag` seconds ago still in
    registration, as AWS reports them."""
    now = time.time()

    def member(m):
        block = m.group(0)
        ident = re.search(rb"<Id>([^<]+)</Id>", block)
        if ident and now - REGISTERED.get(ident.group(1).decode(), 0) < lag:
            block = re.sub(rb"<TargetHealth>.*?</TargetHealth>",
                           b"<TargetHealth><State>initial</State><Reason>Elb.RegistrationInProgress</Reason>"
                           b"<Description>Target registration is in progress</Description></TargetHealth>",
                           block, count=1, flags=re.S)
        return block

    return re.sub(rb"<member>.*?</member>", member, data, flags=re.S)


def still(data, since, lag, id_re, done_re, not_yet):
    """`data` with each item (instance or image) whose id is in `since` less than `lag` seconds
    ago shown as not done yet: its `done_re` state replaced by `not_yet`."""
    now = time.time()
    out, last = [], 0
    ids = list(re.finditer(id_re, data))
    for k, m in enumerate(ids):
        end = ids[k + 1].start() if k + 1 < len(ids) else len(data)
        chunk = data[m.start():end]
        if now - since.get(m.group(1).decode(), 0) < lag:
            chunk = re.sub(done_re, not_yet, chunk, count=1)
        out.append(data[last:m.start()])
        out.append(chunk)
        last = end
    out.append(data[last:])
    return b"".join(out)


def instance_tags(form):
    """The tags RunInstances' form gives the instance."""
    tags = {}
    for k, v in form.items():
        m = re.fullmatch(r"TagSpecification\.(\d+)\.Tag\.(\d+)\.Key", k)
        if m and form.get(f"TagSpecification.{m.group(1)}.ResourceType", [""])[0] == "instance":
            tags[v[0]] = form.get(f"TagSpecification.{m.group(1)}.Tag.{m.group(2)}.Value", [""])[0]
    return tags


def hide_recent(data, lag, lags=None):
    root = ET.fromstring(data)
    ns = root.tag.split("}")[0].strip("{") if root.tag.startswith("{") else ""
    q = (lambda t: f"{{{ns}}}{t}") if ns else (lambda t: t)
    now = time.time()
    rset = root.find(q("reservationSet"))
    if rset is None:
        return data
    for res in list(rset):
        ids = [e.text for e in res.iter(q("instanceId"))]
        if any(now - CREATED.get(i, 0) < (lags or {}).get(NODE_OF.get(i), lag) for i in ids):
            rset.remove(res)
            with LOCK:
                bump("hidden:DescribeInstances")
    if ns:
        ET.register_namespace("", ns)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def clients():
    import boto3
    region = CONFIG.get("region", "ap-northeast-2")
    # Under IAM enforcement the proxy's own reads need a real user's key (config `credentials`).
    cred = CONFIG.get("credentials") or {}
    kw = dict(endpoint_url=MOTO, region_name=region, aws_access_key_id=cred.get("key", "testing"),
              aws_secret_access_key=cred.get("secret", "testing"))
    return boto3.client("ec2", **kw), boto3.client("iam", **kw)


def console_output(instance, fingerprints):
    """A console log as cloud-init prints it on Ubuntu, with the node's configured fingerprints."""
    import base64
    ec2, _ = clients()
    res = ec2.describe_instances(InstanceIds=[instance])["Reservations"]
    tags = {t["Key"]: t["Value"] for t in res[0]["Instances"][0].get("Tags", [])} if res else {}
    fps = fingerprints.get(tags.get("ecoboot.io/node", ""))
    if fps is None:
        return None
    lines = ["[    0.000000] Linux version 6.8.0-1015-aws", "cloud-init[812]: Cloud-init v. 24.1 running 'modules:final'",
             "ec2: #############################################################",
             "ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----"]
    lines += [f"ec2: 256 {fp} root@ip-10-0-1-10 (ED25519)" for fp in fps]
    lines += ["ec2: -----END SSH HOST KEY FINGERPRINTS-----", "ec2: #############################################################"]
    out = base64.b64encode(("\n".join(lines) + "\n").encode()).decode()
    return (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><GetConsoleOutputResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"
            f"<requestId>fault-proxy</requestId><instanceId>{instance}</instanceId><timestamp>2026-11-23T00:00:00.000Z</timestamp>"
            f"<output>{out}</output></GetConsoleOutputResponse>").encode()


def inventory(cluster):
    ec2, iam = clients()
    tag = [{"Name": "tag:ecoboot.io/cluster", "Values": [cluster]}]
    out = {"instances": []}
    # moto does not update an instance's IamInstanceProfile when its association is replaced;
    # AWS does. The association is the truth, so the inventory reads it.
    assoc = {a["InstanceId"]: a["IamInstanceProfile"]["Arn"]
             for a in ec2.describe_iam_instance_profile_associations()["IamInstanceProfileAssociations"]
             if a.get("State") in ("associated", "associating")}
    for r in ec2.describe_instances(Filters=tag)["Reservations"]:
        for i in r["Instances"]:
            tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
            out["instances"].append({"id": i["InstanceId"], "node": tags.get("ecoboot.io/node"), "name": tags.get("Name"),
                                     "state": i["State"]["Name"], "type": i["InstanceType"], "subnet": i.get("SubnetId"),
                                     "profile": assoc.get(i["InstanceId"], i.get("IamInstanceProfile", {}).get("Arn", "")), "image": i["ImageId"],
                                     "key": i.get("KeyName"),
                                     "http_tokens": i.get("MetadataOptions", {}).get("HttpTokens"),
                                     "hop_limit": i.get("MetadataOptions", {}).get("HttpPutResponseHopLimit")})
    out["volumes"] = [{"size": v["Size"], "type": v["VolumeType"], "encrypted": v["Encrypted"],
                       "node": {t["Key"]: t["Value"] for t in v.get("Tags", [])}.get("ecoboot.io/node")}
                      for v in ec2.describe_volumes(Filters=tag)["Volumes"]]
    out["addresses"] = [{"ip": a.get("PublicIp"), "instance": a.get("InstanceId"),
                         "node": {t["Key"]: t["Value"] for t in a.get("Tags", [])}.get("ecoboot.io/node")}
                        for a in ec2.describe_addresses(Filters=tag)["Addresses"]]
    out["vpcs"] = len(ec2.describe_vpcs(Filters=tag)["Vpcs"])
    out["subnets"] = len(ec2.describe_subnets(Filters=tag)["Subnets"])
    out["internet_gateways"] = len(ec2.describe_internet_gateways(Filters=tag)["InternetGateways"])
    out["route_tables"] = len(ec2.describe_route_tables(Filters=tag)["RouteTables"])
    groups = ec2.describe_security_groups(Filters=tag)["SecurityGroups"]
    out["security_groups"] = len(groups)
    out["ingress"] = sorted(f"{p.get('IpProtocol')} {p.get('FromPort', 0)}-{p.get('ToPort', 0)} {r['CidrIp']}"
                            for g in groups for p in g["IpPermissions"] for r in p.get("IpRanges", []))
    role = f"ecoboot-{cluster}-node"
    try:
        out["role_policies"] = sorted(p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"])
    except iam.exceptions.NoSuchEntityException:
        out["role_policies"] = []
    out["key_pairs"] = len(ec2.describe_key_pairs(Filters=tag)["KeyPairs"])
    out["roles"] = len([r for r in iam.list_roles()["Roles"] if r["RoleName"] == f"ecoboot-{cluster}-node"])
    out["controller_roles"] = len([r for r in iam.list_roles()["Roles"] if r["RoleName"] == f"ecoboot-{cluster}-controller"])
    out["controller_instance_profiles"] = len([p for p in iam.list_instance_profiles()["InstanceProfiles"]
                                               if p["InstanceProfileName"] == f"ecoboot-{cluster}-controller"])
    out["instance_profiles"] = len([p for p in iam.list_instance_profiles()["InstanceProfiles"]
                                    if p["InstanceProfileName"] == f"ecoboot-{cluster}-node"])
    return out


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"ready {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
