import hashlib
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cluster.certs import ClusterCA, identity_of_pem


def test_ca_is_reused_and_leaf_verifies(tmp_path):
    ca = ClusterCA.open(tmp_path)
    again = ClusterCA.open(tmp_path)
    assert again.cert == ca.cert
    pair = ca.issue("node-1")
    ctx = ssl.create_default_context(cafile=str(ca.cert_path))
    ctx.load_cert_chain(str(pair.cert), str(pair.key))  # key matches certificate
    assert (pair.key.stat().st_mode & 0o777) == 0o600


def test_identity_is_sha256_of_spki(tmp_path):
    pair = ClusterCA.open(tmp_path).issue("client", server=False)
    cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert identity_of_pem(pair.cert) == hashlib.sha256(spki).hexdigest()
