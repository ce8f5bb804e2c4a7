"""The Kubernetes manifests in ``deploy/k8s``: each overlay renders, every resource validates against the
Kubernetes schemas (offline, ``kubernetes-validate``), the Prometheus Operator resources hold together and
carry the rules of ``deploy/prometheus``, and the invariants a reviewer would check by eye hold: resources,
probes and a non-root, read-only container everywhere, selectors that select, no real secrets, no
``latest`` images, and commands and settings that DeskPilot actually has.

Rendering uses ``kubectl kustomize`` when kubectl is installed. Without it, :func:`build` renders the
overlays itself: it implements exactly the kustomize features these kustomizations use and refuses anything
else, and where kubectl is present the two renderings must agree.
"""

from __future__ import annotations

import base64
import copy
import functools
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar
from urllib.parse import urlsplit

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from deskpilot import __version__
from deskpilot.api.server import uvicorn_options
from deskpilot.cli.main import load_command
from deskpilot.config import Settings
from deskpilot.service.keys import config_key_records
from deskpilot.service.metrics import ServiceMetrics
from deskpilot.store.audit_seal import parse_secret
from tests.integration.alert_rules import RULES_DIR, prometheus_binary

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
SECRET_TEMPLATES = sorted((K8S_DIR / "secrets").glob("*.yaml"))
#: The oldest Kubernetes the manifests are for (podFailurePolicy and unhealthyPodEvictionPolicy are GA in
#: 1.31, the preStop sleep action on by default since 1.30), and the newest whose schemas are bundled.
KUBERNETES_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}
PLACEHOLDERS = ("REPLACE_ME", "dev-insecure")
SERVE = {"app.kubernetes.io/name": "deskpilot", "app.kubernetes.io/component": "serve"}

Resource = dict[str, Any]


# -- rendering ----------------------------------------------------------------------------------------------

KUSTOMIZATION_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "images",
    "patches",
    "secretGenerator",
    "generatorOptions",
}
#: Kinds the loader knows; Namespace is the only cluster-scoped one (the namespace transformer skips it).
KNOWN_KINDS = {
    "Namespace",
    "ServiceAccount",
    "ConfigMap",
    "Secret",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "NetworkPolicy",
    "Job",
    "CronJob",
    "PersistentVolumeClaim",
    *CUSTOM_KINDS,
}
#: Strategic-merge keys of the list fields a patch may merge into an existing list (from the Kubernetes
#: API's patchMergeKey); a patch that meets any other existing list is refused rather than guessed at.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "topologySpreadConstraints": "topologyKey",
}
#: List fields whose strategic merge replaces the list (no patchMergeKey in the Kubernetes API).
REPLACED_LISTS = {"accessModes"}


def build(directory: Path) -> list[Resource]:
    """Render a kustomization: its resources (files, or folders built the same way), then its generated
    Secrets, patches, namespace, labels and images, each applied to everything this level holds."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(spec) - KUSTOMIZATION_FIELDS
    if unknown:
        raise NotImplementedError(f"{directory}: kustomize fields this loader lacks: {sorted(unknown)}")
    resources: list[Resource] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        if path.is_dir():
            resources += build(path)
        else:
            resources += [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    resources += generated_secrets(directory, spec)
    for resource in resources:
        if resource["kind"] not in KNOWN_KINDS:
            raise NotImplementedError(f"{directory}: kind {resource['kind']} is unknown to this loader")
    transform(directory, spec, resources)
    return resources


def transform(directory: Path, spec: dict[str, Any], resources: list[Resource]) -> None:
    """Patches, namespace, labels and images, in place."""
    for patch in spec.get("patches", []):
        if set(patch) != {"path"}:
            raise NotImplementedError(f"{directory}: only patches given by path: {patch}")
        document = yaml.safe_load((directory / patch["path"]).read_text(encoding="utf-8"))
        strategic_merge(patch_target(resources, document), document)
    if "namespace" in spec:
        for resource in resources:
            if resource["kind"] != "Namespace":
                resource["metadata"]["namespace"] = spec["namespace"]
    for entry in spec.get("labels", []):
        if set(entry) != {"pairs"}:  # includeSelectors / includeTemplates reach into specs: not done here
            raise NotImplementedError(f"{directory}: labels with options: {entry}")
        for resource in resources:
            resource["metadata"].setdefault("labels", {}).update(entry["pairs"])
    for image in spec.get("images", []):
        if not set(image) <= {"name", "newName", "newTag"} or "name" not in image:
            raise NotImplementedError(f"{directory}: image transform {image}")
        for resource in resources:
            retag(resource, image)


def retag(resource: Resource, image: dict[str, str]) -> None:
    """kustomize's images transform on every container of ``resource`` whose image has that name."""
    for container in containers_of(resource):
        name, tag = split_image(container["image"])
        if name == image["name"]:
            container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"


