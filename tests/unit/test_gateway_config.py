"""Gateway configuration: flags, MinIO's environment names, and one-line refusals."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load_config

CREDS = {"MINIO_ROOT_USER": "admin", "MINIO_ROOT_PASSWORD": "password123"}


def test_memory_gateway_minimal():
    config = load_config(["--listen", "127.0.0.1:9000", "--memory"], CREDS)
    assert config.listen == ("127.0.0.1", 9000)
    assert config.memory
    assert config.region == "us-east-1"
    assert "password123" not in repr(config)


def test_old_credential_names_and_domains():
    env = {"MINIO_ACCESS_KEY": "old-admin", "MINIO_SECRET_KEY": "old-secret-1",
           "MINIO_DOMAIN": "s3.example.com, other.test"}
    config = load_config(["--listen", "127.0.0.1:9000", "--memory"], env)
    assert (config.access_key, config.secret_key) == ("old-admin", "old-secret-1")
    assert config.domains == ("s3.example.com", "other.test")


def test_secret_file(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("from-a-file-123\n")
    secret.chmod(0o600)
    env = {"MINIO_ROOT_USER": "admin", "MINIO_ROOT_PASSWORD_FILE": str(secret)}
    assert load_config(["--listen", ":9000", "--memory"], env).secret_key == "from-a-file-123"
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match="world-readable"):
        load_config(["--listen", ":9000", "--memory"], env)


def test_parity_against_topology(tmp_path):
    from common.topology import Topology

    path = tmp_path / "topology.json"
    Topology.from_addresses([f"127.0.0.1:{9200 + i}" for i in range(6)]).save(path)
    args = ["--listen", "127.0.0.1:9000", "--topology", str(path)]
    config = load_config(args, {**CREDS, "MINIO_STORAGE_CLASS_STANDARD": "EC:2"})
    assert config.parity_for(6) == 2
    assert load_config(args, CREDS).parity_for(6) == 3
    with pytest.raises(ConfigError, match="more than half"):
        load_config(args, {**CREDS, "MINIO_STORAGE_CLASS_STANDARD": "EC:4"})
    with pytest.raises(ConfigError, match="EC:2"):
        load_config(args, {**CREDS, "MINIO_STORAGE_CLASS_STANDARD": "RS:2"})


@pytest.mark.parametrize(("argv", "env", "message"), [
    (["--listen", "127.0.0.1:9000", "--memory"], {}, "credentials missing"),
    (["--listen", "127.0.0.1:9000", "--memory"],
     {"MINIO_ROOT_USER": "ad", "MINIO_ROOT_PASSWORD": "password123"}, "at least 3"),
    (["--listen", "127.0.0.1:9000", "--memory"],
     {"MINIO_ROOT_USER": "admin", "MINIO_ROOT_PASSWORD": "short"}, "at least 8"),
    (["--memory"], CREDS, "no address"),
    (["--listen", "nonsense", "--memory"], CREDS, "host:port"),
    (["--listen", "127.0.0.1:9000"], CREDS, "--topology is required"),
    (["--tls-listen", "127.0.0.1:9100", "--memory"], CREDS, "--tls-cert"),
    (["--listen", "127.0.0.1:9000", "--memory", "--tls-cert", "/nonexistent"], CREDS,
     "does not exist"),
    (["--listen", "127.0.0.1:9000", "--memory"], {**CREDS, "MINIO_DOMAIN": "bad domain!"},
     "not a domain"),
])
def test_refusals_are_one_line(argv, env, message):
    with pytest.raises(ConfigError, match=message) as exc:
        load_config(argv, env)
    assert "\n" not in str(exc.value)


def _kms_env(tmp_path, **extra):
    from cluster.certs import ClusterCA

    ca = ClusterCA.open(tmp_path / "certs")
    pair = ca.issue("kes-client", server=False)
    return {**CREDS, "MINIO_KMS_KES_ENDPOINT": "https://127.0.0.1:7373,https://127.0.0.1:7374",
            "MINIO_KMS_KES_CERT_FILE": str(pair.cert), "MINIO_KMS_KES_KEY_FILE": str(pair.key),
            "MINIO_KMS_KES_CAPATH": str(ca.cert_path),
            "MINIO_KMS_KES_KEY_NAME": "minio-default-key", **extra}


def test_kms_settings_from_minio_variables(tmp_path):
    args = ["--listen", "127.0.0.1:9000", "--topology", str(_topology(tmp_path))]
    config = load_config(args, _kms_env(tmp_path, MINIO_KMS_AUTO_ENCRYPTION="on",
                                        TESSERA_KMS_DATA_KEY_CACHE="bucket",
                                        TESSERA_GATEWAY_BUCKET_CONFIG_TTL="0"))
    assert config.kms is not None and config.auto_encryption
    assert config.kms.kes.endpoints == ("https://127.0.0.1:7373", "https://127.0.0.1:7374")
    assert config.kms.default_key == "minio-default-key"
    assert config.kms.cache.scope == "bucket" and config.bucket_config_ttl == 0
    plain = load_config(args, CREDS)
    assert plain.kms is None and not plain.auto_encryption and plain.bucket_config_ttl == 1.0


@pytest.mark.parametrize(("change", "message"), [
    ({"MINIO_KMS_KES_ENDPOINT": ""}, "MINIO_KMS_KES_CERT_FILE is set but MINIO_KMS_KES_ENDPOINT"),
    ({"MINIO_KMS_KES_KEY_NAME": ""}, "MINIO_KMS_KES_KEY_NAME is not set"),
    ({"MINIO_KMS_KES_KEY_NAME": "bad name"}, "not a valid KES key name"),
    ({"MINIO_KMS_KES_CERT_FILE": "/nope.crt"}, "MINIO_KMS_KES_CERT_FILE: /nope.crt does not"),
    ({"MINIO_KMS_KES_ENDPOINT": "http://127.0.0.1:7373"}, "is not an https:// URL"),
    ({"TESSERA_KMS_CACHE_MAX_AGE": "-3"}, "TESSERA_KMS_CACHE_MAX_AGE must be positive"),
    ({"TESSERA_GATEWAY_BUCKET_CONFIG_TTL": "soon"}, "must be a number of seconds"),
])
def test_bad_kms_settings_are_one_line(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message) as exc:
        load_config(["--listen", "127.0.0.1:9000", "--topology", str(_topology(tmp_path))],
                    _kms_env(tmp_path, **change))
    assert "\n" not in str(exc.value)


def test_auto_encryption_needs_a_kms_and_memory_never_encrypts(tmp_path):
    with pytest.raises(ConfigError, match="needs a KMS"):
        load_config(["--listen", ":9000", "--memory"],
                    {**CREDS, "MINIO_KMS_AUTO_ENCRYPTION": "on"})
    with pytest.raises(ConfigError, match="never encrypts"):
        load_config(["--listen", ":9000", "--memory"], _kms_env(tmp_path))


def _topology(tmp_path):
    from common.topology import Topology

    path = tmp_path / "topology.json"
    Topology.from_addresses([f"127.0.0.1:{9200 + i}" for i in range(6)]).save(path)
    return path
