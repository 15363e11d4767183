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

  idempotency tokens  moto ignores ClientToken; AWS remembers it. An EC2 request carrying a
        ClientToken seen before (CreateNatGateway, CreateRouteTable, CreateLaunchTemplate, ...)
        with the same parameters is answered with the first answer again, not executed: the
        first object, even if it was deleted since ("if the original request completes
        successfully, any subsequent retries complete successfully without performing any further
        actions"); with other parameters, 400 IdempotentParameterMismatch (EC2 developer guide,
        "Ensuring idempotency in Amazon EC2 API requests",
        https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html). CloudFront
        CreateDistribution with a CallerReference seen before: the same DistributionConfig gets
        the first distribution again, another one 409 DistributionAlreadyExists (CloudFront API
        reference, CreateDistribution, DistributionConfig.CallerReference,
        https://docs.aws.amazon.com/cloudfront/latest/APIReference/API_DistributionConfig.html).

  the database secret  (rules_secrets.py) a forced DeleteSecret completes asynchronously
        (the name stays "deleting" for TAP_RULES_SECRET_DELETING_SECS, default 1 s: CreateSecret
        and RestoreSecret answer as AWS does meanwhile); DescribeSecret reports keys as key IDs
        or alias ARNs, as AWS may (for the secrets a test names); GET /_rules/db-password says
        whether an instance's master password is its secret's current one. Each cites its page.

And, for drift tests, a minor version upgrade on demand, as AWS's auto minor version upgrade
does: POST /_rules/upgrade?id=<DBInstanceIdentifier>&version=16.10 (the region is found).

For disaster recovery (failover, reprotect):

  promoted replicas  PromoteReadReplica leaves no trace of the replication: the promoted
        instance has no ReadReplicaSourceDBInstanceIdentifier and its former source no longer
        lists it in ReadReplicaDBInstanceIdentifiers (moto 5.2.5 keeps both). RDS API reference,
        PromoteReadReplica ("Promotes a read replica DB instance to a standalone DB instance",
        https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_PromoteReadReplica.html).
        The timing server shows it `modifying` meanwhile (timing_server.py).
  renamed instances  ModifyDBInstance NewDBInstanceIdentifier: moto renames the instance and its
        endpoint; its automated snapshots (rds:<name>-<minute>) kept the old name, so creating an
        instance of the old name within the minute failed DBSnapshotAlreadyExists. They follow the
        instance now, so the old name is free at once. RDS User Guide, "Renaming a DB instance"
        (the endpoint changes; "DB snapshots are retained for a renamed DB instance",
        https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_RenameInstance.html).
  StopReplicationToReplica (Secrets Manager; moto 5.2.5 answers it 404-unknown): called in the
        replica's region on the replica (ARN or name), "removes the link between the replica
        secret and the primary secret and promotes the replica to a primary secret in the replica
        Region" (Secrets Manager API reference, StopReplicationToReplica,
        https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_StopReplicationToReplica.html):
        the replica becomes a standalone secret there (same ARN and value, the KMS key it was
        replicated with, no replicas) and the former primary's ReplicationStatus drops the region.
        On a secret that is not a replica: 400 InvalidRequestException; unknown: 400
        ResourceNotFoundException.

  region outage  a switch at run time, per region (class Outage, in front of every layer, in
        every mode, TAP_RULES=0 or not):
          POST /_rules/outage?region=R&mode=unavailable|refuse|hang   and   ...&mode=off
        While on, every request signed for region R (its SigV4 credential scope) is answered:
          unavailable  503 ServiceUnavailable in the service's protocol, not executed (AWS API
                       reference, "Common Errors": ServiceUnavailable, "The request has failed due
                       to a temporary failure of the server", HTTP 503, e.g.
                       https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/CommonErrors.html)
          refuse       not executed, no answer: the server reads the request, then drops the
                       connection (SO_LINGER 0, shutdown): the client sees the connection closed
                       or reset before any response byte, a transport error (the Rust SDK:
                       DispatchFailure / ResponseError "connection closed before message
                       completed"), which SDKs retry as transient
          hang         not executed, no answer: the request is held until the client gives up
                       (its attempt timeout) or the outage is switched off, at most
                       TAP_OUTAGE_HANG_MAX seconds (default 120), then the connection is dropped
                       as for refuse
        Other regions are untouched. GET/POST /_rules/outage without mode lists the outages.
"""

import copy
import json
import os
import re
import socket
import threading
import time
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


def patch_moto_rds():
    """PromoteReadReplica forgets the replication; a rename carries the automated snapshots."""
    from moto.rds import models as rds

    if getattr(rds.RDSBackend, "_tap_patched", False):
        return
    promote = rds.RDSBackend.promote_read_replica
    modify = rds.RDSBackend.modify_db_instance

    def promote_read_replica(self, db_kwargs):
        db = self.databases.get(db_kwargs["db_instance_identifier"])
        source = db.source_db_instance_identifier if db is not None and db.is_replica else None
        out = promote(self, db_kwargs)
        if source:
            try:
                primary = self.find_db_from_id(source)
            except Exception:
                primary = None
            if primary is not None:
                primary.replicas = [r for r in primary.replicas
                                    if r not in (db.db_instance_identifier, db.db_instance_arn)]
            db.source_db_instance_identifier = None
        return out

    def modify_db_instance(self, db_instance_identifier, db_kwargs):
        new = db_kwargs.get("new_db_instance_identifier")
        out = modify(self, db_instance_identifier, db_kwargs)
        if new and new != db_instance_identifier:
            old_prefix = f"rds:{db_instance_identifier}-"
            for sid, snap in list(self.database_snapshots.items()):
                if snap.snapshot_type == "automated" and snap.db_instance_identifier == db_instance_identifier:
                    snap.db_instance_identifier = new
                    snap.database.db_instance_identifier = new  # the snapshot's copy, for filters
                    if sid.startswith(old_prefix):
                        del self.database_snapshots[sid]
                        snap.db_snapshot_identifier = f"rds:{new}-" + sid[len(old_prefix):]
                        self.database_snapshots[snap.db_snapshot_identifier] = snap
        return out

    rds.RDSBackend.promote_read_replica = promote_read_replica
    rds.RDSBackend.modify_db_instance = modify_db_instance
    rds.RDSBackend._tap_patched = True


def json_error(status, code, message):
    data = json.dumps({"__type": code, "message": message}).encode()
    reason = {400: "Bad Request", 404: "Not Found"}.get(status, "Error")
    return f"{status} {reason}", [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code),
                                  ("Content-Length", str(len(data)))], data


def stop_replication_to_replica(region, body):
    """Secrets Manager StopReplicationToReplica, called in the replica's region."""
    from moto.secretsmanager import models as sm

    try:
        secret_id = json.loads(body or b"{}").get("SecretId") or ""
    except ValueError:
        secret_id = ""
    backend = sm.secretsmanager_backends[ACCOUNT][region]
    found = backend.secrets.get(secret_id) if secret_id else None
    if found is None:
        return json_error(400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
    if not isinstance(found, sm.ReplicaSecret):
        return json_error(400, "InvalidRequestException",
                          "StopReplicationToReplica is only valid on a replica secret in its Region.")
    source = found.source
    standalone = copy.copy(source)
    standalone.region = region
    standalone.arn = found.arn
    standalone.versions = copy.deepcopy(source.versions)
    standalone.tags = copy.deepcopy(source.tags)
    key = found.config.get("KmsKeyId")
    standalone.kms_key_id = None if key in (None, sm.SecretsManagerBackend.DEFAULT_KMS_KEY_ALIAS) else key
    standalone.replicas = []
    standalone.policy = None
    dict.pop(backend.secrets, found.arn, None)
    backend.secrets[standalone.name] = standalone
    source.replicas = [r for r in source.replicas if r is not found]
    data = json.dumps({"ARN": standalone.arn}).encode()
    return "200 OK", [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(data)))], data


