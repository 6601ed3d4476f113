"""The gRPC API checked by a client stack nobody here wrote: Debian's python3-grpcio with stubs compiled from
our .proto files at test time, against a real cluster on loopback (front + 2 workers, built-in tiny model).
Covers grpc.health.v1 Check, Generate (streamed token ids), BatchGenerate (fan-out), and Abort from a second
call ending a long generation with CANCELLED.

Usage: /usr/bin/python3 grpc_client_test.py --deltagate BIN --proto-dir DIR --work DIR"""
import queue
import re
import threading
import time
import unittest
import urllib.request
import uuid

import cluster

ARGS = None


class GrpcClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cluster.compile_stubs(ARGS.proto_dir, ARGS.work + "/stubs")
        import grpc
        from deltagate.v1 import inference_pb2, inference_pb2_grpc
        import health_pb2, health_pb2_grpc
        cls.grpc, cls.pb, cls.health_pb = grpc, inference_pb2, health_pb2
        cls.cluster = cluster.Cluster(ARGS.deltagate, ARGS.work + "/cluster", workers=2).__enter__()
        try:
            cls.cluster.wait_ready(health_pb2_grpc.HealthStub)
        except BaseException:
            cls.cluster.__exit__(None, None, None)
            raise
        cls.channel = grpc.insecure_channel(cls.cluster.front)
        cls.stub = inference_pb2_grpc.InferenceStub(cls.channel)
        cls.health = health_pb2_grpc.HealthStub(cls.channel)
        cls.model = cls.stub.ListModels(inference_pb2.ListModelsRequest(), timeout=30).models[0]

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.cluster.__exit__(None, None, None)

    def collect(self, responses):
        """Deltas per continuation index, Finished per index, and the Final message (which must come last)."""
        ids, finished, final = {}, {}, None
        for r in responses:
            self.assertIsNone(final, "a message arrived after Final")
            kind = r.WhichOneof("event")
            if kind == "delta":
                ids.setdefault(r.delta.index, []).extend(r.delta.token_ids)
            elif kind == "finished":
                self.assertNotIn(r.finished.index, finished)
                finished[r.finished.index] = r.finished
            else:
                final = r.final
        self.assertIsNotNone(final, "the stream ended without Final")
        return ids, finished, final

    def test_health_check(self):
        H = self.health_pb.HealthCheckResponse
        for service in ("", "deltagate.v1.Inference"):
            got = self.health.Check(self.health_pb.HealthCheckRequest(service=service), timeout=30)
            self.assertEqual(got.status, H.SERVING, service)
        with self.assertRaises(self.grpc.RpcError) as e:
            self.health.Check(self.health_pb.HealthCheckRequest(service="no.such.Service"), timeout=30)
        self.assertEqual(e.exception.code(), self.grpc.StatusCode.NOT_FOUND)

    def test_generate_streams_token_ids(self):
        pb = self.pb
        req = pb.GenerateRequest(prompt=pb.Prompt(token_ids=pb.TokenIds(ids=[1, 2, 3, 4])),
                                 sampling=pb.SamplingParams(temperature=0),
                                 stop=pb.StopCriteria(max_tokens=6, ignore_eos=True))
        ids, finished, final = self.collect(self.stub.Generate(req, timeout=120))
        self.assertEqual(list(ids), [0])
        self.assertEqual(len(ids[0]), 6)
        self.assertTrue(all(0 <= t < self.model.vocab_size for t in ids[0]), ids[0])
        self.assertEqual(finished[0].finish_reason, pb.FINISH_REASON_LENGTH)
        self.assertEqual(finished[0].completion_tokens, 6)
        self.assertEqual((final.usage.prompt_tokens, final.usage.completion_tokens), (4, 6))
        self.assertIn(final.worker, self.cluster.worker_addrs)
        # Greedy is deterministic: the same request gives the same ids (whichever worker serves it).
        again, _, _ = self.collect(self.stub.Generate(req, timeout=120))
        self.assertEqual(again[0], ids[0])
        # Bad input is a status with a message, not a broken stream.
        with self.assertRaises(self.grpc.RpcError) as e:
            list(self.stub.Generate(pb.GenerateRequest(prompt=pb.Prompt(token_ids=pb.TokenIds(ids=[1])), n=100000),
                                    timeout=60))
        self.assertEqual(e.exception.code(), self.grpc.StatusCode.INVALID_ARGUMENT)
        self.assertRegex(e.exception.details(), "max-fanout")

    def test_batch_generate_fans_out(self):
        pb = self.pb
        conts = [pb.Continuation(token_ids=pb.TokenIds(ids=[7, 8]), stop=pb.StopCriteria(max_tokens=2, ignore_eos=True)),
                 pb.Continuation(token_ids=pb.TokenIds(ids=[9]), stop=pb.StopCriteria(max_tokens=3, ignore_eos=True)),
                 pb.Continuation(token_ids=pb.TokenIds(ids=[9]), stop=pb.StopCriteria(max_tokens=3, ignore_eos=True)),
                 pb.Continuation(stop=pb.StopCriteria(max_tokens=4, ignore_eos=True))]
        req = pb.BatchGenerateRequest(prefix=pb.Prompt(token_ids=pb.TokenIds(ids=[5, 6, 7, 8, 9, 10])),
                                      continuations=conts, default_sampling=pb.SamplingParams(temperature=0))
        ids, finished, final = self.collect(self.stub.BatchGenerate(req, timeout=120))
        self.assertEqual(sorted(ids), [0, 1, 2, 3])
        self.assertEqual([len(ids[i]) for i in range(4)], [2, 3, 3, 4])
        self.assertEqual(sorted(finished), [0, 1, 2, 3])
        for i in range(4):
            self.assertEqual(finished[i].finish_reason, pb.FINISH_REASON_LENGTH)
            self.assertEqual(finished[i].completion_tokens, len(ids[i]))
        self.assertEqual(final.usage.completion_tokens, 12)
        # Two greedy continuations with the same suffix from the same forked prefix agree.
        self.assertEqual(ids[1], ids[2])
        # The no-suffix greedy continuation is what Generate gives for the prefix alone.
        alone, _, _ = self.collect(self.stub.Generate(
            pb.GenerateRequest(prompt=req.prefix, sampling=pb.SamplingParams(temperature=0),
                               stop=pb.StopCriteria(max_tokens=4, ignore_eos=True)), timeout=120))
        self.assertEqual(alone[0], ids[3])

    def test_abort_from_a_second_call_cancels(self):
        pb = self.pb
        rid = "py-abort-" + uuid.uuid4().hex
        # No max_tokens: the most that fits (thousands of tokens), far longer than the Abort takes to arrive.
        call = self.stub.Generate(pb.GenerateRequest(request_id=rid,
                                                     prompt=pb.Prompt(token_ids=pb.TokenIds(ids=[1, 2, 3])),
                                                     stop=pb.StopCriteria(ignore_eos=True)), timeout=300)
        events = queue.Queue()

        def read():
            try:
                for r in call:
                    events.put(("msg", r))
                events.put(("end", None))
            except self.grpc.RpcError as e:
                events.put(("error", e))

        reader = threading.Thread(target=read)
        reader.start()
        kind, first = events.get(timeout=120)
        self.assertEqual((kind, first.WhichOneof("event")), ("msg", "delta"))
        # A second call on its own channel, as another client would send it.
        with self.grpc.insecure_channel(self.cluster.front) as other:
            from deltagate.v1 import inference_pb2_grpc
            got = inference_pb2_grpc.InferenceStub(other).Abort(pb.AbortRequest(request_ids=[rid]), timeout=30)
        self.assertGreaterEqual(got.found, 1)
        reader.join(timeout=120)
        self.assertFalse(reader.is_alive(), "the aborted stream did not end")
        outcome = None
        while not events.empty():
            kind, v = events.get()
            if kind != "msg":
                outcome = (kind, v)
            else:
                self.assertNotEqual(v.WhichOneof("event"), "final", "an aborted stream got a Final")
        self.assertEqual(outcome[0], "error", "the stream ended normally instead of CANCELLED")
        self.assertEqual(outcome[1].code(), self.grpc.StatusCode.CANCELLED)
        # Abort is idempotent: the id is no longer running anywhere.
        self.assertEqual(self.stub.Abort(pb.AbortRequest(request_ids=[rid]), timeout=30).found, 0)
        # The workers released it: their running gauge goes back to 0 (polled, bounded).
        for metrics in self.cluster.worker_metrics:
            running = None
            for _ in range(300):
                text = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10).read().decode()
                running = float(re.search(r"^deltagate_num_requests_running (\S+)$", text, re.M).group(1))
                if running == 0:
                    break
                time.sleep(0.1)
            self.assertEqual(running, 0, metrics)


if __name__ == "__main__":
    ARGS, argv = cluster.parse_args()
    unittest.main(argv=argv, verbosity=2)
