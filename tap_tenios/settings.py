"""The config parsed into typed settings, once, before any request.

What a setting may be (its type, default, limits and allowed values) is said in one
place, the tap's JSON schema (``tap.py``), which the SDK checks first and which fills
in the defaults. This parses what is left: dates, time zones and the URL, whose
meaning JSON Schema cannot state (dates that parse and are in order, real time
zones, a URL the key may travel to), and reports each problem by setting name. No
message ever quotes ``access_key``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tap_tenios.batch import BatchSettings, BatchSettingsError
from tap_tenios.records import UTC, TimestampError, parse_setting

#: IANA names of UTC itself. A zone-less stamp read in one of them is read as
#: ``records.UTC``, which the timestamp parser's fast path recognises by identity:
#: three stamps a leg, about a third of the tap's CPU per leg on the careful path.
UTC_NAMES = frozenset(
    {"UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu"}
)


class SettingsError(ValueError):
    """One or more settings are unusable; ``problems`` name each setting."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine: localhost, 127.0.0.0/8 or ::1."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def zone_setting(config: Mapping[str, Any], name: str, problems: list[str]) -> ZoneInfo:
    """An IANA time zone setting, or a problem naming it."""
    value = config.get(name)
    try:
        return ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"{name}: {value!r} is not an IANA time zone name")
        return ZoneInfo("UTC")


@dataclass(frozen=True)
class Settings:
    """The config as the streams use it."""

    start: datetime
    end: datetime | None
    timezone: ZoneInfo
    api_timezone: tzinfo
    page_size: int
    window: timedelta
    lookback: timedelta
    max_concurrency: int
    on_count_mismatch: str
    count_check: bool
    lookback_mode: str
    api_url: str
    request_timeout: int
    max_retries: int

    def run_end(self, now: datetime) -> datetime:
        """Exclusive end of this run: ``end_date`` if set, never later than now."""
        return min(self.end, now) if self.end else now

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Parse a config the tap's JSON schema has checked and completed with its
        defaults (``TapTenios.config``); ``SettingsError`` names every problem left.
        """
        problems: list[str] = []

        def moment(name: str) -> datetime | None:
            value = config.get(name)
            if value in (None, ""):
                return None
            try:
                return parse_setting(value)
            except (TimestampError, TypeError):
                problems.append(
                    f"{name}: {value!r} is not a date (YYYY-MM-DD) or an ISO-8601 date-time"
                )
                return None

        def whole(name: str) -> int:
            value = config.get(name)
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{name}: {value!r} is not a whole number")
                return 1
            return value

        start = moment("start_date")
        if start is None and "start_date" not in [p.split(":")[0] for p in problems]:
            problems.append("start_date: required")
        end = moment("end_date")
        if start and end and end <= start:
            problems.append(f"end_date: {config['end_date']!r} is not after start_date")
        zone = zone_setting(config, "timezone", problems)
        api_zone = zone_setting(config, "api_timezone", problems)
        try:
            url = urlparse(str(config.get("api_url", "")))
            host = url.hostname
        except ValueError:  # e.g. an unclosed IPv6 bracket
            url, host = urlparse(""), None
        if url.scheme not in ("http", "https") or not host:
            problems.append(f"api_url: {config.get('api_url')!r} is not an http(s) URL")
        elif url.scheme == "http" and not is_loopback(host):
            problems.append(
                f"api_url: {config.get('api_url')!r} is plain http, which would send the "
                "access key unencrypted; use https:// (plain http is only for a local "
                "emulator on localhost, 127.0.0.1 or ::1)"
            )
        access_key = config.get("access_key")
        if not isinstance(access_key, str) or not access_key.strip():
            problems.append("access_key: required, a non-empty string (value not shown)")
        sizes = {
            name: whole(name)
            for name in (
                "page_size",
                "window_size_hours",
                "lookback_minutes",
                "max_concurrency",
                "request_timeout_seconds",
                "max_retries",
            )
        }
        if batch := config.get("batch_config"):
            try:
                BatchSettings.from_config(batch)
            except BatchSettingsError as exc:
                problems.append(str(exc))
        if problems:
            raise SettingsError(problems)
        assert start is not None
        return cls(
            start=start,
            end=end,
            timezone=zone,
            api_timezone=UTC if api_zone.key in UTC_NAMES else api_zone,
            page_size=sizes["page_size"],
            window=timedelta(hours=sizes["window_size_hours"]),
            lookback=timedelta(minutes=sizes["lookback_minutes"]),
            max_concurrency=sizes["max_concurrency"],
            on_count_mismatch=str(config["on_count_mismatch"]),
            count_check=bool(config["count_check"]),
            lookback_mode=str(config["lookback_mode"]),
            api_url=str(config["api_url"]).rstrip("/"),
            request_timeout=sizes["request_timeout_seconds"],
            max_retries=sizes["max_retries"],
        )


def utc_now() -> datetime:
    """Now, to the millisecond (the API's request precision)."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
