#!/usr/bin/env python3
"""Offline checks of deploy/kubernetes/ and deploy/prometheus/prometheus-rule.yaml.

1. Core kinds (ConfigMap, Deployment, Service, HPA) against the Kubernetes
   OpenAPI schemas shipped by kubernetes-validate, strict (unknown fields are
   errors), for 1.29 (first release with native sidecars on by default) and
   the newest version the package knows.
2. Prometheus Operator CRDs (ServiceMonitor, PodMonitor, PrometheusRule) are
   not in those schemas: they are validated here against hand-written JSON
   schemas of the monitoring.coreos.com/v1 fields we use (unknown fields are
   errors; durations must match the operator's pattern).
3. Cross references and the sidecar contract: kustomization resources exist;
   Service/ServiceMonitor/PodMonitor/HPA/ConfigMap point at what exists;
   chainpulse is an initContainer with restartPolicy Always, probes /healthz
   and /readyz on 9464, locked-down securityContext, requests 50m/64Mi and
   limits 500m/128Mi, optional secretKeyRef; the app exports to
   http://localhost:4318.
"""
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
RULE = ROOT / "deploy" / "prometheus" / "prometheus-rule.yaml"
CORE_KINDS = {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "Secret"}
VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]

DURATION = {"type": "string",
            "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {"type": "object", "required": ["name"],
            "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
                           "namespace": {"type": "string"}, "labels": STR_MAP, "annotations": STR_MAP},
            "additionalProperties": False}
LABEL_SELECTOR = {"type": "object", "minProperties": 1,
                  "properties": {"matchLabels": STR_MAP, "matchExpressions": {"type": "array"}},
                  "additionalProperties": False}
ENDPOINT_PROPS = {"port": {"type": "string"}, "path": {"type": "string", "pattern": "^/"},
                  "scheme": {"enum": ["http", "https"]}, "interval": DURATION,
                  "scrapeTimeout": DURATION, "honorLabels": {"type": "boolean"},
                  "relabelings": {"type": "array"}, "metricRelabelings": {"type": "array"}}


def crd(kind, spec):
    return {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": {"apiVersion": {"const": "monitoring.coreos.com/v1"},
                           "kind": {"const": kind}, "metadata": METADATA, "spec": spec},
            "additionalProperties": False}


SCHEMAS = {
    "ServiceMonitor": crd("ServiceMonitor", {
        "type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
        "properties": {
            "selector": LABEL_SELECTOR, "jobLabel": {"type": "string"},
            "namespaceSelector": {"type": "object"},
            "endpoints": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["port"], "properties": ENDPOINT_PROPS,
                "additionalProperties": False}}}}),
    "PodMonitor": crd("PodMonitor", {
        "type": "object", "required": ["selector", "podMetricsEndpoints"], "additionalProperties": False,
        "properties": {
            "selector": LABEL_SELECTOR, "jobLabel": {"type": "string"},
            "namespaceSelector": {"type": "object"},
            "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["port"], "properties": ENDPOINT_PROPS,
                "additionalProperties": False}}}}),
    "PrometheusRule": crd("PrometheusRule", {
        "type": "object", "required": ["groups"], "additionalProperties": False,
        "properties": {"groups": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "rules"], "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1}, "interval": DURATION,
                "rules": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["expr"], "additionalProperties": False,
                    "oneOf": [{"required": ["record"], "not": {"required": ["alert"]}},
                              {"required": ["alert"], "not": {"required": ["record"]}}],
                    "properties": {
                        "record": {"type": "string", "pattern": r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
                        "alert": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"},
                        "expr": {"type": "string", "minLength": 1}, "for": DURATION,
                        "keep_firing_for": DURATION, "labels": STR_MAP,
                        "annotations": STR_MAP}}}}}}}}),
}


