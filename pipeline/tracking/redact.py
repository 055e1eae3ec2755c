"""Keeping credentials out of everything MLflow records and everything we log or write.

Credentials reach MLflow only through the environment (`MLFLOW_TRACKING_USERNAME` /
`MLFLOW_TRACKING_PASSWORD`, `MLFLOW_TRACKING_TOKEN`), which mlflow reads itself. What
we send or write (params, tags, the run-id file, warnings) passes through here first.
The patterns err on the side of dropping: a param wrongly dropped costs a column in
the UI, a secret wrongly logged is stored for good.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

# Key fragments that name a secret (matched anywhere in a dotted key, any case).
_SECRET_KEY = re.compile(
    r"passw|passwd|pwd|secret|token|api[_-]?key|credential|private[_-]?key|access[_-]?key|session[_-]?key|auth",
    re.IGNORECASE,
)
# Values that are secrets whatever their key: a URL with user info (tokens are often the
# user name, `https://<token>@host`), well-known token prefixes, bearer headers, PEM keys.
_SECRET_VALUE = re.compile(
    r"://[^/\s@]+@"
    r"|^(ghp_|gho_|ghs_|github_pat_|glpat-|sk-|xox[abprs]-|AKIA|ASIA|dapi|hf_)"
    r"|^bearer\s"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY",
    re.IGNORECASE,
)
_USERINFO_IN_TEXT = re.compile(r"(://)[^/\s@]+@")
_SECRET_ASSIGNMENT_IN_TEXT = re.compile(r"\b(\w*(?:passw|pwd|secret|token|api[_-]?key|auth)\w*)=([^&\s]+)", re.I)


def is_secret(key: str, value: Any) -> bool:
    """Whether a param or tag must not be recorded: its key or its value looks like a secret."""
    return bool(_SECRET_KEY.search(key)) or (isinstance(value, str) and bool(_SECRET_VALUE.search(value.strip())))


def drop_secrets(items: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Splits a flat mapping into what may be recorded and the keys that were dropped."""
    kept = {k: v for k, v in items.items() if not is_secret(k, v)}
    return kept, sorted(set(items) - set(kept))


def redact_uri(uri: str) -> str:
    """A URI without `user:password@` and without secret-looking query parameters.

    `http://alice:pw@host:5000/x?token=t&a=1` -> `http://host:5000/x?a=1`. URIs without a
    network location (`sqlite:////abs/mlflow.db`, `databricks`) come back unchanged.
    """
    parts = urlsplit(uri)
    # Edit the string rather than urlunsplit(): that drops the empty authority of
    # `sqlite:////abs/path`, turning an absolute path into a host name.
    if "@" in parts.netloc:
        uri = uri.replace(parts.netloc, parts.netloc.rsplit("@", 1)[-1], 1)
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        kept = urlencode([(k, v) for k, v in pairs if not is_secret(k, v)])
        base, _, rest = uri.partition("?")
        fragment = f"#{parts.fragment}" if parts.fragment else ""
        uri = f"{base}?{kept}{fragment}" if kept else f"{base}{fragment}"
    return uri


def redact_text(text: str) -> str:
    """Free text (an exception message) with URL user info and `token=...` values masked."""
    text = _USERINFO_IN_TEXT.sub(r"\1", text)
    return _SECRET_ASSIGNMENT_IN_TEXT.sub(r"\1=***", text)
