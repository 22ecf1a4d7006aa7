#!/usr/bin/python3
"""Installing clients/python with pip into a fresh venv (offline: setuptools,
wheel and websockets come from Debian's packages through the system site
packages), then a subscribe/emit round trip with the installed package
against the real server.

    /usr/bin/python3 test_install.py --server build/server/scopecast --web-root web [--sanitized]
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CLIENT_SRC = os.path.join(ROOT, "clients", "python")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from harness import T, ScopecastTestCase, main  # noqa: E402

SCRIPT = r'''
import asyncio, importlib.resources, json, sys, urllib.request
import scopecast

async def run(url: str, http: str) -> dict:
    async with scopecast.connect(url) as a, scopecast.connect(url) as b:
        sub = await a.subscribe("install:check", meta={"via": "venv"})
        await b.subscribe("install:check")
        seq = await b.emit("install:check", {"hello": "venv"}, paths=["hello"])
        items = [await sub.get(timeout=10)]  # b's join, then the event
        while not isinstance(items[-1], scopecast.Event):
            items.append(await sub.get(timeout=10))
        req = urllib.request.Request(http + "/api/emit", method="POST",
                                     data=json.dumps({"scope": "install:check", "data": "http"}).encode())
        hseq = json.loads(urllib.request.urlopen(req, timeout=10).read())["seq"]
        ev = await sub.get(timeout=10)
        return {"file": scopecast.__file__, "version": scopecast.__version__,
                "typed": importlib.resources.files("scopecast").joinpath("py.typed").is_file(),
                "seq": seq, "event": [items[-1].seq, items[-1].data, items[-1].origin == b.session],
                "hseq": hseq, "hevent": [ev.seq, ev.data], "users": len(sub.users)}

print(json.dumps(asyncio.run(run(sys.argv[1], sys.argv[2]))))
'''


def run(cmd, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited with {p.returncode}:\n{p.stdout}")
    return p.stdout


def artefacts(path):
    return sorted(n for n in os.listdir(path) if n in ("build", "dist") or n.endswith(".egg-info"))


class Install(ScopecastTestCase):
    SERVER_ARGS = ("--client-emit",)
    TEST_TIMEOUT = 240.0

    async def test_pip_install_into_venv_and_round_trip(self):
        before = artefacts(CLIENT_SRC)
        tmp = tempfile.mkdtemp(prefix="scopecast-pyinstall-")
        self.addCleanup(shutil.rmtree, tmp, True)
        # build from a copy, so that no build/ or *.egg-info lands in the source tree
        src = os.path.join(tmp, "src")
        shutil.copytree(CLIENT_SRC, src, ignore=shutil.ignore_patterns(
            "build", "dist", "*.egg-info", "__pycache__", "*.pyc"))
        venv = os.path.join(tmp, "venv")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PIP_INDEX_URL")}
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        env["PIP_NO_CACHE_DIR"] = "1"
        await asyncio.to_thread(run, ["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv], env=env)
        py = os.path.join(venv, "bin", "python")
        out = await asyncio.to_thread(run, [os.path.join(venv, "bin", "pip"), "install", "--no-build-isolation",
                                            "--no-index", src], env=env, cwd=tmp)
        self.assertIn("Successfully installed scopecast-0.1.0", out, out)
        meta = await asyncio.to_thread(run, [py, "-m", "pip", "show", "scopecast"], env=env, cwd=tmp)
        self.assertIn("Requires: websockets", meta, meta)

        script = os.path.join(tmp, "roundtrip.py")
        with open(script, "w") as f:
            f.write(SCRIPT)
        url = self.srv.ws_url()
        out = await asyncio.wait_for(asyncio.to_thread(
            run, [py, script, url, f"http://127.0.0.1:{self.srv.port}"], env=env, cwd=tmp), T(6))
        res = json.loads(out.strip().splitlines()[-1])
        site = os.path.join(venv, "lib")
        self.assertTrue(os.path.realpath(res["file"]).startswith(os.path.realpath(site)),
                        f"scopecast imported from {res['file']}, not from the venv")
        self.assertEqual(res["version"], "0.1.0")
        self.assertTrue(res["typed"], "py.typed is installed")
        self.assertEqual(res["event"], [res["seq"], {"hello": "venv"}, True])
        self.assertEqual(res["hevent"], [res["hseq"], "http"])
        self.assertEqual(res["hseq"], res["seq"] + 1)
        self.assertEqual(res["users"], 2)
        self.assertEqual(artefacts(CLIENT_SRC), before, "the install left build artefacts in clients/python")


if __name__ == "__main__":
    main()
