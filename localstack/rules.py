"""AWS's rules where moto is lenient: answers as AWS gives them, for the calls this stack makes.

On by default in every emulator `emulator.sh` starts (TAP_RULES=0 turns it off). Each rule cites
the AWS documentation it follows. The layer reads moto's own backends (same process) to know
what exists.

  replica of a managed-password source  CreateDBInstanceReadReplica whose source has
        ManageMasterUserPassword -> 400 InvalidParameterValue. RDS User Guide, "Password
        management with Amazon RDS and AWS Secrets Manager", Limitations: "You can't create a read
        replica ... of a DB instance whose master user password is managed by Secrets Manager"
        (all engines but SQL Server).
  engine downgrade  ModifyDBInstance with an EngineVersion lower than the live one ->
        400 InvalidParameterCombination "Cannot upgrade postgres from X to Y". RDS API reference,
        ModifyDBInstance: EngineVersion (downgrades are not supported).
  buckets of another account  a name listed in TAP_RULES_FOREIGN_BUCKETS (comma-separated, or
        added with POST /_rules/foreign-bucket?name=...) -> 403 on HeadBucket and on every other
        call naming it, 409 BucketAlreadyExists on CreateBucket. S3 API reference, HeadBucket
        (403 when the bucket exists and you have no access) and CreateBucket (BucketAlreadyExists:
        "The requested bucket name is not available ... select a different name").
  credentials without access  a bucket name added with POST /_rules/deny-bucket?name=... (a
        bucket of this account; &allow=1 lifts it) -> 403 AccessDenied on every call naming it, as for an identity
        whose IAM policy lacks s3:ListBucket / s3:Get* on it (ListBuckets still lists it: S3 API
        reference, ListBuckets needs s3:ListAllMyBuckets only). HEAD requests get no body, as on
        AWS.
  key policy principals  CreateKey / PutKeyPolicy whose policy names an IAM role of this account
        that does not exist -> 400 MalformedPolicyDocumentException. KMS developer guide, "Key
        policies": "the principal ... must exist and be visible to AWS KMS".

  replica keys  a Secrets Manager replica region is encrypted with the KmsKeyId given for it
        (Secrets Manager API reference, ReplicaRegionType); moto reports aws/secretsmanager for
        every replica, so its replicas are patched to keep and report the key they were given.

And, for drift tests, a minor version upgrade on demand, as AWS's auto minor version upgrade
does: POST /_rules/upgrade?id=<DBInstanceIdentifier>&version=16.10 (the region is found).
"""

import json
import os
import re
import threading
from urllib.parse import parse_qs

SCOPE = re.compile(r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/")
ACCOUNT = "123456789012"
ROLE_ARN = re.compile(r"^arn:aws:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]+)$")


def version_tuple(v):
    return tuple(int(x) for x in re.findall(r"\d+", v or ""))


def error(service, status, code, message):
    if service == "s3":
        body = f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
        ctype = "application/xml"
    elif service == "kms":
        body = json.dumps({"__type": code, "message": message})
        ctype = "application/x-amz-json-1.1"
    else:
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>"
                f"</Error><RequestId>tap-rules</RequestId></ErrorResponse>")
        ctype = "text/xml"
    data = body.encode()
    reason = {400: "Bad Request", 403: "Forbidden", 409: "Conflict"}.get(status, "Error")
    headers = [("Content-Type", ctype), ("Content-Length", str(len(data)))]
    if service == "kms":
        headers.append(("x-amzn-ErrorType", code))
    return f"{status} {reason}", headers, data


def patch_moto_secret_replicas():
    from moto.secretsmanager import models as sm

    if getattr(sm.FakeSecret, "_tap_patched", False):
        return
    create = sm.FakeSecret.create_replicas
    to_dict = sm.ReplicaSecret.to_dict

    def create_replicas(self, replica_regions, force_overwrite):
        replicas = create(self, replica_regions, force_overwrite)
        for replica, config in zip(replicas, replica_regions or []):
            if config.get("KmsKeyId"):
                replica.config["KmsKeyId"] = config["KmsKeyId"]
        return replicas

    def replica_to_dict(self):
        d = to_dict(self)
        d["KmsKeyId"] = self.config.get("KmsKeyId")
        return d

    sm.FakeSecret.create_replicas = create_replicas
    sm.ReplicaSecret.to_dict = replica_to_dict
    sm.FakeSecret._tap_patched = True


