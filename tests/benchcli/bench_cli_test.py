"""CTest bench_cli: `deltagate bench` against a real loopback cluster (a `deltagate worker` on the built-in
tiny CPU model and a `deltagate front` with its OpenAI HTTP API), through both drivers (--grpc and --openai).
Checks what a script relying on the tool needs: every request accounted for, percentiles ordered, the
JSON and CSV parse and agree, PNGs written (PNG signature), the cache visible across agent turns, one-line
errors for an unreachable server / unknown model / over-long prompt, and failed requests counted (and the
exit status) when the worker is killed mid-run.

Runs under Debian's /usr/bin/python3 with the standard library only; the cluster helper is
tests/python/cluster.py. Usage: bench_cli_test.py --deltagate BIN --work DIR [unittest args]"""
import argparse
import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import cluster  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ARGS = None


def wait_http_ready(c, http, n, timeout_s=180):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        c.check_alive()
        try:
            with urllib.request.urlopen(f"http://{http}/v1/models", timeout=5) as r:
                m = json.load(r)["data"][0]
                if m["meta"]["workers_healthy"] == n:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"cluster not ready after {timeout_s} s:\n" + c.read_logs())


def read(path):
    with open(path) as f:
        return f.read()


def start_cluster(name):
    http = f"127.0.0.1:{cluster.free_port()}"
    c = cluster.Cluster(ARGS.deltagate, os.path.join(ARGS.work, name), workers=1, front_args=["--http-listen", http])
    c.__enter__()
    try:
        wait_http_ready(c, http, 1)
    except Exception:
        c.__exit__(None, None, None)
        raise
    return c, http


