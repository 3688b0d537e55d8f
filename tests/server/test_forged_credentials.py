"""Forged, confused and misplaced credentials against a real server with API keys, an HS256
secret and an RS256 public key configured: every one is a 401 (never another user, never a
5xx), and the keys the server is configured with bind the algorithms a token may name."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from tenantry import Agent
from tenantry.errors import InvalidInput
from tenantry.server import ServerSettings, create_app
from tenantry.server.auth import Authenticator, hash_api_key, new_api_key
from tenantry.server.errors import Unauthorized
from tests.server.conftest import JWT_SECRET
from tests.support.servers import serve

EXP = int(time.time()) + 86_400
PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = (
    PRIVATE.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
ATTACKER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ALICE_KEY = new_api_key()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def crafted(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes = b"") -> str:
    """A token built by hand, as an attacker would (PyJWT refuses to make most of these)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature) if hmac_key else ''}"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    settings = ServerSettings(
        _env_file=None,
        api_keys={hash_api_key(ALICE_KEY): "alice"},
        admin_users=["ops"],
        jwt_secret=JWT_SECRET,
        jwt_public_key=PUBLIC_PEM,
        rate_limit_per_minute=0,
    )
    with serve(create_app(Agent(), settings)) as url:
        yield url


def me(server: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{server}/v1/me", headers=headers)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


OPS = {"sub": "ops", "exp": EXP}
FORGED = {
    **{f"alg {alg!r}": crafted({"alg": alg}, OPS) for alg in ("none", "None", "NONE", "nOnE", "")},
    "no alg": crafted({"typ": "JWT"}, OPS),
    "HS256 keyed with the public key (HS/RS confusion)": crafted(
        {"alg": "HS256"}, OPS, PUBLIC_PEM.encode()
    ),
    "HS256 with a guessed secret": crafted({"alg": "HS256"}, OPS, b"secret"),
    "ES256 header over the RSA key": crafted({"alg": "ES256"}, OPS) + "AAAA",
    "RS256 by another key": jwt.encode(OPS, ATTACKER, "RS256"),
    **{
        f"RS256 by another key, naming it in {name}": jwt.encode(
            OPS, ATTACKER, "RS256", headers={name: value}
        )
        for name, value in [
            ("jwk", json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(ATTACKER.public_key()))),
            ("jku", "http://evil.example/jwks.json"),
            ("x5u", "http://evil.example/cert.pem"),
            ("kid", "../../../dev/null"),
        ]
    },
    **{
        f"kid {kid!r}": crafted({"alg": "HS256", "kid": kid}, OPS, JWT_SECRET.encode())
        for kid in ({"a": 1}, ["x"], 1, None)
    },
    "signature stripped": jwt.encode(OPS, JWT_SECRET, "HS256").rsplit(".", 1)[0] + ".",
    "signature of another token": jwt.encode({"sub": "x", "exp": EXP}, JWT_SECRET, "HS256").rsplit(
        ".", 1
    )[0]
    + "."
    + jwt.encode(OPS, JWT_SECRET, "HS256").rsplit(".", 1)[1],
    "four segments": jwt.encode(OPS, JWT_SECRET, "HS256") + ".x",
    "not yet valid": jwt.encode({**OPS, "nbf": EXP}, JWT_SECRET, "HS256"),
    "issued in the future": jwt.encode({**OPS, "iat": EXP + 3600}, JWT_SECRET, "HS256"),
    "exp not a number": crafted({"alg": "HS256"}, {**OPS, "exp": "soon"}, JWT_SECRET.encode()),
    "exp infinite": crafted({"alg": "HS256"}, {**OPS, "exp": 1e309}, JWT_SECRET.encode()),
}


@pytest.mark.parametrize("token", FORGED.values(), ids=FORGED.keys())
def test_a_forged_or_confused_jwt_is_401(server: str, token: str) -> None:
    response = me(server, bearer(token))
    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "Unauthorized"


def credential(token: str) -> httpx.Headers:
    """Headers as the server's Authenticator reads them (case-insensitive)."""
    return httpx.Headers(bearer(token))


def test_the_real_keys_still_work_and_roles_must_be_a_list_or_string(server: str) -> None:
    assert me(server, bearer(jwt.encode(OPS, PRIVATE, "RS256"))).json()["admin"] is True
    assert me(server, bearer(jwt.encode(OPS, PRIVATE, "PS256"))).json()["admin"] is True
    assert me(server, bearer(jwt.encode(OPS, JWT_SECRET, "HS256"))).json()["admin"] is True
    for roles in ({"admin": True}, "administrator", [["admin"]], 1):
        claims = {"sub": "bob", "exp": EXP, "roles": roles}
        assert me(server, bearer(jwt.encode(claims, JWT_SECRET, "HS256"))).json()["admin"] is False


