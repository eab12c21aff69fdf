"""Settings: the tap's JSON schema and the parsing after it, each problem named by setting.

Every config goes through ``TapTenios`` as a run's does: the schema says what a
setting may be and fills in the defaults; ``Settings.from_config`` parses the rest.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from singer_sdk.exceptions import ConfigValidationError

from tap_tenios.records import UTC
from tap_tenios.settings import Settings, utc_now
from tap_tenios.tap import TapTenios

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


def tap(**changes: Any) -> TapTenios:
    """The tap for ``BASE`` with ``changes``; a change to ``...`` drops the setting."""
    config = {k: v for k, v in {**BASE, **changes}.items() if v is not ...}
    return TapTenios(config=config, parse_env_config=False)


def settings(**changes: Any) -> Settings:
    return Settings.from_config(tap(**changes).config)


def problems(**changes: Any) -> list[str]:
    with pytest.raises(ConfigValidationError) as caught:
        tap(**changes)
    return list(caught.value.errors)


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
    """What a caller that shows only the exception's text (not ``errors``) sees."""
    with pytest.raises(ConfigValidationError) as caught:
        tap(page_size=0, max_retries=-1)
    assert str(caught.value) == (
        "Invalid settings, fix them in the tap's config: page_size: 0 is less than the "
        "minimum of 1; max_retries: -1 is less than the minimum of 0"
    )


@pytest.mark.parametrize(
    ("name", "least"),
    [
        ("page_size", 1),
        ("window_size_hours", 1),
        ("lookback_minutes", 0),
        ("max_concurrency", 1),
        ("request_timeout_seconds", 1),
        ("max_retries", 0),
    ],
)
def test_each_size_has_its_least_value_in_the_schema(name: str, least: int) -> None:
    assert settings(**{name: least})  # the least value is accepted
    assert problems(**{name: least - 1}) == [
        f"{name}: {least - 1} is less than the minimum of {least}"
    ]


@pytest.mark.parametrize("value", [True, "4", 2.5, None])
def test_a_size_that_is_not_a_whole_number_is_refused_naming_it(value: Any) -> None:
    """``True`` would otherwise pass as 1, and a string fail with a TypeError."""
    (problem,) = problems(max_concurrency=value)
    assert problem.startswith(f"max_concurrency: {value!r} is not ")


def test_defaults_come_from_the_schema() -> None:
    """One place for defaults: the JSON schema, which the SDK applies to the config."""
    dropped = {name: ... for name in BASE if name not in ("access_key", "start_date")}
    parsed = settings(**dropped)
    schema = TapTenios.config_jsonschema["properties"]
    assert parsed.page_size == schema["page_size"]["default"] == 1000
    assert parsed.max_retries == schema["max_retries"]["default"]
    assert parsed.lookback.total_seconds() == schema["lookback_minutes"]["default"] * 60
    assert parsed.api_url == schema["api_url"]["default"]
    assert parsed.timezone.key == schema["timezone"]["default"]


@pytest.mark.parametrize("value", ["", ...])
def test_a_missing_start_date_is_named(value: Any) -> None:
    assert [p.split(":")[0] for p in problems(start_date=value)] == ["start_date"]


def test_an_end_date_equal_to_start_date_is_refused() -> None:
    assert problems(end_date="2024-03-01") == ["end_date: '2024-03-01' is not after start_date"]
    assert settings(end_date="2024-03-01T00:00:00.001Z").end


def test_on_count_mismatch_is_one_of_fail_and_warn() -> None:
    assert problems(on_count_mismatch="ignore") == [
        "on_count_mismatch: 'ignore' is not one of ['fail', 'warn']"
    ]
    assert settings(on_count_mismatch="warn").on_count_mismatch == "warn"
    assert settings().on_count_mismatch == "fail"


def test_the_lookback_is_read_whole_unless_on_count_change_is_chosen() -> None:
    assert settings().lookback_mode == "always"
    assert settings(lookback_mode="on_count_change").lookback_mode == "on_count_change"
    assert problems(lookback_mode="sometimes") == [
        "lookback_mode: 'sometimes' is not one of ['always', 'on_count_change']"
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
