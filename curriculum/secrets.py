"""Secrets taken out of everything the project writes or sends: the config dump (``config.yaml``),
the console log, W&B (its config, the command line it records, its copy of the console) and error
messages. This is the project's one redaction mechanism; every one of those paths goes through it.

Keys come from the environment, yet a credential can still reach text in a few shapes:

- inside a URL: the userinfo of ``https://user:sk-secret@host/v1`` (shown as ``https://***@host/v1``,
  so it stays visible that a credential was there), or a query / fragment value such as
  ``?api_key=...``, ``key=``, ``token=``, ``sig=``;
- as the value of a secret-named key: ``api_key``, ``hf_token``, ``Authorization``, ``X-Api-Key``,
  ``clientSecret`` in a mapping (a header dict, an ``image_settings`` entry), or written out in
  text as an assignment (``token: t1``, ``"access_key": "a1"``, a YAML override, ``--token=...``);
- by its shape, wherever it stands: ``sk-...``, ``hf_...``, ``ghp_...``, ``Bearer ...``;
- on the command line, as the value after a secret flag (``--api-key VALUE``).

Functions, one per shape of data:

- ``is_secret_key(name)``: whether a key or option name names a secret (whole words; names ending in
  ``_env`` hold the *name* of an environment variable and are shown);
- ``redact_url(url)``, ``redact_text(text)``: one URL; free text (a log line, an exception message);
- ``redact_tree(obj)``: a config about to be dumped or sent to a tracker, walked;
- ``redact_arg(arg)``, ``redact_argv(argv)``, ``redacted_argv()``: the command line, which W&B
  records from ``sys.argv``;
- ``RedactingFilter``, ``redact_logger(name)``, ``install_log_redaction()``: logging records.

Redaction errs towards hiding: a hidden harmless value costs little, a shown secret cannot be
recalled. URL query names are therefore matched by substring (``monkey=`` is hidden with ``key=``:
an endpoint's parameters are not ours to know), while key and option names are matched by whole
words (``max_new_tokens`` is the project's own setting, and must stay readable in a dump).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import pairwise
from typing import Any
from urllib.parse import unquote

REDACTED = "***"

# ------------------------------------------------------------------------- secret names and shapes

# Key / option names, by whole words (``hf_token``, ``clientSecret``, ``X-Api-Key``)...
_SECRET_WORDS = {
    "apikey", "apikeys", "token", "secret", "secrets", "password", "passwd", "passphrase",
    "authorization", "auth", "credential", "credentials", "cookie", "bearer",
}  # fmt: skip
# ...or by two consecutive words (``api_key``, ``AccessKey``).
_SECRET_PAIRS = {("api", "key"), ("api", "keys"), ("access", "key"), ("private", "key"), ("secret", "key")}
# URL query / fragment names whose values are secrets (lower-cased, without - and _), by substring.
_URL_NAME_PARTS = ("key", "token", "secret", "passw", "pwd", "auth", "credential", "session",
                   "cookie", "signature")  # fmt: skip
_URL_NAMES = {"sig", "code", "pass", "jwt", "bearer"}
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
# An Authorization header's credential, as a client error or a debug log may print it.
_AUTH_SCHEME = re.compile(r"\b((?i:bearer)|Basic)\s+[\w.~+/=-]{8,}")
# ``name: value`` / ``name=value`` in text: a name (dotted, dashed, ``--flag``; starting where a word
# starts, so that a long run of letters is tried once, not from each of its letters), an optional
# closing quote, the separator and an optional auth scheme (kept); then ``_VALUE``, a quoted or a
# bare value, read only after a secret name: the value of another name may hold an assignment
# (``image_settings=[{api_key: k}]``).
_ASSIGNMENT = re.compile(r"(?<![\w.-])(-*[A-Za-z_][\w.-]*)[\"']?[ \t]*[:=][ \t]*(?:(?i:bearer|basic)[ \t]+)?")
_VALUE = re.compile(r"\"[^\"]*\"|'[^']*'|[^\s,;&?#}\]\"']+")
# A URL in free text: a scheme, "://", then everything up to white space, a quote or a bracket.
_URL = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>`]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# Punctuation that ends a sentence or a bracket around a URL, not the URL itself.
_TRAILING = ".,;:!?)]}"


def is_secret_key(name: str) -> bool:
    """Whether a mapping key or option name names a secret: ``api_key``, ``hf_token``,
    ``Authorization``, ``X-Api-Key``, ``clientSecret``, ``--api-key``, ``frontier.api_key``.

    Matched by whole words, so ``max_new_tokens`` and ``tokenizer`` are not secrets; a dotted path
    is judged by its last part (the option itself); and a name whose last word is ``env``
    (``api_key_env``) holds the *name* of an environment variable, which is worth showing.
    """
    last = name.rsplit(".", 1)[-1]
    words = [w for w in re.split(r"[^a-z0-9]+", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", last).lower()) if w]
    if not words or words[-1] == "env":
        return False
    return any(w in _SECRET_WORDS for w in words) or any(p in _SECRET_PAIRS for p in pairwise(words))


def _unset(value: Any) -> bool:
    """None or empty: a secret-named key without a secret, which is worth showing as it is."""
    return value is None or (isinstance(value, str | bytes | list | tuple | dict | set) and not value)


# ------------------------------------------------------------------------------------------ URLs


def _url_secret_name(name: str) -> bool:
    plain = unquote(name).lower().replace("-", "").replace("_", "")
    return plain in _URL_NAMES or any(part in plain for part in _URL_NAME_PARTS)


def _redact_params(params: str) -> str:
    """``a=1&api_key=x`` with each secret value hidden; separators and order kept."""
    out = []
    for pair in re.split(r"([&;])", params):
        name, eq, value = pair.partition("=")
        if eq and value and (_url_secret_name(name) or _KEY_SHAPES.search(unquote(value))):
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


# ------------------------------------------------------------------------------- text and trees


def redact_text(text: str) -> str:
    """``text`` with its secrets replaced by ``***``: every URL in it redacted (``redact_url``),
    the credential after ``Bearer`` / ``Basic``, the value of every secret-named assignment
    (``token: t1``, ``"api_key": "k"``, ``password=x``; the name is kept) and API key shapes.
    Text without any of these comes back unchanged."""

    def url(match: re.Match[str]) -> str:
        found = match.group(0)
        stripped = found.rstrip(_TRAILING)
        return redact_url(stripped) + found[len(stripped) :]

    text = _URL.sub(url, text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _KEY_SHAPES.sub(REDACTED, _redact_assignments(text))


def _redact_assignments(text: str) -> str:
    """``text`` with the value after each secret name (``_ASSIGNMENT``) replaced by ``***``."""
    out, done = [], 0
    for head in _ASSIGNMENT.finditer(text):
        if head.start() < done or not is_secret_key(head.group(1)):
            continue  # inside a value already hidden, or not a secret
        value = _VALUE.match(text, head.end())
        if value is not None:
            out += [text[done : head.end()], REDACTED]
            done = value.end()
    return "".join(out) + text[done:]


def redact_tree(obj: Any) -> Any:
    """A copy of ``obj`` (dicts, lists, tuples, namedtuples, sets, nested) that is safe to dump or
    send to a tracker: the single entry point for configs.

    The value of every secret-named key (``is_secret_key``) becomes ``***``, whatever it holds,
    unless it is unset (None or empty: that no secret is configured tells nothing); every other
    string, key or value, goes through ``redact_text``; other values are returned as they are.
    """
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return type(obj)(
            (
                redact_tree(k),
                REDACTED if isinstance(k, str) and is_secret_key(k) and not _unset(v) else redact_tree(v),
            )
            for k, v in obj.items()
        )
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple
        return type(obj)(*(redact_tree(v) for v in obj))
    if isinstance(obj, list | tuple | set | frozenset):
        return type(obj)(redact_tree(v) for v in obj)
    return obj


# ---------------------------------------------------------------------------------- command line


def redact_arg(arg: str) -> str:
    """One command-line argument, redacted: ``x.api_key=...`` or ``--token=...`` loses its value
    (when it has one), any other argument its secrets (``redact_text``)."""
    key, sep, value = arg.partition("=")
    if sep and value and is_secret_key(key.lstrip("-")):
        return f"{key}={REDACTED}"
    return redact_text(arg)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line (``sys.argv``), redacted: each argument by ``redact_arg``, and the argument
    after a secret flag written without ``=`` (``--api-key VALUE``) replaced whole."""
    out = [redact_arg(argv[0])] if argv else []
    for prev, arg in pairwise(argv):
        flag = prev.startswith("-") and "=" not in prev and is_secret_key(prev.lstrip("-"))
        out.append(REDACTED if flag else redact_arg(arg))
    return out


