#!/usr/bin/env python3
"""Checks helm/deltagate against itself and against the real `deltagate` binary, without a cluster.

Helm is not a Debian package, so the checks that always run read the templates as text:
  * Chart.yaml fields; values.yaml parses and documents every key in a comment; the default values are the
    kind-friendly CPU deployment; values-gpu.yaml matches the commented GPU example and only sets known keys.
  * every .Values.x.y path in the templates exists in values.yaml, and every value is used somewhere;
    template actions are balanced; every include names a defined helper, and every helper is used.
  * every --flag the chart passes to `deltagate <command>` (container args, command lines, extraArgs, and
    flags named in comments) is accepted by that command's flag parser: `deltagate CMD --help --FLAG=x`
    exits 0 for a known value flag and 2 with "unknown flag --FLAG" otherwise.
  * ports: probes, containerPorts, Service targetPorts and the Prometheus annotation use the values that
    --listen / --metrics-listen use; the fronts' --workers-dns names the headless worker Service
    (clusterIP None, publishNotReadyAddresses false) at the worker's gRPC port; the StatefulSet's
    serviceName is that Service; gRPC probe ports are numbers and their service names are served.
  * env names the chart sets (OTEL_*, DELTAGATE_*, XDG_*) are strings the binary reads.
  * workers accept only fronts: the worker gets --auth-token-file and the front --worker-token-file, both
    the file the token Secret's volume puts at its mount; the chart's Secret holds that key; a
    NetworkPolicy selects the worker pods and admits the front pods to the gRPC port and
    networkPolicy.metricsFrom to the metrics port only.
With --helm (a helm 3 binary), it also lints the chart and renders it with several value sets, then checks
the rendered objects: each container's whole argument list passes `deltagate CMD --help ARGS...`, ports,
selectors, DNS name, GPU limits, truncated names, and the rendered NetworkPolicy and token Secret (with
the token on and off, the chart's Secret and an existing one).

Usage: chart_check.py --chart helm/deltagate --deltagate build/services/deltagate [--helm helm]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    sys.exit("chart_check: python3-yaml is missing (deploy/install-deps.sh installs it)")

ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
VALUES_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)(=)?")


class Checker:
    def __init__(self, chart, binary, helm):
        self.chart, self.binary, self.helm = chart, binary, helm
        self.errors = []
        self.comment_flags = []  # (where, flag) named in comments, checked against every command used
        self.flag_cache = {}
        with open(binary, "rb") as f:
            self.binary_bytes = f.read()

    def err(self, where, msg):
        self.errors.append(f"{where}: {msg}")

    # ---------------------------------------------------------------- the binary
    def command_ok(self, cmd):
        key = (cmd, None, None)
        if key not in self.flag_cache:
            r = subprocess.run([self.binary, cmd, "--help"], capture_output=True, text=True, timeout=30)
            self.flag_cache[key] = r.returncode == 0
        return self.flag_cache[key]

    def flag_problem(self, cmd, flag, with_value):
        """None when `deltagate CMD` accepts --FLAG (with a value, or as a switch), else why not."""
        key = (cmd, flag, with_value)
        if key not in self.flag_cache:
            if not self.command_ok(cmd):
                self.flag_cache[key] = f"`deltagate {cmd}` is not a command"
            else:
                arg = f"--{flag}=x" if with_value else f"--{flag}"
                # --help first: the parser reads every argument, then prints usage and exits 0; nothing runs.
                r = subprocess.run([self.binary, cmd, "--help", arg], capture_output=True, text=True, timeout=30)
                msg = r.stderr.splitlines()[0] if r.stderr else ""
                self.flag_cache[key] = None if r.returncode == 0 else (msg or f"exit {r.returncode}")
        return self.flag_cache[key]

    def check_flag(self, where, cmd, flag, with_value):
        p = self.flag_problem(cmd, flag, with_value)
        if p:
            self.err(where, f"`deltagate {cmd} --{flag}{'=...' if with_value else ''}` is rejected: {p}")

    def check_args(self, where, args):
        """A whole rendered argument list, exactly as the container would pass it."""
        cmd, rest = args[0], [a.replace("$(POD_NAME)", "pod-0") for a in args[1:]]
        if not self.command_ok(cmd):
            self.err(where, f"`deltagate {cmd}` is not a command")
            return
        r = subprocess.run([self.binary, cmd, "--help"] + rest, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            self.err(where, f"`deltagate {' '.join(args)}` is rejected: {r.stderr.splitlines()[0] if r.stderr else r.returncode}")

    def binary_has(self, s):
        return s.encode() in self.binary_bytes

    # ---------------------------------------------------------------- files
    def read(self, rel):
        with open(os.path.join(self.chart, rel)) as f:
            return f.read()

    def load_templates(self):
        self.templates = {}
        tdir = os.path.join(self.chart, "templates")
        for root, _, files in os.walk(tdir):
            for name in sorted(files):
                path = os.path.join(root, name)
                with open(path) as f:
                    self.templates[os.path.relpath(path, self.chart)] = f.read()
        if not any(n.endswith(".yaml") for n in self.templates):
            self.err("templates", "no templates found")

    def run(self):
        for rel in ["Chart.yaml", "values.yaml", ".helmignore", "templates/_helpers.tpl", "templates/NOTES.txt"]:
            if not os.path.isfile(os.path.join(self.chart, rel)):
                self.err(rel, "missing")
        if self.errors:
            return
        self.check_chart_yaml()
        self.values = yaml.safe_load(self.read("values.yaml"))
        self.load_templates()
        self.check_values_docs()
        self.check_defaults_and_gpu_example()
        self.check_actions_and_helpers()
        self.check_values_refs()
        self.check_flags()
        self.check_workloads()
        self.check_env()
        if self.helm:
            self.check_rendered()

    # ---------------------------------------------------------------- Chart.yaml, values.yaml
    def check_chart_yaml(self):
        c = yaml.safe_load(self.read("Chart.yaml"))
        if c.get("apiVersion") != "v2":
            self.err("Chart.yaml", "apiVersion must be v2")
        if c.get("name") != os.path.basename(os.path.normpath(self.chart)):
            self.err("Chart.yaml", f"name {c.get('name')!r} differs from the chart's directory")
        if not re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", str(c.get("version", ""))):
            self.err("Chart.yaml", f"version {c.get('version')!r} is not SemVer")
        for k in ["appVersion", "description"]:
            if not c.get(k):
                self.err("Chart.yaml", f"{k} is missing")
        if c.get("type", "application") != "application":
            self.err("Chart.yaml", "type must be application")

    def values_doc(self, text):
        """{dotted key path: comment text} for every key line of a values file, and the undocumented ones."""
        docs, undocumented, stack, pending = {}, [], [], []
        for n, line in enumerate(text.splitlines(), 1):
            s = line.strip()
            if not s:
                pending = []
                continue
            if s.startswith("#"):
                pending.append(s.lstrip("# "))
                continue
            m = re.match(r"^( *)([A-Za-z0-9_.\-/]+):(.*)$", line)
            if not m or s.startswith("- "):
                pending = []
                continue
            indent, key, rest = len(m.group(1)), m.group(2), m.group(3)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, key))
            path = ".".join(k for _, k in stack)
            inline = rest.split(" #", 1)[1].strip() if " #" in rest else ""
            doc = " ".join(pending + [inline]).strip()
            docs[path] = doc
            if not doc:
                undocumented.append((n, path))
            pending = []
        return docs, undocumented

    def check_values_docs(self):
        if not isinstance(self.values, dict):
            self.err("values.yaml", "is not a mapping")
            return
        self.value_docs, undocumented = self.values_doc(self.read("values.yaml"))
        for n, path in undocumented:
            self.err(f"values.yaml:{n}", f"{path} has no comment saying what it is")

    def check_defaults_and_gpu_example(self):
        v = self.values
        want = {"model.source": "builtin", "worker.backend": "cpu", "worker.gpus": 0}
        for path, value in want.items():
            got = lookup(v, path)
            if got != value:
                self.err("values.yaml", f"default {path} must be {value!r} (a CPU install on kind), got {got!r}")
        # The commented GPU example at the end of values.yaml and values-gpu.yaml must agree.
        text = self.read("values.yaml")
        m = re.search(r"^# GPU example[^\n]*\n(?:#[^\n]*\n)*?#\n((?:#.*\n?)+)", text, re.M)
        if not m:
            self.err("values.yaml", "the commented GPU example is missing")
            return
        example = yaml.safe_load("\n".join(l[2:] if l.startswith("# ") else "" for l in m.group(1).splitlines()))
        if not os.path.isfile(os.path.join(self.chart, "values-gpu.yaml")):
            self.err("values-gpu.yaml", "missing")
            return
        gpu = yaml.safe_load(self.read("values-gpu.yaml"))
        if example != gpu:
            self.err("values.yaml", "the commented GPU example differs from values-gpu.yaml")
        if lookup(gpu, "worker.backend") != "cuda" or not lookup(gpu, "worker.gpus") or \
                lookup(gpu, "model.source") in (None, "builtin") or not lookup(gpu, "model.path"):
            self.err("values-gpu.yaml", "must set worker.backend cuda, worker.gpus, model.source and model.path")
        self.gpu_values = gpu

    # ---------------------------------------------------------------- template syntax, helpers, values paths
    def actions(self, text):
        for m in ACTION.finditer(text):
            body = m.group(1).strip()
            body = body[1:] if body.startswith("-") else body
            body = body[:-1] if body.endswith("-") else body
            yield text.count("\n", 0, m.start()) + 1, body.strip()

    def check_actions_and_helpers(self):
        defined, used = {}, set()
        for name, text in self.templates.items():
            if "{{" in ACTION.sub("", text) or any("{{" in m.group(1) for m in ACTION.finditer(text)):
                self.err(name, "a {{ is never closed by }}")
            depth = []
            for line, a in self.actions(text):
                if a.startswith("/*"):
                    continue
                word = a.split()[0] if a.split() else ""
                if word in ("if", "with", "range", "define", "block"):
                    depth.append((line, word))
                elif word == "end":
                    if not depth:
                        self.err(f"{name}:{line}", "{{ end }} without an open block")
                    else:
                        depth.pop()
                elif word == "else" and not depth:
                    self.err(f"{name}:{line}", "{{ else }} outside a block")
                for d in re.findall(r'\bdefine\s+"([^"]+)"', a):
                    defined[d] = name
                used.update(re.findall(r'\b(?:include|template)\s+"([^"]+)"', a))
            for line, word in depth:
                self.err(f"{name}:{line}", f"{{{{ {word} }}}} is never closed with {{{{ end }}}}")
        for u in sorted(used - set(defined)):
            self.err("templates", f'include "{u}" names no defined template')
        for d in sorted(set(defined) - used):
            self.err(defined[d], f'helper "{d}" is defined but never used')
        self.defines = {}
        for text in self.templates.values():
            for m in re.finditer(r'\{\{-?\s*define\s+"([^"]+)"\s*-?\}\}(.*?)\{\{-?\s*end\s*-?\}\}\s*(?=\{\{-?\s*define|\{\{/\*|\Z)',
                                 text, re.S):
                self.defines[m.group(1)] = m.group(2)

    def check_values_refs(self):
        self.refs = set()
        for name, text in self.templates.items():
            for line, a in self.actions(text):
                for m in VALUES_REF.finditer(a):
                    path = m.group(1)[1:]
                    self.refs.add(path)
                    if lookup(self.values, path, missing=KeyError) is KeyError:
                        self.err(f"{name}:{line}", f".Values.{path} is not in values.yaml")
        # Every value does something: a value path is used when it, or a map above it, is referenced.
        for path in leaf_paths(self.values):
            if not any(path == r or path.startswith(r + ".") for r in self.refs):
                self.err("values.yaml", f"{path} is never used by a template")
        # values-gpu.yaml sets only known keys (or keys inside a map a template takes whole, like resources).
        for path in leaf_paths(getattr(self, "gpu_values", {}) or {}):
            if lookup(self.values, path, missing=KeyError) is not KeyError:
                continue
            whole = [r for r in self.refs if path.startswith(r + ".")]
            if not whole or any(r.startswith(w + ".") for w in whole for r in self.refs):
                self.err("values-gpu.yaml", f"{path} is not a value of this chart")

    # ---------------------------------------------------------------- flags
    def args_blocks(self, text):
        """(line of `args:`, [(line, item)], first line, last line) for every container args list."""
        lines = text.splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^(\s*)args:\s*$", line)
            if not m:
                continue
            base, items, j = len(m.group(1)), [], i + 1
            while j < len(lines):
                s = lines[j].strip()
                ind = len(lines[j]) - len(lines[j].lstrip())
                if s and ind <= base and not s.startswith("{{"):
                    break
                if s.startswith("- "):
                    items.append((j + 1, s[2:].strip()))
                j += 1
            yield i + 1, items, i + 1, j

    def check_flags(self):
        self.workloads = {}  # template name -> (command, {flag: item text})
        commands_seen = set()
        for name, text in self.templates.items():
            covered = set()
            for line, items, first, last in self.args_blocks(text):
                covered.update(range(first, last + 1))
                if not items:
                    self.err(f"{name}:{line}", "empty args")
                    continue
                cmd = items[0][1].strip("\"'")
                commands_seen.add(cmd)
                flags = {}
                for n, item in items[1:]:
                    it = item.strip("\"'")
                    if it.startswith("{{") or it.startswith("$("):
                        continue  # a value spliced in (extraArgs): checked from values.yaml below
                    m = re.fullmatch(r"--([a-z][a-z0-9-]*)(=(.*))?", it)
                    if not m:
                        self.err(f"{name}:{n}", f"argument {item!r} of `deltagate {cmd}` is not a --flag")
                        continue
                    if not m.group(2):
                        self.err(f"{name}:{n}", f"write --{m.group(1)}=VALUE (one list item per flag)")
                    flags[m.group(1)] = m.group(3) or ""
                    self.check_flag(f"{name}:{n}", cmd, m.group(1), bool(m.group(2)))
                self.workloads[name] = (cmd, flags)
            # Command lines (`deltagate chat --front=...` in a test pod or in NOTES.txt).
            plain = ACTION.sub(lambda m: "T" + "\n" * m.group(0).count("\n"), text)
            for lineno, l in enumerate(plain.splitlines(), 1):
                for m in re.finditer(r"\bdeltagate\s+([a-z][a-z-]*)((?:\s+--[a-z][a-z0-9-]*(?:=[^\s;|&)]*)?)*)", l):
                    covered.add(lineno)
                    commands_seen.add(m.group(1))
                    for f in FLAG.finditer(m.group(2)):
                        self.check_flag(f"{name}:{lineno}", m.group(1), f.group(1), bool(f.group(2)))
            # Anything else that looks like a flag: in a YAML comment it must exist for some command the
            # chart runs; outside, it is a flag the checks above cannot attribute: an error.
            for lineno, l in enumerate(plain.splitlines(), 1):
                if lineno in covered or not name.endswith(".yaml"):
                    continue
                code, _, comment = l.partition("#")
                for f in FLAG.finditer(code):
                    self.err(f"{name}:{lineno}", f"--{f.group(1)} is outside an args list or deltagate command line")
                self.comment_flags.extend((f"{name}:{lineno}", f.group(1)) for f in FLAG.finditer(comment))
        if not {"front", "worker"} <= commands_seen:
            self.err("templates", f"expected containers running `deltagate front` and `deltagate worker`, found {sorted(commands_seen)}")
        self.commands = sorted(commands_seen)
        # extraArgs defaults and examples, and flags named in values.yaml comments.
        for source, vals in [("values.yaml", self.values), ("values-gpu.yaml", getattr(self, "gpu_values", {}))]:
            for cmd in ("front", "worker"):
                for a in lookup(vals, f"{cmd}.extraArgs") or []:
                    m = re.fullmatch(r"--([a-z][a-z0-9-]*)(=.*)?", str(a))
                    if not m:
                        self.err(source, f"{cmd}.extraArgs item {a!r} is not --flag=value")
                    else:
                        self.check_flag(f"{source} {cmd}.extraArgs", cmd, m.group(1), bool(m.group(2)))
        for path, doc in self.value_docs.items():
            cmd = path.split(".")[0] if path.split(".")[0] in ("front", "worker") else None
            for m in re.finditer(r"deltagate (\w+)((?: --[a-z][a-z0-9-]*)+)", doc):
                for f in FLAG.finditer(m.group(2)):
                    self.check_flag(f"values.yaml {path}", m.group(1), f.group(1), True)
            for f in FLAG.finditer(re.sub(r"deltagate \w+(?: --[a-z][a-z0-9-]*)+", "", doc)):
                if cmd:
                    self.check_flag(f"values.yaml {path} (comment)", cmd, f.group(1), True)
                else:
                    self.comment_flags.append((f"values.yaml {path}", f.group(1)))
        for where, flag in self.comment_flags:
            if all(self.flag_problem(c, flag, True) and self.flag_problem(c, flag, False) for c in self.commands):
                self.err(where, f"comment names --{flag}, which no deltagate command used here accepts")

    # ---------------------------------------------------------------- ports, discovery, probes
    def value_path(self, where, expr, what):
        refs = VALUES_REF.findall(expr)
        if len(refs) != 1:
            self.err(where, f"{what} should come from exactly one value, got {expr!r}")
            return None
        return refs[0][1:]

    def blocks(self, text, key):
        """[(line, body)] for each `key:` line and the more-indented lines under it."""
        lines, out = text.splitlines(), []
        for i, line in enumerate(lines):
            m = re.match(rf"^(\s*)(?:- )?{key}:\s*$", line)
            if not m:
                continue
            base, body, j = len(m.group(1)), [], i + 1
            while j < len(lines):
                s = lines[j].strip()
                if s and len(lines[j]) - len(lines[j].lstrip()) <= base and not s.startswith("{{"):
                    break
                body.append(lines[j])
                j += 1
            out.append((i + 1, "\n".join(body)))
        return out

    def check_workloads(self):
        components = {}
        for name, (cmd, flags) in self.workloads.items():
            if cmd not in ("front", "worker"):
                continue
            text = self.templates[name]
            ports = {}
            for flag, portname in (("listen", "grpc"), ("metrics-listen", "metrics")):
                if flag not in flags:
                    self.err(name, f"`deltagate {cmd}` needs --{flag} (its default is loopback or off)")
                    continue
                host = flags[flag].rsplit(":", 1)[0]
                if host not in ("0.0.0.0", "[::]", ""):
                    self.err(name, f"--{flag}={flags[flag]}: listen on 0.0.0.0 or the pod is unreachable")
                ports[portname] = self.value_path(name, flags[flag], f"--{flag}'s port")
            if "health-listen" in flags:  # optional: the plaintext health-only port of a TLS front
                ports["health"] = self.value_path(name, flags["health-listen"], "--health-listen's port")
            components[cmd] = {"template": name, "ports": ports, "flags": flags}
            # containerPorts named after what listens there.
            declared = dict(re.findall(r"-\s*name:\s*(\w+)\s*\n\s*containerPort:\s*(.+)", text))
            for portname, path in ports.items():
                if portname not in declared:
                    self.err(name, f"no containerPort named {portname}")
                elif path and self.value_path(name, declared[portname], f"containerPort {portname}") != path:
                    self.err(name, f"containerPort {portname} is {declared[portname].strip()}, not .Values.{path}")
            # Probes: on the gRPC port, by number (the kubelet's gRPC probe takes no names).
            probes = {}
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                for line, body in self.blocks(text, kind):
                    probes[kind] = body
                    for m in re.finditer(r"port:\s*(.+)", body):
                        if ports.get("grpc") and self.value_path(f"{name}:{line}", m.group(1), f"{kind} port") not in (
                                ports["grpc"], ports.get("health")):
                            self.err(f"{name}:{line}", f"{kind} port {m.group(1).strip()} is not --listen's .Values.{ports['grpc']}"
                                     " (nor --health-listen's)")
                    for m in re.finditer(r"service:\s*(\S+)", body):
                        if not self.binary_has(m.group(1)):
                            self.err(f"{name}:{line}", f"{kind} asks for health service {m.group(1)}, which the binary never names")
            need = {"worker": ("startupProbe", "readinessProbe", "livenessProbe"), "front": ("readinessProbe", "livenessProbe")}[cmd]
            for kind in need:
                if kind not in probes:
                    self.err(name, f"`deltagate {cmd}` container has no {kind}")
                elif kind != "livenessProbe" or cmd == "worker":
                    if "grpc:" not in probes[kind]:
                        self.err(name, f"{kind} should be a grpc: probe (grpc.health.v1)")
            # Prometheus annotation on the metrics port.
            m = re.search(r'include "deltagate.podAnnotations" \(list \$ \.Values\.([\w.]+)', text)
            if not m or m.group(1) != ports.get("metrics"):
                self.err(name, f"prometheus.io/port must be --metrics-listen's .Values.{ports.get('metrics')}")
            # Grace periods.
            m = re.search(r"terminationGracePeriodSeconds:\s*(.+)", text)
            grace = lookup(self.values, self.value_path(name, m.group(1), "terminationGracePeriodSeconds") or "") if m else None
            if not isinstance(grace, int):
                self.err(name, "terminationGracePeriodSeconds must come from values")
            elif cmd == "worker":
                drain_ms = lookup(self.values, "worker.drainMs")
                if "--drain-ms={{ .Values.worker.drainMs }}" not in text or not isinstance(drain_ms, int):
                    self.err(name, "the worker must get --drain-ms from .Values.worker.drainMs")
                elif grace < drain_ms / 1000 + 10:
                    self.err(name, f"worker terminationGracePeriodSeconds {grace} leaves no time to hand off after "
                                   f"drain {drain_ms / 1000} s (needs drain + 10 s)")
            elif cmd == "front":
                sleep = lookup(self.values, "front.preStopSleepSeconds") or 0
                drain_ms = lookup(self.values, "front.drainMs")
                if "--drain-ms={{ .Values.front.drainMs }}" not in text or not isinstance(drain_ms, int):
                    self.err(name, "the front must get --drain-ms from .Values.front.drainMs")
                elif grace <= sleep + drain_ms / 1000:
                    self.err(name, f"front terminationGracePeriodSeconds {grace} <= preStop {sleep} s + drain {drain_ms / 1000} s")
        if set(components) != {"front", "worker"}:
            return
        self.check_services(components)
        self.check_worker_auth(components)

    # ---------------------------------------------------------------- workers accept only fronts
    def helper_body(self, name):
        """The text of one helper of _helpers.tpl: from its define to the next one."""
        text = self.templates.get("templates/_helpers.tpl", "")
        m = re.search(r'\{\{-?\s*define "' + re.escape(name) + r'"\s*-?\}\}', text)
        if not m:
            return ""
        nxt = re.search(r'\{\{-?\s*define ', text[m.end():])
        return text[m.end():m.end() + nxt.start()] if nxt else text[m.end():]

    def check_worker_auth(self, components):
        mount = re.search(r"mountPath:\s*(\S+)", self.helper_body("deltagate.workerTokenMount"))
        item = re.search(r"path:\s*(\S+)", self.helper_body("deltagate.workerTokenVolume"))
        if not mount or not item:
            self.err("templates/_helpers.tpl", "deltagate.workerTokenMount / deltagate.workerTokenVolume define no mountPath / item path")
            return
        token_path = mount.group(1).rstrip("/") + "/" + item.group(1)
        for cmd, flag in (("worker", "auth-token-file"), ("front", "worker-token-file")):
            c = components[cmd]
            text = self.templates[c["template"]]
            if c["flags"].get(flag) != token_path:
                self.err(c["template"], f"`deltagate {cmd}` must get --{flag}={token_path} (the token Secret's file), "
                                        f"got {c['flags'].get(flag)!r}")
            for helper in ("deltagate.workerTokenMount", "deltagate.workerTokenVolume"):
                if f'include "{helper}"' not in text:
                    self.err(c["template"], f"`deltagate {cmd}` pods do not include {helper}")
        secret = [n for n, t in self.templates.items() if re.search(r"^kind:\s*Secret\s*$", t, re.M)]
        if len(secret) != 1 or 'include "deltagate.workerTokenSecret"' not in self.templates[secret[0]] or \
                not re.search(r"^\s+token:\s*\{\{", self.templates[secret[0]], re.M):
            self.err("templates", "expected one Secret template named by deltagate.workerTokenSecret with data key token")
        if 'include "deltagate.workerTokenSecret"' not in self.helper_body("deltagate.workerTokenVolume"):
            self.err("templates/_helpers.tpl", "the token volume does not mount the deltagate.workerTokenSecret Secret")
        pol = [n for n, t in self.templates.items() if re.search(r"^kind:\s*NetworkPolicy\s*$", t, re.M)]
        if len(pol) != 1:
            self.err("templates", f"expected one NetworkPolicy template, found {pol}")
            return
        name, text = pol[0], self.templates[pol[0]]
        try:
            doc = yaml.safe_load(skeleton(text)) or {}
        except yaml.YAMLError as e:
            self.err(name, f"does not parse once its template actions are set aside: {e}")
            return
        spec = doc.get("spec") or {}
        if (lookup(spec, "podSelector.matchLabels") or {}).get("app.kubernetes.io/component") != "worker":
            self.err(name, "the NetworkPolicy's podSelector must select the worker pods")
        if spec.get("policyTypes") != ["Ingress"]:
            self.err(name, "the NetworkPolicy must have policyTypes [Ingress]")
        rules = spec.get("ingress") or []
        port_of = lambda r: [str(p.get("port")) for p in r.get("ports") or []]
        grpc = [r for r in rules if port_of(r) == ["<.Values.worker.port>"]]
        metrics = [r for r in rules if port_of(r) == ["<$.Values.worker.metricsPort>"]]
        if len(rules) != 2 or len(grpc) != 1 or len(metrics) != 1:
            self.err(name, f"expected two ingress rules, one on .Values.worker.port, one on .Values.worker.metricsPort")
            return
        peers = grpc[0].get("from") or []
        if len(peers) != 1 or set(peers[0]) != {"podSelector"} or \
                (lookup(peers[0], "podSelector.matchLabels") or {}).get("app.kubernetes.io/component") != "front":
            self.err(name, "the worker gRPC port must admit the front pods only")
        if "with .Values.networkPolicy.metricsFrom" not in text:
            self.err(name, "the metrics port rule must admit networkPolicy.metricsFrom")

    def check_services(self, components):
        workers = components["worker"]
        headless = None
        for name, text in self.templates.items():
            if not re.search(r"^kind:\s*Service\s*$", text, re.M):
                continue
            comp = re.search(r"selector:\s*\n(?:.*\n)*?\s*app\.kubernetes\.io/component:\s*(\w+)", text)
            if not comp or comp.group(1) not in components:
                self.err(name, "Service selects no front/worker pods (app.kubernetes.io/component)")
                continue
            c = components[comp.group(1)]
            for pname, port, target in re.findall(r"-\s*name:\s*(\w+)\s*\n\s*port:\s*(.+)\n\s*targetPort:\s*(.+)", text):
                target = target.strip()
                if target not in c["ports"]:
                    self.err(name, f"port {pname}: targetPort {target} is not a containerPort name of the {comp.group(1)} pods")
                elif self.value_path(name, port, f"Service port {pname}") != c["ports"][target]:
                    self.err(name, f"port {pname} is {port.strip()}, the pods listen on .Values.{c['ports'][target]}")
            if re.search(r"^\s*clusterIP:\s*None\s*$", text, re.M):
                if comp.group(1) != "worker":
                    self.err(name, "the headless Service should select the workers")
                if not re.search(r"^\s*publishNotReadyAddresses:\s*false\s*$", text, re.M):
                    self.err(name, "headless worker Service needs publishNotReadyAddresses: false (no loading or draining workers in DNS)")
                headless = (name, re.search(r"^metadata:\s*\n\s*name:\s*(.+)$", text, re.M).group(1).strip())
        if not headless:
            self.err("templates", "no headless Service (clusterIP: None) for the workers")
            return
        # The fronts resolve that Service at the workers' gRPC port; the StatefulSet is governed by it.
        dns = components["front"]["flags"].get("workers-dns")
        if dns is None:
            self.err(components["front"]["template"], "the front needs --workers-dns (the headless worker Service)")
            return
        m = re.search(r'include "([^"]+)"', dns)
        body = self.defines.get(m.group(1), "") if m else dns
        svc_name = re.search(r'include "([^"]+)"', headless[1])
        if not svc_name or f'include "{svc_name.group(1)}"' not in body:
            self.err(components["front"]["template"], f"--workers-dns does not name the headless Service {headless[1]}")
        for part in (".Release.Namespace", ".Values.clusterDomain", "svc", f".Values.{workers['ports'].get('grpc')}"):
            if part not in body:
                self.err(components["front"]["template"], f"--workers-dns (<svc>.<ns>.svc.<domain>:<worker port>) lacks {part}")
        ss = re.search(r"^\s*serviceName:\s*(.+)$", self.templates[workers["template"]], re.M)
        if re.search(r"^kind:\s*StatefulSet", self.templates[workers["template"]], re.M) and \
                (not ss or ss.group(1).strip() != headless[1]):
            self.err(workers["template"], f"StatefulSet serviceName must be the headless Service {headless[1]}")

    # ---------------------------------------------------------------- environment
    def check_env(self):
        defined = set()
        for name, text in self.templates.items():
            for m in re.finditer(r"-\s*name:\s*([A-Z][A-Z0-9_]+)\s*$", text, re.M):
                defined.add(m.group(1))
                if re.match(r"(OTEL|DELTAGATE|XDG)_", m.group(1)) and not self.binary_has(m.group(1)):
                    self.err(name, f"env {m.group(1)} is never read by deltagate (typo?)")
        for name, text in self.templates.items():
            for v in re.findall(r"\$\(([A-Z][A-Z0-9_]*)\)", text):
                if v not in defined:
                    self.err(name, f"$({v}) refers to no env variable the chart defines")

    # ---------------------------------------------------------------- rendered (with helm)
    def helm_run(self, *args):
        return subprocess.run([self.helm, *args], capture_output=True, text=True, timeout=120)

    def check_rendered(self):
        r = self.helm_run("lint", "--strict", self.chart)
        if r.returncode != 0:
            self.err("helm lint --strict", (r.stdout + r.stderr).strip())
        with tempfile.TemporaryDirectory() as tmp:
            secrets = os.path.join(tmp, "on.yaml")
            with open(secrets, "w") as f:
                yaml.safe_dump({"auth": {"existingSecret": "dg-token"}, "front": {"tls": {"secretName": "dg-tls"}},
                                "otel": {"endpoint": "http://otel-collector:4318"},
                                "metrics": {"serviceMonitor": {"enabled": True}},
                                "workerAuth": {"existingSecret": "dg-worker-token", "secretKey": "shared"}}, f)
            open_workers = os.path.join(tmp, "open.yaml")
            with open(open_workers, "w") as f:
                yaml.safe_dump({"workerAuth": {"enabled": False}, "networkPolicy": {"enabled": False}}, f)
            cases = [("defaults", "dg", []),
                     ("values-gpu.yaml", "dg", ["-f", os.path.join(self.chart, "values-gpu.yaml")]),
                     ("TLS+auth+OTel+ServiceMonitor+existing worker token", "dg", ["-f", secrets]),
                     ("worker token and NetworkPolicy off", "dg", ["-f", open_workers]),
                     ("a 50-character release name", "r" * 50, [])]
            for label, release, extra in cases:
                r = self.helm_run("template", release, self.chart, "--namespace", "ml", *extra)
                if r.returncode != 0:
                    self.err(f"helm template ({label})", r.stderr.strip())
                    continue
                objs = [d for d in yaml.safe_load_all(r.stdout) if d]
                self.check_objects(label, objs, gpu="gpu" in label)
                self.check_rendered_auth(label, objs, on="off" not in label,
                                         existing="dg-worker-token" if "existing" in label else None)

    def check_objects(self, label, objs, gpu):
        by_kind = {}
        for o in objs:
            by_kind.setdefault(o["kind"], []).append(o)
            n = o["metadata"]["name"]
            limit = 52 if o["kind"] == "StatefulSet" else 63
            if len(n) > limit:
                self.err(label, f"{o['kind']} name {n} is longer than {limit} characters")
        pods = {}  # component -> (labels, container, listen port, metrics port)
        for o in by_kind.get("Deployment", []) + by_kind.get("StatefulSet", []):
            spec = o["spec"]["template"]["spec"]
            labels = o["spec"]["template"]["metadata"]["labels"]
            if any(labels.get(k) != v for k, v in o["spec"]["selector"]["matchLabels"].items()):
                self.err(label, f"{o['metadata']['name']}: selector does not match its pod labels")
            for c in spec["containers"]:
                args = c.get("args") or []
                if not args or args[0] not in ("front", "worker"):
                    continue
                where = f"{label}: {o['metadata']['name']}"
                self.check_args(where, args)
                flags = dict(a[2:].split("=", 1) for a in args[1:] if a.startswith("--") and "=" in a)
                listen = int(flags.get("listen", ":0").rsplit(":", 1)[1])
                metrics = int(flags.get("metrics-listen", ":0").rsplit(":", 1)[1])
                named = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
                if named.get("grpc") != listen or named.get("metrics") != metrics:
                    self.err(where, f"containerPorts {named} vs --listen :{listen} --metrics-listen :{metrics}")
                health = int(flags["health-listen"].rsplit(":", 1)[1]) if "health-listen" in flags else None
                if health is not None and named.get("health") != health:
                    self.err(where, f"containerPorts {named} vs --health-listen :{health}")
                if "tls-cert" in flags and health is None:
                    self.err(where, "a TLS front needs --health-listen: the kubelet's gRPC probe cannot do TLS")
                for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                    p = c.get(kind) or {}
                    for handler in ("grpc", "tcpSocket"):
                        if handler in p and p[handler]["port"] not in (listen, health):
                            self.err(where, f"{kind} probes port {p[handler]['port']}, --listen is :{listen}")
                        if handler == "grpc" and handler in p and "tls-cert" in flags and p[handler]["port"] == listen:
                            self.err(where, f"{kind} is a plaintext gRPC probe on the TLS port :{listen}")
                ann = o["spec"]["template"]["metadata"].get("annotations", {})
                if "prometheus.io/port" in ann and ann["prometheus.io/port"] != str(metrics):
                    self.err(where, f"prometheus.io/port {ann['prometheus.io/port']} != --metrics-listen :{metrics}")
                for e in c.get("env", []):
                    if e["name"] == "DELTAGATE_AUTH_TOKEN" and "secretKeyRef" not in e.get("valueFrom", {}):
                        self.err(where, "DELTAGATE_AUTH_TOKEN must come from a Secret")
                if args[0] == "worker":
                    gpus = (c.get("resources") or {}).get("limits", {}).get("nvidia.com/gpu")
                    if gpu and (not gpus or flags.get("backend") != "cuda" or "model" not in flags):
                        self.err(where, "GPU values: expected nvidia.com/gpu limits, --backend=cuda and --model")
                    if not gpu and (gpus or flags.get("backend") != "cpu"):
                        self.err(where, "default values: expected a CPU worker with no GPU")
                    if "model" in flags and not any(flags["model"].startswith(m["mountPath"].rstrip("/") + "/")
                                                     for m in c.get("volumeMounts", [])):
                        self.err(where, f"--model={flags['model']} is not under any volumeMount")
                    if o["kind"] == "StatefulSet":
                        pods["worker_service"] = o["spec"]["serviceName"]
                pods[args[0]] = (labels, flags, listen, metrics, named)
        if set(pods) < {"front", "worker"}:
            self.err(label, "rendered no front and worker containers")
            return
        services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
        for s in services.values():
            sel = s["spec"].get("selector", {})
            comp = [k for k in ("front", "worker") if all(pods[k][0].get(a) == b for a, b in sel.items())]
            if len(comp) != 1:
                self.err(label, f"Service {s['metadata']['name']} selects {comp or 'no pods'}")
                continue
            named = pods[comp[0]][4]
            for p in s["spec"]["ports"]:
                t = p.get("targetPort", p["port"])
                if (t not in named) if isinstance(t, str) else (t not in named.values()):
                    self.err(label, f"Service {s['metadata']['name']} port {p['name']} targets {t}, not a pod port")
        # Discovery: --workers-dns = <headless worker Service>.<namespace>.svc.<domain>:<worker --listen port>.
        dns = pods["front"][1].get("workers-dns", "")
        m = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.([a-z0-9.-]+):(\d+)", dns)
        svc = services.get(m.group(1)) if m else None
        if not m or not svc or m.group(2) != "ml" or int(m.group(4)) != pods["worker"][2]:
            self.err(label, f"--workers-dns={dns} is not <worker Service>.ml.svc.<domain>:{pods['worker'][2]}")
        elif svc["spec"].get("clusterIP") != "None" or svc["spec"].get("publishNotReadyAddresses") is not False:
            self.err(label, f"Service {svc['metadata']['name']} must be headless with publishNotReadyAddresses: false")
        elif pods.get("worker_service") != svc["metadata"]["name"]:
            self.err(label, "the worker StatefulSet's serviceName is not the Service the fronts resolve")
        for pdb in by_kind.get("PodDisruptionBudget", []):
            if any(pods["worker"][0].get(a) != b for a, b in pdb["spec"]["selector"]["matchLabels"].items()):
                self.err(label, "the PodDisruptionBudget does not select the workers")
        for sm in by_kind.get("ServiceMonitor", []):
            for ep in sm["spec"]["endpoints"]:
                if not any(p["name"] == ep["port"] for s in services.values() for p in s["spec"]["ports"]):
                    self.err(label, f"ServiceMonitor endpoint port {ep['port']} is no Service port")
        for pod in by_kind.get("Pod", []):
            for c in pod["spec"]["containers"]:
                for m in re.finditer(r"deltagate chat --front=([a-z0-9.-]+):(\d+)", " ".join(c.get("command", []))):
                    s = services.get(m.group(1))
                    if not s or not any(p["port"] == int(m.group(2)) for p in s["spec"]["ports"]):
                        self.err(label, f"test pod talks to {m.group(1)}:{m.group(2)}, which is no Service port")


    def check_rendered_auth(self, label, objs, on, existing):
        """The rendered token Secret, its use by both pods, and the NetworkPolicy (when `on`)."""
        kinds = lambda k: [o for o in objs if o["kind"] == k]
        pods = {}
        for o in kinds("Deployment") + kinds("StatefulSet"):
            spec = o["spec"]["template"]["spec"]
            for c in spec["containers"]:
                args = c.get("args") or []
                if args and args[0] in ("front", "worker"):
                    pods[args[0]] = (o["spec"]["template"]["metadata"]["labels"], spec, c, args)
        if set(pods) != {"front", "worker"}:
            return  # check_objects reported it
        secrets = {s["metadata"]["name"]: s for s in kinds("Secret")}
        flag = {"worker": "--auth-token-file=", "front": "--worker-token-file="}
        for cmd, (labels, spec, c, args) in pods.items():
            given = [a[len(flag[cmd]):] for a in args if a.startswith(flag[cmd])]
            if not on:
                if given:
                    self.err(label, f"{cmd}: {flag[cmd]} with workerAuth.enabled false")
                continue
            if len(given) != 1:
                self.err(label, f"{cmd}: expected one {flag[cmd]}..., got {given}")
                continue
            mounts = [m for m in c.get("volumeMounts", []) if given[0].startswith(m["mountPath"].rstrip("/") + "/")]
            vols = {v["name"]: v for v in spec.get("volumes", [])}
            vol = vols.get(mounts[0]["name"]) if mounts else None
            if not vol or "secret" not in vol:
                self.err(label, f"{cmd}: {given[0]} is not in a Secret volume")
                continue
            want_secret = existing or next(iter(secrets), None)
            items = {i["path"]: i["key"] for i in vol["secret"].get("items", [])}
            rel = given[0][len(mounts[0]["mountPath"].rstrip("/")) + 1:]
            if vol["secret"]["secretName"] != want_secret or rel not in items:
                self.err(label, f"{cmd}: the token volume mounts {vol['secret']['secretName']} items {items}, "
                                f"expected {want_secret} with {rel}")
            elif existing is None and items[rel] not in (secrets[want_secret].get("data") or {}):
                self.err(label, f"{cmd}: key {items[rel]} is not in the chart's Secret {want_secret}")
            elif existing is not None and items[rel] != "shared":
                self.err(label, f"{cmd}: existingSecret's key should be workerAuth.secretKey, got {items[rel]}")
        if on and existing is None and len(secrets) != 1:
            self.err(label, f"expected the chart's worker token Secret, got {sorted(secrets)}")
        if on and existing is not None and secrets:
            self.err(label, f"with workerAuth.existingSecret the chart must not create {sorted(secrets)}")
        pols = kinds("NetworkPolicy")
        if not on:
            if pols:
                self.err(label, "a NetworkPolicy with networkPolicy.enabled false")
            return
        if len(pols) != 1:
            self.err(label, f"expected one NetworkPolicy, got {len(pols)}")
            return
        ps = pols[0]["spec"]
        matches = lambda sel, lab: all(lab.get(k) == v for k, v in (sel.get("matchLabels") or {}).items())
        if not matches(ps["podSelector"], pods["worker"][0]) or matches(ps["podSelector"], pods["front"][0]):
            self.err(label, "the NetworkPolicy must select the worker pods and not the fronts")
        if ps.get("policyTypes") != ["Ingress"]:
            self.err(label, f"NetworkPolicy policyTypes {ps.get('policyTypes')}, expected [Ingress]")
        grpc_port = int(next(a for a in pods["worker"][3] if a.startswith("--listen=")).rsplit(":", 1)[1])
        metrics_port = int(next(a for a in pods["worker"][3] if a.startswith("--metrics-listen=")).rsplit(":", 1)[1])
        saw_metrics = False
        for rule in ps.get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            if not ports:
                self.err(label, "a NetworkPolicy ingress rule without ports admits every port")
            peers = rule.get("from", [])
            if grpc_port in ports:
                if ports != {grpc_port} or not peers or any(
                        set(p) != {"podSelector"} or not matches(p["podSelector"], pods["front"][0]) or
                        matches(p["podSelector"], pods["worker"][0]) for p in peers):
                    self.err(label, f"the worker gRPC port :{grpc_port} must admit the front pods only, got {rule}")
            elif ports == {metrics_port}:
                saw_metrics = True
                if peers != self.values["networkPolicy"]["metricsFrom"]:
                    self.err(label, f"the metrics rule admits {peers}, not networkPolicy.metricsFrom")
            else:
                self.err(label, f"NetworkPolicy rule on unexpected ports {sorted(ports)}")
        if not saw_metrics:
            self.err(label, f"no NetworkPolicy rule admits the scraper to the metrics port :{metrics_port}")


def skeleton(text):
    """A template as YAML without Helm: lines that are only actions dropped, inline actions turned into
    "<action>" strings. Enough to read the structure a template always renders."""
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("{{") and stripped.endswith("}}") and stripped.count("{{") == 1:
            continue
        out.append(ACTION.sub(lambda m: "<" + m.group(1).strip(" -") + ">", line))
    return "\n".join(out)


def lookup(d, path, missing=None):
    for k in path.split(".") if path else []:
        if not isinstance(d, dict) or k not in d:
            return missing
        d = d[k]
    return d


def leaf_paths(d, prefix=""):
    for k, v in d.items():
        p = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            yield from leaf_paths(v, p + ".")
        else:
            yield p


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chart", required=True)
    ap.add_argument("--deltagate", required=True, help="the deltagate binary")
    ap.add_argument("--helm", help="a helm 3 binary: also lint and render the chart")
    a = ap.parse_args()
    c = Checker(a.chart, a.deltagate, a.helm)
    c.run()
    if c.errors:
        print(f"chart_check: {len(c.errors)} problem(s) in {a.chart}:")
        for e in c.errors:
            print("  " + e)
        return 1
    checked = len([k for k in c.flag_cache if k[1]])
    print(f"chart_check: {a.chart} OK ({len(c.templates)} templates, {len(c.refs)} value paths, "
          f"{checked} flag checks against {a.deltagate}{', rendered with ' + a.helm if a.helm else ', helm not used'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
