"""Env servers on AWS: an image in ECR, N EC2 instances running it, found again by tag.

``up`` creates, for one named group of env hosts (everything tagged
``agentgpt:env-hosts = NAME``):

- the API key in SSM Parameter Store (a SecureString, ``/agentgpt/env-hosts/NAME/api-key``);
- an IAM role and instance profile that may read that one parameter and pull from ECR;
- a security group that opens only the server's port, only to the CIDR the user gives;
- N instances (Amazon Linux 2023 by default, IMDSv2 required) whose user-data installs
  Docker, logs in to ECR with the instance profile, reads the key from SSM into a
  root-only file, and runs the image. The key is never in user-data, tags or a command
  line.

``down`` terminates the instances and deletes the security group, the parameter, the
instance profile and the role; ``list`` shows the groups. Both find everything by tag or
by its derived name, so they work from another shell. If ``up`` fails or is interrupted
(Ctrl-C), what it created so far is deleted before the error is raised.

boto3's standard configuration applies: ``AWS_REGION``/``AWS_DEFAULT_REGION``,
``AWS_PROFILE``, ``AWS_ENDPOINT_URL``, credentials from the environment or files.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import os
import re
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentgpt.hosts.provider import HostProvider

__all__ = [
    "AwsEnvHosts",
    "CloudError",
    "HostGroup",
    "down",
    "list_groups",
    "render_user_data",
    "up",
]

log = logging.getLogger("agentgpt.cloud")

TAG = "agentgpt:env-hosts"
DEFAULT_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
DEFAULT_INSTANCE_TYPE = "t3.medium"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,38}[a-z0-9]$")
_PROFILE_RETRY = 60.0  # seconds to wait for a new instance profile to be usable
_TERMINATE_WAIT = 600
_DEPENDENCY_WAIT = 120.0  # seconds a terminated instance's interfaces may hold its group


class CloudError(RuntimeError):
    """An AWS call failed; the message says what to do."""


@dataclass
class HostGroup:
    """A group of env hosts as ``list`` shows it."""

    name: str
    region: str
    instances: list[dict[str, Any]] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [i["url"] for i in self.instances if i.get("url")]


def parameter_name(name: str) -> str:
    return f"/agentgpt/env-hosts/{name}/api-key"


def resource_name(name: str) -> str:
    return f"agentgpt-env-hosts-{name}"


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(
            f"name {name!r} must be 2-40 lower-case letters, digits or '-', starting and"
            " ending with a letter or digit"
        )
    return name


def check_cidr(cidr: str) -> str:
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise ValueError(
            f"--allow-cidr {cidr!r} is not a CIDR block such as 203.0.113.7/32"
        ) from None
    if network.version != 4:
        raise ValueError("--allow-cidr must be an IPv4 block (the security group rule is IPv4)")
    return str(network)


def _ecr_registry(image: str) -> str | None:
    host = image.split("/", 1)[0]
    return host if ".dkr.ecr." in host and host.endswith(".amazonaws.com") else None


def render_user_data(
    *,
    image: str,
    region: str,
    parameter: str,
    port: int,
    server_args: Sequence[str] = (),
) -> str:
    """The instance's boot script. It names the key's parameter, never the key."""
    registry = _ecr_registry(image)
    login = ""
    if registry is not None:
        login = (
            'aws ecr get-login-password --region "$REGION" \\\n'
            f"    | docker login --username AWS --password-stdin {shlex.quote(registry)}\n"
        )
    extra = "".join(f" {shlex.quote(arg)}" for arg in server_args)
    return f"""#!/bin/bash
# agentgpt env host: run the env server image; the API key comes from SSM Parameter Store.
set -euo pipefail
REGION={shlex.quote(region)}
IMAGE={shlex.quote(image)}
PARAMETER={shlex.quote(parameter)}
PORT={int(port)}

if ! command -v docker >/dev/null 2>&1; then
    dnf install -y docker
fi
if ! command -v aws >/dev/null 2>&1; then
    dnf install -y awscli
fi
systemctl enable --now docker
{login}docker pull "$IMAGE"