class Rules:
    def __init__(self, app):
        patch_moto_secret_replicas()
        self.app = app
        self.lock = threading.Lock()
        self.foreign = {b for b in os.environ.get("TAP_RULES_FOREIGN_BUCKETS", "").split(",") if b}
        self.denied = set()

    @staticmethod
    def rds(region):
        from moto.rds.models import rds_backends

        return rds_backends[ACCOUNT][region]

    def find_db(self, ident, region):
        if ident.startswith("arn:"):
            parts = ident.split(":")
            region, ident = parts[3], parts[-1]
        return self.rds(region).databases.get(ident)

    @staticmethod
    def role_exists(name):
        from moto.iam.models import iam_backends

        try:
            iam_backends[ACCOUNT]["global"].get_role(name)
            return True
        except Exception:
            return False

    def control(self, environ, start_response, path):
        q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        status, payload = "200 OK", {}
        if path == "/_rules/foreign-bucket" and q.get("name"):
            with self.lock:
                self.foreign.add(q["name"])
            payload = {"foreign": sorted(self.foreign)}
        elif path == "/_rules/deny-bucket" and q.get("name"):
            with self.lock:
                if q.get("allow"):
                    self.denied.discard(q["name"])
                else:
                    self.denied.add(q["name"])
            payload = {"denied": sorted(self.denied)}
        elif path == "/_rules/upgrade" and q.get("id") and q.get("version"):
            from moto.rds.models import rds_backends

            found = None
            for region, backend in list(rds_backends[ACCOUNT].items()):
                db = backend.databases.get(q["id"])
                if db is not None:
                    db.engine_version = q["version"]
                    found = region
            status = "200 OK" if found else "404 Not Found"
            payload = {"id": q["id"], "version": q["version"], "region": found}
        else:
            payload = {"foreign": sorted(self.foreign)}
        data = json.dumps(payload).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def check(self, environ, service, region, form, body, path, method):
        """An AWS answer where moto would accept, or None."""
        action = form.get("Action", "")
        if service == "rds" and action == "CreateDBInstanceReadReplica":
            src = self.find_db(form.get("SourceDBInstanceIdentifier", ""), region)
            if src is not None and getattr(src, "manage_master_user_password", False):
                return error(service, 400, "InvalidParameterValue",
                             "Read replicas aren't supported for DB instances whose master user password "
                             "is managed by AWS Secrets Manager.")
        if service == "rds" and action == "ModifyDBInstance" and form.get("EngineVersion"):
            db = self.find_db(form.get("DBInstanceIdentifier", ""), region)
            want = form["EngineVersion"]
            if db is not None and version_tuple(want) < version_tuple(db.engine_version):
                return error(service, 400, "InvalidParameterCombination",
                             f"Cannot upgrade {db.engine} from {db.engine_version} to {want}")
        if service == "s3":
            bucket = path.lstrip("/").split("/", 1)[0]
            with self.lock:
                foreign = bucket in self.foreign
                denied = bucket in self.denied
            if denied:
                return error(service, 403, "AccessDenied", "Access Denied")
            if foreign:
                if method == "PUT" and "/" not in path.lstrip("/") and not environ.get("QUERY_STRING"):
                    return error(service, 409, "BucketAlreadyExists",
                                 "The requested bucket name is not available. The bucket namespace is shared by "
                                 "all users of the system. Please select a different name and try again.")
                return error(service, 403, "AccessDenied", "Access Denied")
        if service == "kms":
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            if target.endswith(".CreateKey") or target.endswith(".PutKeyPolicy"):
                try:
                    policy = json.loads(json.loads(body or b"{}").get("Policy") or "{}")
                except ValueError:
                    policy = {}
                for st in policy.get("Statement", []):
                    aws = (st.get("Principal") or {}).get("AWS", []) if isinstance(st.get("Principal"), dict) else []
                    for p in [aws] if isinstance(aws, str) else aws:
                        m = ROLE_ARN.match(p)
                        if m and m.group(1) == ACCOUNT and not self.role_exists(m.group(2)):
                            return error(service, 400, "MalformedPolicyDocumentException",
                                         "Policy contains a statement with one or more invalid principals.")
        return None

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_rules/"):
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
        method = environ.get("REQUEST_METHOD", "GET")
        refused = self.check(environ, service, region, form, body, path, method)
        if refused is not None:
            status, headers, data = refused
            if method == "HEAD":
                # A HEAD answer has no body (S3 API reference, HeadBucket: "a 400, 403 or 404
                # status code ... without a message body").
                headers, data = [h for h in headers if h[0] != "Content-Length"] + [("Content-Length", "0")], b""
            start_response(status, headers)
            return [data]
        return self.app(environ, start_response)
