"""Latency and concurrency of the web app (BENCHMARKS.md, "Speed": web app), against a server started with `procseq app`.

    procseq app --port 7870 &                       # in one shell (the app's virtualenv: make app)
    python experiments/app_load.py http://127.0.0.1:7870/ SERVER_PID [CLIENTS]

Prints (1) five sequential generations through the page's API (gradio_client, same request as the
CLI's default generate: 9 frames, seed 0, the model's steps): client wall time and the pipeline time
the page reports; (2) CLIENTS (default 8) clients submitting at once: answered, refused, lost, each
one's latency, and the server's resident memory before and after (VmRSS, VmHWM from /proc).
"""

from __future__ import annotations

import re
import statistics
import sys
import threading
import time

from gradio_client import Client

PROMPT = "a painting of a red star on the left under a sunset sky above sand, with a sun"


def memory_mb(pid: int) -> dict[str, float]:
    """Resident and peak resident memory of `pid`, in MB."""
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


def one(client: Client, seed: int) -> tuple[float, float]:
    """(client seconds, pipeline seconds reported by the page) of one generation."""
    t0 = time.perf_counter()
    out = client.predict(PROMPT, "painting", 9, seed, 20, api_name="/generate")
    return time.perf_counter() - t0, float(re.search(r"in ([0-9.]+) s", out[4]).group(1))


def main(url: str, pid: int, clients: int = 8) -> None:
    client = Client(url, verbose=False)
    one(client, 0)  # warm-up
    runs = [one(client, 0) for _ in range(5)]
    print(f"sequential: client median {statistics.median(r[0] for r in runs):.2f} s, "
          f"pipeline median {statistics.median(r[1] for r in runs):.2f} s (5 runs after 1 warm-up)")
    before = memory_mb(pid)
    results: list[tuple[str, float]] = []

    def worker(i: int) -> None:
        t0 = time.perf_counter()
        try:
            Client(url, verbose=False).predict(PROMPT, "painting", 9, i, 20, api_name="/generate")
            results.append(("answered", time.perf_counter() - t0))
        except Exception as err:  # a refusal (queue full) is a readable error, not a loss
            results.append((f"refused: {err}"[:80], time.perf_counter() - t0))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = memory_mb(pid)
    answered = sorted(s for r, s in results if r == "answered")
    print(f"{clients} concurrent clients: {len(answered)} answered, {len(results) - len(answered)} refused, "
          f"{clients - len(results)} lost; wall {wall:.1f} s; latency min {answered[0]:.2f} / median "
          f"{statistics.median(answered):.2f} / max {answered[-1]:.2f} s")
    for r, s in results:
        if r != "answered":
            print("  ", r, f"{s:.2f} s")
    print(f"server memory: RSS {before['VmRSS']:.0f} -> {after['VmRSS']:.0f} MB, peak {after['VmHWM']:.0f} MB")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *(int(a) for a in sys.argv[3:4]))
