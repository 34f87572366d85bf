"""Env hosts on AWS (``agentgpt hosts up/list/down``), every call against moto in server mode.

moto runs no instance, so nothing boots: the tests check what is created (and that it
is all deleted again), the user-data the instances would run, and the failure paths.
The instances' ``/health`` is decided by a stand-in where a test waits for it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import boto3
import botocore.client
import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from agentgpt.cli import app
from agentgpt.cloud import aws
from agentgpt.cloud.launcher import EnvLauncher

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/agentgpt-env-server:cartpole"
CIDR = "203.0.113.7/32"
KEY = "cloud-test-key-0123456789abcdef"


def _leftovers(name: str) -> list[str]:
    """Everything of group ``name`` that still exists (terminated instances excepted)."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    found = []
    for reservation in ec2.describe_instances(
        Filters=[{"Name": f"tag:{aws.TAG}", "Values": [name]}]
    )["Reservations"]:
        for instance in reservation["Instances"]:
            if instance["State"]["Name"] != "terminated":
                found.append(f"instance {instance['InstanceId']}")
    for group in ec2.describe_security_groups(
        Filters=[{"Name": f"tag:{aws.TAG}", "Values": [name]}]
    )["SecurityGroups"]:
        found.append(f"security group {group['GroupId']}")
    ssm = boto3.client("ssm", region_name="us-east-1")
    try:
        ssm.get_parameter(Name=aws.parameter_name(name))
        found.append("parameter")
    except ClientError:
        pass
    iam = boto3.client("iam", region_name="us-east-1")
    try:
        iam.get_instance_profile(InstanceProfileName=aws.resource_name(name))
        found.append("instance profile")
    except ClientError:
        pass
    try:
        iam.get_role(RoleName=aws.resource_name(name))
        found.append("role")
    except ClientError:
        pass
    return found


def test_up_creates_tagged_hosts_keeps_the_key_out_of_user_data_and_down_deletes_it_all(
    aws_account: str,
) -> None:
    hosts = EnvLauncher.launch_on_cloud(
        "CartPole-v1",
        count=2,
        allow_cidr=CIDR,
        image=IMAGE,
        name="cartpole-a",
        api_key=KEY,
        wait=False,
    )
    assert hosts.name == "cartpole-a" and hosts.region == "us-east-1"
    assert len(hosts.instance_ids) == 2 and len(hosts.urls) == 2
    assert all(url.startswith("http://") and url.endswith(":8000") for url in hosts.urls)
    assert KEY not in hosts.train_command()
    ec2 = boto3.client("ec2", region_name="us-east-1")
    for instance_id in hosts.instance_ids:
        user_data = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        script = base64.b64decode(user_data["UserData"]["Value"]).decode()
        assert KEY not in script
        assert aws.parameter_name("cartpole-a") in script and IMAGE in script
    [reservation] = ec2.describe_instances(InstanceIds=hosts.instance_ids)["Reservations"]
    for instance in reservation["Instances"]:
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags[aws.TAG] == "cartpole-a" and tags["agentgpt:env-id"] == "CartPole-v1"
        assert KEY not in json.dumps(tags)
    # (moto records the instance profile of a launch on its first instance only.)
    profiles = {
        i["IamInstanceProfile"]["Arn"]
        for i in reservation["Instances"]
        if "IamInstanceProfile" in i
    }
    assert profiles == {
        f"arn:aws:iam::123456789012:instance-profile/{aws.resource_name('cartpole-a')}"
    }
    [group] = ec2.describe_security_groups(
        Filters=[{"Name": f"tag:{aws.TAG}", "Values": ["cartpole-a"]}]
    )["SecurityGroups"]
    [rule] = group["IpPermissions"]
    assert (rule["FromPort"], rule["ToPort"], rule["IpProtocol"]) == (8000, 8000, "tcp")
    assert [r["CidrIp"] for r in rule["IpRanges"]] == [CIDR]
    parameter = boto3.client("ssm", region_name="us-east-1").get_parameter(
        Name=aws.parameter_name("cartpole-a"), WithDecryption=True
    )["Parameter"]
    assert parameter["Type"] == "SecureString" and parameter["Value"] == KEY
    policy = boto3.client("iam", region_name="us-east-1").get_role_policy(
        RoleName=aws.resource_name("cartpole-a"), PolicyName="agentgpt-env-host"
    )["PolicyDocument"]
    resources = [s["Resource"] for s in policy["Statement"] if s["Action"] == "ssm:GetParameter"]
    assert resources == [
        f"arn:aws:ssm:us-east-1:123456789012:parameter{aws.parameter_name('cartpole-a')}"
    ]

    # Another shell finds the group by its tags.
    [listed] = aws.list_groups()
    assert listed.name == "cartpole-a" and sorted(listed.urls) == sorted(hosts.urls)
    assert {i["env_id"] for i in listed.instances} == {"CartPole-v1"}
    with pytest.raises(aws.CloudError, match="exist already"):
        aws.up(
            name="cartpole-a",
            env_id="CartPole-v1",
            count=1,
            allow_cidr=CIDR,
            image=IMAGE,
            api_key=KEY,
            wait=False,
        )

    done = aws.down("cartpole-a")
    assert done[0].startswith("terminated 2 instance(s)")
    assert _leftovers("cartpole-a") == []
    assert aws.list_groups() == []
    assert aws.down("cartpole-a") == []  # again: nothing left to do


