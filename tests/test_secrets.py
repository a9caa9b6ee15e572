"""Redaction of secrets in URLs, free text, config trees, the command line and log records
(curriculum.secrets)."""

import logging
import sys
from collections import namedtuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from curriculum.secrets import (
    REDACTED,
    RedactingFilter,
    install_log_redaction,
    is_secret_key,
    redact_arg,
    redact_argv,
    redact_logger,
    redact_text,
    redact_tree,
    redact_url,
    redacted_argv,
)

SECRET = "sk-secret-9f8e7d6c5b4a"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # userinfo, with and without a password, with a port, with an IPv6 host
        (f"https://user:{SECRET}@host/v1", "https://***@host/v1"),
        (f"https://{SECRET}@api.example.com/v1", "https://***@api.example.com/v1"),
        ("http://admin:hunter2@judge-host:8000/v1", "http://***@judge-host:8000/v1"),
        ("http://u:pw@[::1]:8000/v1", "http://***@[::1]:8000/v1"),
        ("https://user:p@ss@host/v1", "https://***@host/v1"),  # an unescaped "@" in the password
        ("https://user:pa/ss@host/v1?q=1", "https://***@host/v1?q=1"),  # an unescaped "/"
        ("https://user:pa?ss@host/v1", "https://***@host/v1"),  # an unescaped "?"
        # query values, by the parameter's name, whatever else is there
        ("https://host/v1?api_key=abc123", "https://host/v1?api_key=***"),
        ("https://host/v1?key=abc&model=x", "https://host/v1?key=***&model=x"),
        ("https://host/v1?model=x&token=abc", "https://host/v1?model=x&token=***"),
        ("https://host/v1?access_token=a&API-KEY=b", "https://host/v1?access_token=***&API-KEY=***"),
        ("https://acct.blob.core.windows.net/c?sv=2022&sig=abc%2Fdef", "https://acct.blob.core.windows.net/c?sv=2022&sig=***"),
        ("https://s3.aws/b?X-Amz-Credential=AK&X-Amz-Signature=ff", "https://s3.aws/b?X-Amz-Credential=***&X-Amz-Signature=***"),
        ("https://host/v1?api%5Fkey=abc", "https://host/v1?api%5Fkey=***"),  # an escaped name
        ("https://host/v1?a=1;password=x", "https://host/v1?a=1;password=***"),
        # a value that is a key by its shape, under any name, and a key in the path
        (f"https://host/v1?q={SECRET}", "https://host/v1?q=***"),
        (f"https://host/keys/{SECRET}/v1", "https://host/keys/***/v1"),
        # the fragment, and both at once
        ("https://h/cb#access_token=abc&state=2", "https://h/cb#access_token=***&state=2"),
        ("https://u:p@h/v1?token=t#x", "https://***@h/v1?token=***#x"),
    ],
)  # fmt: skip
def test_redact_url_hides_userinfo_and_secret_values(url, expected):
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "http://127.0.0.1:8000/v1",
        "http://judge-host:8000/v1/",
        "http://[::1]:8000/v1",
        "https://myres.openai.azure.com/openai/deployments/gpt4?api-version=2024-06-01",
        "https://host/v1?model=gpt-4o&n=2&empty=&flag",
        "https://host/path%20with%20escapes/?q=a%26b#section-2",
        "file:///home/user/data.json",
    ],
)
def test_a_url_without_secrets_is_unchanged(url):
    assert redact_url(url) == url
    assert redact_text(f"calling {url} now") == f"calling {url} now"


def test_redact_text_finds_every_url_in_a_line():
    line = (
        f"retry 2: POST https://user:{SECRET}@a.example/v1/chat (was http://b.example/v1?key=k1), "
        "then 'https://c.example/v1?token=t2'. See https://docs.example/errors."
    )
    assert redact_text(line) == (
        "retry 2: POST https://***@a.example/v1/chat (was http://b.example/v1?key=***), "
        "then 'https://c.example/v1?token=***'. See https://docs.example/errors."
    )
    assert SECRET not in redact_text(line) and "k1" not in redact_text(line)


def test_redact_text_keeps_the_punctuation_around_a_url():
    assert redact_text("(https://h/v1?key=abc).") == "(https://h/v1?key=***)."
    assert redact_text("endpoint: http://u:p@h:1/v1, model: m") == "endpoint: http://***@h:1/v1, model: m"
    assert redact_text('{"base_url": "https://u:p@h/v1"}') == '{"base_url": "https://***@h/v1"}'


def test_redact_text_hides_key_shapes_and_bearer_headers_outside_urls():
    text = f"Incorrect API key provided: {SECRET}. Header was Authorization: Bearer abcdef123456"
    assert redact_text(text) == "Incorrect API key provided: ***. Header was Authorization: Bearer ***"
    assert redact_text("hf_" + "a1" * 15 + " and ghp_" + "Z9" * 12) == "*** and ***"
    assert redact_text("bearer abcdefgh123 / Basic dXNlcjpwYXNz") == "bearer *** / Basic ***"


