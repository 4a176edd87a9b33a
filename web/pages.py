"""The HTML pages of the guide console and the HQ dashboard.

Every page is web/static/page.html around a body: the app's own page (its `static/index.html`)
or the login page both apps share (web/static/login.html). The skeleton takes the app's
`static/head.html` (its stylesheet, script and icons) and loads web/static/page.js, the script
both apps' scripts build on. `{{key}}` placeholders are filled in one pass.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources

WEB = "footfall.web"
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def static_file(package: str, name: str) -> str:
    """A file of `package`'s static/ folder, as shipped."""
    return resources.files(package).joinpath("static", name).read_text(encoding="utf-8")


def fill(template: str, values: Mapping[str, str]) -> str:
    """`template` with each `{{key}}` of `values` replaced; a value is never read for placeholders itself."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def render_page(app: str, body_package: str, body: str, values: Mapping[str, str]) -> str:
    """The page whose body is `body` of `body_package`'s static/, with the head of `app`'s static/."""
    filled = fill(static_file(body_package, body), values)
    return fill(static_file(WEB, "page.html"), {**values, "head": static_file(app, "head.html"), "body": filled})
