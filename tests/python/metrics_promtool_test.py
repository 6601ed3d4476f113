"""Every process kind's /metrics passes Prometheus' own linter (`promtool check metrics`, Debian package
`prometheus`): a real front and two real workers on loopback (one with the opt-in vLLM aliases, whose
`vllm:` names are promtool's only finding there), after traffic that fills the labelled series
(a generation, a fan-out, a rejected request, an abort).

Usage: /usr/bin/python3 metrics_promtool_test.py --deltagate BIN --proto-dir DIR --work DIR"""
import re
import shutil
import subprocess
import unittest
import urllib.request

import cluster

ARGS = None


class MetricsPromtool(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.promtool = shutil.which("promtool")
        if not cls.promtool:
            raise SystemExit("promtool not found (Debian package prometheus; deploy/install-deps.sh installs it)")
        cluster.compile_stubs(ARGS.proto_dir, ARGS.work + "/stubs")
        import grpc
        from deltagate.v1 import inference_pb2 as pb, inference_pb2_grpc
        import health_pb2_grpc
        # The second worker also exports vLLM's `vllm:` names (opt-in, as the Helm chart does).
        cls.cluster = cluster.Cluster(ARGS.deltagate, ARGS.work + "/cluster", workers=2,
                                      worker_args=[[], ["--vllm-metric-names=true"]]).__enter__()
        try:
            cls.cluster.wait_ready(health_pb2_grpc.HealthStub)
            with grpc.insecure_channel(cls.cluster.front) as ch:
                stub = inference_pb2_grpc.InferenceStub(ch)
                ids = pb.Prompt(token_ids=pb.TokenIds(ids=[1, 2, 3]))
                list(stub.Generate(pb.GenerateRequest(prompt=ids, n=2, stop=pb.StopCriteria(max_tokens=3)), timeout=120))
                list(stub.BatchGenerate(pb.BatchGenerateRequest(prefix=ids, continuations=[pb.Continuation()] * 2,
                                                                default_stop=pb.StopCriteria(max_tokens=2)), timeout=120))
                try:
                    list(stub.Generate(pb.GenerateRequest(prompt=ids, n=100000), timeout=60))
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
                stub.Abort(pb.AbortRequest(request_ids=["not-running"]), timeout=30)
        except BaseException:
            cls.cluster.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.cluster.__exit__(None, None, None)

    def scrape(self, addr, must_have):
        text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=30).read().decode()
        for name in must_have:  # the scrape is the real thing, not an empty page that lints clean
            self.assertRegex(text, rf"(?m)^{re.escape(name)}[{{ ]", f"{addr} lacks {name}")
        return text

    def promtool_check(self, text):
        r = subprocess.run([self.promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        return r.returncode, (r.stdout + r.stderr).strip()

    def check(self, addr, must_have):
        text = self.scrape(addr, must_have)
        rc, out = self.promtool_check(text)
        self.assertEqual((rc, out), (0, ""), f"promtool check metrics on {addr}")
        print(f"promtool check metrics: {addr}: {len(text.splitlines())} lines, clean", flush=True)

    def test_front(self):
        self.check(self.cluster.front_metrics, ["deltagate_front_requests_total"])

    def test_worker(self):
        self.check(self.cluster.worker_metrics[0], WORKER_SERIES)

    def test_worker_with_vllm_names(self):
        # promtool's only finding: the ':' of the three opt-in vLLM aliases; everything else is clean.
        vllm = ["vllm:kv_cache_usage_perc", "vllm:num_requests_running", "vllm:num_requests_waiting"]
        text = self.scrape(self.cluster.worker_metrics[1], WORKER_SERIES + vllm)
        rc, out = self.promtool_check(text)
        self.assertNotEqual(rc, 0)
        self.assertEqual(sorted(out.splitlines()), [f"{n} metric names should not contain ':'" for n in vllm])
        without = "\n".join(l for l in text.splitlines() if "vllm:" not in l) + "\n"
        self.assertEqual(self.promtool_check(without), (0, ""))


WORKER_SERIES = ["deltagate_requests_total", "deltagate_kv_blocks_capacity", "deltagate_state_slots_capacity",
                 "deltagate_generation_tokens_total", "deltagate_time_to_first_token_seconds_bucket"]


if __name__ == "__main__":
    ARGS, argv = cluster.parse_args()
    unittest.main(argv=argv, verbosity=2)