def test_up_waits_for_health_and_close_takes_the_hosts_down(aws_account: str) -> None:
    asked: list[str] = []

    def health(url: str) -> bool:
        asked.append(url)
        return True

    hosts = _up(health=health)
    assert sorted(set(asked)) == sorted(hosts.urls)
    with hosts:
        pass
    assert _leftovers("waited") == []


def _up(**kwargs):
    return aws.up(
        name="waited",
        env_id="CartPole-v1",
        count=1,
        allow_cidr=CIDR,
        image=IMAGE,
        api_key=KEY,
        **kwargs,
    )


def test_ctrl_c_during_up_leaves_nothing_behind(aws_account: str) -> None:
    def interrupted(url: str) -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _up(health=interrupted)
    assert _leftovers("waited") == []


def _refuse(monkeypatch: pytest.MonkeyPatch, operation: str, code: str, message: str) -> None:
    """Make AWS answer ``operation`` with the error ``code`` (everything else goes to moto)."""
    real = botocore.client.BaseClient._make_api_call

    def call(self, name, params):
        if name == operation:
            raise ClientError({"Error": {"Code": code, "Message": message}}, name)
        return real(self, name, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", call)


@pytest.mark.parametrize(
    ("operation", "code", "expected"),
    [
        ("RunInstances", "VcpuLimitExceeded", "vCPU quota"),
        ("CreateSecurityGroup", "UnauthorizedOperation", "may not do this"),
        ("CreateRole", "AccessDenied", "may not do this"),
    ],
)
def test_aws_errors_are_explained_and_what_was_created_is_deleted(
    aws_account: str, operation: str, code: str, expected: str
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        _refuse(patch, operation, code, "refused by the test")
        with pytest.raises(aws.CloudError, match=expected):
            _up(wait=False)
    assert _leftovers("waited") == []


def test_a_region_without_a_default_vpc_is_a_clear_error(aws_account: str) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    [vpc] = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    vpc_id = vpc["VpcId"]
    for subnet in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    for gateway in ec2.describe_internet_gateways()["InternetGateways"]:
        ec2.detach_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"], VpcId=vpc_id)
        ec2.delete_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"])
    ec2.delete_vpc(VpcId=vpc_id)
    with pytest.raises(aws.CloudError, match="no default VPC"):
        _up(wait=False)
    assert _leftovers("waited") == []


def test_bad_input_is_refused_before_any_call() -> None:
    with pytest.raises(ValueError, match="CIDR"):
        aws.check_cidr("everyone")
    with pytest.raises(ValueError, match="name"):
        aws.check_name("Bad_Name")


def test_the_user_data_passes_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (Debian package 'shellcheck'); CI installs it")
    script = aws.render_user_data(
        image=IMAGE,
        region="eu-west-1",
        parameter=aws.parameter_name("x1"),
        port=8000,
        server_args=["--register", "My-v0=my_env:make"],
    )
    done = subprocess.run(
        ["shellcheck", "--shell=bash", "-"], input=script, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_cli_runs_up_list_and_down(aws_account: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTGPT_API_KEY", KEY)
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "hosts",
            "up",
            "--cloud",
            "aws",
            "--env",
            "CartPole-v1",
            "--count",
            "1",
            "--allow-cidr",
            CIDR,
            "--image",
            IMAGE,
            "--name",
            "from-cli",
            "--no-wait",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "agentgpt train CartPole-v1 --env-url http://" in result.output
    assert KEY not in result.output
    assert "agentgpt hosts down from-cli" in result.output
    listed = runner.invoke(app, ["hosts", "list"])
    assert listed.exit_code == 0 and "from-cli" in listed.output
    down = runner.invoke(app, ["hosts", "down", "from-cli"])
    assert down.exit_code == 0, down.output
    assert "from-cli: nothing left" in down.output
    assert _leftovers("from-cli") == []
    bad = runner.invoke(
        app,
        ["hosts", "up", "--env", "CartPole-v1", "--allow-cidr", "nope", "--image", IMAGE],
    )
    assert bad.exit_code == 2 and "not a CIDR block" in bad.output


def test_ctrl_c_during_hosts_up_deletes_what_was_created(
    aws_account: str, moto_server: str
) -> None:
    """A real SIGINT to ``agentgpt hosts up`` while it waits for the servers' /health."""
    env = dict(os.environ, AGENTGPT_API_KEY=KEY)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentgpt",
            "hosts",
            "up",
            "--env",
            "CartPole-v1",
            "--allow-cidr",
            CIDR,
            "--image",
            IMAGE,
            "--name",
            "interrupted",
            "--wait-timeout",
            "600",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ec2 = boto3.client("ec2", region_name="us-east-1")
        deadline = time.monotonic() + 120
        while not ec2.describe_instances(
            Filters=[
                {"Name": f"tag:{aws.TAG}", "Values": ["interrupted"]},
                {"Name": "instance-state-name", "Values": ["running"]},
            ]
        )["Reservations"]:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the instances never ran"
            time.sleep(0.2)
        time.sleep(1.0)  # into the wait for /health
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "Interrupted" in err
    assert _leftovers("interrupted") == []
