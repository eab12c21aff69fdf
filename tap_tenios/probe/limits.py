"""Rate limits, from every answer the probe got: the headers, the 429s, and the form
of ``Retry-After``. No request of its own.
"""

from __future__ import annotations

import email.utils
from collections import Counter

from tap_tenios.probe.report import safe_text
from tap_tenios.probe.state import ProbeState


def check_rate_limits(state: ProbeState) -> None:
    """Rate-limit headers, 429s and ``Retry-After`` forms seen in every answer so far."""
    answers = state.client.budget.answers
    names: Counter[str] = Counter()
    values: dict[str, set[str]] = {}
    forms: Counter[str] = Counter()
    for seen in answers:
        for name, value in seen.headers.items():
            names[name] += 1
            values.setdefault(name, set()).add(safe_text(value, state.key, from_api=True))
            if name.lower() == "retry-after":
                forms[retry_after_form(value)] += 1
    throttled = sum(a.status == 429 for a in answers)  # noqa: PLR2004
    finding = state.finding("rate_limits")
    evidence = [f"{len(answers)} answers; {throttled} HTTP 429"]
    evidence += [
        f"{name} on {n} answer(s), e.g. {', '.join(sorted(values[name])[:3])}"
        for name, n in names.most_common()
    ]
    if not names and not throttled:
        finding.found(
            "no rate-limit headers and no 429 seen", {"headers": {}, "throttled": 0}, *evidence
        )
        return
    answer = ", ".join(names) if names else "no rate-limit headers"
    if forms:
        answer += "; Retry-After as " + ", ".join(f"{form} ({n})" for form, n in forms.items())
    finding.found(
        answer,
        {"headers": dict(names), "throttled": throttled, "retry_after_forms": dict(forms)},
        *evidence,
    )


def retry_after_form(value: str) -> str:
    """``Retry-After`` in one of its two forms (RFC 9110), or neither."""
    text = value.strip()
    if text.isdigit():
        return "seconds"
    try:
        email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return "other"
    return "HTTP date"
