#!/usr/bin/env python3
"""Plays a stream from a WHEP endpoint with aiortc and counts what it decodes.

    whep_play.py URL SECONDS [PLAYERS]

Each of PLAYERS (default 1) peer connections offers to receive one video and one audio
track, decodes for SECONDS after its connection is up (aiortc's H.264 and Opus decoders),
then DELETEs its session. Prints one JSON line, {"players": [...]}, each player with
"status", "connected", "video_frames", "audio_frames", "width", "height", "audio_rate" and
"error".

With the environment variable SRS_STREAMURL set (webrtc://host/app/stream), URL is SRS's
older JSON API (/rtc/v1/play/): the offer goes in {"streamurl", "sdp"} and the answer comes
back as {"code": 0, "sdp", "sessionid"}.
"""

import asyncio
import json
import os
import sys
import urllib.parse

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from signalling import http


async def play(url, seconds):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    result = {"status": None, "connected": False, "video_frames": 0, "audio_frames": 0,
              "width": None, "height": None, "audio_rate": None, "error": None}
    connected = asyncio.Event()
    tasks = []

    @pc.on("connectionstatechange")
    async def on_state():
        if pc.connectionState == "connected":
            connected.set()

    async def consume(track):
        try:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    result["video_frames"] += 1
                    result["width"], result["height"] = frame.width, frame.height
                else:
                    result["audio_frames"] += 1
                    result["audio_rate"] = frame.sample_rate
        except MediaStreamError:
            pass

    @pc.on("track")
    def on_track(track):
        tasks.append(asyncio.ensure_future(consume(track)))

    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    loop = asyncio.get_running_loop()
    srs = os.environ.get("SRS_STREAMURL")
    if srs:
        request = json.dumps({"api": url, "streamurl": srs, "sdp": pc.localDescription.sdp}).encode()
        status, headers, body = await loop.run_in_executor(None, http, "POST", url, request, "application/json")
        if status == 200:
            answer = json.loads(body)
            status = 201 if answer.get("code") == 0 else answer.get("code")
            body = answer.get("sdp", body)
    else:
        status, headers, body = await loop.run_in_executor(
            None, http, "POST", url, pc.localDescription.sdp.encode(), "application/sdp")
    result["status"] = status
    if status != 201:
        result["error"] = body
        await pc.close()
        return result
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    try:
        await asyncio.wait_for(connected.wait(), 15)
        result["connected"] = True
        await asyncio.sleep(seconds)
    except asyncio.TimeoutError:
        result["error"] = "not connected within 15 s"
    if headers.get("Location"):
        await loop.run_in_executor(None, http, "DELETE", urllib.parse.urljoin(url, headers.get("Location")))
    await pc.close()
    for task in tasks:
        task.cancel()
    return result


async def play_reporting(url, seconds):
    """As play(); an exception (a signalling timeout, a refused connection) becomes the
    player's "error" instead of ending the script with no JSON for the test to read."""
    try:
        return await play(url, seconds)
    except Exception as e:  # noqa: BLE001 - reported to the test, which fails the player
        return {"status": None, "connected": False, "video_frames": 0, "audio_frames": 0,
                "width": None, "height": None, "audio_rate": None,
                "error": f"{type(e).__name__}: {e}"}


async def main(url, seconds, players):
    results = await asyncio.gather(*(play_reporting(url, seconds) for _ in range(players)))
    print(json.dumps({"players": list(results)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1))