@pytest.mark.parametrize(
    "name",
    ["api_key", "API_KEY", "apiKey", "X-Api-Key", "hf_token", "token", "access_token", "Authorization",
     "clientSecret", "client_secret", "password", "access_key", "AccessKey", "private_key", "cookie",
     "--api-key", "curriculum.frontier.api_key"],
)  # fmt: skip
def test_secret_names_are_matched_by_whole_words(name):
    assert is_secret_key(name)


@pytest.mark.parametrize(
    "name",
    ["api_key_env", "token_env", "apiKeyEnv", "max_new_tokens", "tokenizer", "tokens", "key", "monkey",
     "Content-Type", "guidance_scale", "base_url", "secretary", "auth.enabled", ""],
)  # fmt: skip
def test_other_names_are_not_secrets(name):
    # ``_env``: the name of an environment variable, worth showing; a dotted path by its last part.
    assert not is_secret_key(name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("token: t1", "token: ***"),
        ("token: 7, tokens: 7", "token: ***, tokens: 7"),
        ('x {"access_key": "a1", "n": 2}', 'x {"access_key": ***, "n": 2}'),
        ("{'password': 'p w'}", "{'password': ***}"),
        ("[{api_key: sk-hunter3, guidance_scale: 3.5}]", "[{api_key: ***, guidance_scale: 3.5}]"),
        ("x.image_settings=[{api_key: h3, n: 1}]", "x.image_settings=[{api_key: ***, n: 1}]"),  # nested
        ("retry ?api_key=abc&model=m", "retry ?api_key=***&model=m"),
        ("--token=abc curriculum.frontier.api_key=k", "--token=*** curriculum.frontier.api_key=***"),
        ("Authorization: Bearer short", "Authorization: Bearer ***"),
        ("clientSecret=c hf_token = h1", "clientSecret=*** hf_token = ***"),
    ],
)
def test_redact_text_hides_the_values_of_secret_assignments(text, expected):
    assert redact_text(text) == expected
    assert redact_text(expected) == expected  # redacting again changes nothing


@pytest.mark.parametrize(
    "text",
    [
        "",
        "round 3 failed: analyst: HTTP 429 after 3 attempts",
        "basic arithmetic; the task-specific risk-assessment of sk-learn models",
        "max_tokens=512 key=value tokens: 7 password reset",
        "max_new_tokens: 3, tokenizer: x, api_key_env=OPENAI_API_KEY token_env: JUDGE_TOKEN",
        "ratio 3:2 at 10:30, e-mail me@example.com about hf_hub_download",
        "Bearer bonds",
    ],
)
def test_text_without_urls_or_keys_is_unchanged(text):
    assert redact_text(text) == text


@given(st.text(alphabet=st.characters(blacklist_characters=":"), max_size=200))
def test_text_without_a_scheme_separator_or_a_key_shape_is_unchanged(text):
    # No "://", so no URL; the key shapes all need a run of 8+ ASCII letters or digits after a
    # fixed prefix, and a secret assignment a secret name before "=", which random text only
    # rarely holds: such inputs are compared redacted.
    out = redact_text(text)
    assert out == text or REDACTED in out


def test_redact_tree_walks_configs_hiding_secret_named_values_and_secrets_in_strings():
    Point = namedtuple("Point", "url n")
    config = {
        "frontier": {
            "base_url": f"https://user:{SECRET}@host/v1",
            "api_key_env": "OPENAI_API_KEY",
            "judges": [
                {"model": "a", "base_url": "http://judge:8000/v1?api_key=abc", "api_key": "sk-1",
                 "token_env": "JUDGE_TOKEN"},
                {"model": "b", "base_url": None, "timeout": 60.0, "api_key": None, "token": ""},
            ],
            "prices": {"gpt-4o": [2.5, 10.0]},
            "image_settings": [{"guidance_scale": 3.5, "Authorization": "Bearer abcdefgh123"}],
        },
        "headers": {"X-Api-Key": "k2", "Content-Type": "json"},
        "credentials": {"user": "u", "pw": "p"},  # a secret-named key: hidden whole, whatever it holds
        "eval": {"max_new_tokens": 3, "tokenizer": "x"},
        "notes": ["token: t1", "plain"],
        "tags": ("x", "https://u:p@h/v1"),
        "point": Point("https://h/?token=t", 3),
        "steps": 10,
        "on": True,
    }  # fmt: skip
    out = redact_tree(config)
    f = out["frontier"]
    assert f["base_url"] == "https://***@host/v1" and f["api_key_env"] == "OPENAI_API_KEY"
    assert f["judges"][0] == {"model": "a", "base_url": "http://judge:8000/v1?api_key=***", "api_key": "***",
                              "token_env": "JUDGE_TOKEN"}  # fmt: skip
    # Unset: that no secret is configured is shown as it is.
    assert f["judges"][1] == {"model": "b", "base_url": None, "timeout": 60.0, "api_key": None, "token": ""}
    assert f["prices"] == {"gpt-4o": [2.5, 10.0]}
    assert f["image_settings"] == [{"guidance_scale": 3.5, "Authorization": "***"}]
    assert out["headers"] == {"X-Api-Key": "***", "Content-Type": "json"}
    assert out["credentials"] == "***" and out["eval"] == {"max_new_tokens": 3, "tokenizer": "x"}
    assert out["notes"] == ["token: ***", "plain"]
    assert out["tags"] == ("x", "https://***@h/v1") and isinstance(out["tags"], tuple)
    assert out["point"] == Point("https://h/?token=***", 3) and isinstance(out["point"], Point)
    assert out["steps"] == 10 and out["on"] is True
    assert config["frontier"]["base_url"] == f"https://user:{SECRET}@host/v1"  # the input is kept
    assert SECRET not in repr(out) and "abc" not in repr(out) and "sk-1" not in repr(out)
    assert redact_tree({"https://u:hunter2@h": 1}) == {"https://***@h": 1}  # keys too


