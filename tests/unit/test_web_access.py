"""What the guide console and the HQ dashboard share about access (web/access.py): how a
user name is normalised and compared, the constant-cost lookup of logins, the Host and Origin
checks. Pure functions; the servers using them are attacked in test_console_hardening.py and
test_hq_dashboard_hardening.py."""

from __future__ import annotations

from email.message import Message

import pytest

from footfall.web.access import (
    MAX_NAME,
    Logins,
    display_name,
    host_allowed,
    name_key,
    same_origin,
)
from footfall.web.passwords import NO_MATCH_HASH


@pytest.mark.parametrize(("typed", "shown"), [
    ("  Li   Na ", "Li Na"),
    ("Li\u200bNa", "LiNa"),                  # zero-width space: shows as nothing
    ("\ufeffLi Na\u2060", "Li Na"),          # byte order mark, word joiner
    ("Li\u202eNa", "LiNa"),                  # right-to-left override
    ("Li\u034f\ufe0fNa", "LiNa"),            # combining grapheme joiner, variation selector
    ("Ｌｉ　Ｎａ", "Li Na"),                  # full-width letters and space (NFKC)
    ("Li\u3164Na", "Li Na"),                 # Hangul filler: shows as a blank
    ("Li\u2800Na", "Li Na"),                 # braille blank
    ("Li\u00a0Na", "Li Na"),                 # no-break space
    ("王\u200d芳", "王芳"),
    ("x" * 60, "x" * MAX_NAME),
])
def test_a_typed_name_is_shown_normalised(typed, shown):
    assert display_name(typed) == shown


@pytest.mark.parametrize("name", ["Li Na", "li na", "LiNa", "LI\u200bNA", "Ｌｉ Ｎａ", " l i n a "])
def test_names_compare_without_spaces_case_and_invisible_characters(name):
    assert name_key(name) == "lina"


def test_different_letters_stay_different_names():
    assert name_key("Li Na") != name_key("Li Ma")
    assert name_key("Straße") == name_key("STRASSE"), "full case folding"


@pytest.mark.parametrize("name", ["Wang\x07Fang", "Wang\x00", "\ud800Wang", "Wang\ue000"])
def test_a_name_with_a_control_surrogate_or_private_character_is_refused(name):
    with pytest.raises(ValueError, match="U\\+"):
        display_name(name)


def _verify(secret: str, stored: str) -> bool:
    return stored == f"hash-of-{secret}"


def test_a_users_name_logs_in_only_with_that_users_token_and_shows_as_configured():
    logins = Logins({"Li Na": "hash-of-token"}, "hash-of-shared")
    assert logins.check("li\u200bna", "token", _verify) == "Li Na"
    assert logins.check("LiNa", "shared", _verify) is None
    assert logins.check("Wang  Fang", "shared", _verify) == "Wang Fang"
    assert logins.check("Wang Fang", "token", _verify) is None
    assert logins.check("", "shared", _verify) is None
    assert logins.check("Wang\x07Fang", "shared", _verify) is None


def test_every_check_with_a_secret_verifies_exactly_one_hash():
    for shared in ("hash-of-shared", None):
        logins = Logins({"Li Na": "hash-of-token"}, shared)
        for name in ("Li Na", "Nobody", "", "Wang\x07Fang"):
            verified: list[str] = []
            logins.check(name, "guess", lambda s, h: verified.append(h) or False)  # noqa: B023
            expected = "hash-of-token" if name == "Li Na" else shared or NO_MATCH_HASH
            assert verified == [expected], (shared, name)


def test_two_configured_names_that_are_one_name_are_refused():
    with pytest.raises(ValueError, match="same name"):
        Logins({"Li Na": "h1", "LI\u200bNA": "h2"}, None)
    with pytest.raises(ValueError, match="U\\+"):
        Logins({"Li\x07Na": "h1"}, None)


def test_only_ip_addresses_localhost_and_configured_names_are_accepted_as_host():
    for good in ("127.0.0.1:8090", "[::1]:8090", "localhost", "10.1.2.3", "hq.example.com:443"):
        assert host_allowed(good, ["hq.example.com"]), good
    for bad in (None, "", "rebound.example:8090", "127.0.0.1.rebound.example", "[::1", "hq.example.com.evil"):
        assert not host_allowed(bad, ["hq.example.com"]), bad


def _headers(**values: str) -> Message:
    message = Message()
    for key, value in values.items():
        message[key.replace("_", "-")] = value
    return message


def test_a_post_must_come_from_the_servers_own_origin():
    host = "127.0.0.1:8090"
    assert same_origin(_headers(Host=host))
    assert same_origin(_headers(Host=host, Origin=f"http://{host}", Sec_Fetch_Site="same-origin"))
    assert same_origin(_headers(Host=host, Origin="null", Sec_Fetch_Site="same-origin"))
    assert not same_origin(_headers(Host=host, Origin="null"))
    assert not same_origin(_headers(Host=host, Origin="http://127.0.0.1:8091"))
    assert not same_origin(_headers(Host=host, Sec_Fetch_Site="same-site"))
    assert not same_origin(_headers(Host=host, Origin=f"ftp://{host}"))
