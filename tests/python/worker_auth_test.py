"""Workers accept only fronts (docs/reliability.md "Worker authentication"), checked with a client stack
nobody here wrote: Debian's python3-grpcio with stubs compiled from proto/deltagate/worker/v1 at test time,
against real `deltagate worker` processes started with --auth-token-file behind a real `deltagate front`
started with --worker-token-file. A direct call without the token, or with a wrong one, gets
UNAUTHENTICATED; the same call with `authorization: Bearer <token>` is served; grpc.health.v1 and the
/metrics HTTP endpoint stay open (kubelet probes and Prometheus send no token); through the front
everything works. A worker started without a token logs a warning naming the flag.

Usage: /usr/bin/python3 worker_auth_test.py --deltagate BIN --proto-dir DIR --work DIR"""
import os
import subprocess
import time
import unittest
import urllib.request

import cluster

ARGS = None
TOKEN = "py-grpcio-worker-token-7f3a"


class WorkerAuth(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cluster.compile_stubs(ARGS.proto_dir, ARGS.work + "/stubs")
        import grpc
        from deltagate.v1 import inference_pb2, inference_pb2_grpc
        from deltagate.worker.v1 import worker_pb2, worker_pb2_grpc
        import health_pb2, health_pb2_grpc
        cls.grpc, cls.pb, cls.wpb, cls.health_pb = grpc, inference_pb2, worker_pb2, health_pb2
        cls.worker_stub_cls, cls.health_stub_cls = worker_pb2_grpc.WorkerStub, health_pb2_grpc.HealthStub
        cls.cluster = cluster.Cluster(ARGS.deltagate, ARGS.work + "/cluster", workers=2,
                                      worker_token=TOKEN).__enter__()
        try:
            cls.cluster.wait_ready(health_pb2_grpc.HealthStub)
        except BaseException:
            cls.cluster.__exit__(None, None, None)
            raise
        cls.front_channel = grpc.insecure_channel(cls.cluster.front)
        cls.front = inference_pb2_grpc.InferenceStub(cls.front_channel)
        cls.worker_channel = grpc.insecure_channel(cls.cluster.worker_addrs[0])
        cls.worker = worker_pb2_grpc.WorkerStub(cls.worker_channel)

    @classmethod
    def tearDownClass(cls):
        cls.front_channel.close()
        cls.worker_channel.close()
        cls.cluster.__exit__(None, None, None)

    def assert_unauthenticated(self, call, words):
        with self.assertRaises(self.grpc.RpcError) as e:
            call()
        self.assertEqual(e.exception.code(), self.grpc.StatusCode.UNAUTHENTICATED, e.exception.details())
        self.assertIn(words, e.exception.details())

    def test_direct_calls_need_the_token(self):
        wpb = self.wpb
        req = wpb.GenerateRequest(prompt_token_ids=[1, 2, 3], max_tokens=4, ignore_eos=True)
        wrong = (("authorization", "Bearer " + TOKEN[:-1] + "x"),)
        for name, call in [
            ("GetInfo", lambda md: self.worker.GetInfo(wpb.GetInfoRequest(), timeout=30, metadata=md)),
            ("Generate", lambda md: list(self.worker.Generate(req, timeout=60, metadata=md))),
            ("WatchLoad", lambda md: next(iter(self.worker.WatchLoad(wpb.WatchLoadRequest(), timeout=30, metadata=md)))),
            ("Abort", lambda md: self.worker.Abort(wpb.AbortRequest(request_ids=["x"]), timeout=30, metadata=md)),
        ]:
            with self.subTest(rpc=name):
                self.assert_unauthenticated(lambda: call(None), "accepts only fronts")
                self.assert_unauthenticated(lambda: call(wrong), "does not match")
                self.assert_unauthenticated(lambda: call((("authorization", "Basic " + TOKEN),)), "Bearer <token>")
                # With the token it is served (the call a front makes).
                got = call((("authorization", "Bearer " + TOKEN),))
                self.assertIsNotNone(got)
        events = list(self.worker.Generate(req, timeout=60, metadata=(("authorization", "Bearer " + TOKEN),)))
        self.assertEqual(sum(1 for e in events if e.token_id >= 0), 4)
        self.assertTrue(events[-1].done)

    def test_health_and_metrics_stay_open(self):
        health = self.health_stub_cls(self.worker_channel)
        for service in ("", "deltagate.worker.v1.Worker"):
            got = health.Check(self.health_pb.HealthCheckRequest(service=service), timeout=30)
            self.assertEqual(got.status, self.health_pb.HealthCheckResponse.SERVING, service)
        text = urllib.request.urlopen(f"http://{self.cluster.worker_metrics[0]}/metrics", timeout=10).read().decode()
        self.assertIn("deltagate_num_requests_running", text)

    def test_through_the_front(self):
        pb = self.pb
        req = pb.GenerateRequest(prompt=pb.Prompt(token_ids=pb.TokenIds(ids=[1, 2, 3, 4])),
                                 sampling=pb.SamplingParams(temperature=0),
                                 stop=pb.StopCriteria(max_tokens=5, ignore_eos=True))
        ids = []
        for r in self.front.Generate(req, timeout=120):
            if r.WhichOneof("event") == "delta":
                ids.extend(r.delta.token_ids)
        self.assertEqual(len(ids), 5)
        # The worker logs carry no warning: they have a token.
        for i in range(2):
            with open(os.path.join(ARGS.work, "cluster", f"worker{i}.log")) as f:
                self.assertNotIn("WARNING", f.read())

    def test_worker_without_token_warns(self):
        log_path = os.path.join(ARGS.work, "open-worker.log")
        env = {k: v for k, v in os.environ.items() if k != "DELTAGATE_WORKER_TOKEN_FILE"}
        with open(log_path, "w") as log:
            p = subprocess.Popen([ARGS.deltagate, "worker", "--listen", f"127.0.0.1:{cluster.free_port()}"],
                                 stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            text = ""
            for _ in range(1200):  # hang guard: the warning follows the "gRPC on" line
                with open(log_path) as f:
                    text = f.read()
                if "WARNING" in text or p.poll() is not None:
                    break
                time.sleep(0.1)
            self.assertIn("WARNING: no --auth-token-file", text)
        finally:
            p.terminate()
            p.wait(timeout=30)


if __name__ == "__main__":
    ARGS, argv = cluster.parse_args()
    unittest.main(argv=argv, verbosity=2)