def load(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def main():
    problems = []
    notes = []
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    resources = kust.get("resources", [])
    for r in resources:
        if not (K8S / r).exists():
            problems.append(f"kustomization.yaml lists missing {r}")
    listed = set(resources) | {"kustomization.yaml"}
    kust_text = (K8S / "kustomization.yaml").read_text()
    for f in sorted(K8S.glob("*.yaml")):
        if f.name not in listed and f"# - {f.name}" not in kust_text:
            problems.append(f"{f.name} is neither a kustomization resource nor a documented alternative")
    image_names = {i["name"] for i in kust.get("images", [])}

    docs = []
    for f in sorted(K8S.glob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        for d in load(f):
            docs.append((f.name, d))
    docs += [(RULE.name, d) for d in load(RULE)]
    by_kind = {}
    for fname, d in docs:
        by_kind.setdefault(d.get("kind"), []).append((fname, d))
        kind = d.get("kind")
        before = len(problems)
        if kind in CORE_KINDS:
            for v in VERSIONS:
                try:
                    kubernetes_validate.validate(d, v, strict=True)
                except Exception as e:  # ValidationError, SchemaNotFoundError ...
                    msg = getattr(e, "message", None) or str(e)
                    problems.append(f"{fname}: {kind} invalid for Kubernetes {v}: {msg}")
            if len(problems) == before:
                notes.append(f"{fname}: {kind} valid (kubernetes-validate strict, {', '.join(VERSIONS)})")
        elif kind in SCHEMAS:
            errs = sorted(jsonschema.Draft7Validator(SCHEMAS[kind]).iter_errors(d), key=str)
            for e in errs:
                where = "/".join(str(p) for p in e.absolute_path)
                problems.append(f"{fname}: {kind} {where}: {e.message}")
            if len(problems) == before:
                notes.append(f"{fname}: {kind} valid (structural CRD schema in check_k8s.py)")
        else:
            problems.append(f"{fname}: unexpected kind {kind}")

    def one(kind):
        items = by_kind.get(kind, [])
        if len(items) != 1:
            problems.append(f"expected exactly one {kind}, found {len(items)}")
            return None
        return items[0][1]

    dep, svc, cm, hpa = one("Deployment"), one("Service"), one("ConfigMap"), one("HorizontalPodAutoscaler")
    sm, pm = one("ServiceMonitor"), one("PodMonitor")
    if not (dep and svc and cm and hpa and sm and pm):
        return report(problems, notes)

    tmpl = dep["spec"]["template"]
    pod_labels = tmpl["metadata"]["labels"]
    pod = tmpl["spec"]
    sel = dep["spec"]["selector"]["matchLabels"]
    if any(pod_labels.get(k) != v for k, v in sel.items()):
        problems.append("Deployment selector does not match its pod labels")

    sidecars = [c for c in pod.get("initContainers", []) if c["name"] == "chainpulse"]
    if len(sidecars) != 1:
        problems.append("no initContainers entry named chainpulse")
        return report(problems, notes)
    cp = sidecars[0]
    if cp.get("restartPolicy") != "Always":
        problems.append("chainpulse initContainer needs restartPolicy: Always (native sidecar)")
    if cp["image"].split(":")[0] not in image_names:
        problems.append("chainpulse image is not rewritten by kustomization images:")
    ports = {p["name"]: p["containerPort"] for c in pod["containers"] + pod["initContainers"]
             for p in c.get("ports", [])}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        hg = (cp.get(probe) or {}).get("httpGet") or {}
        port = ports.get(hg.get("port"), hg.get("port"))
        if hg.get("path") != path or port != 9464:
            problems.append(f"chainpulse {probe} must be GET {path} on 9464 (got {hg})")
    res = cp.get("resources", {})
    if res.get("requests") != {"cpu": "50m", "memory": "64Mi"} or \
            res.get("limits") != {"cpu": "500m", "memory": "128Mi"}:
        problems.append(f"chainpulse resources {res} != requests 50m/64Mi, limits 500m/128Mi")
    sc = cp.get("securityContext", {})
    want = {"runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
            "runAsUser": 65532}
    for k, v in want.items():
        if sc.get(k) != v:
            problems.append(f"chainpulse securityContext.{k} must be {v}")
    if sc.get("capabilities", {}).get("drop") != ["ALL"]:
        problems.append("chainpulse securityContext must drop ALL capabilities")
    if (sc.get("seccompProfile") or pod.get("securityContext", {}).get("seccompProfile") or {}).get("type") \
            != "RuntimeDefault":
        problems.append("chainpulse needs seccompProfile RuntimeDefault")
    refs = [e for e in cp.get("env", []) if "secretKeyRef" in (e.get("valueFrom") or {})]
    # configmap.yaml forwards to LangSmith, so its key is required: a missing
    # Secret must stop the pod visibly, not queue spans that can never go out.
    if not refs or any(e["valueFrom"]["secretKeyRef"].get("optional") is True for e in refs):
        problems.append("upstream keys must come from a required secretKeyRef (not optional)")
    if "LANGSMITH_API_KEY" not in {e["name"] for e in refs}:
        problems.append("LANGSMITH_API_KEY secretKeyRef missing")
    apps = [c for c in pod["containers"]]
    if not any({"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://localhost:4318"} in c.get("env", [])
               for c in apps):
        problems.append("app container lacks OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318")

    vols = {v["name"]: v for v in pod.get("volumes", [])}
    for c in pod["containers"] + pod["initContainers"]:
        for m in c.get("volumeMounts", []):
            if m["name"] not in vols:
                problems.append(f"{c['name']} mounts undefined volume {m['name']}")
    cm_vols = [v for v in vols.values() if "configMap" in v]
    if not any(v["configMap"]["name"] == cm["metadata"]["name"] for v in cm_vols):
        problems.append("Deployment does not mount the chainpulse ConfigMap")
    if "chainpulse.toml" not in cm.get("data", {}):
        problems.append("ConfigMap lacks chainpulse.toml")
    cfg_env = {e["name"]: e.get("value") for e in cp.get("env", [])}
    mounts = {m["name"]: m["mountPath"] for m in cp.get("volumeMounts", [])}
    cfg_vol = next((v["name"] for v in cm_vols if v["configMap"]["name"] == cm["metadata"]["name"]), None)
    if cfg_env.get("CHAINPULSE_CONFIG") != f"{mounts.get(cfg_vol)}/chainpulse.toml":
        problems.append("CHAINPULSE_CONFIG does not point at the mounted chainpulse.toml")

    # Service -> pods, ServiceMonitor -> Service, PodMonitor -> pods
    if any(pod_labels.get(k) != v for k, v in svc["spec"]["selector"].items()):
        problems.append("Service selector does not match the pods")
    svc_ports = {p["name"]: p for p in svc["spec"]["ports"]}
    for p in svc_ports.values():
        tp = p.get("targetPort")
        if (isinstance(tp, str) and tp not in ports) or (isinstance(tp, int) and tp not in ports.values()):
            problems.append(f"Service targetPort {tp} is not a container port")
    if any(svc["metadata"].get("labels", {}).get(k) != v for k, v in sm["spec"]["selector"]["matchLabels"].items()):
        problems.append("ServiceMonitor selector does not match the Service labels")
    for ep in sm["spec"]["endpoints"]:
        if ep["port"] not in svc_ports:
            problems.append(f"ServiceMonitor port {ep['port']} is not a Service port name")
    if "chainpulse" not in svc["metadata"]["name"]:
        problems.append("Service name (the ServiceMonitor job) must contain 'chainpulse' for the alerts")
    if any(pod_labels.get(k) != v for k, v in pm["spec"]["selector"]["matchLabels"].items()):
        problems.append("PodMonitor selector does not match the pods")
    for ep in pm["spec"]["podMetricsEndpoints"]:
        if ep["port"] not in ports:
            problems.append(f"PodMonitor port {ep['port']} is not a container port name")
    if "chainpulse" not in pm["metadata"]["name"]:
        problems.append("PodMonitor name (part of its job) must contain 'chainpulse' for the alerts")
    if "podmonitor.yaml" in resources and "servicemonitor.yaml" in resources:
        problems.append("kustomization lists both ServiceMonitor and PodMonitor (double scrape)")

    ref = hpa["spec"]["scaleTargetRef"]
    if ref.get("kind") != "Deployment" or ref.get("name") != dep["metadata"]["name"]:
        problems.append("HPA does not target the Deployment")
    if hpa["apiVersion"] != "autoscaling/v2":
        problems.append("HPA must be autoscaling/v2")
    for m in hpa["spec"].get("metrics", []):
        cr = m.get("containerResource")
        if cr and cr["container"] not in {c["name"] for c in pod["containers"]}:
            problems.append(f"HPA ContainerResource names unknown container {cr['container']}")
    return report(problems, notes)


def report(problems, notes):
    for n in notes:
        print(f"ok   {n}")
    for p in problems:
        print(f"FAIL {p}")
    print("Kubernetes manifests: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