def test_command_line_arguments_lose_their_secrets():
    assert redact_arg("curriculum.frontier.api_key=sk-1") == "curriculum.frontier.api_key=***"
    assert redact_arg("--hf-token=abc") == "--hf-token=***"
    assert redact_arg("--api-key=") == "--api-key="  # nothing to hide
    assert redact_arg("frontier.api_key_env=MY_KEY") == "frontier.api_key_env=MY_KEY"
    assert (
        redact_arg(f"x.base_url=https://u:{SECRET}@h/v1?api_key=q")
        == "x.base_url=https://***@h/v1?api_key=***"
    )
    argv = ["lessonloop", "train", "--api-key", "hunter4", "--steps", "3", "--token", "t", "x.token=u"]
    assert redact_argv(argv) == ["lessonloop", "train", "--api-key", "***", "--steps", "3", "--token", "***",
                                 "x.token=***"]  # fmt: skip
    assert redact_argv([]) == []


def test_sys_argv_is_redacted_inside_the_block_and_restored_after_it(monkeypatch):
    argv = ["lessonloop", f"x.base_url=https://u:{SECRET}@h/v1", "--api-key", "hunter4"]
    monkeypatch.setattr(sys, "argv", list(argv))
    with pytest.raises(RuntimeError), redacted_argv():
        assert sys.argv == ["lessonloop", "x.base_url=https://***@h/v1", "--api-key", "***"]
        raise RuntimeError("restored all the same")
    assert sys.argv == argv


def test_the_logging_filter_redacts_messages_arguments_and_tracebacks(caplog):
    logger = logging.getLogger("lessonloop.test_secrets")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("POST %s -> %d", f"https://u:{SECRET}@h/v1/chat", 200)
        logger.info("nothing to hide at %s", "http://h/v1")
        try:
            raise RuntimeError(f"failed at https://h/v1?api_key={SECRET}")
        except RuntimeError:
            logger.exception("round failed")
    first, second, third = caplog.records
    assert first.getMessage() == "POST https://***@h/v1/chat -> 200"
    assert second.getMessage() == "nothing to hide at http://h/v1" and second.args == ("http://h/v1",)
    assert "api_key=***" in third.exc_text and SECRET not in caplog.text
    redact_logger(logger.name)  # already there: not added twice
    assert sum(isinstance(f, RedactingFilter) for f in logger.filters) == 1


def test_install_log_redaction_redacts_what_every_handler_writes(monkeypatch):
    # A logging tree of this test's own: the root with one handler, and no other logger yet.
    monkeypatch.setattr(logging.Logger.manager, "loggerDict", {})
    written = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            written.append(self.format(record))

    root_handler = Collect()
    monkeypatch.setattr(logging.root, "handlers", [root_handler])
    # A library logger with a handler of its own that passes nothing on (as transformers' does).
    own = logging.getLogger("transformers.lookalike")
    own_handler = Collect()
    own.addHandler(own_handler)
    own.propagate = False
    install_log_redaction()
    install_log_redaction()  # again: nothing changes
    assert [sum(isinstance(f, RedactingFilter) for f in h.filters) for h in (root_handler, own_handler)] == [
        1,
        1,
    ]
    url = f"https://user:{SECRET}@gw.example/v1?api_key=q1"
    logging.getLogger("urllib3.connectionpool").warning("Retrying %s", url)  # a third party's record
    own.warning("loading from %s", url)
    assert written == [
        "Retrying https://***@gw.example/v1?api_key=***",
        "loading from https://***@gw.example/v1?api_key=***",
    ]
