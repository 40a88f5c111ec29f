"""The HTTP server and the v1 routes, on a real loopback port."""

from __future__ import annotations

import json
import math
import socket
import threading
import uuid

import httpx
import pytest
from colabtui_remote import Monitor, schema
from colabtui_remote.transport.http.server import PortInUse
from ports import free_port

ROUTES = [("GET", "/v1/status"), ("GET", "/v1/metrics?after=0"), ("GET", "/v1/checkpoints"),
          ("POST", "/v1/commands"), ("GET", "/v1/commands/abc"), ("GET", "/nope")]


def strict_json(data: bytes):
    """json.loads that refuses NaN/Infinity tokens, as a strict client would."""
    def refuse(name):
        raise ValueError(f"invalid JSON constant {name}")
    return json.loads(data, parse_constant=refuse)


@pytest.fixture
def served(tmp_path):
    mon = Monitor(run="unit", checkpoint_dir=tmp_path / "ckpt", autosave_every=None)
    url = mon.serve(port=0, token="t0ken-" + "x" * 20, quiet=True)
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {mon.token}"}, timeout=5)
    yield mon, client
    client.close()
    mon.close()


@pytest.mark.parametrize("method,path", ROUTES)
def test_every_route_refuses_a_missing_or_wrong_token_with_the_same_body(served, method, path):
    mon, client = served
    bodies = []
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": mon.token}):
        r = httpx.request(method, str(client.base_url).rstrip("/") + path, headers=headers,
                          json={"id": "x", "action": "save"} if method == "POST" else None)
        assert r.status_code == 401
        bodies.append(r.content)
    assert bodies[0] == bodies[1] == bodies[2]
    assert strict_json(bodies[0])["error"]["code"] == "unauthorized"


def test_status_snapshot_speaks_protocol_v1_and_parses(served):
    mon, client = served
    mon.log(loss=0.5, step=3)
    r = client.get("/v1/status")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    status = schema.parse_status(strict_json(r.content))
    assert status.protocol == schema.PROTOCOL_VERSION
    assert (status.run, status.label, status.state) == ("unit", "unit", "running")
    assert status.metrics == {"loss": 0.5}
    assert status.host.python


def test_without_nvml_status_has_no_gpus_and_says_why(served):
    _, client = served
    status = schema.parse_status(client.get("/v1/status").json())
    assert status.gpus == []
    assert status.gpu_error and "NVML" in status.gpu_error


def test_metrics_after_returns_only_new_points(served):
    mon, client = served
    for i in range(5):
        mon.log(step=i, loss=1.0 / (i + 1))
    first = schema.parse_metrics(client.get("/v1/metrics", params={"after": 0}).json())
    assert [p.step for p in first.series["loss"]] == [0, 1, 2, 3, 4]
    for i in range(5, 8):
        mon.log(step=i, loss=0.1)
    second = schema.parse_metrics(client.get("/v1/metrics", params={"after": first.next_after}).json())
    assert [p.step for p in second.series["loss"]] == [5, 6, 7]
    assert min(p.seq for p in second.series["loss"]) > first.next_after
    again = schema.parse_metrics(client.get("/v1/metrics", params={"after": second.next_after}).json())
    assert again.series.get("loss", []) == []


def test_nan_and_inf_losses_give_valid_json_with_markers(served):
    mon, client = served
    mon.log(step=0, loss=math.nan)
    mon.log(step=1, loss=math.inf)
    mon.log(step=2, loss=-math.inf)
    r = client.get("/v1/metrics", params={"after": 0})
    body = strict_json(r.content)  # no NaN/Infinity tokens
    assert [p[3:] for p in body["series"]["loss"]] == [[None, "nan"], [None, "inf"], [None, "-inf"]]
    page = schema.parse_metrics(body)
    values = [p.value for p in page.series["loss"]]
    assert math.isnan(values[0]) and values[1] == math.inf and values[2] == -math.inf
    status = strict_json(client.get("/v1/status").content)
    assert status["metrics"]["loss"] is None
    assert status["metrics_nonfinite"]["loss"] == "-inf"


