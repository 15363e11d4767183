"""Fault mode: what real AWS does to a client, injected in front of moto.

Enabled by `emulator.sh start --faults` (TAP_FAULTS). moto answers every call at once, right and
consistently; AWS throttles, fails with 5xx, loses the responses of calls it executed, is
eventually consistent and keeps network interfaces alive after their owner is gone. This WSGI
middleware adds each of those, at rates set per kind, from a seeded random source:

  throttle=R      refuse before executing, with the service's throttling error
                  (RequestLimitExceeded, Throttling, ThrottlingException, SlowDown, ...)
  unavailable=R   refuse before executing with 503 ServiceUnavailable
  lost=R          EXECUTE the request, then lose the response: half of the time the connection is
                  reset, half of the time a 500 is answered instead of the result
  consistency=S   for S seconds after an EC2 create, a call naming the new id (VpcId, SubnetId,
                  GroupId, ... or VpcId.1 in a describe) answers `*.NotFound` (EC2 API reference,
                  "Eventual consistency in the Amazon EC2 API")
  listing=S       for S seconds after a create that takes no idempotency token (CreateVpc,
                  CreateSubnet, CreateInternetGateway, AllocateAddress, KMS CreateKey), a
                  listing by tags (DescribeVpcs / DescribeSubnets / DescribeInternetGateways /
                  DescribeAddresses with a tag: filter) and KMS ListKeys leave the new object out,
                  while a call naming its id finds it. Listings lag longer than ids: "increasing
                  gradually up to a few minutes of wait time" (EC2 developer guide, "Eventual
                  consistency in the Amazon EC2 API",
                  https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html); "in
                  some cases, it can take several minutes" (KMS developer guide, "AWS KMS eventual
                  consistency",
                  https://docs.aws.amazon.com/kms/latest/developerguide/programming-eventual-consistency.html)
  linger=S        for S seconds after DeleteDBInstance, DeleteAutoScalingGroup or DeleteFunction
                  in a region, DeleteSecurityGroup and DeleteSubnet there answer
                  DependencyViolation (network interfaces of the deleted owner linger; EC2 API
                  reference, DeleteSecurityGroup; Lambda developer guide, VPC networking)
  seed=N          the random source's seed
  only=a|b        restrict throttle/unavailable/lost to these actions (tests of one kind); an
                  action is the Action parameter, the X-Amz-Target operation, or for REST
                  services "METHOD /path"
  first=1         with only: lose exactly the first response of every distinct request (same
                  action and body) among those actions, and no later one

e.g. TAP_FAULTS="seed=7,throttle=0.07,unavailable=0.05,lost=0.08,consistency=2,linger=3".

CloudFront origin access control names are unique per account (CreateOriginAccessControl answers
409 OriginAccessControlAlreadyExists); moto creates a second one, so this layer refuses it. Deleting
one that is gone answers 404 NoSuchOriginAccessControl (moto: 500).

Idempotency tokens (EC2 ClientToken, CloudFront CallerReference) are remembered by the rules
layer behind this one (rules.py), in every mode: a lost response's resend gets the first answer.

S3 as AWS answers it where moto does not, per bucket or object, so that tests sharing one
emulator do not meet each other's switches. Set with POST /_fault/s3?SWITCH (query string):

  lost=BUCKET/KEY     a conditional PutObject (If-Match or If-None-Match) on that object is
                      EXECUTED, then its response is lost (500 InternalError), once per distinct
                      request: the SDK resends it and S3 answers the resend 412 PreconditionFailed,
                      its condition no longer holding (S3 User Guide, "How to prevent object
                      overwrites with conditional writes":
                      https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html)
  conflict=BUCKET/KEY&n=N
                      the next N conditional PutObject or DeleteObject on that object answer
                      409 ConditionalRequestConflict, not executed: S3's answer when a concurrent
                      conditional write or delete on the key is in flight, "retry the request"
                      (S3 API reference, PutObject, If-None-Match / If-Match:
                      https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html)
  deny_delete=BUCKET/KEY
                      DeleteObject on that object answers 403 AccessDenied, not executed (a policy
                      without s3:DeleteObject on it)
  s3compat=BUCKET     the bucket answers as LocalStack's S3 does (an S3-compatible store, not AWS):
                      DeleteObject with If-Match answers 501 NotImplemented, not executed, where
                      AWS evaluates it (S3 User Guide, "How to perform conditional deletes":
                      https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html;
                      NotImplemented, 501, "A header you provided implies functionality that is not
                      implemented": S3 API reference, "Error responses"); PutObject with If-Match
                      on a key that does not exist answers 404 NoSuchKey instead of 412
  moved=BUCKET&region=R
                      the bucket is in region R: every request to it signed for another region
                      answers 301 PermanentRedirect with the header x-amz-bucket-region: R (no body
                      for HEAD), which the Rust SDK does not follow (S3 API reference, HeadBucket:
                      x-amz-bucket-region; "Error responses": PermanentRedirect, 301:
                      https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html)

GET /_fault/log lists every injected fault ({t, service, region, action, fault}); GET
/_fault/config the settings in force; POST /_fault/config with a TAP_FAULTS-style body changes
them (an empty body turns every fault off).
"""

