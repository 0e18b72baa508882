"""KESConfig.from_env: MinIO's variables, ellipsis expansion, and the clear refusals."""

from __future__ import annotations

import pytest

from kes.client import KESConfig, expand_ellipsis


def test_from_env_reads_the_minio_variables() -> None:
    config = KESConfig.from_env({
        "MINIO_KMS_KES_ENDPOINT": " https://127.0.0.1:7373/, https://127.0.0.1:7374",
        "MINIO_KMS_KES_CERT_FILE": "c.crt", "MINIO_KMS_KES_KEY_FILE": "c.key",
        "MINIO_KMS_KES_CAPATH": "/ca", "MINIO_KMS_KES_KEY_NAME": "minio-default-key",
        "TESSERA_KES_TIMEOUT": "0.5"})
    assert config.endpoints == ("https://127.0.0.1:7373", "https://127.0.0.1:7374")
    assert (config.cert_file, config.key_file, config.capath, config.key_name, config.timeout) \
        == ("c.crt", "c.key", "/ca", "minio-default-key", 0.5)


def test_ellipsis_patterns_expand_like_minio() -> None:
    assert expand_ellipsis("https://kes{1...3}.local:7373") == [
        "https://kes1.local:7373", "https://kes2.local:7373", "https://kes3.local:7373"]
    assert expand_ellipsis("https://k{08...10}") == ["https://k08", "https://k09", "https://k10"]


@pytest.mark.parametrize(("env", "text"), [
    ({}, "MINIO_KMS_KES_ENDPOINT is not set"),
    ({"MINIO_KMS_KES_ENDPOINT": "http://127.0.0.1:7373"}, "is not an https:// URL"),
    ({"MINIO_KMS_KES_ENDPOINT": "https://a", "MINIO_KMS_KES_CERT_FILE": "c"}, "go together"),
    ({"MINIO_KMS_KES_ENDPOINT": "https://a", "MINIO_KMS_KES_CERT_FILE": "c",
      "MINIO_KMS_KES_KEY_FILE": "k", "MINIO_KMS_KES_API_KEY": "kes:v1:x"}, "not both"),
])
def test_from_env_refuses_unusable_settings(env: dict, text: str) -> None:
    with pytest.raises(ValueError, match=text):
        KESConfig.from_env(env)
