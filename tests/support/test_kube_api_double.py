"""Fidelity checks of the API double against ../shared/reference/kube-api-facts.md: a double that
drifts from a real kube-apiserver would make ecoboot's API tests worthless.

Run: python -m unittest tests/support/test_kube_api_double.py   (tests/api_double.rs does)
"""
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


class Double(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="ekt")
        cls.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "kube_api_double.py"), cls.dir],
                                    stdout=subprocess.PIPE, text=True)
        words = cls.proc.stdout.readline().split()
        assert words[0] == "ready", words
        cls.base = f"https://127.0.0.1:{words[1]}"
        cls.hooks = f"http://127.0.0.1:{words[2]}"
        cls.ctx = ssl.create_default_context(cafile=os.path.join(cls.dir, "ca.crt"))
        cls.ctx.load_cert_chain(os.path.join(cls.dir, "admin.crt"), os.path.join(cls.dir, "admin.key"))

    @classmethod
    def tearDownClass(cls):
        cls.proc.kill()
        cls.proc.wait()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def call(self, method, path, body=None, ctype="application/json", ctx=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, context=ctx or self.ctx, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def apply(self, path, obj, manager="ecoboot", force=False):
        q = f"?fieldManager={manager}" + ("&force=true" if force else "")
        return self.call("PATCH", path + q, obj, "application/apply-patch+yaml")

    def test_discovery_shapes(self):
        code, v = self.call("GET", "/api")
        self.assertEqual((code, v["kind"], v["versions"]), (200, "APIVersions", ["v1"]))
        _, core = self.call("GET", "/api/v1")
        self.assertEqual(core["groupVersion"], "v1", "not /v1: kubectl and kube-rs need exactly v1")
        _, groups = self.call("GET", "/apis")
        self.assertEqual(groups["kind"], "APIGroupList")
        apps = [g for g in groups["groups"] if g["name"] == "apps"][0]
        self.assertEqual(apps["preferredVersion"]["groupVersion"], "apps/v1")
        _, rl = self.call("GET", "/apis/apps/v1")
        dep = [r for r in rl["resources"] if r["name"] == "deployments"][0]
        self.assertEqual((dep["kind"], dep["namespaced"], dep["singularName"]), ("Deployment", True, "deployment"))

    def test_no_client_certificate_is_unauthorized(self):
        ctx = ssl.create_default_context(cafile=os.path.join(self.dir, "ca.crt"))
        code, body = self.call("GET", "/api/v1/nodes", ctx=ctx)
        self.assertEqual((code, body["kind"], body["reason"]), (401, "Status", "Unauthorized"))

    def test_apply_creates_noop_and_conflicts(self):
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}, "data": {"a": "1"}}
        path = "/api/v1/namespaces/default/configmaps/c1"
        code, first = self.apply(path, cm)
        self.assertEqual(code, 201, "apply creates")
        code, again = self.apply(path, cm)
        self.assertEqual(code, 200)
        self.assertEqual(again["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"], "no-op")
        code, err = self.apply(path, dict(cm, data={"a": "2"}), manager="other")
        self.assertEqual((code, err["reason"]), (409, "Conflict"))
        self.assertIn('conflict with "ecoboot": .data.a', err["message"])
        code, forced = self.apply(path, dict(cm, data={"a": "2"}), manager="other", force=True)
        self.assertEqual((code, forced["data"]["a"]), (200, "2"))
        owners = {m["manager"]: m["fieldsV1"] for m in forced["metadata"]["managedFields"]}
        self.assertIn("f:a", owners["other"]["f:data"])
        self.assertNotIn("ecoboot", owners, "force moved the only field ecoboot owned")

    def test_apply_drops_fields_the_manager_no_longer_sends(self):
        path = "/api/v1/namespaces/default/configmaps/c2"
        self.apply(path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c2"}, "data": {"a": "1", "b": "2"}})
        _, obj = self.apply(path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c2"}, "data": {"a": "1"}})
        self.assertEqual(obj["data"], {"a": "1"})

    def test_annotation_limit_and_status_errors(self):
        big = {"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "big", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x" * 262200}}}
        code, err = self.apply("/api/v1/namespaces/default/configmaps/big", big)
        self.assertEqual((code, err["reason"]), (422, "Invalid"))
        self.assertIn("Too long: must have at most 262144 bytes", err["message"])
        code, err = self.call("GET", "/api/v1/namespaces/default/configmaps/nope")
        self.assertEqual((code, err["kind"], err["reason"]), (404, "Status", "NotFound"))
        code, err = self.apply("/api/v1/namespaces/nowhere/configmaps/x",
                               {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
        self.assertEqual(code, 404, "a missing namespace is NotFound")
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dup"}}
        self.call("POST", "/api/v1/namespaces/default/configmaps", cm)
        code, err = self.call("POST", "/api/v1/namespaces/default/configmaps", cm)
        self.assertEqual((code, err["reason"]), (409, "AlreadyExists"))

    def test_crd_kinds_enter_discovery_after_creation_with_schema_checks(self):
        crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "widgets.example.io"},
               "spec": {"group": "example.io", "scope": "Namespaced",
                        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                            "type": "object", "properties": {"spec": {"type": "object", "properties": {
                                "project": {"type": "string"}}}}}}}]}}
        self.assertEqual(self.apply("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.io", crd)[0], 201)
        code, _ = self.call("GET", "/apis/example.io/v1")
        self.assertEqual(code, 404, "not in discovery right after creation")
        for _ in range(50):
            if self.call("GET", "/apis/example.io/v1")[0] == 200:
                break
            time.sleep(0.1)
        _, rl = self.call("GET", "/apis/example.io/v1")
        self.assertEqual(rl["resources"][0]["kind"], "Widget")
        _, crd_now = self.call("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.io")
        self.assertTrue(any(c["type"] == "Established" and c["status"] == "True" for c in crd_now["status"]["conditions"]))
        bad = {"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"project": 5}}
        code, err = self.apply("/apis/example.io/v1/namespaces/default/widgets/w", bad)
        self.assertEqual(code, 422)
        self.assertIn("spec.project in body must be of type string", err["message"])

    def test_lists_carry_kind_and_resource_version(self):
        code, lst = self.call("GET", "/api/v1/namespaces")
        self.assertEqual((code, lst["kind"], lst["apiVersion"]), (200, "NamespaceList", "v1"))
        self.assertTrue(lst["metadata"]["resourceVersion"])
        self.assertIn("kube-system", [n["metadata"]["name"] for n in lst["items"]])


if __name__ == "__main__":
    unittest.main()
