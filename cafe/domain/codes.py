"""Join codes and secret tokens."""
from __future__ import annotations

import hashlib
import secrets

# No 0/O, 1/I/L, no U/V pair confusion, readable aloud.
JOIN_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTWXYZ23456789"
JOIN_CODE_LENGTH = 6   # 29**6 ≈ 595 million codes; failed attempts are rate-limited


def new_join_code(length: int = JOIN_CODE_LENGTH) -> str:
    return "".join(secrets.choice(JOIN_CODE_ALPHABET) for _ in range(length))


def normalise_join_code(raw: str) -> str:
    """What a person typed -> the canonical code (case, spaces and dashes forgiven)."""
    return "".join(ch for ch in raw.upper() if ch.isascii() and ch.isalnum())


def format_join_code(code: str) -> str:
    """``ABC234`` -> ``ABC 234`` for reading aloud."""
    half = len(code) // 2
    return f"{code[:half]} {code[half:]}" if len(code) > 3 else code


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
