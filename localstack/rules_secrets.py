"""The AWS rules of `rules.py` about the database secret (issue 17 items 7, 8, 9).

  forced deletes are asynchronous  DeleteSecret with ForceDeleteWithoutRecovery: "Secrets Manager
        performs the actual deletion with an asynchronous background process, so there might be
        a short delay before the secret is permanently deleted. If you delete a secret and then
        immediately create a secret with the same name, use appropriate back off and retry logic"
        (Secrets Manager API reference, DeleteSecret,
        https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_DeleteSecret.html).
        moto deletes at once. Here the secret stays for TAP_RULES_SECRET_DELETING_SECS seconds
        (default 1; 0 turns the rule off; POST /_rules/secret-deleting?name=N&seconds=S sets it
        for the secret named N): DescribeSecret shows it with its DeletedDate, CreateSecret of
        the name answers 400 InvalidRequestException "You can't create this secret because a
        secret with this name is already scheduled for deletion.", RestoreSecret 400
        InvalidRequestException "You can't perform this operation on the secret because it was
        deleted." (API_RestoreSecret.html, InvalidRequestException: "The request is invalid
        for the current state of the resource"); then it is gone.

  key references as AWS reports them  DescribeSecret's KmsKeyId is "the key ID or alias ARN of
        the KMS key that Secrets Manager uses to encrypt the secret value"
        (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_DescribeSecret.html),
        and a replica's KmsKeyId "can be an ARN, Key ID, or Alias"
        (API_ReplicationStatusType.html): not necessarily the key ARN the secret was given,
        which moto echoes. For a secret named with POST /_rules/secret-key-form?name=N (other
        secrets keep moto's echo), DescribeSecret reports a key given by its key ARN as its key
        ID and an alias name as its alias ARN, for the secret and each replica.

  the master password stays with RDS  RDS keeps the master password it was given until
        ModifyDBInstance MasterUserPassword changes it (RDS API reference, ModifyDBInstance,
        MasterUserPassword: "Changing this parameter doesn't result in an outage and the change
        is asynchronously applied as soon as possible",
        https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_ModifyDBInstance.html); a
        rotated or recreated secret does not reach it. moto keeps it too, unreadable; GET
        /_rules/db-password?id=<DBInstanceIdentifier>&secret=<secret name or ARN> answers
        {"matches": true|false}: whether the instance's password is the "password" of the
        secret's AWSCURRENT version (the tests' proof, without any secret value leaving).
"""

import json
import os
import threading
import time

ACCOUNT = "123456789012"


def json_response(status, code, message):
    data = json.dumps({"__type": code, "message": message}).encode()
    return f"{status} Bad Request", [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code),
                                     ("Content-Length", str(len(data)))], data


def backend(region):
    from moto.secretsmanager import models as sm

    return sm.secretsmanager_backends[ACCOUNT][region]