# The key goes into a file only root can read, and reaches the server as an environment
# variable: it is never on a command line, in this script or in the instance's tags.
umask 077
mkdir -p /run/agentgpt
KEY="$(aws ssm get-parameter --region "$REGION" --name "$PARAMETER" --with-decryption \\
    --query Parameter.Value --output text)"
printf 'AGENTGPT_API_KEYS=%s\\n' "$KEY" > /run/agentgpt/env
unset KEY

docker rm -f agentgpt-env-server >/dev/null 2>&1 || true
docker run -d --name agentgpt-env-server --restart unless-stopped \\
    --env-file /run/agentgpt/env -p "$PORT:$PORT" "$IMAGE" \\
    --host 0.0.0.0 --port "$PORT"{extra}
"""


# --------------------------------------------------------------------------- boto3


def _session(region: str | None) -> Any:
    try:
        import boto3
    except ImportError:
        raise CloudError("AWS hosting needs boto3: pip install 'agentgpt[cloud]'") from None
    # AWS_REGION is what the AWS SDKs and the CLI v2 read; older botocore reads only
    # AWS_DEFAULT_REGION (and the profile's region), which the session falls back to.
    region = region or os.environ.get("AWS_REGION") or None
    session = boto3.Session(region_name=region) if region else boto3.Session()
    if not session.region_name:
        raise CloudError("no AWS region: pass --region or set AWS_REGION")
    return session


_HINTS = {
    "UnauthorizedOperation": "these AWS credentials may not do this",
    "AccessDenied": "these AWS credentials may not do this",
    "AccessDeniedException": "these AWS credentials may not do this",
    "VcpuLimitExceeded": "the account's vCPU quota for this instance type is used up;"
    " ask for more in Service Quotas or use fewer or smaller instances",
    "InstanceLimitExceeded": "the account's instance quota is used up; ask for more in"
    " Service Quotas or use fewer instances",
    "InsufficientInstanceCapacity": "AWS has no capacity for this instance type in this"
    " zone now; try another type or region",
    "LimitExceeded": "an AWS quota is used up",
    "InvalidAMIID.NotFound": "the AMI does not exist in this region",
    "AuthFailure": "AWS did not accept these credentials",
    "RequestExpired": "the request expired: check this machine's clock",
}


def _explain(exc: Exception, action: str) -> CloudError:
    """A ClientError (or a connection failure) as a CloudError that says what to do."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", ""))
        hint = _HINTS.get(code)
        text = f"AWS refused to {action} ({code}: {message})"
        return CloudError(f"{text}: {hint}." if hint else text)
    return CloudError(f"cannot {action}: {exc}")


