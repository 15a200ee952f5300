#!/usr/bin/env python3
"""WHIP publish -> WHEP play -> unpublish cycles with aiortc, for the churn soak.

    whip_cycles.py API_BASE CLIP COUNT PREFIX

Each cycle publishes CLIP to API_BASE/rtc/v1/whip/?app=live&stream=PREFIX<i> for about two
seconds while a WHEP player watches it for one, then ends both sessions with DELETE. Prints one
JSON line: {"cycles": COUNT, "published": n, "played": n, "errors": [...]}.
"""

import asyncio
import io
import json
import sys
from contextlib import redirect_stdout

import whep_play
import whip_publish


async def cycle(base, clip, name):
    whip = f"{base}/rtc/v1/whip/?app=live&stream={name}"
    whep = f"{base}/rtc/v1/whep/?app=live&stream={name}"
    out = io.StringIO()

    async def publish():
        with redirect_stdout(out):
            await whip_publish.main(whip, clip, 2.5)

    publisher = asyncio.ensure_future(publish())
    await asyncio.sleep(1.0)
    played = await whep_play.play(whep, 1.0)
    await publisher
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    published = bool(lines) and lines[0].get("connected")
    return published, played.get("connected") and played.get("video_frames", 0) > 0, lines, played


async def main(base, clip, count, prefix):
    result = {"cycles": count, "published": 0, "played": 0, "errors": []}
    for i in range(count):
        published, played, lines, player = await cycle(base, clip, f"{prefix}{i}")
        result["published"] += int(bool(published))
        result["played"] += int(bool(played))
        if not (published and played):
            result["errors"].append({"cycle": i, "publisher": lines, "player": player})
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
