"""Keeping credentials out of everything MLflow records and everything we log or write.

Credentials reach MLflow only through the environment (`MLFLOW_TRACKING_USERNAME` /
`MLFLOW_TRACKING_PASSWORD`, `MLFLOW_TRACKING_TOKEN`), which mlflow reads itself. What
we send or write passes through here first: a key that names a secret is dropped, and
a URL (a tracking URI, a mirror in `data.url`) loses its `user:password@` and its
secret-looking query parameters. Params are numbers, names, paths and URLs, so that is
all there is to guard.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

# Key fragments that name a secret (matched anywhere in a dotted key or query name, any case).
_SECRET_KEY = re.compile(r"passw|pwd|secret|token|api[_-]?key|credential|private[_-]?key|access[_-]?key|auth", re.I)
_USERINFO_IN_TEXT = re.compile(r"(://)[^/\s@]+@")
_SECRET_ASSIGNMENT_IN_TEXT = re.compile(r"\b(\w*(?:passw|pwd|secret|token|api[_-]?key|auth)\w*)=([^&\s]+)", re.I)


def safe_items(items: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """What may be recorded of a flat mapping (URLs redacted), and the secret-named keys left out."""
    kept = {k: redact_uri(v) if isinstance(v, str) and "://" in v else v for k, v in items.items()}
    dropped = sorted(k for k in kept if _SECRET_KEY.search(k))
    return {k: v for k, v in kept.items() if k not in dropped}, dropped


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
        kept = urlencode([(k, v) for k, v in pairs if not _SECRET_KEY.search(k)])
        base, _, _ = uri.partition("?")
        fragment = f"#{parts.fragment}" if parts.fragment else ""
        uri = f"{base}?{kept}{fragment}" if kept else f"{base}{fragment}"
    return uri


def redact_text(text: str) -> str:
    """Free text (an exception message) with URL user info and `token=...` values masked."""
    text = _USERINFO_IN_TEXT.sub(r"\1", text)
    return _SECRET_ASSIGNMENT_IN_TEXT.sub(r"\1=***", text)
