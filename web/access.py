"""Who may log in, and which requests a page server answers at all: the parts of access the
guide console and the HQ dashboard share.

- User names typed at login are normalised once (`display_name`, `name_key`): NFKC, characters
  that render as nothing removed, characters that render as a blank read as a space, control
  characters refused, and compared without spaces and case. "Li\\u200bNa", "ＬＩ ＮＡ" and
  "li na" are all the configured "Li Na".
- `Logins` looks a name up in constant time: every attempt verifies exactly one hash of the
  same cost (the user's own, the shared password's, or a hash that matches nothing), and the
  shared password never logs in under the name of a user who has a token of their own.
- `host_allowed` refuses a Host header a rebound DNS name would carry; `same_origin` refuses a
  POST from another origin.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from email.message import Message
from urllib.parse import urlsplit

from footfall.web.passwords import NO_MATCH_HASH

MAX_NAME = 40   # characters of a user name as shown; longer names are cut (after normalising)

# Letters that render as a blank (Hangul fillers, the braille blank), after NFKC: read as a space.
_BLANKS = frozenset("\u115f\u1160\u2800")
# Default-ignorable marks outside category Cf (which is removed whole): render as nothing.
_IGNORABLE = frozenset([0x034F, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F,
                        *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)])
# Controls (other than whitespace), surrogates, private use, unassigned: a name holding one is refused.
_REFUSED = frozenset(["Cc", "Cs", "Co", "Cn"])


def display_name(name: str) -> str:
    """`name` as it is shown and stored: NFKC, invisible characters removed, blanks and runs of
    whitespace one space, trimmed, at most MAX_NAME characters. ValueError for a control
    character, a lone surrogate, private use or an unassigned code point."""
    kept: list[str] = []
    for char in unicodedata.normalize("NFKC", name):
        category = unicodedata.category(char)
        if char.isspace() or char in _BLANKS:
            kept.append(" ")
        elif category == "Cf" or ord(char) in _IGNORABLE:
            continue
        elif category in _REFUSED:
            raise ValueError(f"the name holds a character that cannot be shown (U+{ord(char):04X})")
        else:
            kept.append(char)
    return " ".join("".join(kept).split())[:MAX_NAME]


def name_key(name: str) -> str:
    """How two names are compared: their display names without spaces, case folded ("Li Na",
    "LiNa" and "li na" are one name). ValueError as display_name."""
    folded = unicodedata.normalize("NFKC", display_name(name).casefold())
    return "".join(folded.split())


class Logins:
    """The configured logins: users with a hash each (a token of their own), and an optional
    shared password that logs in under any other name."""

    def __init__(self, users: Mapping[str, str], shared_hash: str | None) -> None:
        self.shared_hash = shared_hash
        self._users: dict[str, tuple[str, str]] = {}
        for name, stored in users.items():
            key, shown = name_key(name), display_name(name)
            if not key:
                raise ValueError(f"user name {name!r} is empty once normalised")
            if key in self._users:
                raise ValueError(f"user names {self._users[key][0]!r} and {name!r} are the same name "
                                 "(names compare without spaces, case and invisible characters)")
            self._users[key] = (shown, stored)

    def names(self) -> Iterable[str]:
        """The users' display names."""
        return (shown for shown, _ in self._users.values())

    def check(self, name: str, secret: str, verify: Callable[[str, str], bool]) -> str | None:
        """The display name logged in if `secret` is that user's token, or the shared password for a
        name no user holds; else None. Verifies exactly one hash (none for an empty secret)."""
        if not secret:
            return None
        try:
            shown = display_name(name)
        except ValueError:
            shown = ""
        user = self._users.get(name_key(shown)) if shown else None
        if user is not None:
            shown, stored = user   # a user with a token of their own: only that token
        else:
            stored = self.shared_hash or NO_MATCH_HASH
        ok = verify(secret, stored)
        return shown if ok and shown and stored is not NO_MATCH_HASH else None


def host_allowed(host_header: str | None, allowed: Iterable[str]) -> bool:
    """A Host header naming an IP address, localhost or one of `allowed` (any port); any other
    name could be a DNS name rebound to this host by another site."""
    if not host_header:
        return False
    host = host_header.strip().lower()
    if host.startswith("["):
        name = host[1:host.find("]")] if "]" in host else ""
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return name == "localhost" or name in allowed


def same_origin(headers: Message) -> bool:
    """A POST from the server's own pages: Origin (when sent) names this Host, and Sec-Fetch-Site
    (when sent) is same-origin. Another port of the same host is another origin."""
    origin = (headers.get("Origin") or "").strip()
    site = headers.get("Sec-Fetch-Site")
    host = (headers.get("Host") or "").strip().lower()
    if origin == "null":
        # Browsers send "null" for a form posted under Referrer-Policy: no-referrer and for
        # sandboxed frames: then Sec-Fetch-Site decides.
        return site == "same-origin"
    if origin:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or parts.netloc.lower() != host:
            return False
    return site is None or site in ("same-origin", "none")