import json
import random
import re
import socket
import threading
import time
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs

SCOPE = re.compile(r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/")

THROTTLE = {
    # service: (http status, code)
    "ec2": (503, "RequestLimitExceeded"),
    "s3": (503, "SlowDown"),
    "lambda": (429, "TooManyRequestsException"),
}
JSON_SERVICES = {"kms", "logs", "ssm", "secretsmanager", "lambda"}
QUERY_SERVICES = {"iam", "rds", "sns", "autoscaling", "sts"}

CREATED_ID = {
    "CreateVpc": "vpcId",
    "CreateSubnet": "subnetId",
    "CreateSecurityGroup": "groupId",
    "CreateRouteTable": "routeTableId",
    "CreateInternetGateway": "internetGatewayId",
    "AllocateAddress": "allocationId",
    "CreateNatGateway": "natGatewayId",
}
ID_PARAM = re.compile(r"^(VpcId|SubnetId|GroupId|RouteTableId|InternetGatewayId|AllocationId|NatGatewayId)(\.\d+)?$")
NOT_FOUND = {
    "vpc-": "InvalidVpcID.NotFound",
    "subnet-": "InvalidSubnetID.NotFound",
    "sg-": "InvalidGroup.NotFound",
    "rtb-": "InvalidRouteTableID.NotFound",
    "igw-": "InvalidInternetGatewayID.NotFound",
    "eipalloc-": "InvalidAllocationID.NotFound",
    "nat-": "NatGatewayNotFound",
}
# Listings by tag, and the element of a listed item that holds its id.
LISTED_ID = {
    "DescribeVpcs": "vpcId",
    "DescribeSubnets": "subnetId",
    "DescribeInternetGateways": "internetGatewayId",
    "DescribeAddresses": "allocationId",
}
TAG_FILTER = re.compile(r"^Filter\.\d+\.Name$")
LINGER_AFTER = {("rds", "DeleteDBInstance"), ("autoscaling", "DeleteAutoScalingGroup"), ("lambda", "DeleteFunction")}
LINGER_ON = {"DeleteSecurityGroup", "DeleteSubnet"}


def parse(spec):
    cfg = {"seed": 0, "throttle": 0.0, "unavailable": 0.0, "lost": 0.0, "consistency": 0.0, "linger": 0.0,
           "listing": 0.0, "only": None, "first": 0.0}
    for part in (spec or "").split(","):
        if "=" not in part:
            continue
        k, v = (x.strip() for x in part.split("=", 1))
        if k == "only":
            cfg["only"] = set(v.split("|"))
        elif k == "seed":
            cfg["seed"] = int(v)
        elif k in cfg:
            cfg[k] = float(v)
    return cfg


def error_response(service, status, code, message):
    """(status line, headers, body) of an AWS error in the service's protocol."""
    rid = "tap-fault-0000"
    if service in JSON_SERVICES:
        body = json.dumps({"__type": code, "message": message}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code)]
    elif service == "ec2":
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>"
                f"<Message>{message}</Message></Error></Errors><RequestID>{rid}</RequestID></Response>").encode()
        headers = [("Content-Type", "text/xml")]
    elif service == "s3":
        body = f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
        headers = [("Content-Type", "application/xml")]
    else:
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
                f"</Error><RequestId>{rid}</RequestId></ErrorResponse>").encode()
        headers = [("Content-Type", "text/xml")]
    reason = {501: "Not Implemented", 301: "Moved Permanently", 403: "Forbidden", 412: "Precondition Failed", 404: "Not Found", 409: "Conflict", 400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
    return f"{status} {reason.get(status, 'Error')}", headers + [("Content-Length", str(len(body)))], body


class Faults:
    def __init__(self, app, spec):
        self.app = app
        self.lock = threading.Lock()
        self.configure(spec)
        self.log = []
        self.created = {}  # ec2 id -> time of create
        self.deleted_owner = {}  # region -> time of the last owner delete
        self.seen = set()  # (action, body) of requests already answered, for first=1
        self.oac_names = {}  # origin access control id -> name
        self.s3 = {"lost": set(), "conflict": {}, "deny_delete": set(), "moved": {}, "s3compat": set()}
        self.s3_lost_seen = set()  # distinct conditional requests whose response was lost

    def configure(self, spec):
        with self.lock:
            self.cfg = parse(spec)
            self.rng = random.Random(self.cfg["seed"])

    def note(self, service, region, action, fault):
        self.log.append({"t": time.time(), "service": service, "region": region, "action": action, "fault": fault})

    def control(self, environ, start_response, path):
        if environ.get("REQUEST_METHOD") == "POST" and path == "/_fault/s3":
            q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
            with self.lock:
                if "lost" in q:
                    self.s3["lost"].add(q["lost"])
                if "conflict" in q:
                    self.s3["conflict"][q["conflict"]] = int(q.get("n", "1"))
                if "deny_delete" in q:
                    self.s3["deny_delete"].add(q["deny_delete"])
                if "s3compat" in q:
                    self.s3["s3compat"].add(q["s3compat"])
                if "moved" in q:
                    self.s3["moved"][q["moved"]] = q["region"]
        if environ.get("REQUEST_METHOD") == "POST" and path == "/_fault/config":
            n = int(environ.get("CONTENT_LENGTH") or 0)
            self.configure(environ["wsgi.input"].read(n).decode() if n else "")
        with self.lock:
            if path == "/_fault/log":
                data = json.dumps(self.log)
            else:
                cfg = dict(self.cfg, only=sorted(self.cfg["only"]) if self.cfg["only"] else None)
                data = json.dumps(cfg)
        body = data.encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_fault/"):
            return self.control(environ, start_response, path)
        if path.startswith("/_") or path.startswith("/moto-api"):
            return self.app(environ, start_response)

        n = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(n) if n else b""
        import io

        environ["wsgi.input"] = io.BytesIO(body)
        m = SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        region, service = (m.group(1), m.group(2)) if m else ("", "")
        form = {}
        if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            form = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        action = form.get("Action") or (target.split(".")[-1] if target else f"{environ.get('REQUEST_METHOD')} {path}")
        now = time.time()

        with self.lock:
            cfg = self.cfg
            draw = self.rng.random()
            in_scope = cfg["only"] is None or action in cfg["only"]
            fault = None
            if cfg["first"] and cfg["only"] is not None:
                if in_scope and (action, body) not in self.seen:
                    self.seen.add((action, body))
                    fault = "lost-reset" if self.rng.random() < 0.5 else "lost-500"
            elif in_scope and draw < cfg["throttle"]:
                fault = "throttle"
            elif in_scope and draw < cfg["throttle"] + cfg["unavailable"]:
                fault = "unavailable"
            elif in_scope and draw < cfg["throttle"] + cfg["unavailable"] + cfg["lost"]:
                fault = "lost-reset" if self.rng.random() < 0.5 else "lost-500"
            # Eventual consistency: a fresh EC2 id is not visible to other calls yet.
            invisible = None
            if service == "ec2" and action not in CREATED_ID:
                for k, v in form.items():
                    t = self.created.get(v)
                    if ID_PARAM.match(k) and t is not None and now - t < cfg["consistency"]:
                        invisible = v
                        break
            lingering = (
                action in LINGER_ON and now - self.deleted_owner.get(region, -1e9) < cfg["linger"]
            )
            if fault in ("throttle", "unavailable"):
                self.note(service, region, action, fault)
            elif invisible:
                self.note(service, region, action, "not-yet-visible")
            elif lingering:
                self.note(service, region, action, "dependency-violation")

        if service == "s3":
            s3_fault = self.s3_switches(environ, region, path, body)
            if s3_fault is not None:
                kind, result = s3_fault
                with self.lock:
                    self.note(service, region, action, kind)
                if kind == "lost-conditional":
                    b"".join(self.app(environ, lambda status, headers, exc_info=None: (lambda _: None)))
                return self.reply(start_response, result)

        if fault == "throttle":
            status, code = THROTTLE.get(service, (400, "ThrottlingException" if service in JSON_SERVICES else "Throttling"))
            return self.reply(start_response, error_response(service, status, code, "Rate exceeded"))
        if fault == "unavailable":
            return self.reply(start_response, error_response(service, 503, "ServiceUnavailable", "Service is unavailable, try again"))
        if invisible:
            code = next((c for p, c in NOT_FOUND.items() if invisible.startswith(p)), "InvalidID.NotFound")
            return self.reply(start_response, error_response(service, 400, code, f"The ID '{invisible}' does not exist"))
        if lingering:
            return self.reply(start_response, error_response(
                service, 400, "DependencyViolation", "resource has a dependent object (network interfaces in use)"))

        if service == "cloudfront" and action.startswith("POST ") and path.endswith("/origin-access-control"):
            mm = re.search(rb"<Name>([^<]+)</Name>", body)
            with self.lock:
                taken = mm is not None and mm.group(1).decode() in self.oac_names.values()
            if taken:
                return self.reply(start_response, error_response(
                    service, 409, "OriginAccessControlAlreadyExists",
                    "An origin access control with the same name already exists."))

        if service == "cloudfront" and action.startswith("DELETE ") and "/origin-access-control/" in path:
            with self.lock:
                unknown = path.rsplit("/", 1)[-1] not in self.oac_names
            if unknown:
                # moto raises KeyError (500) for an id it does not have; AWS answers 404.
                return self.reply(start_response, error_response(
                    service, 404, "NoSuchOriginAccessControl", "The origin access control does not exist."))

        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda _: None

        out = b"".join(self.app(environ, capture))
        result = (captured["status"], captured["headers"], out)
        ok = result[0][:1] == "2"
        with self.lock:
            if ok and service == "ec2" and action in CREATED_ID:
                mm = re.search(rf"<{CREATED_ID[action]}>([^<]+)</{CREATED_ID[action]}>", out.decode(errors="replace"))
                if mm:
                    self.created.setdefault(mm.group(1), time.time())
            if ok and service == "kms" and action == "CreateKey":
                key = json.loads(out or b"{}").get("KeyMetadata", {}).get("KeyId")
                if key:
                    self.created.setdefault(key, time.time())
            if ok and service == "cloudfront" and "/origin-access-control" in path:
                text = out.decode(errors="replace")
                if action.startswith("POST "):
                    i, n = re.search(r"<Id>([^<]+)</Id>", text), re.search(r"<Name>([^<]+)</Name>", text)
                    if i and n:
                        self.oac_names[i.group(1)] = n.group(1)
                elif action.startswith("DELETE "):
                    self.oac_names.pop(path.rsplit("/", 1)[-1], None)
            if ok and (service, action) in LINGER_AFTER or (service == "lambda" and ok and environ.get("REQUEST_METHOD") == "DELETE" and "/functions/" in path):
                self.deleted_owner[region] = time.time()

        result = self.lagging_listing(service, region, action, form, result)
        if fault and fault.startswith("lost"):
            with self.lock:
                self.note(service, region, action, fault)
            if fault == "lost-reset":
                sock = environ.get("werkzeug.socket")
                if sock is not None:
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    start_response("500 Internal Server Error", [("Content-Length", "0")])
                    return [b""]
            return self.reply(start_response, error_response(service, 500, "InternalError", "We encountered an internal error. Please try again."))
        return self.reply(start_response, result)

    def s3_switches(self, environ, region, path, body):
        """(fault, response) of an S3 switch set by POST /_fault/s3 that applies, else None.
        "lost-conditional" means: execute the request, then answer the response given."""
        method = environ.get("REQUEST_METHOD", "")
        parts = path.lstrip("/").split("/", 1)
        bucket, obj = parts[0], path.lstrip("/")
        conditional = "HTTP_IF_MATCH" in environ or "HTTP_IF_NONE_MATCH" in environ
        with self.lock:
            home = self.s3["moved"].get(bucket)
            if home is not None and region != home:
                msg = ("The bucket you are attempting to access must be addressed using the specified "
                       "endpoint. Please send all future requests to this endpoint.")
                status, headers, data = error_response("s3", 301, "PermanentRedirect", msg)
                if method == "HEAD":
                    data = b""
                return "moved", ("301 Moved Permanently", headers + [("x-amz-bucket-region", home)], data)
            if method == "DELETE" and obj in self.s3["deny_delete"]:
                return "access-denied", error_response("s3", 403, "AccessDenied", "Access Denied")
            compat = bucket in self.s3["s3compat"]
        if compat and method == "DELETE" and "HTTP_IF_MATCH" in environ:
            return "not-implemented", error_response(
                "s3", 501, "NotImplemented", "A header you provided implies functionality that is not implemented")
        if compat and method == "PUT" and "HTTP_IF_MATCH" in environ and not self.s3_exists(bucket, obj):
            return "no-such-key", error_response("s3", 404, "NoSuchKey", "The specified key does not exist.")
        with self.lock:
            if conditional and method in ("PUT", "DELETE") and self.s3["conflict"].get(obj, 0) > 0:
                self.s3["conflict"][obj] -= 1
                return "conflict-409", error_response(
                    "s3", 409, "ConditionalRequestConflict",
                    "A conflicting operation occurred. If using PutObject you can retry the request.")
            if conditional and method == "PUT" and obj in self.s3["lost"]:
                seen = (obj, environ.get("HTTP_IF_MATCH"), environ.get("HTTP_IF_NONE_MATCH"), body)
                if seen not in self.s3_lost_seen:
                    self.s3_lost_seen.add(seen)
                    return "lost-conditional", error_response(
                        "s3", 500, "InternalError", "We encountered an internal error. Please try again.")
        return None

    def lagging_listing(self, service, region, action, form, result):
        """The listing without the objects created less than `listing` seconds ago (see the
        module's docstring), else the result as it is."""
        status, headers, out = result
        tagged = action in LISTED_ID and any(
            TAG_FILTER.match(k) and v.startswith("tag:") for k, v in form.items())
        if status[:1] != "2" or not (tagged or (service == "kms" and action == "ListKeys")):
            return result
        with self.lock:
            now, lag = time.time(), self.cfg["listing"]
            fresh = {i for i, t in self.created.items() if now - t < lag}
        if not fresh:
            return result
        if service == "kms":
            data = json.loads(out or b"{}")
            keys = data.get("Keys", [])
            data["Keys"] = [k for k in keys if k.get("KeyId") not in fresh]
            dropped, out = len(keys) - len(data["Keys"]), json.dumps(data).encode()
        else:
            root = ET.fromstring(out)
            if root.tag.startswith("{"):
                ET.register_namespace("", root.tag[1:].split("}")[0])
            dropped = 0
            for listed in list(root):
                for item in list(listed):
                    if any(c.tag.split("}")[-1] == LISTED_ID[action] and c.text in fresh for c in item):
                        listed.remove(item)
                        dropped += 1
            out = ET.tostring(root, encoding="unicode").encode() if dropped else out
        if dropped:
            with self.lock:
                self.note(service, region, action, "listing-lag")
        return status, headers, out

    @staticmethod
    def s3_exists(bucket, obj):
        from moto.s3.models import s3_backends

        key = obj.split("/", 1)[1] if "/" in obj else ""
        try:
            return s3_backends["123456789012"]["aws"].get_object(bucket, key) is not None
        except Exception:
            return False

    @staticmethod
    def reply(start_response, result):
        status, headers, body = result
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"] + [("Content-Length", str(len(body)))]
        start_response(status, headers)
        return [body]

