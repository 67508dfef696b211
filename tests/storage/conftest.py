"""A real S3-compatible server for the tests of artifact content on S3: moto's standalone
server (a separate process speaking the S3 HTTP API) on a free loopback port, started once
per test session, and a new bucket per test, which the service reaches through the same
settings as production (``ARTIFACT_S3_BUCKET``, ``ARTIFACT_S3_ENDPOINT_URL``)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import boto3
import pytest
from botocore.exceptions import ClientError

from artifacts_project.settings import artifact_storage

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "moto-test-key", "AWS_SECRET_ACCESS_KEY": "moto-test-secret"}


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """moto's server on 127.0.0.1, on the port the kernel picks (it logs it)."""
    log_path = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            found = re.search(r"Running on (http://127\.0\.0\.1:\d+)", log_path.read_text(errors="replace"))
            if found:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto's server did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.1)
        yield found.group(1)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Bucket:
    """The test's bucket, read and changed straight through boto3 (not the service's storage)."""

    name: str
    client: object

    def keys(self) -> list[str]:
        return [item["Key"] for item in self.client.list_objects_v2(Bucket=self.name).get("Contents", [])]

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def has(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.name, Key=key)
            return True
        except ClientError:
            return False

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.name, Key=key)


@pytest.fixture
def s3(s3_endpoint, settings, monkeypatch, tmp_path):
    """A new bucket, and the service's content storage switched to it, as the environment
    below would in production. Nothing may land in MEDIA_ROOT meanwhile."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never look for an instance's role
    bucket = f"artifacts-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION)
    client.create_bucket(Bucket=bucket)
    environment = {
        "ARTIFACT_S3_BUCKET": bucket,
        "ARTIFACT_S3_ENDPOINT_URL": s3_endpoint,
        "ARTIFACT_S3_REGION": REGION,
    }
    storage = artifact_storage(environment)
    assert storage["BACKEND"] == "storages.backends.s3.S3Storage"
    settings.STORAGES = {**settings.STORAGES, "default": storage}  # Django resets default_storage
    settings.MEDIA_ROOT = tmp_path / "no-media-here"
    yield Bucket(bucket, client)
    assert not settings.MEDIA_ROOT.exists(), "content was written to MEDIA_ROOT instead of S3"
