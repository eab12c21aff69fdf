"""The benchmark's baseline: the client a user would write instead of the tap.

One query over the whole range, page after page, one request at a time, each
item written as a Singer RECORD line with stdlib ``json``. Nothing else: no
windows, retries, deduplication, timestamp normalisation, state or ordering.

    python scripts/raw_floor.py URL KEY START END PAGE_SIZE > records.jsonl

``START``/``END`` are ISO-8601 instants. Writes ``records=N requests=M`` to stderr.
"""

from __future__ import annotations

import json
import sys

import requests


def main() -> None:
    url, key, start, end, page_size = sys.argv[1:6]
    session = requests.Session()
    write = sys.stdout.write
    records = requests_made = 0
    page = 1
    while True:
        body = {
            "access_key": key,
            "start_date_from": start,
            "start_date_to": end,
            "page": page,
            "page_size": int(page_size),
        }
        answer = session.post(
            url + "/cdrs/retrieve",
            data=json.dumps(body),
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        requests_made += 1
        data = json.loads(answer.content)
        for item in data["items"]:
            write(json.dumps({"type": "RECORD", "stream": "cdrs", "record": item}))
            write("\n")
        records += len(data["items"])
        if not data["items"] or page * int(page_size) >= data["total_items"]:
            break
        page += 1
    sys.stdout.flush()
    print(f"records={records} requests={requests_made}", file=sys.stderr)


if __name__ == "__main__":
    main()
