#!/usr/bin/env python3
"""Prints how many CUDA-backend tests ran (not skipped) in a CTest run, from its JUnit report.

A CUDA test is one of test_gpu (label `cuda`, tests/CMakeLists.txt) or any test whose name says Cuda.
Usage: cuda_test_count.py ctest-junit.xml ON|OFF   (ON: the run used the CPU emulation of CUDA)
"""
import subprocess
import sys
import xml.etree.ElementTree as ET


def cuda_labelled():
    out = subprocess.run(["ctest", "-N", "-L", "^cuda$"], capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Test") and ":" in line:
            names.add(line.split(":", 1)[1].strip())
    return names


def main():
    report, emu = sys.argv[1], sys.argv[2].upper() == "ON"
    labelled = cuda_labelled()
    ran = skipped = failed = 0
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name", "")
        if name not in labelled and "cuda" not in name.lower():
            continue
        status = case.get("status", "")
        if case.find("skipped") is not None or status == "notrun" or status == "disabled":
            skipped += 1
        elif case.find("failure") is not None or status == "fail":
            failed += 1
        else:
            ran += 1
    where = "on the CPU emulation of CUDA" if emu else "on the GPU"
    print(f"deltagate: CUDA tests: {ran} passed, {failed} failed, {skipped} skipped ({where})")


if __name__ == "__main__":
    main()
