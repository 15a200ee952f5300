#!/usr/bin/env python3
"""Estuary's reference AI-tap worker: live captions from speech.

It reads a stream's audio from the node's tap (16 kHz mono PCM over a WebSocket), finds
utterances with PocketSphinx's voice activity detector, recognises each with PocketSphinx's
bundled US English model, and sends the text back on the same socket as a caption; the node
puts it into the stream's outputs.

    pip install -r examples/asr/requirements.txt
    python3 examples/asr/worker.py ws://127.0.0.1:8080/tap/live/livestream

Without PocketSphinx, `--wav out.wav --seconds 5` only records the tap to a WAV file (handy to
hear what a model would get), and `--jpeg DIR --count 3` saves the stream's pictures from a
video tap (one a second, 640 wide: what a vision model would get). To use another recogniser, replace `Recognizer`: it is given
16 kHz mono 16-bit frames and returns the text of each finished utterance.

The WebSocket client is the standard library's sockets and a few lines of RFC 6455, so the
worker needs nothing but PocketSphinx.
"""

import argparse
import base64
import json
import os
import socket
import struct
import sys
import time
import urllib.parse
import wave

HEADER = 20  # bytes before the samples in a binary tap message
RATE = 16000


class TapSocket:
    """A minimal WebSocket client (RFC 6455) for the tap: text and binary messages."""

    def __init__(self, url, timeout=15.0):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "ws":
            raise SystemExit(f"{url}: only ws:// URLs (put TLS in front with a proxy)")
        host, port = parts.hostname, parts.port or 80
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        self.buffer = b""
        head = self._read_until(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in status + " ":
            body = self.buffer.decode(errors="replace").strip()
            raise SystemExit(f"the tap refused: {status} {body}")
        # Connected: a stream may pause (a publisher reconnecting) without ending the worker.
        self.sock.settimeout(None)

    def _read_until(self, marker):
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    def _read_exact(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buffer)))
            if not chunk:
                raise EOFError("connection closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def receive(self):
        """The next message: ("text", str), ("binary", bytes) or ("close", reason)."""
        message, kind = b"", None
        while True:
            first, second = self._read_exact(2)
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read_exact(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read_exact(8))[0]
            payload = self._read_exact(length)
            if opcode == 0x9:  # ping
                self._send(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode == 0x8:
                try:
                    self._send(0x8, payload[:2])  # the closing handshake's answer
                except OSError:
                    pass
                return "close", payload[2:].decode(errors="replace")
            if opcode in (0x1, 0x2):
                kind = "text" if opcode == 0x1 else "binary"
            message += payload
            if first & 0x80:
                return kind, message.decode() if kind == "text" else message

    def _send(self, opcode, payload):
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def send_json(self, value):
        self._send(0x1, json.dumps(value).encode())


class Recognizer:
    """PocketSphinx: voice activity detection, then one hypothesis per utterance."""

    def __init__(self):
        from pocketsphinx import Decoder, Endpointer

        self.endpointer = Endpointer()
        self.decoder = Decoder(samprate=self.endpointer.sample_rate, loglevel="ERROR")
        self.frame_bytes = self.endpointer.frame_bytes

    def frame(self, pcm):
        """Takes one frame of `frame_bytes`; returns an utterance's text when one ended."""
        was_in_speech = self.endpointer.in_speech
        speech = self.endpointer.process(pcm)
        if speech is None:
            return None
        if not was_in_speech:
            self.decoder.start_utt()
        self.decoder.process_raw(speech)
        if self.endpointer.in_speech:
            return None
        self.decoder.end_utt()
        hypothesis = self.decoder.hyp()
        return hypothesis.hypstr.strip() if hypothesis is not None else ""


def log(*parts):
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def tap_url(url):
    """The URL with the tap format this worker reads (16 kHz mono)."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.update({"audio": "s16le", "rate": str(RATE), "channels": "1"})
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def pictures_url(url):
    """The URL of a video tap: JPEG, one picture a second, 640 pixels wide."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.update({"video": "jpeg", "fps": "1", "width": "640"})
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def save_pictures(tap, directory, count):
    os.makedirs(directory, exist_ok=True)
    saved = 0
    while saved < count:
        kind, data = tap.receive()
        if kind == "close":
            raise SystemExit(f"the tap closed: {data}")
        if kind == "text":
            message = json.loads(data)
            if message.get("type") == "video":
                log(f"pictures of {message.get('width')}x{message.get('height')}")
            continue
        stream_us = struct.unpack(">q", data[4:12])[0]
        saved += 1
        path = os.path.join(directory, f"picture-{saved}.jpg")
        with open(path, "wb") as out:
            out.write(data[HEADER:])
        log(f"{path}: stream time {stream_us / 1e6:.3f} s, {len(data) - HEADER} bytes")


def record(tap, path, seconds):
    with wave.open(path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        written = 0
        while written < seconds * RATE:
            kind, data = tap.receive()
            if kind == "close":
                raise SystemExit(f"the tap closed: {data}")
            if kind == "binary":
                out.writeframes(data[HEADER:])
                written += (len(data) - HEADER) // 2
    log(f"wrote {written / RATE:.1f} s of audio to {path}")


def caption(tap, recognizer):
    pending = b""
    while True:
        kind, data = tap.receive()
        if kind == "close":
            log("the tap closed:", data)
            return
        if kind == "text":
            message = json.loads(data)
            if message.get("type") == "error":
                log("the node refused a caption:", message.get("message"))
            elif message.get("type") == "lost":
                log(f"fell behind: {message.get('chunks')} chunks lost")
            elif message.get("type") == "end":
                log("the tap ended:", message.get("reason"))
            continue
        pending += data[HEADER:]
        while len(pending) >= recognizer.frame_bytes:
            frame, pending = pending[: recognizer.frame_bytes], pending[recognizer.frame_bytes :]
            text = recognizer.frame(frame)
            if text:
                log("caption:", text)
                tap.send_json({"type": "caption", "text": text, "language": "eng"})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the tap, e.g. ws://127.0.0.1:8080/tap/live/livestream")
    parser.add_argument("--wav", help="record the tap to this WAV file instead of captioning")
    parser.add_argument("--seconds", type=float, default=5.0, help="how much to record with --wav")
    parser.add_argument("--jpeg", help="save pictures of the stream's video in this directory instead")
    parser.add_argument("--count", type=int, default=3, help="how many pictures to save with --jpeg")
    args = parser.parse_args()
    tap = TapSocket(pictures_url(args.url) if args.jpeg else tap_url(args.url))
    kind, start = tap.receive()
    if kind != "text" or json.loads(start).get("type") != "start":
        raise SystemExit(f"the tap did not start: {start}")
    log("tap started:", start)
    if args.jpeg:
        save_pictures(tap, args.jpeg, args.count)
    elif args.wav:
        record(tap, args.wav, args.seconds)
    else:
        caption(tap, Recognizer())


if __name__ == "__main__":
    main()