def generated_secrets(directory: Path, spec: dict[str, Any]) -> list[Resource]:
    """secretGenerator from env files, with the names as given (hashed names would need references
    rewritten, which this loader does not do)."""
    generators = spec.get("secretGenerator", [])
    if generators and spec.get("generatorOptions") != {"disableNameSuffixHash": True}:
        raise NotImplementedError(f"{directory}: generated names need disableNameSuffixHash: true")
    secrets = []
    for generator in generators:
        if not set(generator) <= {"name", "envs"}:
            raise NotImplementedError(f"{directory}: secretGenerator options {sorted(generator)}")
        data: dict[str, str] = {}
        for env_file in generator.get("envs", []):
            for line in (directory / env_file).read_text(encoding="utf-8").splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    key, sep, value = line.partition("=")
                    assert sep, f"{env_file}: {line!r} is not KEY=VALUE"
                    data[key.strip()] = base64.b64encode(value.encode("utf-8")).decode("ascii")
        secrets.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": generator["name"]},
                "type": "Opaque",
                "data": data,
            }
        )
    return secrets


def patch_target(resources: list[Resource], patch: Resource) -> Resource:
    """The one resource a patch names by apiVersion, kind and name."""
    found = [
        r
        for r in resources
        if (r["apiVersion"], r["kind"], r["metadata"]["name"])
        == (patch["apiVersion"], patch["kind"], patch["metadata"]["name"])
    ]
    if len(found) != 1:
        raise ValueError(f"patch {patch['kind']}/{patch['metadata']['name']} matches {len(found)} resources")
    return found[0]


def strategic_merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Maps merge, null deletes, lists merge by their key (MERGE_KEYS) or are set where none was."""
    for key, value in patch.items():
        if key.startswith("$"):
            raise NotImplementedError(f"patch directive {key}")
        current = target.get(key)
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(current, dict):
            strategic_merge(current, value)
        elif isinstance(value, list) and isinstance(current, list) and key in REPLACED_LISTS:
            target[key] = copy.deepcopy(value)
        elif isinstance(value, list) and isinstance(current, list):
            if key not in MERGE_KEYS:
                raise NotImplementedError(f"patching the existing list {key!r}: merge strategy unknown here")
            merge_key = MERGE_KEYS[key]
            by_key = {item[merge_key]: item for item in current}
            for item in value:
                if item[merge_key] in by_key:
                    strategic_merge(by_key[item[merge_key]], item)
                else:
                    current.append(copy.deepcopy(item))
        else:
            target[key] = copy.deepcopy(value)


def split_image(image: str) -> tuple[str, str | None]:
    """``registry:5000/a/b:tag`` → (``registry:5000/a/b``, ``tag``); digests are not used here."""
    assert "@" not in image, image
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, None
    return name, tag


def kubectl_render(directory: Path) -> list[Resource]:
    done = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@functools.cache
def _rendered(overlay: str) -> tuple[Resource, ...]:
    directory = K8S_DIR / "overlays" / overlay
    return tuple(kubectl_render(directory) if shutil.which("kubectl") else build(directory))


def rendered(overlay: str) -> list[Resource]:
    """The overlay's resources (a fresh copy: tests may change what they get)."""
    return copy.deepcopy(list(_rendered(overlay)))


def keyed(resources: list[Resource]) -> dict[tuple[str, str, str], Resource]:
    """Resources by kind, namespace and name; Secret data decoded (kubectl wraps long base64 lines)."""
    result = {}
    for resource in copy.deepcopy(resources):
        if resource["kind"] == "Secret":
            resource["data"] = secret_values(resource)
        meta = resource["metadata"]
        key = (resource["kind"], meta.get("namespace", ""), meta["name"])
        assert key not in result, f"{key} twice"
        result[key] = resource
    return result


# -- reading the rendered resources -------------------------------------------------------------------------