def drop_connection(environ):
    """Closes the client's connection without an answer (an RST where the kernel can)."""
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Outage:
    """Region outages switched at run time (see the module's docstring)."""

    MODES = ("unavailable", "refuse", "hang")

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.regions = {}  # region -> mode
        self.hang_max = float(os.environ.get("TAP_OUTAGE_HANG_MAX", "120"))

    def mode(self, region):
        with self.lock:
            return self.regions.get(region)

    def control(self, environ, start_response):
        q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        status = "200 OK"
        region, mode = q.get("region"), q.get("mode")
        with self.lock:
            if region and mode == "off":
                self.regions.pop(region, None)
            elif region and mode in self.MODES:
                self.regions[region] = mode
            elif region or mode:
                status = "400 Bad Request"
            payload = {"outages": dict(self.regions)}
        data = json.dumps(payload).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/_rules/outage":
            return self.control(environ, start_response)
        if path.startswith("/_") or path.startswith("/moto-api"):
            return self.app(environ, start_response)
        m = SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        if not m:
            return self.app(environ, start_response)
        region, service = m.group(1), m.group(2)
        mode = self.mode(region)
        if mode is None:
            return self.app(environ, start_response)
        n = int(environ.get("CONTENT_LENGTH") or 0)
        if n:
            environ["wsgi.input"].read(n)
        if mode == "unavailable":
            from faults import error_response

            status, headers, data = error_response(
                service, 503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server.")
            if environ.get("REQUEST_METHOD") == "HEAD":
                headers, data = [h for h in headers if h[0] != "Content-Length"] + [("Content-Length", "0")], b""
            start_response(status, headers)
            return [data]
        if mode == "hang":
            deadline = time.time() + self.hang_max
            while time.time() < deadline and self.mode(region) == "hang":
                time.sleep(0.2)
        drop_connection(environ)
        start_response("500 Internal Server Error", [("Content-Length", "0")])
        return [b""]


class Rules:
    def __init__(self, app):
        from rules_secrets import SecretRules

        patch_moto_secret_replicas()
        patch_moto_rds()
        self.secrets = SecretRules()
        self.app = app
        self.lock = threading.Lock()
        self.foreign = {b for b in os.environ.get("TAP_RULES_FOREIGN_BUCKETS", "").split(",") if b}
        self.denied = set()
        self.tokens = {}  # idempotency key -> (parameters, first answer)

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
        secret_switch = self.secrets.control(path, q)
        if secret_switch is not None:
            status, payload = secret_switch
        elif path == "/_rules/foreign-bucket" and q.get("name"):
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
        if service == "secretsmanager" and environ.get("HTTP_X_AMZ_TARGET", "").endswith(".StopReplicationToReplica"):
            status, headers, data = stop_replication_to_replica(region, body)
            start_response(status, headers)
            return [data]
        if service == "secretsmanager":
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            refused = self.secrets.check(region, target, body)
            if refused is not None:
                status, headers, data = refused
                start_response(status, headers)
                return [data]
            if self.secrets.reports_key_forms(target, body):
                return self.secrets.serve_rewritten(self.app, environ, start_response, region)
        refused = self.check(environ, service, region, form, body, path, method)
        if refused is not None:
            status, headers, data = refused
            if method == "HEAD":
                # A HEAD answer has no body (S3 API reference, HeadBucket: "a 400, 403 or 404
                # status code ... without a message body").
                headers, data = [h for h in headers if h[0] != "Content-Length"] + [("Content-Length", "0")], b""
            start_response(status, headers)
            return [data]
        key, params = self.idempotency(service, region, form, body, path, method)
        if key is None:
            return self.app(environ, start_response)
        with self.lock:
            first = self.tokens.get(key)
        if first is None:
            captured = {}

            def capture(status, headers, exc_info=None):
                captured["status"], captured["headers"] = status, headers
                return lambda _: None

            out = b"".join(self.app(environ, capture))
            first = (params, (captured["status"], captured["headers"], out))
            if captured["status"][:1] == "2":
                with self.lock:
                    first = self.tokens.setdefault(key, first)
        elif first[0] != params:
            from faults import error_response

            first = (params, error_response(service, 400, "IdempotentParameterMismatch",
                                            "The request uses the same client token as a previous, but non-identical "
                                            "request. Do not reuse a client token with different requests, unless the "
                                            "requests are identical.") if service == "ec2" else error_response(
                service, 409, "DistributionAlreadyExists",
                "The caller reference that you are using to create a distribution is associated with another "
                "distribution."))
        status, headers, data = first[1]
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"] + [("Content-Length", str(len(data)))]
        start_response(status, headers)
        return [data]

    @staticmethod
    def idempotency(service, region, form, body, path, method):
        """(key, parameters) of a request that carries an idempotency token, else (None, None)."""
        if service == "ec2" and form.get("ClientToken"):
            params = sorted((k, v) for k, v in form.items() if k != "ClientToken")
            return ("ec2", region, form.get("Action"), form["ClientToken"]), params
        if service == "cloudfront" and method == "POST" and path.endswith("/distribution"):
            m = re.search(rb"<CallerReference>([^<]+)</CallerReference>", body)
            if m:
                return ("cloudfront", m.group(1).decode()), body
        return None, None
