"""Decentralized NATS auth for tests: an operator, one account and a user per Belltower role,
as the ``nsc`` tool would make them, signed with nkeys, and a nats-server that trusts them.

There is no Python package that writes NATS JWTs (``nsc`` and ``nats-io/jwt`` are Go), and the
format is small: a JWT whose header says ``ed25519-nkey``, whose claims carry a ``nats`` object
(the account's limits, the user's permissions), signed by the issuer's nkey. The claim names
follow nats-io/jwt v2; the server checks the signature chain operator -> account -> user.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nkeys

from belltower import natsauth

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_UNLIMITED = -1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Key:
    """One nkey pair: its seed (secret) and public key."""

    seed: bytes = field(repr=False)

    @classmethod
    def new(cls, prefix: int) -> Key:
        return cls(nkeys.encode_seed(secrets.token_bytes(32), prefix))

    @property
    def pair(self) -> nkeys.KeyPair:
        return nkeys.from_seed(bytearray(self.seed))

    @property
    def public(self) -> str:
        return self.pair.public_key.decode()


def encode(claims_nats: dict[str, Any], *, subject: str, name: str, issuer: Key) -> str:
    """A signed NATS JWT with the standard claims and ``nats`` as given."""
    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": issuer.public,
        "name": name,
        "sub": subject,
    }
    # the jti is a hash of the standard claims without it (nats-io/jwt's ClaimsData.hash)
    digest = hashlib.new("sha512_256", json.dumps(claims, separators=(",", ":")).encode())
    claims = {"jti": base64.b32encode(digest.digest()).rstrip(b"=").decode(), **claims}
    claims["nats"] = {**claims_nats, "version": 2}
    signing_input = f"{_b64(json.dumps(_HEADER).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = issuer.pair.sign(signing_input.encode())
    return f"{signing_input}.{_b64(signature)}"


def user_permissions(permissions: natsauth.Permissions) -> dict[str, Any]:
    """A role's :class:`~belltower.natsauth.Permissions` as a user JWT's ``nats`` claims."""
    pub: dict[str, Any] = {"allow": list(permissions.publish)}
    if permissions.deny_publish:
        pub["deny"] = list(permissions.deny_publish)
    sub: dict[str, Any] = {"allow": list(permissions.subscribe)}
    if permissions.deny_subscribe:
        sub["deny"] = list(permissions.deny_subscribe)
    found: dict[str, Any] = {"pub": pub, "sub": sub}
    if permissions.allow_responses:
        found["resp"] = {"max": 1, "ttl": 0}
    return found


def creds_file(jwt: str, seed: bytes) -> str:
    """The text of a ``.creds`` file, as ``nsc generate creds`` writes it."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{seed.decode()}\n"
        "------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


@dataclass
class Operator:
    """An operator and one JetStream-enabled account, both trusted by the server config."""

    operator: Key = field(default_factory=lambda: Key.new(nkeys.PREFIX_BYTE_OPERATOR))
    account: Key = field(default_factory=lambda: Key.new(nkeys.PREFIX_BYTE_ACCOUNT))
    system: Key = field(default_factory=lambda: Key.new(nkeys.PREFIX_BYTE_ACCOUNT))

    def _account_jwt(self, key: Key, name: str, jetstream: bool) -> str:
        limits: dict[str, Any] = {
            "subs": _UNLIMITED,
            "data": _UNLIMITED,
            "payload": _UNLIMITED,
            "imports": _UNLIMITED,
            "exports": _UNLIMITED,
            "wildcards": True,
            "conn": _UNLIMITED,
            "leaf": _UNLIMITED,
        }
        if jetstream:
            limits |= {
                "mem_storage": _UNLIMITED,
                "disk_storage": _UNLIMITED,
                "streams": _UNLIMITED,
                "consumer": _UNLIMITED,
            }
        return encode(
            {"limits": limits, "type": "account"},
            subject=key.public,
            name=name,
            issuer=self.operator,
        )

    def server_config(self) -> str:
        """``operator`` + ``resolver: MEMORY``: nats-server trusts these accounts' users."""
        operator_jwt = encode(
            {"system_account": self.system.public, "type": "operator"},
            subject=self.operator.public,
            name="belltower-test-operator",
            issuer=self.operator,
        )
        accounts = {
            self.account.public: self._account_jwt(self.account, "BELLTOWER", jetstream=True),
            self.system.public: self._account_jwt(self.system, "SYS", jetstream=False),
        }
        preload = "\n".join(f"  {key}: {json.dumps(jwt)}" for key, jwt in accounts.items())
        return (
            f"operator: {json.dumps(operator_jwt)}\n"
            f"system_account: {self.system.public}\n"
            "resolver: MEMORY\n"
            f"resolver_preload: {{\n{preload}\n}}\n"
        )

    def user_creds(self, role: natsauth.Role, *, signer: Key | None = None) -> str:
        """A ``.creds`` file of a user of this account with ``role``'s permissions; ``signer``
        signs it instead of the account (a key the server does not trust)."""
        user = Key.new(nkeys.PREFIX_BYTE_USER)
        jwt = encode(
            {
                **user_permissions(natsauth.PERMISSIONS[role]),
                "subs": _UNLIMITED,
                "data": _UNLIMITED,
                "payload": _UNLIMITED,
                "type": "user",
            },
            subject=user.public,
            name=role,
            issuer=signer or self.account,
        )
        return creds_file(jwt, user.seed)

    def write_creds(self, directory: Path, role: natsauth.Role, **kwargs: Any) -> Path:
        path = directory / f"{role}.creds"
        path.write_text(self.user_creds(role, **kwargs))
        path.chmod(0o600)
        return path