class BenchCli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster, cls.http = start_cluster("cluster")

    @classmethod
    def tearDownClass(cls):
        cls.cluster.__exit__(None, None, None)

    def target(self, driver):
        return ["--grpc", self.cluster.front] if driver == "grpc" else ["--openai", f"http://{self.http}/v1"]

    def bench(self, name, *args, rc=0):
        out = os.path.join(ARGS.work, name)
        p = subprocess.run([ARGS.deltagate, "bench", *args, "--out", out], capture_output=True, text=True, timeout=600)
        self.assertEqual(p.returncode, rc, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}\n"
                                           + self.cluster.read_logs())
        return out, p

    def check_results(self, out, requests, workload):
        with open(os.path.join(out, "results.json")) as f:
            res = json.load(f)
        with open(os.path.join(out, "results.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(res["workload"], workload)
        self.assertEqual(res["prompt_mode"].split(" (")[0], "token ids")
        cells = res["cells"]
        self.assertEqual(len(rows), len(cells))
        self.assertEqual(sum(c["requests"] for c in cells), requests)
        for c, row in zip(cells, rows):
            self.assertEqual(c["ok"] + c["failed"], c["requests"])
            self.assertEqual(sum(c["errors"].values()), c["failed"])
            self.assertEqual(int(row["requests"]), c["requests"])
            self.assertEqual(int(row["ok"]), c["ok"])
            self.assertEqual(int(row["context"]), c["context"])
            for key in ("ttft_ms", "itl_ms", "e2e_ms", "tpot_ms"):
                s = c[key]
                if s["n"] == 0:
                    continue
                self.assertTrue(s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"], (key, s))
                self.assertTrue(s["min"] <= s["mean"] <= s["max"], (key, s))
                self.assertTrue(math.isclose(float(row[key + "_p50"]), s["p50"], rel_tol=1e-4), (key, row, s))
            if c["ok"]:
                self.assertLessEqual(c["ttft_ms"]["p50"], c["e2e_ms"]["max"])
                self.assertGreater(c["output_tok_per_s"], 0)
        return res

    def check_pngs(self, out, names):
        for n in names:
            with open(os.path.join(out, n), "rb") as f:
                self.assertEqual(f.read(8), PNG_MAGIC, n)

    def sweep(self, driver):
        out, p = self.bench(f"sweep_{driver}", *self.target(driver), "--workload", "sweep", "--context", "16,48",
                            "--concurrency", "1,2", "--output", "4", "--requests", "2", "--seed", "5")
        res = self.check_results(out, 8, "sweep")
        for c in res["cells"]:
            self.assertEqual(c["failed"], 0)
            self.assertEqual(c["output_tokens"], 2 * 4)  # ignore_eos: exactly --output each
            self.assertEqual(c["prompt_tokens"], 2 * c["context"])
            self.assertEqual(c["server_prompt_tokens"], 2 * c["context"])  # the server counted what was sent
            self.assertEqual(c["ttft_ms"]["n"], 2)
            self.assertEqual(c["itl_ms"]["n"], 2 * 3)
        self.assertEqual(sorted((c["context"], c["concurrency"]) for c in res["cells"]),
                         [(16, 1), (16, 2), (48, 1), (48, 2)])
        self.assertIn("rows = context", p.stdout)
        self.assertIn("2 chats", p.stdout)
        self.assertIn("8 requests, 8 ok, 0 failed", p.stdout)
        self.check_pngs(out, ["tokps_vs_concurrency.png", "ttft_vs_concurrency.png", "tokps_vs_context.png",
                              "ttft_vs_context.png"])

    def test_sweep_grpc(self):
        self.sweep("grpc")

    def test_sweep_openai(self):
        self.sweep("openai")

    def agent(self, driver, cache):
        out, p = self.bench(f"agent_{driver}_{cache}", *self.target(driver), "--workload", "agent", "--sessions", "2",
                            "--turns", "3", "--system-tokens", "48", "--user-tokens", "8", "--tool-tokens", "8:16",
                            "--output", "4", "--cache", cache)
        runs = 2 if cache == "both" else 1
        res = self.check_results(out, 2 * 3 * runs, "agent")
        self.assertEqual(len(res["cells"]), 3 * runs)
        for c in res["cells"]:
            self.assertEqual(c["failed"], 0)
            self.assertIsNotNone(c["cached_fraction"])
            if c["cache"] == "off":
                self.assertEqual(c["cached_tokens"], 0, c)
            elif c["turn"] >= 2:
                # Turn N+1 extends turn N's prompt: the server resumes from its cached state.
                self.assertGreater(c["cached_fraction"], 0.3, c)
            if driver == "grpc":
                self.assertIsNotNone(c["cached_fraction_by_tier"])
        self.assertIn("Agent: time to first token by turn", p.stdout)
        self.check_pngs(out, ["ttft_per_turn.png"])

    def test_agent_grpc_cache_on_and_off(self):
        self.agent("grpc", "both")

    def test_agent_openai(self):
        self.agent("openai", "on")

    def fanout(self, driver):
        out, p = self.bench(f"fanout_{driver}", *self.target(driver), "--workload", "fanout", "--context", "48",
                            "--fanout", "2,3", "--output", "4", "--suffix-tokens", "4", "--requests", "1")
        res = self.check_results(out, 5, "fanout")
        for c in res["cells"]:
            self.assertEqual(c["failed"], 0)
            self.assertEqual(c["requests"], c["concurrency"])
            self.assertEqual(c["output_tokens"], 4 * c["concurrency"])
        self.assertIn("BatchGenerate" if driver == "grpc" else "parallel", res["fanout_method"])
        self.check_pngs(out, ["fanout_ttft.png", "fanout_tokps.png"])

    def test_fanout_grpc(self):
        self.fanout("grpc")

    def test_fanout_openai(self):
        self.fanout("openai")

    def test_replay_trace_and_poisson(self):
        trace = os.path.join(ARGS.work, "trace.jsonl")
        with open(trace, "w") as f:
            f.write('{"arrival_s": 0.0, "prompt_tokens": 16, "output_tokens": 3}\n'
                    '{"arrival_s": 0.2, "prompt_ids": [200, 201, 202, 203], "output_tokens": 2}\n'
                    '{"arrival_s": 0.3, "prompt_tokens": 24, "output_tokens": 2}\n')
        out, _ = self.bench("replay_trace", *self.target("grpc"), "--workload", "replay", "--trace", trace)
        res = self.check_results(out, 3, "replay")
        self.assertEqual(res["cells"][0]["output_tokens"], 7)
        out, _ = self.bench("replay_rate", *self.target("openai"), "--workload", "replay", "--rate", "4,8",
                            "--requests", "3", "--context", "16", "--output", "2", "--slo-ttft-ms", "600000")
        res = self.check_results(out, 6, "replay")
        self.assertEqual([c["rate"] for c in res["cells"]], [4, 8])
        self.assertEqual(res["slo"]["ttft_ms"], 600000)
        self.assertTrue(all(c["goodput"]["good"] == c["ok"] for c in res["cells"]))
        self.check_pngs(out, ["replay_ttft.png"])

    def test_compare_runs(self):
        dirs = []
        for label, driver in (("via-grpc", "grpc"), ("via-http", "openai")):
            out, _ = self.bench(f"compare_{driver}", *self.target(driver), "--workload", "agent", "--sessions", "1",
                                "--turns", "2", "--system-tokens", "16", "--user-tokens", "4", "--tool-tokens", "4",
                                "--output", "2", "--label", label)
            dirs.append(out)
        out = os.path.join(ARGS.work, "compare")
        p = subprocess.run([ARGS.deltagate, "bench", "--compare", ",".join(dirs), "--out", out], capture_output=True,
                           text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("via-grpc cache on", p.stdout)
        self.assertIn("via-http cache on", p.stdout)
        self.check_pngs(out, ["compare_ttft_per_turn.png"])
        bad = subprocess.run([ARGS.deltagate, "bench", "--compare", dirs[0], "--out", out], capture_output=True,
                             text=True, timeout=120)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("at least two", bad.stderr)

    def one_line_error(self, args, want):
        p = subprocess.run([ARGS.deltagate, "bench", *args, "--out", os.path.join(ARGS.work, "err")],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 1, p.stderr)
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertIn(want, lines[0])

    def test_clear_errors(self):
        dead = f"127.0.0.1:{cluster.free_port()}"
        self.one_line_error(["--grpc", dead, "--workload", "sweep"], "cannot reach a deltagate front")
        self.one_line_error(["--openai", f"http://{dead}/v1", "--workload", "sweep"],
                            "cannot reach an OpenAI-compatible server")
        for d in ("grpc", "openai"):
            self.one_line_error([*self.target(d), "--model", "no-such-model", "--workload", "sweep"],
                                "--model no-such-model")
            self.one_line_error([*self.target(d), "--workload", "sweep", "--context", "1000000"],
                                "over the server's")


class BenchServerKilled(unittest.TestCase):
    def test_failed_requests_are_counted(self):
        c, http = start_cluster("killed")
        try:
            out = os.path.join(ARGS.work, "killed_run")
            err_path = os.path.join(ARGS.work, "killed_run.stderr")
            with open(err_path, "w") as err:
                p = subprocess.Popen([ARGS.deltagate, "bench", "--openai", f"http://{http}/v1", "--workload", "sweep",
                                      "--context", "64", "--concurrency", "1", "--output", "16", "--requests", "12",
                                      "--out", out], stdout=subprocess.PIPE, stderr=err, text=True)
                end = time.monotonic() + 60
                while "requests in" not in read(err_path):  # the probe passed: requests are going out
                    self.assertLess(time.monotonic(), end, read(err_path))
                    self.assertIsNone(p.poll(), read(err_path))
                    time.sleep(0.05)
                worker = next(proc for name, proc in c.procs if name == "worker0")
                worker.send_signal(signal.SIGKILL)
                stdout, _ = p.communicate(timeout=300)
            stderr = read(err_path)
            self.assertEqual(p.returncode, 1, stderr)
            self.assertIn("failed (first:", stderr)
            with open(os.path.join(out, "results.json")) as f:
                cell = json.load(f)["cells"][0]
            self.assertEqual(cell["requests"], 12)
            self.assertEqual(cell["ok"] + cell["failed"], 12)
            self.assertGreaterEqual(cell["failed"], 1)
            self.assertEqual(sum(cell["errors"].values()), cell["failed"])
            self.assertIn(f"{cell['failed']} failed", stdout)

            # The worker is gone: every request fails, and --allow-errors keeps the exit status 0.
            out2 = os.path.join(ARGS.work, "killed_run2")
            q = subprocess.run([ARGS.deltagate, "bench", "--openai", f"http://{http}/v1", "--workload", "sweep",
                                "--context", "16", "--concurrency", "2", "--output", "2", "--requests", "4",
                                "--allow-errors", "--out", out2], capture_output=True, text=True, timeout=300)
            self.assertEqual(q.returncode, 0, q.stderr)
            with open(os.path.join(out2, "results.json")) as f:
                cell = json.load(f)["cells"][0]
            self.assertEqual(cell["failed"], 4, cell)
            self.assertEqual(cell["ok"], 0)
            self.assertTrue(all(k.startswith("http_") or k == "stream_error" for k in cell["errors"]), cell)
            self.assertIn("--allow-errors", q.stderr)
            with open(os.path.join(out2, "tokps_vs_concurrency.png"), "rb") as f:
                self.assertEqual(f.read(8), PNG_MAGIC)  # an empty frame that says so, not a missing file
        finally:
            for name, proc in c.procs:
                if name == "worker0" and proc.poll() is None:
                    proc.kill()
            c.__exit__(None, None, None)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--deltagate", required=True)
    ap.add_argument("--work", required=True)
    ARGS, rest = ap.parse_known_args()
    os.makedirs(ARGS.work, exist_ok=True)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
