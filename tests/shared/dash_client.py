"""A minimal HTTP client of a Dash app, speaking the protocol of Dash's own renderer.

One :class:`DashSession` is one browser page load: it reads the page's ``_dash-config`` (for the
per-page ``end_id`` token that background-callback handles are bound to) and the callback list
(``/_dash-dependencies``), then calls callbacks by the id/property of one of their outputs.
Background callbacks are polled like the renderer does (``cacheKey``/``job``) until they answer.
Used by the shared-server tests and by ``bench/load.py``; standard library only.
"""
from __future__ import annotations

import base64
import http.client
import json
import re
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urlparse

CONFIG_SCRIPT = re.compile(r'<script id="_dash-config" type="application/json">(.*?)</script>', re.S)


class DashError(RuntimeError):
    """An HTTP error or an error answer of a callback."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict

    def json(self):
        return json.loads(self.body) if self.body else None


@dataclass
class BackgroundResult:
    """The final answer of a background callback and the progress values seen while polling."""

    response: dict | None  # {"component-id": {"prop": value}}; None when nothing was updated
    progress: list[dict] = field(default_factory=list)
    polls: int = 0
    side: dict = field(default_factory=dict)  # what the job set with ``dash.set_props`` (sideUpdate)


class DashSession:
    """One page load of the app at ``base_url`` (``http://127.0.0.1:PORT``).

    Parameters
    ----------
    base_url : the app's address.
    auth : (user, password) for HTTP Basic authentication, or None.
    timeout : seconds per HTTP request.
    """

    def __init__(self, base_url: str, auth: tuple[str, str] | None = None, timeout: float = 60.0):
        url = urlparse(base_url)
        self.host, self.port = url.hostname, url.port or 80
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json"}
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
        self._conn: http.client.HTTPConnection | None = None
        self.end_id: str | None = None
        self.callbacks: list[dict] = []

    # -- HTTP ----------------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> Response:
        """One request on a kept-alive connection (reopened once if the server closed it)."""
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request(method, path, body=body, headers={**self.headers, **(headers or {})})
                r = self._conn.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                return Response(r.status, data, dict(r.getheaders()))
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- page ----------------------------------------------------------------------------------------
    def open(self, path: str = "/") -> "DashSession":
        """Load the page (its config and end_id) and the callback list."""
        page = self.get(path)
        if page.status != 200:
            raise DashError(f"GET {path} answered {page.status}", page.status)
        match = CONFIG_SCRIPT.search(page.body.decode("utf-8", "replace"))
        if not match:
            raise DashError("the page has no _dash-config")
        self.end_id = json.loads(match.group(1)).get("end_id")
        deps = self.get("/_dash-dependencies")
        if deps.status != 200:
            raise DashError(f"GET /_dash-dependencies answered {deps.status}", deps.status)
        self.callbacks = deps.json()
        return self

    def callback(self, output: str) -> dict:
        """The plain (not background) callback whose outputs include ``output``
        (``"component-id.property"``); one that writes it without ``allow_duplicate`` first."""
        found = [c for c in self.callbacks if output in c["output"] and not c.get("background")]
        if not found:
            raise KeyError(f"no plain callback outputs {output}")
        plain = [c for c in found if f"{output}@" not in c["output"]]
        return (plain or found)[0]

    def background_callback(self, output: str) -> dict:
        """The background callback (a job) whose outputs include ``output``."""
        found = [c for c in self.callbacks if output in c["output"] and c.get("background")]
        if not found:
            raise KeyError(f"no background callback outputs {output}")
        return found[0]

    # -- callbacks -----------------------------------------------------------------------------------
    @staticmethod
    def _outputs(spec: dict) -> list[dict] | dict:
        text = spec["output"]
        multi = text.startswith("..")
        parts = text.strip(".").split("...") if multi else [text]
        outs = []
        for part in parts:
            cid, _, prop = part.rpartition(".")
            outs.append({"id": json.loads(cid) if cid.startswith("{") else cid, "property": prop})
        return outs if multi else outs[0]

    def payload(self, spec: dict, values: dict[str, object], changed: list[str]) -> dict:
        """Request body for ``spec``; ``values`` maps "id.prop" of inputs/states to their values."""

        def dep(d):
            key = f"{d['id']}.{d['property']}"
            if d["id"].startswith("{"):  # pattern-matching (ALL): no such components on the page
                return {"id": json.loads(d["id"]), "property": d["property"], "value": values.get(key, [])}
            return {"id": d["id"], "property": d["property"], "value": values.get(key)}

        return {"output": spec["output"], "outputs": self._outputs(spec),
                "inputs": [dep(d) for d in spec["inputs"]], "state": [dep(d) for d in spec["state"]],
                "changedPropIds": changed}

    def _post(self, body: dict, args: dict[str, str] | None = None) -> Response:
        query = {"endId": self.end_id} if self.end_id else {}
        query.update(args or {})
        path = "/_dash-update-component"
        if query:
            path += "?" + "&".join(f"{k}={quote(str(v), safe='')}" for k, v in query.items())
        return self.request("POST", path, json.dumps(body).encode())

    def call(self, output: str, values: dict[str, object], changed: list[str]) -> dict | None:
        """Call the (plain) callback with output ``output``; returns its ``response`` or None (204)."""
        r = self._post(self.payload(self.callback(output), values, changed))
        if r.status == 204:
            return None
        if r.status != 200:
            raise DashError(f"callback {output} answered {r.status}: {r.body[:300]!r}", r.status)
        return r.json().get("response")

    def call_background(self, output: str, values: dict[str, object], changed: list[str],
                        poll: float = 0.2, timeout: float = 300.0) -> BackgroundResult:
        """Start the background job writing ``output`` and poll it until it answers."""
        body, handles = self.start_background(output, values, changed)
        if handles is None:
            return BackgroundResult(None)
        return self.poll_background(body, handles, poll=poll, timeout=timeout)

    def start_background(self, output: str, values: dict[str, object], changed: list[str]
                         ) -> tuple[dict, dict | None]:
        """Start the job writing ``output``: (request body, handles), handles None when it did
        not start (204: nothing to do)."""
        body = self.payload(self.background_callback(output), values, changed)
        r = self._post(body)
        if r.status == 204:
            return body, None
        if r.status != 200 or "cacheKey" not in (r.json() or {}):
            raise DashError(f"job {output} did not start ({r.status}): {r.body[:300]!r}", r.status)
        return body, r.json()

    def poll_background(self, body: dict, handles: dict, poll: float = 0.2, timeout: float = 300.0,
                        on_poll=None, result: BackgroundResult | None = None) -> BackgroundResult:
        """Poll a started job (``handles`` from :meth:`start_background`) as the renderer does.

        ``on_poll(result)`` is called after each poll; when it returns True polling stops early
        (the job goes on; poll again later with the same ``result`` to collect the answer).
        """
        cleared = json.loads(json.dumps(body))
        for d in cleared["inputs"] + cleared["state"]:
            d["value"] = None  # the renderer sends no values while polling
        result = result or BackgroundResult(None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(poll)
            r = self._post(cleared, {"cacheKey": handles["cacheKey"], "job": handles["job"]})
            result.polls += 1
            if r.status == 204:
                return result
            if r.status != 200:
                raise DashError(f"polling answered {r.status}: {r.body[:500]!r}", r.status)
            data = r.json()
            if data.get("progress"):
                result.progress.append(data["progress"])
            for cid, props in (data.get("sideUpdate") or {}).items():
                result.side.setdefault(cid, {}).update(props)
            if "response" in data:
                result.response = data["response"]
                return result
            if on_poll is not None and on_poll(result):
                return result
        raise DashError(f"the job did not answer within {timeout} s")
