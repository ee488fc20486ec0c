#!/usr/bin/env python3
"""An integration test against a local vigil mesh, using only Python's
standard library: what a national case or border system's own test suite
would do (docs/mesh.md, docs/admin-api.md).

    python3 examples/mesh_integration.py [PATH-TO-VIGIL]

It starts `vigil mesh up` with three nodes, issues a wanted notice over
HTTP on alpha, waits until bravo holds it, screens the person at bravo,
reads bravo's hit report on alpha, and tears the mesh down. Exits 0 when
every step held, 1 with the failing step otherwise.
"""

import datetime
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

VIGIL = sys.argv[1] if len(sys.argv) > 1 else (shutil.which("vigil") or "vigil")
UP_LIMIT = 150  # seconds for the mesh to report every link up
STEP_LIMIT = 60  # seconds for a notice or a hit report to travel


class Node:
    """One node of mesh.json: its admin URL and token."""

    def __init__(self, entry):
        self.id = entry["id"]
        self.url = entry["admin_url"]
        with open(entry["token_file"]) as f:
            self.token = f.read().strip()

    def api(self, method, path, body=None):
        """Calls the admin API; returns (status, parsed JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


def wait_for(what, limit, check):
    """Polls check() until it returns something true; fails after limit seconds."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def mesh_up(directory):
    """Starts `vigil mesh up --json`; returns the process and the parsed mesh."""
    proc = subprocess.Popen(
        [VIGIL, "mesh", "up", "--dir", directory, "--nodes", "3", "--json"],
        stdout=subprocess.PIPE,
    )
    try:
        # The JSON line comes once every link is up; read it with a deadline.
        ready, _, _ = select.select([proc.stdout], [], [], UP_LIMIT)
        line = proc.stdout.readline() if ready else b""
        if not line:
            raise AssertionError("vigil mesh up did not report the mesh up")
        mesh = json.loads(line)
        with open(os.path.join(directory, "mesh.json")) as f:
            assert json.load(f) == mesh, "mesh.json differs from what --json printed"
    except BaseException:
        # Whatever failed, no mesh is left running: killed, mesh up takes
        # its nodes down with it.
        proc.kill()
        proc.wait(timeout=60)
        raise
    return proc, mesh


def main():
    workdir = tempfile.mkdtemp(prefix="vigil-mesh-")
    directory = os.path.join(workdir, "mesh")
    try:
        proc, mesh = mesh_up(directory)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    try:
        nodes = {n["id"]: Node(n) for n in mesh["nodes"]}
        alpha, bravo = nodes["alpha"], nodes["bravo"]
        print("mesh up:", ", ".join(f"{n.id} at {n.url}" for n in nodes.values()))

        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=365)
        notice = {
            "kind": "wanted",
            "purpose": "locate-arrest",
            "legal_basis": "Warrant 2026/117, District Court Rotterdam",
            "handling": "H1",
            "grading": {"source": "B", "information": "2"},
            "subject_category": "suspect",
            "nature": "fact",
            "audience": "all",
            "expires_at": expires.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "summary": "Armed robbery of a jewellery store",
            "case_ref": "RTM-2026-0042",
            "contact": "+31 70 000 0000 (24/7 desk)",
            "subject": {
                "family_name": "Müller",
                "given_names": "Hans Peter",
                "date_of_birth": "1980-04-01",
            },
        }
        status, body = alpha.api("POST", "/v1/notices", notice)
        assert status == 201, f"issue on alpha: {status} {body}"
        notice_id = body["id"]
        print("alpha issued", notice_id)

        held = wait_for(
            "bravo to hold the notice",
            STEP_LIMIT,
            lambda: (lambda r: r[0] == 200 and r[1])(
                bravo.api("GET", f"/v1/notices/{notice_id}?reason=integration%20test")
            ),
        )
        assert held["origin"] == "alpha" and held["signature_verified"] is True, held
        print("bravo holds it, signature verified")

        # A border check at bravo, the name typed as a passport reads it.
        status, hits = bravo.api(
            "POST",
            "/v1/screen",
            {
                "reason": "integration test: border check",
                "place": "Schiphol T2",
                "names": [["MUELLER, HANS PETER", "1980-04-01"]],
            },
        )
        assert status == 200, f"screen on bravo: {status} {hits}"
        assert any(h["notice_id"] == notice_id for h in hits), hits
        print("bravo's screening hit:", hits[0]["match"])

        report = wait_for(
            "alpha to receive bravo's hit report",
            STEP_LIMIT,
            lambda: next(
                (
                    h
                    for h in alpha.api("GET", "/v1/hits?reason=integration%20test")[1]
                    if h["notice_id"] == notice_id
                ),
                None,
            ),
        )
        assert report["reporter"] == "bravo", report
        assert report["signature_verified"] is True, report
        print("alpha received the hit report from", report["reporter"], "at", report["place"])
    finally:
        down = subprocess.run([VIGIL, "mesh", "down", "--dir", directory], timeout=60)
        code = proc.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)
    assert down.returncode == 0, "vigil mesh down failed"
    assert code == 0, f"vigil mesh up exited {code}"
    print("mesh down: every node stopped")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAILED:", e, file=sys.stderr)
        sys.exit(1)