def _client_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _tags(name: str, extra: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    tags = {TAG: name, "Name": resource_name(name), **(extra or {})}
    return [{"Key": k, "Value": v} for k, v in tags.items()]


# --------------------------------------------------------------------------- handle


class AwsEnvHosts(HostProvider):
    """Env hosts launched by :func:`up`: ``urls``, ``api_key``, ``instance_ids`` and
    ``close()``, which takes the whole group down (same as ``agentgpt hosts down NAME``)."""

    def __init__(
        self,
        name: str,
        region: str,
        urls: Sequence[str],
        api_key: str,
        instance_ids: Sequence[str],
        *,
        env_id: str | None = None,
        key_generated: bool = False,
        notes: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.region = region
        self._urls = list(urls)
        self.api_key = api_key
        self.instance_ids = list(instance_ids)
        self.env_id = env_id
        self.key_generated = key_generated
        self.notes = list(notes)
        self._closed = False

    @property
    def urls(self) -> list[str]:
        return list(self._urls)

    def start(self) -> AwsEnvHosts:
        return self

    def train_command(self, env_id: str | None = None) -> str:
        line = f"agentgpt train {env_id or self.env_id or 'ENV_ID'}"
        return line + "".join(f" --env-url {url}" for url in self._urls)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            down(self.name, region=self.region)

    def __enter__(self) -> AwsEnvHosts:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --------------------------------------------------------------------------- up


def up(
    *,
    name: str,
    env_id: str,
    count: int,
    allow_cidr: str,
    image: str,
    api_key: str,
    instance_type: str = DEFAULT_INSTANCE_TYPE,
    region: str | None = None,
    port: int = 8000,
    ami: str | None = None,
    server_args: Sequence[str] = (),
    wait: bool = True,
    wait_timeout: float = 900.0,
    key_generated: bool = False,
    health: Callable[[str], bool] | None = None,
) -> AwsEnvHosts:
    """Launch ``count`` env hosts running ``image``; see the module doc.

    ``wait``: return only when every host answers ``GET /health`` (``health(url)``
    decides; by default a plain HTTP request), else once the instances are running.
    """
    check_name(name)
    allow_cidr = check_cidr(allow_cidr)
    if count < 1:
        raise ValueError("count must be at least 1")
    if not 0 < port < 65536:
        raise ValueError(f"port must be between 1 and 65535, got {port}")
    session = _session(region)
    region = str(session.region_name)
    errors = _client_errors()
    ec2 = session.client("ec2")
    if _find_instances(ec2, name):
        raise CloudError(
            f"env hosts named {name!r} exist already in {region}: take them down first"
            f" (agentgpt hosts down {name}) or pick another --name"
        )
    notes = []
    if allow_cidr == "0.0.0.0/0":
        notes.append(
            "The security group lets the whole internet reach the port (0.0.0.0/0); only"
            " the API key guards the servers."
        )
    try:
        if ami is None:
            ami = _default_ami(session)
        vpc = _default_vpc(ec2)
        param = parameter_name(name)
        try:
            session.client("ssm").put_parameter(
                Name=param,
                Value=api_key,
                Type="SecureString",
                Description=f"API key of the agentgpt env hosts {name}",
                Tags=_tags(name),
            )
        except errors as exc:
            raise _explain(exc, "store the API key in SSM Parameter Store") from None
        profile = _create_instance_profile(session, name, region, param)
        group_id = _create_security_group(ec2, name, vpc, port, allow_cidr)
        user_data = render_user_data(
            image=image, region=region, parameter=param, port=port, server_args=server_args
        )
        ids = _run_instances(
            ec2, name, ami, instance_type, count, group_id, profile, user_data, env_id
        )
        log.info("launched %s: %s", name, ", ".join(ids))
        try:
            ec2.get_waiter("instance_running").wait(
                InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": 120}
            )
        except Exception as exc:
            raise CloudError(f"the instances did not reach 'running': {exc}") from None
        urls = _instance_urls(ec2, ids, port)
        if wait:
            _wait_healthy(urls, wait_timeout, health or _health_ok)
        return AwsEnvHosts(
            name,
            region,
            urls,
            api_key,
            ids,
            env_id=env_id,
            key_generated=key_generated,
            notes=notes,
        )
    except BaseException:
        # Failed or interrupted: nothing may be left running or half-created.
        log.warning("env hosts %s did not come up; deleting what was created", name)
        try:
            down(name, region=region)
        except BaseException as cleanup:  # a second Ctrl-C, or AWS refusing
            log.error(
                "deleting what was created for %s did not finish (%s): run"
                " 'agentgpt hosts down %s' to finish it",
                name,
                cleanup or type(cleanup).__name__,
                name,
            )
        raise


def _default_ami(session: Any) -> str:
    try:
        answer = session.client("ssm").get_parameter(Name=DEFAULT_AMI_PARAMETER)
    except _client_errors() as exc:
        raise _explain(exc, "look up the Amazon Linux 2023 AMI (or pass --ami)") from None
    return str(answer["Parameter"]["Value"])


def _default_vpc(ec2: Any) -> str:
    try:
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    except _client_errors() as exc:
        raise _explain(exc, "list the VPCs") from None
    if not vpcs:
        raise CloudError(
            "this region has no default VPC: create one (aws ec2 create-default-vpc) or use"
            " another region"
        )
    return str(vpcs[0]["VpcId"])


def _create_instance_profile(session: Any, name: str, region: str, param: str) -> str:
    iam = session.client("iam")
    errors = _client_errors()
    role = resource_name(name)
    account = session.client("sts").get_caller_identity()["Account"]
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": f"arn:aws:ssm:{region}:{account}:parameter{param}",
            },
            {
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:ViaService": f"ssm.{region}.amazonaws.com"}},
            },
            {
                "Effect": "Allow",
                "Action": [
                    "ecr:GetAuthorizationToken",
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchGetImage",
                ],
                "Resource": "*",
            },
        ],
    }
    try:
        iam.create_role(
            RoleName=role,
            AssumeRolePolicyDocument=json.dumps(trust),
            Description=f"agentgpt env hosts {name}: read the API key, pull the image",
            Tags=_tags(name),
        )
        iam.put_role_policy(
            RoleName=role, PolicyName="agentgpt-env-host", PolicyDocument=json.dumps(policy)
        )
        iam.create_instance_profile(InstanceProfileName=role, Tags=_tags(name))
        iam.add_role_to_instance_profile(InstanceProfileName=role, RoleName=role)
    except errors as exc:
        raise _explain(exc, "create the IAM role and instance profile") from None
    return role


