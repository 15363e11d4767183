"""moto server with AWS-like timing, for tests of tap's waits.

moto makes RDS instances, NAT gateways and CloudFront distributions ready at once, so waiting
code is never exercised against it. This launcher wraps moto's WSGI application and makes them
take real (short) time:

  RDS instance     `creating` for TAP_TIMING_RDS_CREATE s after create, `deleting` for
                   TAP_TIMING_RDS_DELETE s after delete (visible to DescribeDBInstances)
  RDS promotion    `modifying` for TAP_TIMING_RDS_PROMOTE s (default 3) after PromoteReadReplica,
                   then `available` as a standalone instance (RDS User Guide, "Promoting a read
                   replica to be a standalone DB instance": "RDS reboots the DB instance before
                   making it available",
                   https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_ReadRepl.Promote.html;
                   the replication links are cut by rules.py)
  NAT gateway      `pending` for TAP_TIMING_NAT_CREATE s, `deleting` for TAP_TIMING_NAT_DELETE s
  CloudFront       `InProgress` for TAP_TIMING_CF_DEPLOY s after create or update
  every call       sleeps TAP_TIMING_LATENCY seconds per service, e.g. "rds=0.05,ec2=0.01"

`rules.py` (on unless TAP_RULES=0) answers as AWS does where moto is lenient. With --faults,
`faults.py` sits in front and injects throttling, 5xx, lost responses, eventual
consistency and lingering dependencies (TAP_FAULTS). In front of all, in every mode,
`rules.Outage` takes a region down at run time (POST /_rules/outage?region=R&mode=...).

GET /_timing/events returns every create/delete/update it saw, with timestamps, so that tests
can assert the order of operations; GET /_timing/config returns the durations in force.
"""

import argparse
import io
import json
import os
import re
import threading
import time

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def _float(name, default):
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


CONFIG = {
    "rds_create": _float("TAP_TIMING_RDS_CREATE", 4),
    "rds_delete": _float("TAP_TIMING_RDS_DELETE", 3),
    "rds_promote": _float("TAP_TIMING_RDS_PROMOTE", 3),
    "nat_create": _float("TAP_TIMING_NAT_CREATE", 2),
    "nat_delete": _float("TAP_TIMING_NAT_DELETE", 2),
    "cf_deploy": _float("TAP_TIMING_CF_DEPLOY", 6),
    "latency": {
        k: float(v)
        for k, v in (p.split("=", 1) for p in os.environ.get("TAP_TIMING_LATENCY", "").split(",") if "=" in p)
    },
}

LOCK = threading.Lock()
# moto's RDS backend is not safe under concurrent requests: a DescribeDBInstances running while
# another test deletes an instance can raise KeyError, which moto answers as
# InvalidParameterValue naming the other instance. RDS calls are few: they are served one at a time.
RDS_LOCK = threading.Lock()
EVENTS = []  # {"t", "service", "action", "id"}
RDS_CREATED = {}  # id -> t
RDS_DELETED = {}  # id -> t
RDS_PROMOTED = {}  # id -> t
NAT_CREATED = {}
NAT_DELETED = {}
CF_CHANGED = {}  # distribution id -> t