def containers_of(resource: Resource) -> Iterator[dict[str, Any]]:
    """Every container and init container anywhere in a resource (pod templates, job templates)."""
    stack: list[Any] = [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    yield from value
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


def pod_spec(resource: Resource) -> dict[str, Any] | None:
    spec = resource.get("spec", {})
    if resource["kind"] in ("Deployment", "Job"):
        return dict(spec["template"]["spec"])
    if resource["kind"] == "CronJob":
        return dict(spec["jobTemplate"]["spec"]["template"]["spec"])
    return None


def pod_labels(resource: Resource) -> dict[str, str]:
    spec = resource["spec"]
    template = spec["jobTemplate"]["spec"]["template"] if resource["kind"] == "CronJob" else spec["template"]
    return dict(template["metadata"]["labels"])


def workloads(resources: list[Resource]) -> list[Resource]:
    return [r for r in resources if pod_spec(r) is not None]


def one(resources: list[Resource], kind: str, name: str) -> Resource:
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against a set of labels."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


def secret_values(secret: Resource) -> dict[str, str]:
    values = {k: base64.b64decode("".join(v.split())).decode() for k, v in secret.get("data", {}).items()}
    return values | dict(secret.get("stringData", {}))


def environment(resources: list[Resource], secrets: list[Resource]) -> dict[str, str]:
    """What the serving container's envFrom gives it."""
    deployment = one(resources, "Deployment", "deskpilot")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        if "configMapRef" in source:
            env |= one(resources, "ConfigMap", source["configMapRef"]["name"])["data"]
        else:
            env |= secret_values(one(secrets, "Secret", source["secretRef"]["name"]))
    return env


def secret_templates() -> list[Resource]:
    return [yaml.safe_load(path.read_text(encoding="utf-8")) for path in SECRET_TEMPLATES]


def secrets_for(overlay: str, resources: list[Resource]) -> list[Resource]:
    """The Secrets the overlay's pods will find: generated in dev, created from the templates in prod."""
    return [r for r in resources if r["kind"] == "Secret"] or secret_templates()


def load_render_rules() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deskpilot_render_rules", K8S_DIR / "render_rules.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the tests ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_loader_agrees_with_kubectl(overlay: str) -> None:
    if not shutil.which("kubectl"):
        pytest.skip("no kubectl: the overlays are rendered by this module's loader alone")
    directory = K8S_DIR / "overlays" / overlay
    ours, theirs = keyed(build(directory)), keyed(kubectl_render(directory))
    assert sorted(ours) == sorted(theirs)
    for key, resource in theirs.items():
        assert ours[key] == resource, f"{key} differs"


def test_the_loader_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nreplicas: [{name: x, count: 2}]\n")
    with pytest.raises(NotImplementedError, match="replicas"):
        build(tmp_path)
    target = {"spec": {"ports": [{"port": 80}]}}
    with pytest.raises(NotImplementedError, match="ports"):
        strategic_merge(target, {"spec": {"ports": [{"port": 81}]}})
    merged = {"containers": [{"name": "a", "image": "x:1"}], "keep": 1, "drop": 2}
    strategic_merge(merged, {"containers": [{"name": "a", "image": "x:2"}, {"name": "b"}], "drop": None})
    assert merged == {"containers": [{"name": "a", "image": "x:2"}, {"name": "b"}], "keep": 1}
    assert split_image("registry:5000/a/b:1.0") == ("registry:5000/a/b", "1.0")
    assert split_image("registry:5000/a/b") == ("registry:5000/a/b", None)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_validates_against_the_kubernetes_schemas(overlay: str, version: str) -> None:
    resources = [r for r in rendered(overlay) if r["kind"] not in CUSTOM_KINDS] + secret_templates()
    assert len(resources) > 10
    problems = []
    for resource in resources:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = "/".join(map(str, error.path))
            problems.append(f"{resource['kind']}/{resource['metadata']['name']} at {where}: {error.message}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_resources_and_runs_non_root_read_only(overlay: str) -> None:
    resources = rendered(overlay)
    accounts = {r["metadata"]["name"]: r for r in resources if r["kind"] == "ServiceAccount"}
    assert all(account["automountServiceAccountToken"] is False for account in accounts.values())
    found = workloads(resources)
    assert {r["kind"] for r in found} == {"Deployment", "Job", "CronJob"}
    for workload in found:
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        pod = pod_spec(workload)
        assert pod is not None
        assert pod["serviceAccountName"] in accounts, name
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["enableServiceLinks"] is False, (
            name
        )  # DESKPILOT_* variables of the Service named deskpilot
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert security["runAsUser"] > 0, name
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        volumes = {volume["name"] for volume in pod["volumes"]}
        for container in pod["containers"] + pod.get("initContainers", []):
            for part in ("requests", "limits"):
                assert set(container["resources"][part]) >= {"cpu", "memory"}, f"{name}: {part}"
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert context.get("privileged", False) is False, name
            mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
            assert set(mounts.values()) <= volumes, name
            # the home (DESKPILOT_HOME) and /tmp must be writable under a read-only root
            assert {"/tmp", "/var/lib/deskpilot"} <= set(mounts), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_service_probes_and_drains_as_the_server_does(overlay: str) -> None:
    deployment = one(rendered(overlay), "Deployment", "deskpilot")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    probes = {kind: container[f"{kind}Probe"] for kind in ("startup", "readiness", "liveness")}
    assert probes["readiness"]["httpGet"]["path"] == "/readyz"
    assert probes["liveness"]["httpGet"]["path"] == "/healthz"
    assert probes["startup"]["httpGet"]["path"] == "/healthz"
    for probe in probes.values():
        assert probe["httpGet"]["port"] == "http"
        assert probe["timeoutSeconds"] < probe["periodSeconds"]
    # the startup probe waits for a model load; liveness is slower to give up than readiness
    assert probes["startup"]["periodSeconds"] * probes["startup"]["failureThreshold"] >= 120
    liveness, readiness = probes["liveness"], probes["readiness"]
    assert (
        liveness["periodSeconds"] * liveness["failureThreshold"]
        > readiness["periodSeconds"] * readiness["failureThreshold"]
    )
    command = container["command"]
    assert command[:2] == ["deskpilot", "serve"]
    assert int(command[command.index("--port") + 1]) == ports["http"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    # preStop, then uvicorn's graceful shutdown, then the decision and shadow writers' flush (10 s each)
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = pre_stop + uvicorn_options(Settings())["timeout_graceful_shutdown"] + 2 * 10
    assert pod["terminationGracePeriodSeconds"] >= drain
    # the HPA owns the replica count: `kubectl apply` must not reset it
    assert "replicas" not in deployment["spec"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_select_the_serving_pods(overlay: str) -> None:
    resources = rendered(overlay)
    deployment = one(resources, "Deployment", "deskpilot")
    labels = pod_labels(deployment)
    assert selects(deployment["spec"]["selector"], labels)
    for workload in workloads(resources):  # no job's pods are mistaken for serving pods
        assert selects(deployment["spec"]["selector"], pod_labels(workload)) == (workload is deployment)
    service = one(resources, "Service", "deskpilot")
    assert selects({"matchLabels": service["spec"]["selector"]}, labels)
    container_ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= container_ports
    assert selects(one(resources, "PodDisruptionBudget", "deskpilot")["spec"]["selector"], labels)
    target = one(resources, "HorizontalPodAutoscaler", "deskpilot")["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "deskpilot"}
    assert selects(one(resources, "NetworkPolicy", "deskpilot-serve")["spec"]["podSelector"], labels)
    jobs = one(resources, "NetworkPolicy", "deskpilot-jobs")["spec"]["podSelector"]
    for workload in workloads(resources):
        assert selects(jobs, pod_labels(workload)) == (workload is not deployment)
    assert one(resources, "NetworkPolicy", "deskpilot-default-deny")["spec"]["podSelector"] == {}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_network_policies_let_in_only_the_ingress_controller_and_prometheus(overlay: str) -> None:
    resources = rendered(overlay)
    policy = one(resources, "NetworkPolicy", "deskpilot-serve")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    allowed = {}
    for rule in policy["ingress"]:
        (peer,) = rule["from"]
        namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        allowed[namespace] = {port["port"] for port in rule["ports"]}
    assert allowed == {"ingress-nginx": {"http"}, "monitoring": {"metrics"}}
    jobs = one(resources, "NetworkPolicy", "deskpilot-jobs")["spec"]
    assert "Ingress" in jobs["policyTypes"]
    assert not jobs.get("ingress")
    for spec in (policy, jobs):
        reachable = {(port["port"], port["protocol"]) for rule in spec["egress"] for port in rule["ports"]}
        assert reachable == {(53, "UDP"), (53, "TCP"), (5432, "TCP"), (5000, "TCP")}
        assert all(peer.get("namespaceSelector") for rule in spec["egress"] for peer in rule["to"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_tagged_and_never_latest(overlay: str) -> None:
    images = {c["image"] for r in rendered(overlay) for c in containers_of(r)}
    names = {split_image(image)[0].rsplit("/", 1)[-1] for image in images}
    assert names == {"deskpilot-serve", "deskpilot-train"}
    for image in images:
        tag = split_image(image)[1]
        assert tag not in (None, "latest"), image
        assert tag == ("dev" if overlay == "dev" else __version__), image


def test_the_overlays_size_the_service() -> None:
    dev, prod = rendered("dev"), rendered("prod")
    for resources, namespace in ((dev, "deskpilot-dev"), (prod, "deskpilot")):
        labels = one(resources, "Namespace", namespace)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        assert {r["metadata"].get("namespace", namespace) for r in resources} == {namespace}
    dev_hpa = one(dev, "HorizontalPodAutoscaler", "deskpilot")["spec"]
    assert dev_hpa["minReplicas"] == dev_hpa["maxReplicas"] == 1
    prod_hpa = one(prod, "HorizontalPodAutoscaler", "deskpilot")["spec"]
    assert 3 <= prod_hpa["minReplicas"] < prod_hpa["maxReplicas"]
    prod_pdb = one(prod, "PodDisruptionBudget", "deskpilot")["spec"]
    assert "maxUnavailable" not in prod_pdb
    assert 2 <= prod_pdb["minAvailable"] < prod_hpa["minReplicas"]  # a drain can always move one pod
    pod = one(prod, "Deployment", "deskpilot")["spec"]["template"]["spec"]
    spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    assert set(spread) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert all(c["labelSelector"]["matchLabels"] == SERVE for c in spread.values())
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == SERVE

    def memory(resources: list[Resource]) -> str:
        container = one(resources, "Deployment", "deskpilot")["spec"]["template"]["spec"]["containers"][0]
        return str(container["resources"]["limits"]["memory"])

    assert (memory(dev), memory(prod)) == ("1Gi", "3Gi")
    assert one(dev, "CronJob", "deskpilot-retrain")["spec"]["suspend"] is True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_holds_a_real_looking_value(overlay: str) -> None:
    resources = rendered(overlay)
    generated = [r for r in resources if r["kind"] == "Secret"]
    assert bool(generated) == (overlay == "dev"), "only dev generates Secrets; prod's are made by hand"
    for secret in generated + secret_templates():
        for key, value in secret_values(secret).items():
            if any(marker in value for marker in PLACEHOLDERS):
                continue
            where = f"{secret['metadata']['name']}.{key}"
            assert "KEY" not in key, f"{where}: a key without a placeholder"
            url = urlsplit(value)
            assert url.scheme, f"{where}: neither a placeholder nor a URL"
            assert url.password is None, f"{where}: a password without a placeholder"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_reference_to_a_config_map_or_secret_resolves(overlay: str) -> None:
    resources = rendered(overlay)
    maps = {r["metadata"]["name"]: r["data"] for r in resources if r["kind"] == "ConfigMap"}
    secrets = {s["metadata"]["name"]: secret_values(s) for s in secrets_for(overlay, resources)}
    readers: dict[str, set[str]] = {}
    for workload in workloads(resources):
        for container in containers_of(workload):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in maps
                else:
                    assert source["secretRef"]["name"] in secrets
                    readers.setdefault(source["secretRef"]["name"], set()).add(container["name"])
            for variable in container.get("env", []):
                source = variable.get("valueFrom", {})
                if "configMapKeyRef" in source:
                    assert source["configMapKeyRef"]["key"] in maps[source["configMapKeyRef"]["name"]]
                if "secretKeyRef" in source:
                    ref = source["secretKeyRef"]
                    assert ref["key"] in secrets[ref["name"]], f"{ref['name']}.{ref['key']}"
                    assert variable["name"] == ref["key"]
                    readers.setdefault(ref["name"], set()).add(container["name"])
    # the table owner's URL reaches the migration and the backup (pg_dump sees every table as the owner)
    assert readers["deskpilot-migration"] == {"migrate", "backup"}
    assert readers["deskpilot-runtime"] == {"serve", "migrate", "monitor", "retrain", "backup"}
    for workload in workloads(resources):
        for volume in (pod_spec(workload) or {})["volumes"]:
            if "persistentVolumeClaim" in volume:
                one(resources, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_settings_are_deskpilot_settings_and_valid(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    resources = rendered(overlay)
    env = environment(resources, secrets_for(overlay, resources))
    names = {f"DESKPILOT_{name.upper()}" for name in Settings.model_fields}
    unknown = {key for key in env if key.startswith("DESKPILOT_") and key not in names}
    assert not unknown, f"not DeskPilot settings: {sorted(unknown)}"
    for key in [k for k in os.environ if k.startswith("DESKPILOT_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    deployment = one(resources, "Deployment", "deskpilot")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert settings.metrics_port == ports["metrics"]
    assert settings.metrics_host == "0.0.0.0"
    mounts = [Path(m["mountPath"]) for m in container["volumeMounts"]]
    assert any(settings.home.is_relative_to(mount) and settings.home != mount for mount in mounts)
    assert settings.workers == 1
    if overlay == "dev":  # real values: the service would start with them
        assert settings.database_url is not None
        assert settings.database_url.startswith("postgresql+psycopg://")
        assert all(parse_secret(key) for key in settings.audit_key)
        assert config_key_records(settings.api_keys)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_jobs_run_commands_and_options_that_exist(overlay: str) -> None:
    resources = rendered(overlay)
    commands: dict[str, list[list[str]]] = {}
    for workload in workloads(resources):
        for container in containers_of(workload):
            words = container["command"] + container.get("args", [])
            if words[0] == "deskpilot":
                invocations = [words[1:]]
            else:  # a shell script: every line that runs deskpilot
                assert words[:2] == ["/bin/sh", "-c"]
                script = "\n".join(words[2:])
                invocations = [
                    shlex.split(line)[1:] for line in script.splitlines() if line.startswith("deskpilot ")
                ]
            commands[workload["metadata"]["name"]] = invocations
            for invocation in invocations:
                assert_cli_accepts(invocation)
    assert commands["deskpilot"][0][0] == "serve"
    assert commands["deskpilot-migrate"] == [["store", "migrate"]]
    assert commands["deskpilot-backup"] == [["store", "backup", "--output", "$out"]]
    assert commands["deskpilot-retrain"][0][:2] == ["retrain", "--from-feedback"]
    (monitor,) = commands["deskpilot-monitor"]
    assert monitor[0] == "monitor"
    assert "--textfile" in monitor
    retrain = one(resources, "CronJob", "deskpilot-retrain")
    (container,) = list(containers_of(retrain))
    assert split_image(container["image"])[0].endswith("deskpilot-train")
    for name in ("deskpilot-retrain", "deskpilot-monitor", "deskpilot-backup"):
        spec = one(resources, "CronJob", name)["spec"]
        assert spec["concurrencyPolicy"] == "Forbid"
        assert spec["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def assert_cli_accepts(words: list[str]) -> None:
    """The subcommand exists and every ``--option`` is one of its options."""
    command: Any = load_command(words[0])
    rest = words[1:]
    while hasattr(command, "commands") and rest and rest[0] in command.commands:
        command, rest = command.commands[rest[0]], rest[1:]
    assert not hasattr(command, "commands"), f"deskpilot {' '.join(words)}: no such subcommand"
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    unknown = [word for word in rest if word.startswith("--") and word.split("=")[0] not in options]
    assert not unknown, f"deskpilot {' '.join(words)}: no option {unknown}"


def test_the_autoscaler_scales_on_the_services_request_counter() -> None:
    hpa = one(rendered("prod"), "HorizontalPodAutoscaler", "deskpilot")["spec"]
    by_type = {metric["type"]: metric for metric in hpa["metrics"]}
    assert by_type["Resource"]["resource"]["name"] == "cpu"
    pods_metric = by_type["Pods"]["pods"]["metric"]["name"]
    values = yaml.safe_load((K8S_DIR / "prometheus-adapter-values.yaml").read_text(encoding="utf-8"))
    (rule,) = values["rules"]["custom"]
    assert rule["name"]["as"] == pods_metric
    series = rule["seriesQuery"].split("{")[0]
    suffixes = {"histogram": ("_count", "_sum", "_bucket"), "counter": ("_total",), "gauge": ("",)}
    exposed = {
        family.name + suffix
        for family in ServiceMetrics().registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }
    assert series in exposed, f"{series} is not a metric of the service"
    assert series.endswith("_count")
    assert 'route=~"/v1/.+"' in rule["metricsQuery"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_service_monitor_scrapes_the_metrics_port(overlay: str) -> None:
    resources = rendered(overlay)
    monitor = one(resources, "ServiceMonitor", "deskpilot")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = one(resources, "Service", "deskpilot")
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    service_ports = {port["name"] for port in service["spec"]["ports"]}
    assert [endpoint["port"] for endpoint in monitor["spec"]["endpoints"]] == ["metrics"]
    assert {"metrics"} <= service_ports
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["path"] == "/metrics"
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
    # the alerts select job=~"deskpilot.*", and the operator names the job after the Service
    assert service["metadata"]["name"].startswith("deskpilot")
    assert "jobLabel" not in monitor["spec"]


def test_the_prometheus_rule_is_generated_from_the_rule_files() -> None:
    module = load_render_rules()
    committed = (K8S_DIR / "base" / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert committed == module.render(), "run python deploy/k8s/render_rules.py"
    rule = yaml.safe_load(committed)
    sources = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(RULES_DIR.glob("*.yml"))]
    assert rule["spec"]["groups"] == [group for source in sources for group in source["groups"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_prometheus_rule_is_well_formed_and_promtool_accepts_it(overlay: str, tmp_path: Path) -> None:
    rule = one(rendered(overlay), "PrometheusRule", "deskpilot")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule["spec"]) == {"groups"}
    names = [group["name"] for group in rule["spec"]["groups"]]
    assert len(names) == len(set(names)) >= 4
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules"}
        assert group["rules"]
        for item in group["rules"]:
            assert ("alert" in item) != ("record" in item)
            assert isinstance(item["expr"], str)
            assert set(item) <= {"alert", "record", "expr", "for", "labels", "annotations"}
            if "alert" in item:
                assert item["labels"]["severity"] in {"page", "ticket"}
                assert item["annotations"]["runbook_url"].startswith("docs/runbook.md#")
    promtool = prometheus_binary("promtool")
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")
    done = subprocess.run(
        [promtool, "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


class _Pushgateway(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.mark.parametrize(
    ("writes", "status", "expected_exit", "pushed"),
    [(True, 1, 0, True), (True, 0, 0, True), (False, 1, 1, False), (False, 2, 2, False)],
    ids=["signal-fired", "quiet", "run-failed", "usage-error"],
)
def test_the_monitor_job_pushes_the_gauges_of_a_finished_run(
    tmp_path: Path, writes: bool, status: int, expected_exit: int, pushed: bool
) -> None:
    """The CronJob's script against a stand-in ``deskpilot`` and Pushgateway: a run that wrote its gauges
    is pushed and succeeds whether or not a signal fired; a run that failed fails the Job."""
    cronjob = one(rendered("prod"), "CronJob", "deskpilot-monitor")
    (container,) = list(containers_of(cronjob))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "deskpilot"
    write = 'while [ $# -gt 0 ]; do [ "$1" = --textfile ] && echo "deskpilot_monitor_x 1" > "$2"; shift; done'
    stand_in.write_text(f"#!/bin/sh\n{write if writes else ''}\nexit {status}\n", encoding="utf-8")
    stand_in.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    _Pushgateway.received = []
    server = HTTPServer(("127.0.0.1", 0), _Pushgateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "TMPDIR": str(tmp_path),
            "PUSHGATEWAY_URL": f"http://127.0.0.1:{server.server_port}",
        }
        done = subprocess.run(
            container["command"] + container["args"], env=env, capture_output=True, timeout=60, check=False
        )
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == expected_exit, done.stderr
    if pushed:
        assert _Pushgateway.received == [
            ("PUT", "/metrics/job/deskpilot-monitor", b"deskpilot_monitor_x 1\n")
        ]
    else:
        assert _Pushgateway.received == []


# -- state that outlives a pod: the shared home, the backups ------------------------------------------------


def volume_at(pod: dict[str, Any], container: dict[str, Any], path: Path) -> dict[str, Any]:
    """The volume a path of the container lies on: its deepest mount that holds the path."""
    holding = [m for m in container["volumeMounts"] if path.is_relative_to(m["mountPath"])]
    assert holding, f"{path} is on the read-only root"
    mount = max(holding, key=lambda m: len(Path(m["mountPath"]).parts))
    assert not mount.get("readOnly", False), f"{path} is on a read-only mount"
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return dict(volume)


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in [k for k in os.environ if k.startswith("DESKPILOT_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_serving_pod_keeps_its_lasting_state_on_one_shared_volume(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What must outlive a pod and be the same in every replica lives on one claim that every replica
    mounts: the keys file (operator keys exist only there; ``keys create|revoke`` write it), the audit
    entries queued while the store is unreachable, the ledger of audit heads, the retrieval index."""
    from deskpilot.workflows.audit import PENDING_FILE

    resources = rendered(overlay)
    settings = settings_from(environment(resources, secrets_for(overlay, resources)), monkeypatch)
    pod = one(resources, "Deployment", "deskpilot")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    lasting = {
        "keys file": settings.keys_file,
        "queued audit entries": settings.home / PENDING_FILE,
        "audit head ledger": settings.resolved_audit_ledger,
        "retrieval index": settings.resolved_kb_dir,
    }
    claims = set()
    for what, path in lasting.items():
        volume = volume_at(pod, container, path)
        assert "persistentVolumeClaim" in volume, f"{what} ({path}) is lost with the pod: {volume}"
        claims.add(volume["persistentVolumeClaim"]["claimName"])
    (claim,) = claims
    modes = one(resources, "PersistentVolumeClaim", claim)["spec"]["accessModes"]
    hpa = one(resources, "HorizontalPodAutoscaler", "deskpilot")["spec"]
    if hpa["maxReplicas"] > 1:  # replicas on several nodes mount it at once
        assert "ReadWriteMany" in modes, f"{claim}: {modes}"
    else:
        assert modes
    # the backup job mounts the same home, so that a restore made from it checks this ledger
    backup = pod_spec(one(resources, "CronJob", "deskpilot-backup"))
    assert backup is not None
    (backup_container,) = backup["containers"]
    assert volume_at(backup, backup_container, settings.resolved_audit_ledger) == {
        "name": "home",
        "persistentVolumeClaim": {"claimName": claim},
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_operator_keys_are_limited_to_the_operators_tenant(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys from DESKPILOT_API_KEYS always have the agent role; an operator key comes from the shared keys
    file, and only for the tenants the ConfigMap names. The README's command creates one of those."""
    resources = rendered(overlay)
    settings = settings_from(environment(resources, secrets_for(overlay, resources)), monkeypatch)
    assert settings.console_operator_tenants, "on a shared deployment, name the operators' tenant"
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Kubernetes", 1)[1].split("\n## ", 1)[0]
    created = [
        shlex.split(line.split(" -- ", 1)[1])
        for line in section.splitlines()
        if " -- deskpilot keys create " in line and "--role operator" in line
    ]
    assert created, "the README shows how to create an operator key in a serving pod"
    for words in created:
        assert_cli_accepts(words[1:])
        assert settings.may_operate(words[words.index("--tenant") + 1])
    if overlay == "dev":
        assert all(record.role == "agent" for record in config_key_records(settings.api_keys))


def test_the_backup_job_dumps_as_the_owner_into_its_volume() -> None:
    resources = rendered("prod")
    cronjob = one(resources, "CronJob", "deskpilot-backup")
    pod = pod_spec(cronjob)
    assert pod is not None
    (container,) = pod["containers"]
    assert split_image(container["image"])[0].endswith("deskpilot-serve"), "the image with pg_dump"
    env = {v["name"]: v for v in container["env"]}
    owner = env["DESKPILOT_MIGRATION_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert owner == {"name": "deskpilot-migration", "key": "DESKPILOT_MIGRATION_DATABASE_URL"}
    assert "DESKPILOT_DATABASE_URL" in env, "backup_store checks both name one database"
    directory = Path(env["BACKUP_DIR"]["value"])
    volume = volume_at(pod, container, directory / "x.dpbackup")
    claim = one(resources, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert int(env["BACKUP_KEEP_DAYS"]["value"]) >= 7, "at least the runbook's 7 daily files"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert cronjob["spec"]["timeZone"] == "Etc/UTC"
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"], "writes its volume"


@pytest.mark.parametrize(("status", "kept"), [(0, False), (1, True)], ids=["dumped", "dump-failed"])
def test_the_backup_job_prunes_old_files_only_after_a_good_backup(
    tmp_path: Path, status: int, kept: bool
) -> None:
    """The CronJob's script against a stand-in ``deskpilot``: a timestamped file each run; files past
    BACKUP_KEEP_DAYS go only when this run's backup was written; other files are never touched."""
    cronjob = one(rendered("prod"), "CronJob", "deskpilot-backup")
    (container,) = list(containers_of(cronjob))
    env = {v["name"]: v["value"] for v in container["env"] if "value" in v}
    backups = tmp_path / "backups"
    backups.mkdir()
    days = int(env["BACKUP_KEEP_DAYS"])
    old, recent, other = (
        backups / name for name in ("deskpilot-old.dpbackup", "deskpilot-recent.dpbackup", "notes.txt")
    )
    for path, age in ((old, days + 2), (recent, days - 2), (other, days + 30)):
        path.write_text("x")
        then = time.time() - age * 86400
        os.utime(path, (then, then))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "deskpilot"
    stand_in.write_text(
        f'#!/bin/sh\necho "$@" > {tmp_path}/args\n[ {status} = 0 ] && : > "$4"\nexit {status}\n'
    )
    stand_in.chmod(0o755)
    run_env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin", "BACKUP_DIR": str(backups)}
    run_env["BACKUP_KEEP_DAYS"] = str(days)
    done = subprocess.run(
        container["command"] + container["args"], env=run_env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == status, done.stderr
    words = (tmp_path / "args").read_text().split()
    assert words[:3] == ["store", "backup", "--output"]
    written = Path(words[3])
    assert written.parent == backups
    assert re.fullmatch(r"deskpilot-\d{8}T\d{6}Z\.dpbackup", written.name), written.name
    assert old.exists() == kept
    assert recent.exists()
    assert other.exists()
    assert written.exists() == (status == 0)


# -- the documented order: the migration before the serving pods -------------------------------------------


def parse_selector(text: str) -> dict[str, Any]:
    """A kubectl ``-l`` selector (``k=v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k``) as a
    label selector for :func:`selects`; ``k!=v`` is ``NotIn``, which also matches objects without ``k``."""
    expressions = []
    for raw in re.split(r",(?![^(]*\))", text):
        term = raw.strip()
        if match := re.fullmatch(r"(\S+?)\s*!=\s*(\S+)", term):
            expressions.append({"key": match[1], "operator": "NotIn", "values": [match[2]]})
        elif match := re.fullmatch(r"(\S+?)\s*==?\s*(\S+)", term):
            expressions.append({"key": match[1], "operator": "In", "values": [match[2]]})
        elif match := re.fullmatch(r"(\S+)\s+(in|notin)\s+\(([^)]*)\)", term):
            values = [v.strip() for v in match[3].split(",")]
            expressions.append(
                {"key": match[1], "operator": {"in": "In", "notin": "NotIn"}[match[2]], "values": values}
            )
        elif match := re.fullmatch(r"(!?)(\S+)", term):
            expressions.append({"key": match[2], "operator": "DoesNotExist" if match[1] else "Exists"})
        else:
            raise ValueError(f"selector term {term!r}")
    return {"matchExpressions": expressions}


def kubectl_lines(markdown: str) -> list[list[str]]:
    """The kubectl commands of the bash blocks, continuation lines joined, comments and a leading
    ``-n NAMESPACE`` left out."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["kubectl"]:
                if words[1:2] in (["-n"], ["--namespace"]):
                    del words[1:3]
                commands.append(words)
    return commands


def migration_first(commands: list[list[str]], overlay: str) -> None:
    """Every ``kubectl apply -k`` of the overlay that starts (or rolls) serving pods comes after the
    migration Job of that release completed; an apply before that brings the Job and what it needs, and no
    serving pod."""
    resources = rendered(overlay)
    job = one(resources, "Job", "deskpilot-migrate")
    migrated = False
    applied_job = False
    for words in commands:
        if words[1:2] == ["wait"] and "job/deskpilot-migrate" in words:
            assert applied_job, "waits for a migration Job nobody applied"
            assert "--for=condition=complete" in words
            migrated = True
            continue
        if words[1:3] != ["apply", "-k"] or not words[3].endswith(f"overlays/{overlay}"):
            continue
        selector = next((words[i + 1] for i, w in enumerate(words) if w in ("-l", "--selector")), None)
        chosen = [
            r
            for r in resources
            if selector is None or selects(parse_selector(selector), r["metadata"].get("labels", {}))
        ]
        if any(r["kind"] == "Deployment" for r in chosen):
            assert migrated, f"`{shlex.join(words)}` starts serving pods before the migration completed"
            migrated = False  # the next release migrates again
            continue
        names = {(r["kind"], r["metadata"]["name"]) for r in chosen}
        assert ("Job", "deskpilot-migrate") in names
        assert {("ConfigMap", "deskpilot-config"), ("ServiceAccount", "deskpilot")} <= names
        policies = [
            r
            for r in chosen
            if r["kind"] == "NetworkPolicy" and selects(r["spec"]["podSelector"], pod_labels(job))
        ]
        assert not policies or any(p["spec"].get("egress") for p in policies), (
            "the Job could not reach the store"
        )
        applied_job, migrated = True, False


def test_the_readme_and_the_runbook_migrate_before_the_serving_pods_start() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Kubernetes", 1)[1].split("\n## ", 1)[0]
    commands = kubectl_lines(section)
    assert any(words[1:3] == ["apply", "-k"] for words in commands)
    migration_first(commands, "prod")
    runbook = (REPO_ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")
    deploy = runbook.split("\n## Deploy\n", 1)[1].split("\n## ", 1)[0]
    steps = kubectl_lines(deploy)
    assert any(words[1:3] == ["apply", "-k"] for words in steps), "the runbook's Kubernetes roll, as commands"
    migration_first(steps, "prod")


def test_the_selector_parser_reads_what_kubectl_reads() -> None:
    labels = {"app.kubernetes.io/component": "serve", "app": "x"}
    assert selects(parse_selector("app.kubernetes.io/component!=serve"), labels) is False
    assert selects(parse_selector("app.kubernetes.io/component!=serve"), {"app": "x"}) is True
    assert selects(parse_selector("app.kubernetes.io/component notin (serve, monitor)"), labels) is False
    assert selects(parse_selector("app=x,app.kubernetes.io/component in (serve)"), labels) is True
    assert selects(parse_selector("!app"), labels) is False
