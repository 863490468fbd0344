"""runner.api.tls: aiohttp's CA read runs on a thread during its import and leaves its
verifying TLS context exactly as a plain import would; the context that verifies nothing is
not read into; a read's error reaches the caller."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from runner.api import glm, tls
from runner.api.glm import GlmClient
from runner.config import Secret

PROBE = """
import json, ssl, threading, time
t0 = time.perf_counter()
import runner.api.glm
from runner.api import tls
import aiohttp.connector as c
swapped = "set_default_verify_paths" in ssl.SSLContext.__dict__
reads = len(tls._LOADS)
tls.wait_for_ca()
plain = ssl.create_default_context()
unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
unverified.set_default_verify_paths()
print(json.dumps({
    "swapped_after_import": swapped,
    "reads": reads,
    "alive": [t.name for t in threading.enumerate() if t.name == "glmrun-ca-load"],
    "verified": c._SSL_CONTEXT_VERIFIED.cert_store_stats(),
    "plain": plain.cert_store_stats(),
    "unverified": c._SSL_CONTEXT_UNVERIFIED.cert_store_stats(),
    "plain_unverified": unverified.cert_store_stats(),
    "verify_mode": int(c._SSL_CONTEXT_VERIFIED.verify_mode),
    "unverified_mode": int(c._SSL_CONTEXT_UNVERIFIED.verify_mode),
    "unverified_hostname": c._SSL_CONTEXT_UNVERIFIED.check_hostname,
}))
"""


def test_a_fresh_import_reads_the_ca_bundle_on_threads_into_aiohttps_own_contexts() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(out.stdout)
    assert seen["reads"] == 1  # the verifying context, read on a thread
    assert not seen["swapped_after_import"]  # the C method is back once aiohttp is imported
    assert seen["alive"] == []  # wait_for_ca returned after the read
    assert seen["verified"] == seen["plain"]  # the same CA store a plain import leaves
    assert seen["plain"]["x509_ca"] > 0  # (the machine has a CA bundle: the check means something)
    assert seen["verify_mode"] == 2  # ssl.CERT_REQUIRED, untouched
    # ssl=False's context: verifies no peer, as aiohttp made it; no bundle read into it
    assert seen["unverified"]["x509_ca"] == 0 < seen["plain_unverified"]["x509_ca"]
    assert (seen["unverified_mode"], seen["unverified_hostname"]) == (0, False)


def test_a_read_that_fails_is_raised_where_the_client_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    go = threading.Event()

    def broken(ctx: object) -> None:
        go.wait()
        raise OSError("no CA bundle")

    read = tls._Load(broken, None)  # type: ignore[arg-type]
    read.start()
    monkeypatch.setattr(tls, "_LOADS", [read])
    go.set()  # still running when the wait begins: the wait must join it
    with pytest.raises(OSError, match="no CA bundle"):
        tls.wait_for_ca()
    with pytest.raises(OSError, match="no CA bundle"):  # every time, not only the first
        tls.wait_for_ca()


async def test_the_client_waits_for_the_reads_before_it_opens_its_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waited: list[bool] = []
    monkeypatch.setattr(glm, "wait_for_ca", lambda: waited.append(True))
    async with GlmClient("https://proxy.example.test/api/paas/v4/", Secret("sk-t"), timeout_s=5):
        assert waited == [True]