@contextmanager
def redacted_argv() -> Iterator[None]:
    """``sys.argv`` redacted (``redact_argv``) for the duration, then restored.

    For a library that records the command line, as ``wandb.init`` does in a run's metadata:
    config overrides such as ``curriculum.frontier.base_url=https://user:pass@host`` are the usual
    way to set a run's config, and would otherwise reach it verbatim."""
    saved = sys.argv
    sys.argv = redact_argv(saved)
    try:
        yield
    finally:
        sys.argv = saved


# --------------------------------------------------------------------------------------- logging


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


def _add_filter(filterer: logging.Filterer) -> None:
    """One ``RedactingFilter`` on ``filterer`` (a logger or a handler), however often called."""
    if not any(isinstance(f, RedactingFilter) for f in filterer.filters):
        filterer.addFilter(RedactingFilter())


def redact_logger(name: str) -> None:
    """Attach one ``RedactingFilter`` to the logger ``name``: the records made there are redacted
    before any handler sees them (again: nothing changes)."""
    _add_filter(logging.getLogger(name))


def install_log_redaction() -> None:
    """Attach one ``RedactingFilter`` to every handler there is now: the root logger's and those of
    any logger holding its own (again: nothing changes).

    A handler's filter sees every record the handler is about to write, whichever logger made it
    (ours, httpx, openai, transformers), so nothing reaches the console or a log file unredacted,
    nor W&B's output log, which copies the console. Loggers with their own handlers are covered
    because some do not pass records on to the root (transformers keeps its own stderr handler).
    Call it once the handlers are set up (right after ``logging.basicConfig``): a handler added
    later is not covered.
    """
    loggers = [logging.getLogger(), *list(logging.Logger.manager.loggerDict.values())]
    for logger in loggers:
        if isinstance(logger, logging.Logger):  # not a PlaceHolder for a dotted name's parent
            for handler in list(logger.handlers):
                _add_filter(handler)
