#!/usr/bin/env python3
"""A FHIR R4 server's transaction endpoint, for the tests: enough of the REST API for what
radraft sends (POST [base] of a transaction Bundle whose entries are conditional updates).

    fhir_server.py --dir OUT [--base /fhir] [--fail-first N] [--reject-path PATH]
                   [--token TOKEN] [--tls CERT KEY]

It binds a free loopback port and writes it to OUT/port. Each request is recorded as
OUT/request-NNN.json ({"path", "headers", "body"}). A transaction is processed as FHIR
R4 describes it (http.html#transaction, http.html#cond-update): each entry's conditional URL
"Type?identifier=system|value" finds the resource with that identifier (none: it is created,
201, version 1; one: it is updated, 200, version + 1), references to the Bundle's fullUrls
(urn:uuid:) are rewritten to the resources' ids, and a transaction-response Bundle is
returned. The resources are kept in OUT/resources.json ({"Type/id": resource with meta}).

--fail-first N answers the first N transactions 503; --reject-path PATH answers a POST to
PATH 400 with an OperationOutcome; --token requires "Authorization: Bearer TOKEN" (401
otherwise); --tls serves https with that certificate and key.
"""
import argparse
import json
import os
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = None
lock = threading.Lock()
state = {"requests": 0, "transactions": 0, "resources": {}, "next_id": 1}


def outcome(code, text):
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


def find_by_identifier(rtype, system, value):
    for key, res in state["resources"].items():
        if key.split("/")[0] != rtype:
            continue
        for ident in res.get("identifier", []):
            if ident.get("system") == system and ident.get("value") == value:
                return key
    return None


def rewrite_refs(node, ids):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str) and v in ids:
                node[k] = ids[v]
            else:
                rewrite_refs(v, ids)
    elif isinstance(node, list):
        for v in node:
            rewrite_refs(v, ids)


def transaction(bundle):
    """(status, body) of processing a transaction Bundle."""
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        return 400, outcome("invalid", "not a transaction Bundle")
    plan, ids = [], {}
    for i, e in enumerate(bundle.get("entry", [])):
        req, res = e.get("request", {}), e.get("resource")
        url = req.get("url", "")
        if req.get("method") != "PUT" or "?" not in url or not isinstance(res, dict):
            return 400, outcome("not-supported", f"entry {i}: only conditional updates")
        rtype, query = url.split("?", 1)
        q = urllib.parse.parse_qs(query)
        if rtype != res.get("resourceType") or list(q) != ["identifier"]:
            return 400, outcome("invalid", f"entry {i}: bad conditional URL {url}")
        system, _, value = q["identifier"][0].partition("|")
        if not any(x.get("system") == system and x.get("value") == value
                   for x in res.get("identifier", [])):
            return 400, outcome("invalid", f"entry {i}: resource lacks identifier {system}|{value}")
        key = find_by_identifier(rtype, system, value)
        if key is None:
            key = f"{rtype}/{state['next_id']}"
            state["next_id"] += 1
            created = True
        else:
            created = False
        if e.get("fullUrl"):
            ids[e["fullUrl"]] = key
        plan.append((key, res, created))
    entries = []
    for key, res, created in plan:
        rewrite_refs(res, ids)
        old = state["resources"].get(key)
        version = 1 if old is None else int(old["meta"]["versionId"]) + 1
        res = dict(res, id=key.split("/")[1], meta={"versionId": str(version)})
        state["resources"][key] = res
        entries.append({"response": {"status": "201 Created" if created else "200 OK",
                                     "location": f"{key}/_history/{version}"}})
    return 200, {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n).decode("utf-8", "replace")
        with lock:
            state["requests"] += 1
            k = state["requests"]
            with open(os.path.join(args.dir, f"request-{k:03d}.json"), "w") as f:
                json.dump({"path": self.path, "headers": dict(self.headers), "body": body}, f)
            if args.token and self.headers.get("Authorization") != f"Bearer {args.token}":
                return self.reply(401, outcome("login", "a bearer token is required"))
            if self.path == args.reject_path:
                return self.reply(400, outcome("invalid", "rejected by the test server"))
            if self.path != args.base:
                return self.reply(404, outcome("not-found", f"no endpoint {self.path}"))
            if not self.headers.get("Content-Type", "").startswith("application/fhir+json"):
                return self.reply(415, outcome("not-supported", "application/fhir+json only"))
            state["transactions"] += 1
            if state["transactions"] <= args.fail_first:
                return self.reply(503, outcome("transient", "try again later"))
            try:
                bundle = json.loads(body)
            except ValueError as e:
                return self.reply(400, outcome("invalid", f"not JSON: {e}"))
            status, out = transaction(bundle)
            with open(os.path.join(args.dir, "resources.json.tmp"), "w") as f:
                json.dump(state["resources"], f, indent=1)
            os.replace(os.path.join(args.dir, "resources.json.tmp"),
                       os.path.join(args.dir, "resources.json"))
            return self.reply(status, out)


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--base", default="/fhir")
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--reject-path", default=None)
    p.add_argument("--token", default=None)
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = p.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*args.tls)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    with open(os.path.join(args.dir, "port.tmp"), "w") as f:
        f.write(str(srv.server_address[1]))
    os.replace(os.path.join(args.dir, "port.tmp"), os.path.join(args.dir, "port"))
    srv.serve_forever()


if __name__ == "__main__":
    main()
