"""The probe's report: findings with their evidence, the settings they imply, as
Markdown to paste into an issue or as JSON; never the key, a phone number or a name.

Everything the API said reaches the report through ``safe_text`` (its own words in an
error, a header's value) or as a count or a shape: numbers become ``+49…(13 chars)``,
the key ``[redacted]``, and the whole text is redacted once more on the way out.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from tap_tenios.errors import redact

#: A finding's state: answered with evidence, not answerable from what was seen, or
#: not reached (the budget ran out, the API stopped answering).
STATUSES = ("determined", "undetermined", "not reached")
#: Digit runs that may be phone numbers (spaces, hyphens, dots or brackets within, a
#: leading +, any punctuation after): shown by their shape only when they hold
#: ``MIN_PHONE_DIGITS`` digits or more and are not a date (``ISO_DATE``). Not where a
#: word, a time's colon or a fraction's point runs into them (a stamp's microseconds).
PHONE = re.compile(r"(?<![\w.:+-])\+?\(?\d[\d ./()-]{4,}\d")
MIN_PHONE_DIGITS = 6
#: A calendar date, which the report quotes as evidence.
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
#: An e-mail address: a name in disguise.
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
#: API codes (``NORMAL_CLEARING``, ``PENDING``): shown as they are.
CODE = re.compile(r"[A-Z][A-Z0-9_]{0,39}")
#: The longest quote of the API's own words.
MAX_QUOTE = 300
#: Where the API's own words begin in an error line of the transport.
API_WORDS = re.compile(r"HTTP \d{3}: ")
#: A capitalised word: a name, unless it is one of ``PLAIN``.
TITLE_WORD = re.compile(r"\b[A-Z][a-z]+\b")
#: Capitalised words of HTTP and API errors, shown as they are.
PLAIN = frozenset(
    "Bad Gateway Request Requests Internal Server Error Service Unavailable Not Found "
    "Too Many Invalid Unknown Forbidden Access Key Tenios The Interval Page Size Date "
    "Method Timeout Start End Please Expected Must Only Rate Limit Exceeded Period Day "
    "Days Body Content Type Payload No Missing Parameter Value Field Maximum Json".split()
)
#: Fields whose values are codes (``NORMAL_CLEARING``), shown as they are.
CODE_FIELDS = frozenset(
    {"call_type", "hangup_cause", "source_type", "routing_status", "billing_status", "prepaid"}
)


def number_shape(text: str) -> str:
    """``+4915123456789`` as ``+49…(14 chars)``: the country code and the length only."""
    stripped = text.strip()
    head = stripped[:3] if stripped.startswith("+") else ""
    return f"{head}…({len(stripped)} chars)"


def phone_shape(match: re.Match[str]) -> str:
    found = match.group(0)
    digits = sum(c.isdigit() for c in found)
    if digits < MIN_PHONE_DIGITS or ISO_DATE.match(found):
        return found
    return number_shape(found)


def name_shape(match: re.Match[str]) -> str:
    word = match.group(0)
    return word if word in PLAIN else "[name]"


def value_shape(value: Any) -> str:
    """A value as the report may show it: codes and numbers as they are, phone
    numbers by their shape, any other text by its length.
    """
    if isinstance(value, Decimal):
        return str(value)
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)
    if not isinstance(value, str):
        return type(value).__name__
    if CODE.fullmatch(value):
        return value
    if PHONE.fullmatch(value.strip()) and sum(c.isdigit() for c in value) >= MIN_PHONE_DIGITS:
        return number_shape(value)
    return f"text({len(value)} chars)"


def safe_text(text: str, key: str | None, *, from_api: bool = False) -> str:
    """Text fit for the report: key redacted, numbers and e-mail addresses shaped, and
    in the API's own words (all of ``text`` with ``from_api``, else what follows an
    ``HTTP nnn:`` in an error line) capitalised words that may be names.
    """
    text = redact(" ".join(str(text).split()), key)
    text = EMAIL.sub("[e-mail]", text)
    text = PHONE.sub(phone_shape, text)
    found = API_WORDS.search(text)
    if found or from_api:
        at = found.end() if found else 0
        text = text[:at] + TITLE_WORD.sub(name_shape, text[at:])
    return text[:MAX_QUOTE] + ("…" if len(text) > MAX_QUOTE else "")


@dataclass
class Finding:
    """One question about the API, its answer and the evidence it rests on."""

    key: str
    question: str
    status: str = "not reached"
    answer: str = "not reached"
    #: The answer for machines (``--json``): a word, a number, a small mapping.
    value: Any = None
    evidence: list[str] = field(default_factory=list)

    def found(self, answer: str, value: Any, *evidence: str) -> None:
        self.status, self.answer, self.value = "determined", answer, value
        self.evidence.extend(evidence)

    def unknown(self, why: str, *evidence: str) -> None:
        self.status, self.answer = "undetermined", why
        self.evidence.extend(evidence)


@dataclass
class Implied:
    """A setting the findings imply, and why."""

    setting: str
    value: Any
    why: str


@dataclass
class Report:
    """What one probe run found."""

    api_host: str
    started: str
    findings: list[Finding]
    requests_allowed: int
    requests_used: int = 0
    finished: str = ""
    #: Why the probe stopped early (one line), if it did.
    stopped: str | None = None
    implied: list[Implied] = field(default_factory=list)

    def finding(self, key: str) -> Finding:
        return next(f for f in self.findings if f.key == key)

    def to_json(self, key: str | None) -> str:
        """The report for machines (``--json``), the key redacted once more."""
        body = {
            "probe": "tap-tenios-probe",
            "api_host": self.api_host,
            "started": self.started,
            "finished": self.finished,
            "requests": {"used": self.requests_used, "allowed": self.requests_allowed},
            "stopped": self.stopped,
            "findings": {f.key: asdict(f) for f in self.findings},
            "implied_settings": {i.setting: {"value": i.value, "why": i.why} for i in self.implied},
        }
        return redact(json.dumps(body, indent=2, default=str), key)

    def to_markdown(self, key: str | None) -> str:
        """The report to paste into an issue, the key redacted once more."""
        lines = [
            "## tap-tenios probe report",
            "",
            f"API `{self.api_host}`, {self.started} to {self.finished}, "
            f"{self.requests_used} of {self.requests_allowed} requests (read-only).",
            "",
        ]
        if self.stopped:
            lines += [f"**Stopped early:** {self.stopped}", ""]
        lines += ["| finding | answer | status |", "|---|---|---|"]
        lines += [f"| {f.question} | {cell(f.answer)} | {f.status} |" for f in self.findings]
        lines += ["", "### Implied settings", ""]
        if self.implied:
            lines += ["| setting | value | why |", "|---|---|---|"]
            lines += [f"| `{i.setting}` | `{i.value}` | {cell(i.why)} |" for i in self.implied]
        else:
            lines.append("None could be derived.")
        lines += ["", "### Evidence", ""]
        for f in self.findings:
            lines.append(f"- **{f.key}**: " + ("; ".join(f.evidence) or "none"))
        return redact("\n".join(lines) + "\n", key)


def cell(text: str) -> str:
    """Text fit for a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")
