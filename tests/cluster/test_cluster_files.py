"""Every cluster file passes what `ray up` / KubeRay / `docker build` would check first, offline."""
import copy
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.commands import _bootstrap_config
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
RAY_SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
LEGACY_KEYS = {"head_node", "worker_nodes", "min_workers"}


def ray_cluster_files():
    """Every Ray cluster-launcher config where they live: the repository root and platform/."""
    found = []
    for path in sorted([*ROOT.glob("*.yaml"), *(ROOT / "platform").rglob("*.yaml")]):
        document = next(yaml.safe_load_all(path.read_text()), None)
        if isinstance(document, dict) and {"cluster_name", "provider"} <= document.keys():
            found.append(path)
    return found


CLUSTER_FILES = ray_cluster_files()
AWS = yaml.safe_load((ROOT / "cluster.yaml").read_text())


def all_commands(config):
    keys = [k for k in config if k.endswith("_commands")]
    return [command for key in keys for command in config[key]]


# ---- Ray cluster-launcher files --------------------------------------------------------------
def test_both_cluster_files_are_found():
    names = {str(path.relative_to(ROOT)) for path in CLUSTER_FILES}
    assert {"cluster.yaml", "platform/onprem/cluster.yaml"} <= names


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_cluster_file_passes_rays_schema_and_config_preparation(path):
    config = yaml.safe_load(path.read_text())
    assert not LEGACY_KEYS & config.keys()
    jsonschema.validate(config, RAY_SCHEMA)
    if config["provider"]["type"] == "local":
        # The local provider's whole bootstrap runs offline.
        prepared = _bootstrap_config(copy.deepcopy(config), no_config_cache=True)
    else:
        # AWS's bootstrap asks AWS (IAM, subnets, AMIs); everything before that is offline.
        prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_cluster_file_turns_on_token_auth_and_starts_mlflow_with_flags_the_launcher_knows(path, mlflow_launcher):
    config = yaml.safe_load(path.read_text())
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "RAY_AUTH_MODE=token" in " ".join(config["head_setup_commands"])
    assert "RAY_AUTH_MODE=token" in " ".join(config["worker_setup_commands"])
    for start in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if "ray start" in start:
            assert "source ~/mixsweep.env &&" in start   # token mode in Ray's environment
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    mlflow_starts = [c for c in config["head_start_ray_commands"] if "platform/mlflow/server.py" in c]
    assert len(mlflow_starts) == 1
    args = mlflow_launcher._parser().parse_args(shlex.split(mlflow_starts[0].split("server.py", 1)[1]))
    assert args.action == "start"
    assert args.hosts == ["$MIXSWEEP_HEAD_IP", "127.0.0.1"]   # private address first, never 0.0.0.0
    assert config["file_mounts"]["~/mixsweep"] == "."
    assert any("pip install -e ~/mixsweep" in c for c in config["setup_commands"])


def test_aws_head_runs_no_trials_and_gpu_workers_autoscale_from_zero():
    node_types = AWS["available_node_types"]
    assert node_types[AWS["head_node_type"]]["resources"] == {"CPU": 0}
    workers = {name: t for name, t in node_types.items() if name != AWS["head_node_type"]}
    gpu_families = ("g4dn", "g5", "g6", "p3", "p4", "p5")
    assert workers and all(t["min_workers"] == 0 for t in workers.values())
    assert all(t["node_config"]["InstanceType"].startswith(gpu_families) for t in workers.values())
    assert any(t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"
               for t in workers.values())
    assert any(t["max_workers"] > 0 for t in workers.values())


def test_aws_opens_no_port_to_the_world_beyond_rays_ssh_rule():
    assert "IpPermissions" not in AWS["provider"]["security_group"]
    assert all("0.0.0.0" not in command for command in all_commands(AWS))


def test_aws_head_environment_gives_mixsweep_s3_storage_and_the_tracking_uri():
    env = AWS["head_setup_commands"][-1]
    assert re.search(r"MIXSWEEP_STORAGE=s3://\S+", env)
    assert "MLFLOW_TRACKING_URI=http://$(hostname -I" in env
    assert re.search(r"MIXSWEEP_MLFLOW_ARTIFACTS=s3://\S+", env)
    mlflow_start = next(c for c in AWS["head_start_ray_commands"] if "server.py" in c)
    assert "--artifacts-destination $MIXSWEEP_MLFLOW_ARTIFACTS" in mlflow_start
    assert "MLFLOW_TRACKING_URI=http://$RAY_HEAD_IP:5000" in AWS["worker_setup_commands"][-1]


