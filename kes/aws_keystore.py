"""The AWS keystore: one Secrets Manager secret per key, encrypted by AWS KMS (as KES does).

The secret's name is the key name and its SecretString the encoded key (keyfile.py). When a KMS
key id is configured, Secrets Manager encrypts the secret with it (`KmsKeyId` on create), which
is how KES's AWS keystore uses AWS-KMS. All calls carry bounded timeouts and no retries of their
own, so a dead endpoint costs one timeout and the key cache's offline mode takes over.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .config import AwsConfig
from .errors import KeyExists, KeyNotFound
from .keystore import PAGE_SIZE, KeystoreError, KeystoreUnreachable, page_names

__all__ = ["AwsKeyStore"]

_TIMEOUTS = Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 1})


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


class AwsKeyStore:
    """KeyStore over AWS Secrets Manager (+ KMS)."""

    def __init__(self, config: AwsConfig):
        self.config = config
        kwargs = {"region_name": config.region, "config": _TIMEOUTS}
        if config.endpoint:
            kwargs["endpoint_url"] = config.endpoint
        if config.access_key or config.secret_key or config.session_token:
            kwargs.update(aws_access_key_id=config.access_key,
                          aws_secret_access_key=config.secret_key,
                          aws_session_token=config.session_token or None)
        self.client = boto3.session.Session().client("secretsmanager", **kwargs)

    def __str__(self) -> str:
        return f"aws:{self.client.meta.endpoint_url}"

    def status(self) -> float:
        """Any HTTP answer from the endpoint means reachable (KES does the same GET)."""
        start = time.monotonic()
        try:
            urllib.request.urlopen(self.client.meta.endpoint_url, timeout=3).close()
        except urllib.error.HTTPError:
            pass
        except OSError as exc:
            raise KeystoreUnreachable(f"{self}: {exc}") from exc
        return time.monotonic() - start

    def create(self, name: str, value: bytes) -> None:
        args = {"Name": name, "SecretString": value.decode()}
        if self.config.kms_key:
            args["KmsKeyId"] = self.config.kms_key
        try:
            self.client.create_secret(**args)
        except ClientError as exc:
            if _code(exc) == "ResourceExistsException":
                raise KeyExists from None
            raise KeystoreError(f"aws: failed to create {name}: {_code(exc)}") from exc
        except BotoCoreError as exc:
            raise KeystoreUnreachable(f"aws: failed to create {name}: {exc}") from exc

    def get(self, name: str) -> bytes:
        try:
            reply = self.client.get_secret_value(SecretId=name)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                raise KeyNotFound from None
            raise KeystoreError(f"aws: failed to read {name}: {_code(exc)}") from exc
        except BotoCoreError as exc:
            raise KeystoreUnreachable(f"aws: failed to read {name}: {exc}") from exc
        if "SecretString" in reply:
            return reply["SecretString"].encode()
        return reply.get("SecretBinary", b"")

    def delete(self, name: str) -> None:
        try:
            self.client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                raise KeyNotFound from None
            raise KeystoreError(f"aws: failed to delete {name}: {_code(exc)}") from exc
        except BotoCoreError as exc:
            raise KeystoreUnreachable(f"aws: failed to delete {name}: {exc}") from exc

    def list(self, prefix: str, n: int = PAGE_SIZE) -> tuple[list[str], str]:
        names: list[str] = []
        try:
            for page in self.client.get_paginator("list_secrets").paginate():
                names += [s["Name"] for s in page.get("SecretList", [])]
        except ClientError as exc:
            raise KeystoreError(f"aws: failed to list keys: {_code(exc)}") from exc
        except BotoCoreError as exc:
            raise KeystoreUnreachable(f"aws: failed to list keys: {exc}") from exc
        return page_names(names, prefix, n)

    def close(self) -> None:
        self.client.close()
