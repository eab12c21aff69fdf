"""The benchmark's floor: a bare ``requests`` + stdlib ``json`` loop, no SDK.

Reads the same windows and pages as the tap (one day each, one request at a time)
and writes the same Singer RECORD lines, skipping everything that makes the tap
safe: no retries, deduplication, timestamp normalisation, state or ordering.

    python scripts/raw_floor.py URL KEY START_DAY DAYS PAGE_SIZE > /dev/null
"""

from __future__ import annotations

import json
import sys
from datetime import date, timedelta

import requests


def main() -> None:
    url, key, first, days, page_size = sys.argv[1:6]
    start = date.fromisoformat(first)
    session = requests.Session()
    write = sys.stdout.write
    records = 0
    for n in range(int(days)):
        day = start + timedelta(days=n)
        page = 1
        while True:
            body = {
                "access_key": key,
                "start_date_from": f"{day}T00:00:00.000Z",
                "start_date_to": f"{day + timedelta(days=1)}T00:00:00.000Z",
                "page": page,
                "page_size": int(page_size),
            }
            answer = session.post(
                url + "/cdrs/retrieve",
                data=json.dumps(body),
                headers={"Content-Type": "application/json"},
                timeout=60,
            )
            data = json.loads(answer.content)
            for item in data["items"]:
                write(json.dumps({"type": "RECORD", "stream": "cdrs", "record": item}))
                write("\n")
            records += len(data["items"])
            if page * int(page_size) >= data["total_items"]:
                break
            page += 1
    sys.stdout.flush()
    print(f"records={records}", file=sys.stderr)


if __name__ == "__main__":
    main()
