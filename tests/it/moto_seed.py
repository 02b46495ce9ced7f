"""Seeds the IAM world of the STS tests into a moto server, then turns IAM enforcement on.

Account 123456789012:
- user `admin`: everything (the tests use it to create buckets and read objects back);
- user `exporter`: no S3 access at all, only sts:AssumeRole on roles named audit-*;
- role `audit-writer`: assumable by `exporter` with the external ID `audit-exporter:acme`,
  allowed s3:PutObject and nothing else;
- role `audit-hop`: assumable by `exporter`, allowed sts:AssumeRole (the exporter's own role);
- role `audit-chained`: assumable from `audit-hop` with the external ID
  `audit-exporter:chained`, allowed s3:PutObject.

Prints the users' keys as JSON. Usage: python moto_seed.py http://127.0.0.1:PORT [open]
With `open`, IAM enforcement stays off (AssumeRoleWithWebIdentity needs that in moto).
"""

import json
import sys
import urllib.request

import boto3

endpoint = sys.argv[1]
enforce = len(sys.argv) < 3 or sys.argv[2] != "open"
ACCOUNT = "123456789012"


def reset_auth(initial_no_auth_actions):
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=str(initial_no_auth_actions).encode(),
        headers={"Content-Type": "text/plain"},
        method="POST",
    )
    urllib.request.urlopen(request).read()


def document(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action, resource="*"):
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def trust(principals, external_id=None):
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": principals},
        "Action": "sts:AssumeRole",
    }
    if external_id:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return document(statement)


reset_auth(1_000_000)
iam = boto3.client(
    "iam",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="seed",
    aws_secret_access_key="seed",
)
keys = {}
for user, policy in [
    ("admin", document(allow("*"))),
    ("exporter", document(allow("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/audit-*"))),
]:
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="policy", PolicyDocument=policy)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    keys[user] = {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}

exporter = f"arn:aws:iam::{ACCOUNT}:user/exporter"
hop = f"arn:aws:iam::{ACCOUNT}:role/audit-hop"
# moto matches the caller's ARN exactly: a role's session is named by its session ARN.
hop_session = f"arn:aws:sts::{ACCOUNT}:assumed-role/audit-hop/audit-exporter"
for role, trusted, policy in [
    ("audit-writer", trust(exporter, "audit-exporter:acme"), document(allow("s3:PutObject"))),
    ("audit-hop", trust(exporter), document(allow("sts:AssumeRole"))),
    ("audit-chained", trust([hop, hop_session], "audit-exporter:chained"), document(allow("s3:PutObject"))),
]:
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=trusted)
    iam.put_role_policy(RoleName=role, PolicyName="policy", PolicyDocument=policy)

if enforce:
    reset_auth(0)
print(json.dumps(keys))