def test_aws_image_is_the_ray_we_run():
    assert AWS["docker"]["image"].startswith(f"rayproject/ray:{ray.__version__}-py3")


# ---- Dockerfile ------------------------------------------------------------------------------
def test_dockerfile_pins_the_ray_base_and_the_versions_pyproject_pins():
    dockerfile = (ROOT / "platform" / "docker" / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.M).group(1)
    assert base.startswith(f"rayproject/ray:{ray.__version__}-py3") and base.endswith("-gpu")
    pins = dict(re.findall(r"^\s+([A-Za-z0-9_.-]+)==(\S+?)\s*\\?$", dockerfile, re.M))
    assert set(pins) >= {"torch", "torchvision", "mlflow", "optuna", "pyarrow"}
    project = (ROOT / "pyproject.toml").read_text()
    assert f"torch=={pins['torch']}" in project
    assert f"torchvision=={pins['torchvision']}" in project
    assert "mlflow==3.17.*" in project and pins["mlflow"].startswith("3.17.")
    assert int(pins["pyarrow"].split(".")[0]) < 26
    assert "latest" not in dockerfile.lower()


# ---- KubeRay ---------------------------------------------------------------------------------
def kube_documents():
    docs = []
    for path in sorted((ROOT / "platform" / "kuberay").glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


DOCS = kube_documents()
RAY_CLUSTER = next(d for d in DOCS if d["kind"] == "RayCluster")
RAY_JOB = next(d for d in DOCS if d["kind"] == "RayJob")


def check_ray_cluster_spec(spec):
    """The fields KubeRay's RayCluster CRD requires, and this project's choices."""
    head = spec["headGroupSpec"]
    assert all(isinstance(v, str) for v in head["rayStartParams"].values())
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["template"]["spec"]["containers"][0]["image"]
    assert spec["authOptions"] == {"mode": "token", "secretName": "mixsweep-ray-token"}
    assert spec["rayVersion"] == ray.__version__
    assert spec["workerGroupSpecs"]
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"]
        assert 0 == group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert isinstance(group["rayStartParams"], dict)
        container = group["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    head_env = {e["name"]: e["value"] for e in head["template"]["spec"]["containers"][0]["env"]}
    return head_env


def test_every_kube_document_names_its_api_and_kind():
    assert all(doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"] for doc in DOCS)
    assert RAY_CLUSTER["apiVersion"] == RAY_JOB["apiVersion"] == "ray.io/v1"


def test_raycluster_has_a_cpu_head_gpu_workers_and_token_auth():
    head_env = check_ray_cluster_spec(RAY_CLUSTER["spec"])
    assert head_env["MIXSWEEP_STORAGE"].startswith("s3://")


def test_rayjob_runs_mixsweep_on_the_same_cluster_with_tracking_and_storage():
    assert "mixsweep run search_spaces/paper.yaml --address auto" in RAY_JOB["spec"]["entrypoint"]
    assert RAY_JOB["spec"]["rayClusterSpec"] == RAY_CLUSTER["spec"]
    head_env = check_ray_cluster_spec(RAY_JOB["spec"]["rayClusterSpec"])
    service = next(d for d in DOCS if d["kind"] == "Service")
    port = service["spec"]["ports"][0]["port"]
    assert head_env["MLFLOW_TRACKING_URI"] == f"http://{service['metadata']['name']}:{port}"
    assert head_env["MIXSWEEP_STORAGE"].startswith("s3://")


def test_kube_images_are_pinned():
    images = re.findall(r"image:\s*(\S+)", "\n".join(
        p.read_text() for p in (ROOT / "platform" / "kuberay").glob("*.yaml")))
    assert images and all(":" in image and not image.endswith(":latest") for image in images)


# ---- the folder itself -----------------------------------------------------------------------
def test_platform_is_never_a_python_package():
    assert not list((ROOT / "platform").rglob("__init__.py"))