def _create_security_group(ec2: Any, name: str, vpc: str, port: int, cidr: str) -> str:
    try:
        group = ec2.create_security_group(
            GroupName=resource_name(name),
            Description=f"agentgpt env hosts {name}: the env server port only",
            VpcId=vpc,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": _tags(name)}],
        )["GroupId"]
        ec2.authorize_security_group_ingress(
            GroupId=group,
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": port,
                    "ToPort": port,
                    "IpRanges": [{"CidrIp": cidr, "Description": "agentgpt trainers"}],
                }
            ],
        )
    except _client_errors() as exc:
        raise _explain(exc, "create the security group") from None
    return str(group)


def _run_instances(
    ec2: Any,
    name: str,
    ami: str,
    instance_type: str,
    count: int,
    group: str,
    profile: str,
    user_data: str,
    env_id: str,
) -> list[str]:
    tags = _tags(name, {"agentgpt:env-id": env_id})
    deadline = time.monotonic() + _PROFILE_RETRY
    while True:
        try:
            answer = ec2.run_instances(
                ImageId=ami,
                InstanceType=instance_type,
                MinCount=count,
                MaxCount=count,
                SecurityGroupIds=[group],
                IamInstanceProfile={"Name": profile},
                UserData=user_data,
                MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
                TagSpecifications=[
                    {"ResourceType": "instance", "Tags": tags},
                    {"ResourceType": "volume", "Tags": tags},
                ],
            )
            return [str(i["InstanceId"]) for i in answer["Instances"]]
        except _client_errors() as exc:
            # A new instance profile takes a few seconds to be usable by EC2.
            message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
            if (
                _code(exc) == "InvalidParameterValue"
                and "instance profile" in message.lower()
                and time.monotonic() < deadline
            ):
                time.sleep(3)
                continue
            raise _explain(exc, "launch the instances") from None


def _instance_urls(ec2: Any, ids: Sequence[str], port: int) -> list[str]:
    urls = []
    for reservation in ec2.describe_instances(InstanceIds=list(ids))["Reservations"]:
        for instance in reservation["Instances"]:
            address = instance.get("PublicIpAddress") or instance.get("PrivateIpAddress")
            urls.append(f"http://{address}:{port}")
    return urls


def _health_ok(url: str) -> bool:
    host, _, port = url.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=3)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _wait_healthy(urls: Sequence[str], timeout: float, health: Callable[[str], bool]) -> None:
    waiting = list(urls)
    deadline = time.monotonic() + timeout
    while waiting:
        waiting = [url for url in waiting if not health(url)]
        if not waiting:
            return
        if time.monotonic() >= deadline:
            raise CloudError(
                f"no answer from GET /health at {', '.join(waiting)} within {timeout:g} s:"
                " the image may not have started (see the instance's console output), or"
                " --allow-cidr does not include this machine"
            )
        time.sleep(5)


# --------------------------------------------------------------------------- list, down


def _find_instances(ec2: Any, name: str | None) -> list[dict[str, Any]]:
    filters = [
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}
    ]
    filters.append(
        {"Name": f"tag:{TAG}", "Values": [name]}
        if name is not None
        else {"Name": "tag-key", "Values": [TAG]}
    )
    found = []
    try:
        pages = ec2.get_paginator("describe_instances").paginate(Filters=filters)
        for page in pages:
            for reservation in page["Reservations"]:
                found.extend(reservation["Instances"])
    except _client_errors() as exc:
        raise _explain(exc, "list the instances") from None
    return found


