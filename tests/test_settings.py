"""Settings: meaning checked before any request, each problem named by setting."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tap_tenios.settings import Settings, SettingsError, utc_now
from tap_tenios.windows import UTC

BASE: dict[str, Any] = {
    "access_key": "a-key",
    "start_date": "2024-03-01",
    "api_url": "https://api.tenios.com",
    "page_size": 1000,
    "window_size_hours": 24,
    "lookback_minutes": 0,
    "max_concurrency": 4,
    "request_timeout_seconds": 60,
    "max_retries": 6,
}


def settings(**changes: Any) -> Settings:
    return Settings.from_config({**BASE, **changes})


def problems(**changes: Any) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        settings(**changes)
    return caught.value.problems


@pytest.mark.parametrize(
    "url",
    [
        "https://api.tenios.com",
        "https://10.0.0.5:8443/api",
        "http://127.0.0.1:8080",
        "http://127.3.4.5",
        "http://localhost:8080",
        "http://LOCALHOST",
        "http://[::1]:8080",
    ],
)
def test_https_anywhere_and_plain_http_on_loopback_are_accepted(url: str) -> None:
    assert settings(api_url=url)


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://proxy.example/tenios/", "https://proxy.example/tenios"),
        ("https://proxy.example/X//", "https://proxy.example/X"),
    ],
)
def test_the_api_url_loses_only_its_trailing_slashes(url: str, kept: str) -> None:
    assert settings(api_url=url).api_url == kept


@pytest.mark.parametrize(
    "url",
    [
        "http://api.tenios.com",
        "http://10.0.0.5:8080",
        "http://[::2]:80",
        "http://localhost.example.com",
        "http://127.0.0.1@api.tenios.com",  # the host is the part after the @
    ],
)
def test_plain_http_to_any_other_host_is_refused_naming_api_url(url: str) -> None:
    assert problems(api_url=url) == [
        f"api_url: {url!r} is plain http, which would send the access key unencrypted; "
        "use https:// (plain http is only for a local emulator on localhost, 127.0.0.1 or ::1)"
    ]


@pytest.mark.parametrize("url", ["ftp://example", "api.tenios.com", "https://", "http://[::1"])
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    assert problems(api_url=url) == [f"api_url: {url!r} is not an http(s) URL"]


def test_the_api_time_zone_defaults_to_utc_and_takes_iana_names() -> None:
    assert settings().api_timezone is UTC  # the parser's fast path knows it by identity
    assert settings(api_timezone="Etc/UTC").api_timezone is UTC
    assert settings(api_timezone="Europe/Berlin").api_timezone == ZoneInfo("Europe/Berlin")
    assert problems(api_timezone="CEST") == ["api_timezone: 'CEST' is not an IANA time zone name"]


def test_every_problem_is_named_at_once() -> None:
    found = problems(start_date="soon", page_size=0, api_url="http://api.tenios.com")
    assert [p.split(":")[0] for p in found] == ["start_date", "api_url", "page_size"]


def test_the_error_text_names_every_problem() -> None:
    """What a caller that shows only the exception's text (not ``problems``) sees."""
    with pytest.raises(SettingsError) as caught:
        settings(page_size=0, max_retries=-1)
    assert str(caught.value) == "page_size: 0 must be positive; max_retries: -1 must be 0 or more"


@pytest.mark.parametrize("value", [True, "4", 2.5, None])
def test_a_size_that_is_not_a_whole_number_is_refused_naming_it(value: Any) -> None:
    """Checked here too, for callers that build settings without the SDK's schema check:
    ``True`` would otherwise pass as 1, and a string would fail with a TypeError."""
    assert problems(max_concurrency=value) == [f"max_concurrency: {value!r} is not a whole number"]


@pytest.mark.parametrize("value", [None, ""])
def test_a_missing_start_date_is_named(value: Any) -> None:
    assert problems(start_date=value) == ["start_date: required"]


def test_an_end_date_equal_to_start_date_is_refused() -> None:
    assert problems(end_date="2024-03-01") == ["end_date: '2024-03-01' is not after start_date"]
    assert settings(end_date="2024-03-01T00:00:00.001Z").end


def test_on_count_mismatch_is_one_of_fail_and_warn() -> None:
    assert problems(on_count_mismatch="ignore") == [
        "on_count_mismatch: 'ignore' is not one of ('fail', 'warn')"
    ]
    assert settings(on_count_mismatch="warn").on_count_mismatch == "warn"
    assert settings().on_count_mismatch == "fail"


def test_the_lookback_is_read_whole_unless_on_count_change_is_chosen() -> None:
    assert settings().lookback_mode == "always"
    assert settings(lookback_mode="on_count_change").lookback_mode == "on_count_change"
    assert problems(lookback_mode="sometimes") == [
        "lookback_mode: 'sometimes' is not one of ('always', 'on_count_change')"
    ]


def test_the_completeness_check_is_on_unless_turned_off() -> None:
    assert settings().count_check is True
    assert settings(count_check=False).count_check is False


def test_now_is_taken_to_the_millisecond(monkeypatch) -> None:
    """The API's requests are spelled to the millisecond: a run's end is one of them."""
    import tap_tenios.settings

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            return datetime(2024, 3, 1, 12, 0, 0, 800_500, tzinfo=tz)

    monkeypatch.setattr(tap_tenios.settings, "datetime", Clock)
    assert utc_now() == datetime(2024, 3, 1, 12, 0, 0, 800_000, tzinfo=timezone.utc)
