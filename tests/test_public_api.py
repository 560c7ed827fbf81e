"""The curated public API: every promised name is importable from ``chanlite``."""

from __future__ import annotations

import chanlite

PROMISED = {
    "consumer",
    "route",
    "include",
    "Routes",
    "Message",
    "Channel",
    "Group",
    "get_layer",
    "ChannelFull",
    "MessageTooLarge",
    "InvalidChannelName",
    "ConsumeLater",
    "DenyConnection",
    "ChanliteError",
    "LayerError",
    "Chanlite",
    "channel_session",
    "http_session",
    "enforce_ordering",
}


def test_auth_and_sessions_modules() -> None:
    import chanlite.auth
    import chanlite.sessions

    for name in ("login", "logout", "transfer_user", "http_session_user"):
        assert callable(getattr(chanlite.auth, name))
    for name in ("channel_session_user", "channel_session_user_from_http", "AnonymousUser"):
        assert hasattr(chanlite.auth, name)
    assert hasattr(chanlite.sessions, "SessionMiddleware")


def test_promised_names_are_exported() -> None:
    missing = {name for name in PROMISED if not hasattr(chanlite, name)}
    assert missing == set()


def test_all_lists_only_real_names() -> None:
    for name in chanlite.__all__:
        assert hasattr(chanlite, name), name


def test_errors_share_one_root() -> None:
    for name in (
        "ChannelFull",
        "MessageTooLarge",
        "InvalidChannelName",
        "ConsumeLater",
        "DenyConnection",
        "LayerError",
    ):
        assert issubclass(getattr(chanlite, name), chanlite.ChanliteError)
    assert issubclass(chanlite.InvalidChannelName, ValueError)
    assert issubclass(chanlite.MessageTooLarge, ValueError)


def test_a_layer_error_names_its_backend_and_problem() -> None:
    error = chanlite.LayerError("Redis at 127.0.0.1:6379/0", "no reply from Redis in 5.0s")
    assert (error.backend, error.problem) == (
        "Redis at 127.0.0.1:6379/0",
        "no reply from Redis in 5.0s",
    )
    assert str(error) == "Redis at 127.0.0.1:6379/0: no reply from Redis in 5.0s"
    # A backend failure is not a mistake in the caller's input.
    assert not issubclass(chanlite.LayerError, (ValueError, TypeError))
