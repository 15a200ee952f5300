#!/usr/bin/env python3
"""Publishes a clip to a WHIP endpoint with aiortc (a WebRTC stack that is not Estuary's).

    whip_publish.py URL CLIP SECONDS

The clip is decoded and sent as H.264 (packetization-mode 1) video and Opus audio, looped,
for SECONDS; then the session is ended with DELETE on the Location the server gave. With
SECONDS 0 the offer is posted and the script exits without ever connecting (a peer that
vanishes after signalling). Prints
one JSON line: {"status": ..., "location": ..., "connected": bool, "error": ...}. No ICE
servers are configured, so nothing leaves the machine.
"""

import asyncio
import json
import sys
import urllib.parse

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer

from signalling import http


async def main(url, clip, seconds):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    async def on_state():
        if pc.connectionState == "connected":
            connected.set()

    player = MediaPlayer(clip, loop=True)
    video = pc.addTransceiver(player.video, direction="sendonly")
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType.lower() == "video/h264"]
    video.setCodecPreferences(h264)
    if player.audio is not None:
        pc.addTransceiver(player.audio, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    status, headers, body = await asyncio.get_running_loop().run_in_executor(
        None, http, "POST", url, pc.localDescription.sdp.encode(), "application/sdp")
    result = {"status": status, "location": headers.get("Location"), "connected": False, "error": None}
    if status != 201:
        result["error"] = body
        print(json.dumps(result), flush=True)
        await pc.close()
        return
    if seconds <= 0:
        print(json.dumps(result), flush=True)
        return
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    try:
        await asyncio.wait_for(connected.wait(), 15)
        result["connected"] = True
        print(json.dumps(result), flush=True)
        await asyncio.sleep(seconds)
    except asyncio.TimeoutError:
        result["error"] = "not connected within 15 s"
        print(json.dumps(result), flush=True)
    location = urllib.parse.urljoin(url, result["location"])
    await asyncio.get_running_loop().run_in_executor(None, http, "DELETE", location)
    await pc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
