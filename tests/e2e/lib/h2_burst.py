"""
Sends jobs over one h2c connection with the h2 library (Debian's python3-h2), where
Node's client cannot: the requests, and a RST_STREAM right after some of them, leave in
one write, so the server reads each reset together with the job it cancels.

    /usr/bin/python3 h2_burst.py HOST PORT PATH TOKEN COUNT RESET_EVERY BODY_TEMPLATE [RESET_FIRST]

BODY_TEMPLATE holds "{n}" for the job's number. Every RESET_EVERY-th stream (counting
from 1; 0 resets none) is reset with CANCEL, and so are the first RESET_FIRST (default
0). Prints one JSON object: for each stream, its number, whether it was reset, and the
status and body of any answer. A server that closes the connection ends the wait.
"""
import json
import socket
import sys

import h2.config
import h2.connection
import h2.events
import h2.errors


def send(sock, data):
    """Writes data, unless the server has closed the connection."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def main():
    host, port, path, token, count, reset_every, template = sys.argv[1:8]
    count, reset_every = int(count), int(reset_every)
    reset_first = int(sys.argv[8]) if len(sys.argv) > 8 else 0
    sock = socket.create_connection((host, int(port)), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000})

    streams = {}
    for n in range(1, count + 1):
        stream_id = conn.get_next_available_stream_id()
        body = template.replace("{n}", str(n)).encode()
        conn.send_headers(stream_id, [
            (":method", "POST"), (":scheme", "http"), (":authority", f"{host}:{port}"),
            (":path", path), ("authorization", f"Bearer {token}"),
            ("content-type", "application/json"), ("content-length", str(len(body))),
        ])
        conn.send_data(stream_id, body, end_stream=True)
        reset = n <= reset_first or (reset_every > 0 and n % reset_every == 0)
        if reset:
            conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        streams[stream_id] = {"n": n, "reset": reset, "status": None, "body": b""}
    sock.sendall(conn.data_to_send())

    waiting = {sid for sid, s in streams.items() if not s["reset"]}
    while waiting:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                streams[event.stream_id]["status"] = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                streams[event.stream_id]["body"] += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                waiting.discard(event.stream_id)
        send(sock, conn.data_to_send())
    conn.close_connection()
    send(sock, conn.data_to_send())
    sock.close()

    print(json.dumps([{**s, "body": s["body"].decode()} for s in streams.values()]))


if __name__ == "__main__":
    main()
