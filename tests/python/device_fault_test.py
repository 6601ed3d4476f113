#!/usr/bin/env python3
"""A CUDA device fault inside a real worker process: the request fails with a clear status, the worker
stays up, turns its gRPC health NOT_SERVING and refuses new requests, and the front stops counting it
healthy. The fault is injected by the CPU emulation of CUDA (DG_CUDA_EMU_FAULT_KERNEL, engine/cuda/emu):
the first attention kernel (the prefill K/V store) reports an illegal address, sticky as on a GPU. Needs a deltagate built with
-DDELTAGATE_CUDA_EMU=ON (CTest registers it only there; tests/cmake/python_grpc.cmake)."""
import os
import time
import unittest

import cluster


class DeviceFault(unittest.TestCase):
    def test_fault_fails_the_request_and_the_health_check(self):
        cluster.compile_stubs(ARGS.proto_dir, ARGS.work + "/stubs")
        import grpc
        import health_pb2
        import health_pb2_grpc
        from deltagate.v1 import inference_pb2 as pb, inference_pb2_grpc
        os.environ["DG_CUDA_EMU_FAULT_KERNEL"] = "kv_write_kernel"
        # The emulated device is 1 GiB: a short context keeps the worker's plan inside it.
        worker = ["--backend", "cuda", "--max-seq-len", "1024", "--token-budget", "64"]
        with cluster.Cluster(ARGS.deltagate, ARGS.work + "/cluster", workers=1, worker_args=[worker]) as c:
            c.wait_ready(health_pb2_grpc.HealthStub)
            front = grpc.insecure_channel(c.front)
            stub = inference_pb2_grpc.InferenceStub(front)
            req = pb.GenerateRequest(prompt=pb.Prompt(token_ids=pb.TokenIds(ids=[1, 2, 3, 4])),
                                     sampling=pb.SamplingParams(temperature=0),
                                     stop=pb.StopCriteria(max_tokens=4, ignore_eos=True))
            with self.assertRaises(grpc.RpcError) as e:
                list(stub.Generate(req, timeout=120))
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE, e.exception.details())
            # The worker process is alive and says it no longer serves.
            wh = health_pb2_grpc.HealthStub(grpc.insecure_channel(c.worker_addrs[0]))
            status = None
            for _ in range(100):
                status = wh.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
                if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    break
                time.sleep(0.1)
            self.assertEqual(status, health_pb2.HealthCheckResponse.NOT_SERVING)
            c.check_alive()
            with open(os.path.join(ARGS.work, "cluster", "worker0.log")) as f:
                log = f.read()
            self.assertIn("injected fault", log)
            self.assertIn("device is lost", log)
            # A second request is refused at once, not run on the broken device.
            with self.assertRaises(grpc.RpcError) as e2:
                list(stub.Generate(req, timeout=60))
            self.assertEqual(e2.exception.code(), grpc.StatusCode.UNAVAILABLE, e2.exception.details())
            front.close()


if __name__ == "__main__":
    ARGS, argv = cluster.parse_args()
    unittest.main(argv=argv, verbosity=2)
