"""Server config parsing, policy matching and the error table."""

from __future__ import annotations

import pytest

from kes.auth import Authorizer, Policy, match_pattern, valid_name, valid_pattern
from kes.config import ConfigError, parse_config, parse_duration
from kes.errors import (
    APIError,
    DecryptError,
    KeyExists,
    KeyNotFound,
    NotAllowed,
    ServerError,
    error_from_reply,
)

ADMIN = "a" * 64
APP = "b" * 64


def _doc(**extra):
    doc = {"version": "v1", "address": "127.0.0.1:7373", "admin": {"identity": ADMIN},
           "tls": {"key": "k.pem", "cert": "c.pem", "ca": "ca.pem", "auth": "on"},
           "policy": {"app": {"allow": ["/v1/key/generate/app-*"],
                              "deny": ["/v1/key/generate/app-x"], "identities": [APP]}},
           "cache": {"expiry": {"any": "5m0s", "unused": "20s", "offline": "1h30m"}},
           "keystore": {"fs": {"path": "/tmp/keys"}}, "keys": [{"name": "k1"}]}
    doc.update(extra)
    return doc


def test_launcher_shaped_config_parses() -> None:
    cfg = parse_config(_doc())
    assert cfg.admin == ADMIN and cfg.tls_auth is True and cfg.keystore == "fs"
    assert (cfg.cache.any, cfg.cache.unused, cfg.cache.offline) == (300, 20, 5400)
    assert cfg.keys == ("k1",)
    assert cfg.policies["app"].identities == (APP,)


def test_yaml_on_as_boolean_and_env_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KES_TEST_KEY", "/secret/key.pem")
    cfg = parse_config(_doc(tls={"key": "${KES_TEST_KEY}", "cert": "c", "auth": False}))
    assert cfg.tls_key == "/secret/key.pem" and cfg.tls_auth is False


@pytest.mark.parametrize(("change", "field"), [
    ({"tls": {"cert": "c"}}, "tls.key"),
    ({"admin": {}}, "admin.identity"),
    ({"version": "v2"}, "version"),
    ({"cache": {"expiry": {"any": "5 minutes"}}}, "cache.expiry.any"),
    ({"cache": {"expiry": {"unused": "-1s"}}}, "cache.expiry.unused"),
    ({"adress": "x"}, "adress"),
    ({"keystore": {"fs": {"path": "/a"}, "aws": {"secretsmanager": {"region": "r"}}}}, "keystore"),
    ({"keystore": {"vault": {"endpoint": "x"}}}, "keystore.vault"),
    ({"policy": {"p": {"identities": ["nothex"]}}}, "policy.p.identities"),
    ({"policy": {"p": {"identities": [ADMIN]}}}, "policy.p.identities"),
    ({"tls": {"key": "${KES_TEST_UNSET_VAR}", "cert": "c"}}, "tls.key"),
])
def test_bad_config_names_the_field(change, field) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_doc(**change))
    assert str(err.value).startswith(field + ":")
    assert "\n" not in str(err.value)


def test_disabled_admin_and_durations() -> None:
    assert parse_config(_doc(admin={"identity": "disabled"})).admin is None
    assert parse_duration("1h2m3.5s", "x") == 3723.5
    assert parse_duration("0", "x") == 0
    assert parse_duration("250ms", "x") == 0.25


def test_names_and_patterns() -> None:
    assert valid_name("minio-default-key") and valid_name("a_b")
    for bad in ("", "_", "-a", "a-", "a.b", "a/b", "x" * 81):
        assert not valid_name(bad)
    assert valid_pattern("") and valid_pattern("abc*") and valid_pattern("*")
    assert not valid_pattern("a*b") and not valid_pattern("a/b")


def test_policy_prefix_match_crosses_slash_and_deny_wins() -> None:
    assert match_pattern("/v1/key/*", "/v1/key/generate/x")
    assert not match_pattern("/v1/key/generate/x", "/v1/key/generate/xy")
    auth = Authorizer(ADMIN, {"app": Policy("app", ("/v1/key/generate/app-*",),
                                            ("/v1/key/generate/app-x",), (APP,))})
    auth.verify(ADMIN, "/v1/anything")
    auth.verify(APP, "/v1/key/generate/app-1")
    for identity, path in ((APP, "/v1/key/generate/app-x"), (APP, "/v1/key/delete/app-1"),
                           ("c" * 64, "/v1/key/generate/app-1")):
        with pytest.raises(NotAllowed):
            auth.verify(identity, path)


def test_error_table_matches_status_and_exact_text() -> None:
    assert isinstance(error_from_reply(404, "key does not exist"), KeyNotFound)
    assert isinstance(error_from_reply(400, "key already exists"), KeyExists)
    assert isinstance(error_from_reply(400, "key does already exist"), KeyExists)
    assert isinstance(error_from_reply(403, "prohibited by policy"), NotAllowed)
    assert isinstance(error_from_reply(400, "decryption failed: ciphertext is not authentic"),
                      DecryptError)
    # same text, other status: not the standard error (Go compares both)
    assert type(error_from_reply(500, "key does not exist")) is ServerError
    assert type(error_from_reply(400, "key does not exist")) is APIError
    assert KeyNotFound() == APIError("key does not exist", 404)


def test_sample_config_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    import yaml

    monkeypatch.setenv("KES_ADMIN_IDENTITY", "disabled")
    monkeypatch.setenv("MINIO_IDENTITY", APP)
    sample = Path(__file__).resolve().parents[2] / "kes" / "server-config.sample.yaml"
    cfg = parse_config(yaml.safe_load(sample.read_text()))
    assert cfg.keystore == "fs" and cfg.policies["minio"].identities == (APP,)
    assert cfg.api["/v1/ready"].skip_auth and cfg.cache.offline == 600