@pytest.mark.parametrize("body,code,needle", [
    (b"{not json", 400, "JSON"),
    (b'"save"', 400, "object"),
    (b'{"id": "a", "action": "explode"}', 400, "unknown action"),
    (b'{"action": "save"}', 400, "id"),
    (b'{"id": "' + b"x" * 200 + b'", "action": "save"}', 400, "id"),
    (b"\xff\xfe", 400, "JSON"),
])
def test_malformed_commands_get_a_json_400(served, body, code, needle):
    mon, client = served
    r = client.post("/v1/commands", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == code
    assert needle in strict_json(r.content)["error"]["message"]
    assert not mon.commands.has_pending()


def test_body_over_64_kib_gets_413(served):
    _, client = served
    r = client.post("/v1/commands", content=b"{" + b" " * (64 * 1024) + b"}")
    assert r.status_code == 413
    assert strict_json(r.content)["error"]["code"] == "too_large"


def test_unknown_route_404_and_wrong_method_405_as_json(served):
    _, client = served
    r = client.get("/v2/status")
    assert r.status_code == 404 and strict_json(r.content)["error"]["code"] == "not_found"
    r = client.post("/v1/status", json={})
    assert r.status_code == 405 and "GET" in strict_json(r.content)["error"]["message"]
    r = client.delete("/v1/commands")
    assert r.status_code == 405
    r = client.get("/v1/metrics", params={"after": "yesterday"})
    assert r.status_code == 400
    r = client.get("/v1/commands/" + uuid.uuid4().hex)
    assert r.status_code == 404


def test_same_command_id_twice_is_one_command(served):
    mon, client = served
    cid = str(uuid.uuid4())
    a = client.post("/v1/commands", json={"id": cid, "action": "save"})
    b = client.post("/v1/commands", json={"id": cid, "action": "save"})
    assert a.status_code == b.status_code == 202
    assert a.json() == b.json()
    assert len(mon.commands.take_pending()) == 1
    conflict = client.post("/v1/commands", json={"id": cid, "action": "stop"})
    assert conflict.status_code == 409


def test_close_returns_while_a_client_holds_an_idle_keep_alive_connection(tmp_path):
    mon = Monitor(run="ka", autosave_every=None)
    url = mon.serve(port=0, quiet=True)
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {mon.token}"})
    assert client.get("/v1/status").status_code == 200  # the connection stays open, idle
    server = mon._server
    done = threading.Event()
    threading.Thread(target=lambda: (mon.close(), done.set()), daemon=True).start()
    assert done.wait(10), "close() hung on an idle keep-alive connection"
    assert not server._thread.is_alive()
    with pytest.raises(httpx.TransportError):
        client.get("/v1/status")
    client.close()


def test_serving_again_in_the_same_process_replaces_the_server_and_keeps_the_token(tmp_path):
    port = free_port()
    first = Monitor(run="cell", autosave_every=None)
    first.serve(port=port, quiet=True)
    second = Monitor(run="cell", autosave_every=None)  # the notebook cell, run again
    try:
        url = second.serve(port=port, quiet=True)
        assert second.token == first.token
        r = httpx.get(url + "/v1/status", headers={"Authorization": f"Bearer {second.token}"})
        assert r.json()["session_id"] == second.session_id
    finally:
        second.close()
        first.close()


def test_serve_prints_the_connect_line(capsys):
    mon = Monitor(run="r", label="my [bold]run[/", autosave_every=None)
    try:
        url = mon.serve(port=0)
    finally:
        mon.close()
    line = capsys.readouterr().out.strip()
    assert line == f"colabtui connect {url} --token {mon.token} --label 'my [bold]run[/'"
    assert len(mon.token) >= 22  # at least 128 random bits, url-safe base64


def test_a_port_held_by_another_program_gives_a_clear_error():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    mon = Monitor(run="busy", autosave_every=None)
    try:
        with pytest.raises(PortInUse, match="in use by another program"):
            mon.serve(port=sock.getsockname()[1], quiet=True)
    finally:
        mon.close()
        sock.close()


def test_generated_tokens_never_start_with_a_dash():
    # secrets.token_urlsafe starts with "-" 1 time in 64: enough draws to see it if allowed.
    from colabtui_remote.transport.http.serve import new_token

    tokens = [new_token() for _ in range(3000)]
    assert not [t for t in tokens if t.startswith("-")]
    assert len(set(tokens)) == len(tokens) and min(map(len, tokens)) >= 32


def test_a_given_token_or_label_starting_with_a_dash_prints_a_line_that_parses():
    import argparse
    import shlex

    from colabtui_remote.transport.http.serve import connect_line

    line = connect_line("http://127.0.0.1:1", "-abc def", "-label")
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--token")
    parser.add_argument("--label")
    args = parser.parse_args(shlex.split(line)[2:])
    assert (args.token, args.label) == ("-abc def", "-label")


def test_the_bearer_scheme_is_case_insensitive(served):
    mon, client = served
    r = httpx.get(str(client.base_url).rstrip("/") + "/v1/status",
                  headers={"Authorization": f"bearer {mon.token}"})
    assert r.status_code == 200


@pytest.mark.parametrize("raw,code", [
    (b"HEAD /v1/status HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"OPTIONS /v1/status HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"garbage\r\n\r\n", 400),
    (b"GET /v1/status HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"POST /v1/commands HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
    (b"POST /v1/commands HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    (b"GET /v1/status HTTP/1.1\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
])
def test_what_http_server_rejects_itself_is_answered_in_json(served, raw, code):
    mon, _ = served
    with socket.create_connection(("127.0.0.1", mon._server.port), timeout=5) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 "), data[:200]  # a status line, garbage or not
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split()[1] == str(code).encode()
    if not raw.startswith(b"HEAD"):
        assert "message" in strict_json(body)["error"]
    assert mon.state == "running"


def test_a_command_id_that_could_not_be_fetched_back_is_refused(served):
    _, client = served
    for bad in ("a b", "a/b", "ü", ""):
        r = client.post("/v1/commands", json={"id": bad, "action": "save"})
        assert r.status_code == 400, bad