class SecretRules:
    def __init__(self):
        self.lock = threading.Lock()
        self.default_window = float(os.environ.get("TAP_RULES_SECRET_DELETING_SECS", "1"))
        self.windows = {}  # secret name -> seconds
        self.deleting = {}  # (region, name) -> time the delete completes
        self.key_forms = set()  # secret names whose keys are reported as AWS may
        self.patch_moto()

    def window(self, name):
        with self.lock:
            return self.windows.get(name, self.default_window)

    def patch_moto(self):
        from moto.secretsmanager import models as sm

        if getattr(sm.SecretsManagerBackend, "_tap_deleting", False):
            return
        delete = sm.SecretsManagerBackend.delete_secret
        rules = self

        def delete_secret(be, secret_id, recovery_window_in_days, force_delete_without_recovery):
            found = be.secrets.get(secret_id) if force_delete_without_recovery else None
            if found is not None and not isinstance(found, sm.ReplicaSecret) and not found.replicas:
                key = (be.region_name, found.name)
                window = rules.window(found.name)
                if window > 0:
                    now = sm.utcnow()
                    with rules.lock:
                        if key not in rules.deleting:
                            found.delete(be._unix_time_secs(now))
                            rules.deleting[key] = time.time() + window
                    return found.arn, found.name, be._unix_time_secs(now)
            return delete(be, secret_id, recovery_window_in_days, force_delete_without_recovery)

        sm.SecretsManagerBackend.delete_secret = delete_secret
        sm.SecretsManagerBackend._tap_deleting = True

    def purge(self):
        """Completes the forced deletes whose time has come."""
        now = time.time()
        with self.lock:
            done = [k for k, t in self.deleting.items() if t <= now]
            for k in done:
                del self.deleting[k]
        for region, name in done:
            backend(region).secrets.pop(name)

    def is_deleting(self, region, secret_id):
        found = backend(region).secrets.get(secret_id) if secret_id else None
        with self.lock:
            return found is not None and (region, found.name) in self.deleting

    def control(self, path, q):
        """The switches; None when `path` is not one of them."""
        if path == "/_rules/secret-deleting" and q.get("name"):
            with self.lock:
                self.windows[q["name"]] = float(q.get("seconds", self.default_window))
                return "200 OK", {"windows": dict(self.windows)}
        if path == "/_rules/secret-key-form" and q.get("name"):
            with self.lock:
                self.key_forms.add(q["name"])
                return "200 OK", {"key_forms": sorted(self.key_forms)}
        if path == "/_rules/db-password" and q.get("id") and q.get("secret"):
            return self.db_password(q["id"], q["secret"])
        return None

    @staticmethod
    def db_password(ident, secret_id):
        from moto.rds.models import rds_backends

        db = None
        for be in list(rds_backends[ACCOUNT].values()):
            db = db or be.databases.get(ident)
        region = secret_id.split(":")[3] if secret_id.startswith("arn:") else None
        secret = None
        from moto.secretsmanager import models as sm

        for r, be in list(sm.secretsmanager_backends[ACCOUNT].items()):
            if region in (None, r):
                secret = secret or be.secrets.get(secret_id)
        if db is None or secret is None:
            return "404 Not Found", {"found": False}
        current = next((v for v in secret.versions.values() if "AWSCURRENT" in v.get("version_stages", [])), None)
        try:
            password = json.loads((current or {}).get("secret_string") or "{}").get("password")
        except ValueError:
            password = None
        held = getattr(db, "_master_user_password", None)
        return "200 OK", {"matches": password is not None and held == password}

    def check(self, region, target, body):
        """AWS's answer to a Secrets Manager call where moto would answer otherwise, or None."""
        self.purge()
        op = target.rsplit(".", 1)[-1]
        if op not in ("CreateSecret", "RestoreSecret"):
            return None
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            return None
        if op == "CreateSecret" and self.is_deleting(region, req.get("Name")):
            return json_response(400, "InvalidRequestException",
                                 "You can't create this secret because a secret with this name is already "
                                 "scheduled for deletion.")
        if op == "RestoreSecret" and self.is_deleting(region, req.get("SecretId")):
            return json_response(400, "InvalidRequestException",
                                 "You can't perform this operation on the secret because it was deleted.")
        return None

    def reports_key_forms(self, target, body):
        if not target.endswith(".DescribeSecret"):
            return False
        try:
            secret_id = json.loads(body or b"{}").get("SecretId") or ""
        except ValueError:
            return False
        name = secret_id.split(":")[-1].rsplit("-", 1)[0] if secret_id.startswith("arn:") else secret_id
        with self.lock:
            return name in self.key_forms

    @staticmethod
    def key_form(key, region):
        """A key reference as DescribeSecret may report it: key ARN -> key ID, alias -> alias ARN."""
        if not isinstance(key, str):
            return key
        if key.startswith("arn:") and ":key/" in key:
            return key.split(":key/", 1)[1]
        if key.startswith("alias/"):
            return f"arn:aws:kms:{region}:{ACCOUNT}:{key}"
        return key

    def rewrite_keys(self, region, data):
        try:
            out = json.loads(data)
        except ValueError:
            return data
        if "KmsKeyId" in out:
            out["KmsKeyId"] = self.key_form(out["KmsKeyId"], region)
        for r in out.get("ReplicationStatus") or []:
            if "KmsKeyId" in r:
                r["KmsKeyId"] = self.key_form(r["KmsKeyId"], r.get("Region") or region)
        return json.dumps(out).encode()

    def serve_rewritten(self, app, environ, start_response, region):
        """Runs the request through moto, then reports its keys as AWS may."""
        seen = {}

        def capture(status, headers, exc_info=None):
            seen["status"], seen["headers"] = status, headers
            return lambda _b: None

        data = b"".join(app(environ, capture))
        if seen.get("status", "").startswith("200"):
            data = self.rewrite_keys(region, data)
        headers = [h for h in seen.get("headers", []) if h[0].lower() != "content-length"]
        start_response(seen.get("status", "500 Internal Server Error"), headers + [("Content-Length", str(len(data)))])
        return [data]
