"""Passwords and tokens kept as salted scrypt hashes: printed by `--hash-password`, checked at login."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sys

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2 ** 14, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# Verified when the name given at login has no hash of its own and there is no shared password,
# so that every attempt costs the same one scrypt: no timing tells names apart. A key of zeros
# never matches.
NO_MATCH_HASH = f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(bytes(16))}${_b64(bytes(32))}"


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash: "scrypt$N$r$p$salt$key" (salt and key in base64)."""
    if not password:
        raise ValueError("the password must not be empty")
    salt = salt if salt is not None else secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P,
                         maxmem=_SCRYPT_MAXMEM, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """True if `password` matches a hash from hash_password(); a malformed hash never matches."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        n_, r_, p_ = int(n), int(r), int(p)
        if not (2 <= n_ <= 2 ** 20 and 1 <= r_ <= 32 and 1 <= p_ <= 16):
            return False
        salt_b, key_b = base64.b64decode(salt, validate=True), base64.b64decode(key, validate=True)
        got = hashlib.scrypt(password.encode("utf-8"), salt=salt_b, n=n_, r=r_, p=p_,
                             maxmem=_SCRYPT_MAXMEM, dklen=len(key_b))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, key_b)


def print_password_hash() -> int:
    """`--hash-password`: the hash of a password typed twice at a terminal, or of stdin's first
    line, printed; exit code 1 when the two typed differ."""
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("error: the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    print(hash_password(password))
    return 0
