#!/usr/bin/env python3
"""ecoboot's scheduled etcd backup, installed on the control plane by `ecoboot up` when
spec.backup.schedule is set and run by ecoboot-backup.timer. Python standard library only.

It does what `ecoboot backup` does from a workstation: etcdctl snapshot save with kubeadm's etcd
client certificates, etcdutl snapshot status, a tar.gz of the snapshot and /etc/kubernetes/pki
in a root-only directory, uploaded to s3://BUCKET/KEYPREFIX<time>-rev<revision>.tar.gz with
SSE-S3, the cluster tag and sha256/revision metadata, never over an existing object. Credentials
are the instance profile's, read through IMDSv2; they may add backups under this prefix and
nothing else (no list, no delete): `ecoboot backup`, with the operator's credentials, keeps the
newest KEEP.

Usage: ecoboot-backup BUCKET KEYPREFIX CLUSTER KEEP
ECOBOOT_IMDS and ECOBOOT_S3_ENDPOINT override the metadata service and the S3 endpoint (tests).
"""
import datetime
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request

IMDS = os.environ.get("ECOBOOT_IMDS", "http://169.254.169.254")
TOOLS = """certs="--endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key"
in_etcd() { crictl exec "$(crictl ps --name etcd -q | head -n1)" "$@"; }
if command -v etcdctl >/dev/null 2>&1; then etcdctl() { command etcdctl "$@"; }; else etcdctl() { in_etcd etcdctl "$@"; }; fi
if command -v etcdutl >/dev/null 2>&1; then etcdutl() { command etcdutl "$@"; }; else etcdutl() { in_etcd etcdutl "$@"; }; fi
"""


def imds(path, token=None, method="GET"):
    headers = {"X-aws-ec2-metadata-token": token} if token else {"X-aws-ec2-metadata-token-ttl-seconds": "300"}
    req = urllib.request.Request(IMDS + path, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


def credentials():
    token = imds("/latest/api/token", method="PUT")
    role = imds("/latest/meta-data/iam/security-credentials/", token).split()[0]
    c = json.loads(imds(f"/latest/meta-data/iam/security-credentials/{role}", token))
    region = imds("/latest/meta-data/placement/region", token)
    return c["AccessKeyId"], c["SecretAccessKey"], c.get("Token"), region


def sign(method, url, region, creds, payload_hash, headers):
    """AWS Signature Version 4 for S3 (the payload hash is sent as x-amz-content-sha256)."""
    access, secret, token, _ = creds
    u = urllib.parse.urlsplit(url)
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    headers = dict(headers, host=u.netloc, **{"x-amz-date": amz_date, "x-amz-content-sha256": payload_hash})
    if token:
        headers["x-amz-security-token"] = token
    canon_headers = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
    signed = ";".join(sorted(canon_headers))
    query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                     for k, v in sorted(urllib.parse.parse_qsl(u.query, keep_blank_values=True)))
    canonical = "\n".join([method, urllib.parse.quote(u.path or "/", safe="/-_.~"), query,
                           "".join(f"{k}:{canon_headers[k]}\n" for k in sorted(canon_headers)), signed, payload_hash])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={signed}, Signature={signature}"
    return headers


def s3(method, bucket, key, region, creds, query="", body=b"", headers=None):
    endpoint = os.environ.get("ECOBOOT_S3_ENDPOINT", f"https://s3.{region}.amazonaws.com")
    url = f"{endpoint}/{bucket}/{urllib.parse.quote(key, safe='/-_.~')}" + (f"?{query}" if query else "")
    digest = hashlib.sha256(body).hexdigest()
    req = urllib.request.Request(url, data=body if method == "PUT" else None, method=method,
                                 headers=sign(method, url, region, creds, digest, headers or {}))
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.read()


def main():
    bucket, prefix, cluster, keep = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    os.umask(0o077)
    # Every control plane has this timer; only the etcd leader takes the backup, so there is
    # one per schedule and it survives the loss of any control plane.
    status = json.loads(subprocess.run(["bash", "-c", TOOLS + "etcdctl $certs endpoint status -w json"],
                                       check=True, capture_output=True, text=True).stdout)
    header = status[0]["Status"]
    if header["header"]["member_id"] != header["leader"]:
        print("not the etcd leader: the leader's timer takes this backup")
        return
    work = tempfile.mkdtemp(prefix="ecoboot-backup-", dir="/var/lib")
    try:
        snap = "/var/lib/etcd/ecoboot-snapshot.db"
        script = TOOLS + f"etcdctl $certs snapshot save {snap} >&2\nmv {snap} {work}/etcd.db\netcdutl snapshot status {work}/etcd.db -w json"
        status = json.loads(subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        archive = os.path.join(work, "backup.tar.gz")
        subprocess.run(["tar", "-czf", archive, "-C", "/", "etc/kubernetes/pki", "-C", work, "etcd.db"], check=True)
        body = open(archive, "rb").read()
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        key = f"{prefix}{stamp}-rev{status['revision']}.tar.gz"
        creds = credentials()
        region = creds[3]
        tag = urllib.parse.urlencode({"ecoboot.io/cluster": cluster})
        s3("PUT", bucket, key, region, creds, body=body, headers={
            "x-amz-server-side-encryption": "AES256", "x-amz-tagging": tag,
            "x-amz-meta-sha256": hashlib.sha256(body).hexdigest(),
            "x-amz-meta-etcd-revision": str(status["revision"]), "content-type": "application/gzip",
            "if-none-match": "*"})
        print(f"uploaded s3://{bucket}/{key} ({len(body)} bytes, revision {status['revision']})")
        # The node's credentials add backups and nothing else: no list, no delete, no
        # overwrite (If-None-Match). `ecoboot backup`, run with the operator's credentials,
        # prunes to the newest `keep`.
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