@pytest.mark.parametrize("size", [8_000, 60_000, 1_000_000])
def test_huge_credentials_are_refused_without_a_5xx(server: str, size: int) -> None:
    token = "x." * (size // 2) + "y"
    for headers in (bearer(token), {"X-API-Key": token}):
        try:
            response = me(server, headers)
        except httpx.RemoteProtocolError:  # uvicorn closed the connection: refused, fine
            continue
        assert response.status_code in (400, 401, 431), response.text[:200]


@pytest.mark.parametrize(
    "options",
    [
        {"params": {"api_key": ALICE_KEY}},
        {"params": {"X-API-Key": ALICE_KEY}},
        {"cookies": {"X-API-Key": ALICE_KEY}},
        {"auth": ("alice", ALICE_KEY)},
        {"headers": {"X-API-Key": f"Bearer {ALICE_KEY}"}},
        {"headers": {"Authorization": ALICE_KEY}},
        {"headers": {"Authorization": f"Token {ALICE_KEY}"}},
        {"headers": {"X-API-Key": ALICE_KEY.upper()}},
        {"headers": {"X-API-Key": ""}},
    ],
    ids=[
        "query",
        "query-header-name",
        "cookie",
        "basic",
        "key-as-bearer-in-x-api-key",
        "no-scheme",
        "token-scheme",
        "case-changed",
        "empty",
    ],
)
def test_a_misplaced_or_mangled_key_is_401(server: str, options: dict[str, Any]) -> None:
    response = httpx.get(f"{server}/v1/me", **options)
    assert response.status_code == 401, response.text


def test_a_key_in_the_body_is_not_a_credential(server: str) -> None:
    body = {"message": "hi", "api_key": ALICE_KEY, "X-API-Key": ALICE_KEY}
    assert httpx.post(f"{server}/v1/chat", json=body).status_code == 401


def test_two_credentials_are_never_merged(server: str) -> None:
    # X-API-Key decides when both are sent: a bad key is 401 even beside a valid admin JWT.
    admin = jwt.encode(OPS, JWT_SECRET, "HS256")
    both = me(server, {"X-API-Key": ALICE_KEY, **bearer(admin)})
    assert both.json() == {"user_id": "alice", "admin": False, "auth": True}
    assert me(server, {"X-API-Key": "tnt_wrong", **bearer(admin)}).status_code == 401


def test_a_short_hs256_secret_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        ServerSettings(_env_file=None, jwt_secret="secret")
    ServerSettings(_env_file=None, jwt_secret="s" * 32)


def jwks_file(tmp_path: Path, *entries: dict[str, Any]) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": list(entries)}))
    return path


def jwk_of(key: Any, **fields: Any) -> dict[str, Any]:
    return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), **fields}


def test_a_jwks_key_verifies_only_the_algorithm_it_declares(tmp_path: Path) -> None:
    path = jwks_file(tmp_path, jwk_of(PRIVATE, kid="k1", alg="RS256", use="sig"))
    auth = Authenticator(ServerSettings(_env_file=None, jwt_jwks_file=path))
    assert auth.authenticate(credential(jwt.encode(OPS, PRIVATE, "RS256", headers={"kid": "k1"})))
    with pytest.raises(Unauthorized, match="PS256"):
        auth.authenticate(credential(jwt.encode(OPS, PRIVATE, "PS256", headers={"kid": "k1"})))


def test_jwks_encryption_and_symmetric_keys_verify_nothing(tmp_path: Path) -> None:
    secret = b64(JWT_SECRET.encode())
    path = jwks_file(
        tmp_path,
        jwk_of(ATTACKER, kid="enc", use="enc"),
        {"kty": "oct", "kid": "oct", "k": secret},
        jwk_of(PRIVATE, kid="sig"),
    )
    auth = Authenticator(ServerSettings(_env_file=None, jwt_jwks_file=path))
    with pytest.raises(Unauthorized, match="kid 'enc'"):
        auth.authenticate(credential(jwt.encode(OPS, ATTACKER, "RS256", headers={"kid": "enc"})))
    with pytest.raises(Unauthorized, match="HS256"):
        auth.authenticate(credential(jwt.encode(OPS, JWT_SECRET, "HS256", headers={"kid": "oct"})))
    only_unusable = jwks_file(tmp_path, {"kty": "oct", "k": secret})
    with pytest.raises(InvalidInput, match="no RSA or EC signing key"):
        Authenticator(ServerSettings(_env_file=None, jwt_jwks_file=only_unusable))


def test_an_ec_key_verifies_only_its_curves_algorithm_and_a_certificate_is_a_key() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    pem = (
        p256.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    auth = Authenticator(ServerSettings(_env_file=None, jwt_public_key=pem))
    assert auth.authenticate(credential(jwt.encode(OPS, p256, "ES256")))
    with pytest.raises(Unauthorized, match="ES384"):
        auth.authenticate(credential(crafted({"alg": "ES384"}, OPS) + "AAAA"))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(PRIVATE.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1))
        .not_valid_after(datetime.datetime(2100, 1, 1))
        .sign(PRIVATE, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    from_cert = Authenticator(ServerSettings(_env_file=None, jwt_public_key=cert_pem))
    assert from_cert.authenticate(credential(jwt.encode(OPS, PRIVATE, "RS256")))
    with pytest.raises(InvalidInput, match="not a PEM public key"):
        Authenticator(
            ServerSettings(_env_file=None, jwt_public_key="-----BEGIN PUBLIC KEY-----\nAAAA\n")
        )