def list_groups(region: str | None = None, port: int | None = None) -> list[HostGroup]:
    """Every group of env hosts in the region, with its instances."""
    session = _session(region)
    ec2 = session.client("ec2")
    groups: dict[str, HostGroup] = {}
    for instance in _find_instances(ec2, None):
        tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
        name = tags[TAG]
        group = groups.setdefault(name, HostGroup(name, str(session.region_name)))
        address = instance.get("PublicIpAddress") or instance.get("PrivateIpAddress")
        ports = _group_port(ec2, instance) if port is None else port
        group.instances.append(
            {
                "id": instance["InstanceId"],
                "state": instance["State"]["Name"],
                "type": instance.get("InstanceType"),
                "env_id": tags.get("agentgpt:env-id"),
                "url": f"http://{address}:{ports}" if address and ports else None,
            }
        )
    return sorted(groups.values(), key=lambda g: g.name)


def _group_port(ec2: Any, instance: dict[str, Any]) -> int | None:
    for group in instance.get("SecurityGroups", []):
        if group.get("GroupName", "").startswith("agentgpt-env-hosts-"):
            try:
                found = ec2.describe_security_groups(GroupIds=[group["GroupId"]])
            except _client_errors():
                return None
            for permission in found["SecurityGroups"][0].get("IpPermissions", []):
                return int(permission["FromPort"])
    return None


def _delete_security_group(ec2: Any, group_id: str) -> None:
    """Delete a group; for a while after their instances terminate, their network
    interfaces still hold it (DependencyViolation), so that is retried."""
    deadline = time.monotonic() + _DEPENDENCY_WAIT
    while True:
        try:
            ec2.delete_security_group(GroupId=group_id)
            return
        except _client_errors() as exc:
            if _code(exc) != "DependencyViolation" or time.monotonic() >= deadline:
                raise
            time.sleep(5)


def down(name: str, *, region: str | None = None) -> list[str]:
    """Delete everything of the group ``name``; what was deleted, one line each.

    Safe to run again, and on a group that only half came up."""
    check_name(name)
    session = _session(region)
    errors = _client_errors()
    ec2 = session.client("ec2")
    done: list[str] = []
    ids = [i["InstanceId"] for i in _find_instances(ec2, name)]
    if ids:
        try:
            ec2.terminate_instances(InstanceIds=ids)
            ec2.get_waiter("instance_terminated").wait(
                InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": _TERMINATE_WAIT // 5}
            )
        except errors as exc:
            raise _explain(exc, "terminate the instances") from None
        except Exception as exc:  # the waiter gave up
            raise CloudError(f"the instances of {name} did not terminate: {exc}") from None
        done.append(f"terminated {len(ids)} instance(s): {', '.join(ids)}")
    try:
        groups = ec2.describe_security_groups(Filters=[{"Name": f"tag:{TAG}", "Values": [name]}])[
            "SecurityGroups"
        ]
        for group in groups:
            _delete_security_group(ec2, group["GroupId"])
            done.append(f"deleted security group {group['GroupId']}")
    except errors as exc:
        raise _explain(exc, "delete the security group") from None
    ssm = session.client("ssm")
    try:
        ssm.delete_parameter(Name=parameter_name(name))
        done.append(f"deleted parameter {parameter_name(name)}")
    except errors as exc:
        if _code(exc) != "ParameterNotFound":
            raise _explain(exc, "delete the API key parameter") from None
    iam = session.client("iam")
    role = resource_name(name)
    for step, call in (
        (
            "detach",
            lambda: iam.remove_role_from_instance_profile(InstanceProfileName=role, RoleName=role),
        ),
        ("profile", lambda: iam.delete_instance_profile(InstanceProfileName=role)),
        ("policy", lambda: iam.delete_role_policy(RoleName=role, PolicyName="agentgpt-env-host")),
        ("role", lambda: iam.delete_role(RoleName=role)),
    ):
        try:
            call()
        except errors as exc:
            if _code(exc) not in ("NoSuchEntity", "NoSuchEntityException"):
                raise _explain(exc, f"delete the IAM {step} {role}") from None
            continue
        if step == "profile":
            done.append(f"deleted instance profile {role}")
        elif step == "role":
            done.append(f"deleted role {role}")
    return done
