"""Secrets taken out of text before it is logged, dumped or raised.

Keys come from the environment, but a credential can still sit inside an endpoint URL: the
userinfo of ``https://user:sk-secret@host/v1``, or a query value such as ``?api_key=...``,
``key=``, ``token=``, ``sig=``. Such a URL would otherwise reach the config dump, the console log,
W&B and error records. Three functions, one per shape of data:

- ``redact_url(url)``: one URL, its userinfo and secret-looking query and fragment values replaced
  by ``***`` (everything else byte for byte as it was, so a URL without secrets is unchanged);
- ``redact_text(text)``: every URL inside free text (a log line, an exception message) redacted,
  and well-known API key shapes (``sk-...``, ``hf_...``, ``Bearer ...``) wherever they stand;
- ``redact_tree(obj)``: a config dict / list / tuple walked, every string (key or value) redacted;
- ``RedactingFilter``: a ``logging.Filter`` that redacts each record's message and traceback, on a
  handler (every record it writes) or on a logger (the records made there, e.g. ``httpx``, which
  logs every request's full URL at INFO).

Redaction errs towards hiding: a query parameter whose name merely contains ``key`` or ``token``
is hidden too, since a hidden harmless value costs little and a shown secret cannot be recalled.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote

REDACTED = "***"

# A URL in free text: a scheme, "://", then everything up to white space, a quote or a bracket.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>`]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# Punctuation that ends a sentence or a bracket around a URL, not the URL itself.
_TRAILING = ".,;:!?)]}"
# Query / fragment names whose values are secrets (compared lower-cased, without - and _).
_SECRET_NAME_PARTS = ("key", "token", "secret", "passw", "pwd", "auth", "credential", "session",
                      "cookie", "signature")  # fmt: skip
_SECRET_NAMES = {"sig", "code", "pass", "jwt", "bearer"}
# API keys recognisable by their shape, wherever they stand.
_KEY_SHAPES = re.compile(
    r"\b(?:sk-[A-Za-z0-9_\-]{16,}"
    r"|hf_[A-Za-z0-9]{20,}"
    r"|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}"
    r"|glpat-[A-Za-z0-9_\-]{16,}"
    r"|xox[abprs]-[A-Za-z0-9\-]{10,}"
    r"|AIza[A-Za-z0-9_\-]{30,}"
    r"|AKIA[A-Z0-9]{16})"
)
# An Authorization header's value, as a client error or a debug log may print it.
_BEARER = re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=\-]{8,}")


def _secret_name(name: str) -> bool:
    plain = unquote(name).lower().replace("-", "").replace("_", "")
    return plain in _SECRET_NAMES or any(part in plain for part in _SECRET_NAME_PARTS)


def _redact_params(params: str) -> str:
    """``a=1&api_key=x`` with each secret value hidden; separators and order kept."""
    out = []
    for pair in re.split(r"([&;])", params):
        name, eq, value = pair.partition("=")
        if eq and value and (_secret_name(name) or _KEY_SHAPES.search(unquote(value))):
            pair = f"{name}={REDACTED}"
        out.append(pair)
    return _KEY_SHAPES.sub(REDACTED, "".join(out))


def _looks_like_host(authority: str) -> bool:
    """Whether ``authority`` is ``host``, ``host:port`` or ``[v6]:port``. A password holding an
    unescaped ``/``, ``?`` or ``#`` cuts the authority short at ``user:start-of-password``."""
    if authority.startswith("["):
        close = authority.find("]")
        return close != -1 and re.fullmatch(r"(:\d*)?", authority[close + 1 :]) is not None
    _, colon, port = authority.partition(":")
    return not colon or port == "" or port.isdigit()


def redact_url(url: str) -> str:
    """``url`` with its userinfo and secret-looking query and fragment values replaced by ``***``.

    ``https://user:sk-secret@host/v1?api_key=abc&x=1`` becomes ``https://***@host/v1?api_key=***&x=1``.
    Parts that hold no secret are kept exactly (no re-encoding), so a URL without secrets comes
    back unchanged. Text that is not a URL is returned as it is, apart from API key shapes.
    """
    scheme = _SCHEME.match(url)
    if scheme is None:
        return _KEY_SHAPES.sub(REDACTED, url)
    head, rest = url[: scheme.end()], url[scheme.end() :]
    end = next((i for i, ch in enumerate(rest) if ch in "/?#"), len(rest))
    authority = rest[:end]
    if "@" not in authority and not _looks_like_host(authority) and "@" in rest:
        # ``user:pa/ss@host``: an unescaped character cut the userinfo short. Hide everything up
        # to the last "@" (too much, at worst, of a URL that is malformed anyway).
        rest = rest[rest.rindex("@") :]
        end = next((i for i, ch in enumerate(rest) if ch in "/?#"), len(rest))
        authority = rest[:end]
    if "@" in authority:
        authority = f"{REDACTED}@" + authority.rpartition("@")[2]
    return head + authority + _redact_tail(rest[end:])


def _redact_tail(tail: str) -> str:
    """Path, query and fragment of a URL with key shapes in the path and secret values hidden."""
    path, hash_, fragment = tail.partition("#")
    path, question, query = path.partition("?")
    out = _KEY_SHAPES.sub(REDACTED, path)
    if question:
        out += "?" + _redact_params(query)
    if hash_:
        out += "#" + _redact_params(fragment)
    return out


def redact_text(text: str) -> str:
    """``text`` with every URL in it redacted (``redact_url``) and API key shapes and
    ``Bearer`` credentials replaced by ``***``; text without either is unchanged."""

    def one(match: re.Match[str]) -> str:
        url = match.group(0)
        stripped = url.rstrip(_TRAILING)
        return redact_url(stripped) + url[len(stripped) :]

    text = _URL.sub(one, text)
    text = _BEARER.sub(f"Bearer {REDACTED}", text)
    return _KEY_SHAPES.sub(REDACTED, text)


def redact_tree(obj: Any) -> Any:
    """A copy of ``obj`` (dicts, lists, tuples, sets, nested) with every string, key or value,
    passed through ``redact_text``; other values are returned as they are. Meant for a config
    about to be written to disk or sent to a tracker."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return type(obj)((redact_tree(k), redact_tree(v)) for k, v in obj.items())
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple
        return type(obj)(*(redact_tree(v) for v in obj))
    if isinstance(obj, (list, tuple, set, frozenset)):
        return type(obj)(redact_tree(v) for v in obj)
    return obj


class RedactingFilter(logging.Filter):
    """Redacts each record's message and formatted traceback in place (``redact_text``), so that
    every handler after it sees only the redacted text; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def redact_logger(name: str) -> None:
    """Attach one ``RedactingFilter`` to the logger ``name`` (again: nothing changes)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