SCOPE = re.compile(r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/")


def event(service, action, ident):
    with LOCK:
        EVENTS.append({"t": time.time(), "service": service, "action": action, "id": ident})


def within(table, ident, seconds):
    t = table.get(ident)
    return t is not None and time.time() - t < seconds


def tag(body, name):
    m = re.search(rf"<{name}>([^<]*)</{name}>", body)
    return m.group(1) if m else None


class Timing:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_timing/"):
            with LOCK:
                payload = EVENTS if path == "/_timing/events" else CONFIG
                data = json.dumps(payload).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]

        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        m = SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        service = m.group(2) if m else ""
        form = {}
        if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            from urllib.parse import parse_qs

            form = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
        action = form.get("Action", "")
        method = environ.get("REQUEST_METHOD", "GET")

        delay = CONFIG["latency"].get(service, 0)
        if delay:
            time.sleep(delay)

        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda _: None

        if service == "rds":
            with RDS_LOCK:
                out = b"".join(self.app(environ, capture))
                # Even one at a time, moto's DescribeDBInstances now and then raises KeyError while
                # filtering its instances and answers InvalidParameterValue whose message is the
                # bare name of an object of another test (seen in CI). AWS has no such answer:
                # asked again (the body is kept in wsgi.input), moto answers right.
                for _ in range(3):
                    if not (action == "DescribeDBInstances" and captured["status"].startswith("400")
                            and b"InvalidParameterValue" in out):
                        break
                    environ["wsgi.input"] = io.BytesIO(body)
                    out = b"".join(self.app(environ, capture))
        else:
            out = b"".join(self.app(environ, capture))
        status, headers = captured["status"], captured["headers"]
        text = out.decode("utf-8", errors="replace")
        now = time.time()

        if service == "rds":
            ident = form.get("DBInstanceIdentifier")
            if action in ("CreateDBInstance", "CreateDBInstanceReadReplica") and status.startswith("200"):
                with LOCK:
                    RDS_CREATED[ident] = now
                event("rds", action, ident)
            elif action == "PromoteReadReplica" and status.startswith("200"):
                with LOCK:
                    RDS_PROMOTED[ident] = now
                event("rds", action, ident)
                if CONFIG["rds_promote"] > 0:
                    text = re.sub(r"<DBInstanceStatus>[^<]*</DBInstanceStatus>",
                                  "<DBInstanceStatus>modifying</DBInstanceStatus>", text, count=1)
            elif action == "DeleteDBInstance":
                with LOCK:
                    if ident not in RDS_DELETED or not within(RDS_DELETED, ident, CONFIG["rds_delete"]):
                        RDS_DELETED[ident] = now
                        RDS_CREATED.pop(ident, None)
                event("rds", action, ident)
            elif action == "DescribeDBInstances":
                if ident and within(RDS_DELETED, ident, CONFIG["rds_delete"]):
                    status, text = "200 OK", (
                        '<DescribeDBInstancesResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/">'
                        "<DescribeDBInstancesResult><DBInstances><DBInstance>"
                        f"<DBInstanceIdentifier>{ident}</DBInstanceIdentifier>"
                        "<DBInstanceStatus>deleting</DBInstanceStatus>"
                        "</DBInstance></DBInstances></DescribeDBInstancesResult>"
                        "</DescribeDBInstancesResponse>"
                    )
                else:
                    def creating(m):
                        block = m.group(0)
                        i = tag(block, "DBInstanceIdentifier")
                        if within(RDS_CREATED, i, CONFIG["rds_create"]):
                            new = "creating"
                        elif within(RDS_PROMOTED, i, CONFIG["rds_promote"]):
                            new = "modifying"
                        else:
                            return block
                        return re.sub(r"<DBInstanceStatus>[^<]*</DBInstanceStatus>",
                                      f"<DBInstanceStatus>{new}</DBInstanceStatus>", block)

                    text = re.sub(r"<DBInstance>.*?</DBInstance>", creating, text, flags=re.S)
        elif service == "ec2":
            if action == "CreateNatGateway" and status.startswith("200"):
                ident = tag(text, "natGatewayId")
                with LOCK:
                    NAT_CREATED[ident] = now
                event("ec2", action, ident)
            elif action == "DeleteNatGateway":
                ident = form.get("NatGatewayId")
                with LOCK:
                    NAT_DELETED.setdefault(ident, now)
                event("ec2", action, ident)
            elif action == "DescribeNatGateways":
                # moto writes each gateway's <state> right after its <natGatewayId>.
                def states(m):
                    i = m.group(2)
                    if within(NAT_DELETED, i, CONFIG["nat_delete"]):
                        new = "deleting"
                    elif within(NAT_CREATED, i, CONFIG["nat_create"]):
                        new = "pending"
                    else:
                        return m.group(0)
                    return f"{m.group(1)}{new}{m.group(4)}"

                text = re.sub(r"(<natGatewayId>([^<]+)</natGatewayId>\s*<state>)([^<]*)(</state>)", states, text)
            elif action in ("CreateRoute",) and status.startswith("200"):
                event("ec2", action, form.get("NatGatewayId") or form.get("GatewayId"))
            elif action == "ReleaseAddress":
                event("ec2", action, form.get("AllocationId"))
        elif service == "cloudfront":
            m = re.match(r"^/[^/]+/distribution(?:/([^/]+))?(/config)?$", path)
            if m:
                dist = m.group(1)
                if method == "POST" and status.startswith("201"):
                    dist = tag(text, "Id")
                    with LOCK:
                        CF_CHANGED[dist] = now
                    event("cloudfront", "CreateDistribution", dist)
                elif method == "PUT" and m.group(2):
                    with LOCK:
                        CF_CHANGED[dist] = now
                    event("cloudfront", "UpdateDistribution", dist)
                elif method == "DELETE":
                    event("cloudfront", "DeleteDistribution", dist)
            if method == "GET":
                def progress(mm):
                    block = mm.group(0)
                    if within(CF_CHANGED, tag(block, "Id"), CONFIG["cf_deploy"]):
                        block = block.replace("<Status>Deployed</Status>", "<Status>InProgress</Status>")
                    return block

                text = re.sub(r"<(Distribution|DistributionSummary)>.*?</\1>", progress, text, flags=re.S)
                if re.match(r"^/[^/]+/distribution/[^/]+$", path):
                    dist = path.rsplit("/", 1)[1]
                    if within(CF_CHANGED, dist, CONFIG["cf_deploy"]):
                        text = text.replace("<Status>Deployed</Status>", "<Status>InProgress</Status>", 1)

        data = text.encode("utf-8") if text != out.decode("utf-8", errors="replace") else out
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"] + [("Content-Length", str(len(data)))]
        start_response(status, headers)
        return [data]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=4566)
    p.add_argument("--faults", action="store_true", help="inject faults per TAP_FAULTS (see faults.py)")
    p.add_argument("--plain", action="store_true", help="no timing: moto as it is, RDS calls serialized")
    a = p.parse_args()
    if a.plain:
        for k in ("rds_create", "rds_delete", "rds_promote", "nat_create", "nat_delete", "cf_deploy"):
            CONFIG[k] = 0
        CONFIG["latency"] = {}
    os.environ.setdefault("MOTO_PORT", str(a.port))
    app = Timing(DomainDispatcherApplication(create_backend_app))
    if os.environ.get("TAP_RULES", "1") != "0":
        from rules import Rules

        app = Rules(app)
    if a.faults:
        from faults import Faults

        app = Faults(app, os.environ.get("TAP_FAULTS", ""))
    # Region outages, in front of everything (and on with TAP_RULES=0 too).
    from rules import Outage

    app = Outage(app)
    run_simple(a.host, a.port, app, threaded=True)


if __name__ == "__main__":
    main()
