"""The deployment files, checked without Docker: compose files, Dockerfile, .dockerignore, qdrant.env.

No engine runs here, so every promise the files make is checked by reading them the way Docker
does (YAML with anchors, compose's ${VAR:-default} interpolation, Dockerfile instructions,
.dockerignore patterns) and, where a command can run on its own, by running it: the healthchecks
are executed against stub servers on 127.0.0.1, and the app's environment is parsed by the same
`Settings.from_env` the container runs.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import replace
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from embedder.config import DATA_DIR, ENV_NAMES, Settings

ROOT = Path(__file__).resolve().parent.parent
SINGLE = "docker-compose.yml"
CLUSTER = "docker-compose.cluster.yml"
GPU = "docker-compose.gpu.yml"
BASES = (SINGLE, CLUSTER)
APP_IMAGE = "embedder:local"
APP_PORT = 8501
QDRANT_HTTP = 6333
QDRANT_P2P = 6335

# Variables the app's containers may set that are not product settings: each one is for a library
# or the runtime, never read by embedder/ (ENV_NAMES holds everything the product reads).
NON_PRODUCT_ENV = {
    "HF_HOME",  # Hugging Face cache: where the CLIP weights are downloaded to
    "HF_HUB_OFFLINE",  # never try the network for the model
    "TRANSFORMERS_OFFLINE",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
    "PIP_ROOT_USER_ACTION",
}
# The Qdrant server's own settings the compose files use (QDRANT__SECTION__KEY, Qdrant's format).
QDRANT_SERVER_ENV = {"QDRANT__SERVICE__API_KEY", "QDRANT__CLUSTER__ENABLED", "QDRANT__TELEMETRY_DISABLED"}
# Variables the compose files read from the shell or .env, each documented in docs/deploy.md.
COMPOSE_VARS = {
    "QDRANT_API_KEY",
    "IMAGES_DIR",
    "TORCH_INDEX_URL",
    "QDRANT_SHARD_NUMBER",
    "QDRANT_REPLICATION_FACTOR",
    "QDRANT_WRITE_CONSISTENCY_FACTOR",
}


# --------------------------------------------------------------------------------------------
# Reading the files as Docker does


def compose(name: str) -> dict[str, Any]:
    """A compose file as YAML (anchors and `<<` merges resolved, as compose does)."""
    return yaml.safe_load((ROOT / name).read_text())


def services(name: str) -> dict[str, dict[str, Any]]:
    return compose(name)["services"]


_VAR = re.compile(r"\$(?:\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*)|(?P<dollar>\$))")


def interpolate(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Compose's variable interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}."""
    environ = environ or {}

    def one(match: re.Match[str]) -> str:
        if match["dollar"]:
            return "$"
        if match["plain"]:
            return environ.get(match["plain"], "")
        inner = match["braced"]
        found = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])(.*))?", inner, re.S)
        assert found, f"not a compose variable: ${{{inner}}}"
        name, colon, op, arg = found.groups()
        value = environ.get(name)
        missing = value is None or (colon == ":" and value == "")
        if op == "-" and missing:
            return arg
        if op == "?" and missing:
            raise ValueError(f"{name}: {arg}")
        return value or ""

    return _VAR.sub(one, text)


def variables(text: str) -> set[str]:
    """Names of the variables a compose string reads (not counting $$)."""
    names = set()
    for match in _VAR.finditer(text):
        if match["plain"]:
            names.add(match["plain"])
        elif match["braced"] is not None:
            names.add(re.match(r"[A-Za-z_][A-Za-z0-9_]*", match["braced"])[0])
    return names


def strings(node: Any) -> Iterator[str]:
    """Every string in a YAML tree, keys included."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def environment(service: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A service's `environment` (map or list form), interpolated."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: interpolate(str(value), environ) for key, value in env.items()}


def app_services(name: str) -> dict[str, dict[str, Any]]:
    """Services that run the app image: the app itself and one-shot indexing workers."""
    return {k: s for k, s in services(name).items() if s.get("image") == APP_IMAGE or "build" in s}


def qdrant_services(name: str) -> dict[str, dict[str, Any]]:
    return {k: s for k, s in services(name).items() if str(s.get("image", "")).startswith("qdrant/qdrant")}


def app_settings(name: str, environ: Mapping[str, str] | None = None, service: str = "app") -> Settings:
    """The Settings the app container of compose file `name` starts with (env_file, then environment)."""
    svc = services(name)[service]
    env_files = svc["env_file"] if isinstance(svc["env_file"], list) else [svc["env_file"]]
    assert env_files == ["qdrant.env"]
    return Settings.from_env(environ=environment(svc, environ), env_file=ROOT / "qdrant.env")


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def published(service: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) for every published port."""
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            out.append((port.get("host_ip", ""), int(port["published"]), int(port["target"])))
            continue
        parts = interpolate(str(port)).split("/")[0].split(":")
        assert len(parts) == 3, f"port {port!r} must name the host address, like 127.0.0.1:{parts[-1]}:{parts[-1]}"
        out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def mounts(service: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Container path -> (source, options) for every volume of a service (short syntax, interpolated)."""
    out = {}
    for volume in service.get("volumes") or []:
        source, target, *options = interpolate(volume).split(":")
        out[target] = (source, options[0] if options else "rw")
    return out


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    steps: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        steps.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return steps


def instructions(name: str) -> list[str]:
    return [args for word, args in dockerfile() if word == name]


def build_args() -> dict[str, str]:
    """ARG name -> default."""
    out = {}
    for args in instructions("ARG"):
        name, _, default = args.partition("=")
        out[name] = default
    return out


def env_defaults() -> dict[str, str]:
    """ENV name -> value (KEY=VALUE form)."""
    out = {}
    for args in instructions("ENV"):
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            out[key] = value
    return out


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) CMD/HEALTHCHECK CMD."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def healthcheck_command() -> list[str]:
    (args,) = instructions("HEALTHCHECK")
    _, _, command = args.partition("CMD ")
    return exec_form(command)


def dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception `!`, pattern) in order, as Docker reads .dockerignore."""
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        pattern = pattern.strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        rules.append((negate, re.compile(regex + r"\Z")))
    return rules


def in_build_context(path: str) -> bool:
    """Whether `path` (relative to the repo) reaches the image: the last matching rule wins, and a
    rule matching a parent folder applies to everything inside it (Docker's own semantics)."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for negate, regex in dockerignore():
        if any(regex.match(c) for c in candidates):
            included = negate
    return included


def qdrant_env_lines() -> list[tuple[str, str, str]]:
    """(key, value, the comment lines just above it) for every setting in qdrant.env."""
    out = []
    comment: list[str] = []
    for raw in (ROOT / "qdrant.env").read_text().splitlines():
        line = raw.strip()
        if not line:
            comment = []
        elif line.startswith("#"):
            comment.append(line)
        else:
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*=[^\s#'\"]*", line), (
                f"qdrant.env: {line!r} must be VAR=value with no quotes, spaces or inline comment, "
                "so compose and python-dotenv read it the same way"
            )
            key, _, value = line.partition("=")
            out.append((key, value, "\n".join(comment)))
            comment = []
    return out


class _Health(BaseHTTPRequestHandler):
    ok_path = "/"
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        status = self.status if self.path == self.ok_path else 404
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"all shards are ready" if status == 200 else b"no")

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def health_server(path: str, status: int) -> Iterator[int]:
    """An HTTP server on 127.0.0.1 that answers `status` on `path` (404 elsewhere); yields its port."""
    handler = type("Handler", (_Health,), {"ok_path": path, "status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def requirement_pin(name: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        found = re.fullmatch(rf"{re.escape(name)}==(\S+)", line.strip())
        if found:
            return found[1]
    raise AssertionError(f"{name} is not pinned in requirements.txt")


# --------------------------------------------------------------------------------------------
# Compose: services, images, ports, health, dependencies, volumes


def test_compose_files_hold_the_expected_services() -> None:
    assert set(services(SINGLE)) == {"qdrant", "app"}
    assert set(services(CLUSTER)) == {
        "qdrant-1",
        "qdrant-2",
        "qdrant-3",
        "app",
        "index-init",
        "index-0",
        "index-1",
        "index-2",
    }
    # Two projects, so the single server's and the cluster's volumes never mix.
    assert compose(SINGLE)["name"] != compose(CLUSTER)["name"]
    for name in (SINGLE, CLUSTER, GPU):
        assert "version" not in compose(name), "the top-level version key is obsolete in compose v2"


def test_images_are_pinned_and_qdrant_fits_the_client() -> None:
    tags = set()
    for name in BASES:
        for key, svc in services(name).items():
            image = svc["image"]
            if "build" in svc or image == APP_IMAGE:
                assert image == APP_IMAGE, f"{name}:{key} builds the app image under one tag"
                continue
            assert re.fullmatch(r"qdrant/qdrant:v\d+\.\d+\.\d+", image), f"{name}:{key}: {image} is not pinned"
            tags.add(image)
    assert len(tags) == 1, f"every Qdrant node runs the same version, got {tags}"
    server = tuple(int(x) for x in tags.pop().split(":v")[1].split("."))
    client = tuple(int(x) for x in requirement_pin("qdrant-client").split(".")[:2])
    # qdrant-client warns (and may fail) when the server's minor version is more than one away.
    assert server[0] == client[0] and abs(server[1] - client[1]) <= 1, (server, client)
    # The compose files pass QDRANT_API_KEY through as "${QDRANT_API_KEY:-}": before 1.19 Qdrant took
    # an empty key as a key, so an unset QDRANT_API_KEY must meet 1.19 or later.
    assert server >= (1, 19, 0)

    (base,) = instructions("FROM")
    assert re.fullmatch(r"python:3\.11[\w.-]*", base) and "latest" not in base, base


def test_every_published_port_is_on_127_0_0_1() -> None:
    for name in BASES:
        for key, svc in services(name).items():
            for host_ip, _, container_port in published(svc):
                assert host_ip == "127.0.0.1", f"{name}:{key} publishes {container_port} beyond this machine"
                assert container_port != QDRANT_P2P, f"{name}:{key}: Qdrant's peer port must stay inside"
        assert published(services(name)["app"]) == [("127.0.0.1", APP_PORT, APP_PORT)]
    assert ("127.0.0.1", QDRANT_HTTP, QDRANT_HTTP) in published(services(SINGLE)["qdrant"])


def test_long_running_services_have_healthchecks_and_one_shots_none() -> None:
    assert instructions("HEALTHCHECK"), "the app image's HEALTHCHECK covers every app service"
    for name in BASES:
        for key, svc in services(name).items():
            check = svc.get("healthcheck") or {}
            if key in qdrant_services(name):
                assert check["test"][0] == "CMD" and check["interval"] and check["retries"] >= 3, key
                assert svc["restart"] == "unless-stopped"
            elif "profiles" in svc:  # one-shot indexing containers: nothing to serve, nothing to check
                assert check == {"disable": True} and svc["restart"] == "no", key
            else:
                assert key == "app" and not check.get("disable"), "the app keeps the image's HEALTHCHECK"
                assert svc["restart"] == "unless-stopped"


def run_qdrant_healthcheck(check: list[str], port: int) -> int:
    """Run a compose healthcheck (CMD form) here, pointed at `port` instead of 6333."""
    assert check[0] == "CMD"
    argv = [interpolate(arg) for arg in check[1:]]  # compose turns $$ into $ before Docker runs it
    argv = [arg.replace(f"127.0.0.1/{QDRANT_HTTP}", f"127.0.0.1/{port}") for arg in argv]
    return subprocess.run(argv, capture_output=True, timeout=30).returncode


@pytest.mark.skipif(shutil.which("bash") is None, reason="the Qdrant image's healthcheck runs bash")
@pytest.mark.parametrize("name", BASES)
def test_qdrant_healthcheck_asks_readyz_and_needs_a_200(name: str) -> None:
    checks = {json.dumps(s["healthcheck"]["test"]) for s in qdrant_services(name).values()}
    assert len(checks) == 1, "every node is checked the same way"
    check = json.loads(checks.pop())
    assert "curl" not in check and "wget" not in check, "the qdrant image has neither"
    with health_server("/readyz", 200) as port:
        assert run_qdrant_healthcheck(check, port) == 0
    with health_server("/readyz", 503) as port:  # e.g. a node that has not joined the cluster yet
        assert run_qdrant_healthcheck(check, port) != 0
    with health_server("/healthz", 200) as port:  # alive is not enough: /readyz must say ready
        assert run_qdrant_healthcheck(check, port) != 0
    assert run_qdrant_healthcheck(check, closed_port()) != 0


def test_app_healthcheck_asks_streamlit_health_with_python_alone() -> None:
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"], "the slim image has no curl: the check is Python's urllib"
    assert f"http://127.0.0.1:{APP_PORT}/_stcore/health" in command[2]

    def run(port: int) -> int:
        code = command[2].replace(f"127.0.0.1:{APP_PORT}", f"127.0.0.1:{port}")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode

    with health_server("/_stcore/health", 200) as port:
        assert run(port) == 0
    with health_server("/_stcore/health", 503) as port:
        assert run(port) != 0
    assert run(closed_port()) != 0


def test_the_app_waits_for_healthy_qdrant() -> None:
    single = services(SINGLE)
    assert depends_on(single["app"]) == {"qdrant": "service_healthy"}

    cluster = services(CLUSTER)
    nodes = set(qdrant_services(CLUSTER))
    # The collection is created with replicas on other nodes, so the app and the first worker wait
    # for all of them; the followers wait for the node they bootstrap from.
    assert depends_on(cluster["app"]) == {n: "service_healthy" for n in nodes}
    assert depends_on(cluster["index-init"]) == {n: "service_healthy" for n in nodes}
    for worker in ("index-0", "index-1", "index-2"):
        assert depends_on(cluster[worker]) == {"index-init": "service_completed_successfully"}
    assert "depends_on" not in cluster["qdrant-1"]
    assert depends_on(cluster["qdrant-2"]) == depends_on(cluster["qdrant-3"]) == {"qdrant-1": "service_healthy"}
    for name in BASES:
        for key, svc in services(name).items():
            assert set(depends_on(svc)) <= set(services(name)), f"{name}:{key} waits for a service that is not there"


def test_volumes_keep_storage_models_and_data_and_images_are_read_only() -> None:
    hf_home = env_defaults()["HF_HOME"]
    for name in BASES:
        doc = compose(name)
        declared = set(doc["volumes"])
        for key, svc in qdrant_services(name).items():
            source, _ = mounts(svc)["/qdrant/storage"]
            assert source in declared, f"{name}:{key} keeps its storage in a named volume"
        storages = [mounts(s)["/qdrant/storage"][0] for s in qdrant_services(name).values()]
        assert len(set(storages)) == len(storages), "every node has storage of its own"
        for key, svc in app_services(name).items():
            m = mounts(svc)
            assert m["/images"] == ("./images", "ro"), f"{name}:{key}: photos are mounted read-only"
            assert m["/app/data"][0] in declared and m[hf_home][0] in declared, key
            assert environment(svc)["IMAGE_DIRS"] == "/images"
        # The model cache is one volume for both projects: the weights download once per machine.
        assert doc["volumes"]["models"] == {"name": "embedder-models"}
    # IMAGES_DIR picks the photo folder.
    svc = services(SINGLE)["app"]
    assert interpolate(svc["volumes"][0], {"IMAGES_DIR": "/home/me/Pictures"}).startswith(
        "/home/me/Pictures:/images:ro"
    )


# --------------------------------------------------------------------------------------------
# Environment: every variable is one the product (or an allowed library) knows


def test_app_containers_set_only_variables_settings_knows() -> None:
    known = set(ENV_NAMES.values())
    for name in BASES:
        for key, svc in app_services(name).items():
            unknown = set(environment(svc)) - known - NON_PRODUCT_ENV
            assert not unknown, f"{name}:{key} sets {unknown}, which embedder.config.ENV_NAMES does not know"
    unknown = set(env_defaults()) - known - NON_PRODUCT_ENV
    assert not unknown, f"the Dockerfile sets {unknown}"


@pytest.mark.parametrize("name", BASES)
def test_the_app_container_settings_parse_and_point_at_qdrant(name: str) -> None:
    settings = app_settings(name, {"QDRANT_API_KEY": "from-the-shell"})
    assert settings.storage_mode == "server"
    host = settings.qdrant_url.removeprefix("http://").split(":")[0]
    assert settings.qdrant_url == f"http://{host}:{QDRANT_HTTP}" and host in qdrant_services(name)
    assert settings.qdrant_api_key == "from-the-shell"
    assert settings.image_dirs == (Path("/images"),)
    # Nothing set at all still starts: no key means no key, not an empty one.
    assert app_settings(name, {}).qdrant_api_key is None


def test_qdrant_services_take_only_qdrant_settings_and_the_key_from_outside() -> None:
    for name in BASES:
        for key, svc in qdrant_services(name).items():
            raw = svc["environment"]
            assert set(raw) <= QDRANT_SERVER_ENV, f"{name}:{key}: {set(raw) - QDRANT_SERVER_ENV}"
            assert raw["QDRANT__SERVICE__API_KEY"] == "${QDRANT_API_KEY:-}", "the key never lives in a file"
            assert raw["QDRANT__TELEMETRY_DISABLED"] == "true"
        for key, svc in app_services(name).items():
            assert svc["environment"]["QDRANT_API_KEY"] == "${QDRANT_API_KEY:-}", f"{name}:{key}"
    for key, svc in qdrant_services(CLUSTER).items():
        assert svc["environment"]["QDRANT__CLUSTER__ENABLED"] == "true", key


def test_compose_variables_all_have_defaults_and_are_documented() -> None:
    docs = (ROOT / "docs" / "deploy.md").read_text()
    for name in (SINGLE, CLUSTER, GPU):
        used: set[str] = set()
        for text in strings(compose(name)):
            used |= variables(text)
            interpolate(text)  # every ${VAR...} resolves with nothing set: `docker compose up` just works
            for match in _VAR.finditer(text):
                if match["braced"] is not None:
                    assert ":-" in match["braced"], f"{name}: ${{{match['braced']}}} needs a :- default"
                assert not match["plain"], f"{name}: write ${{{match['plain']}}} (or $$ for a literal $)"
        assert used <= COMPOSE_VARS, f"{name} reads {used - COMPOSE_VARS}"
    for var in COMPOSE_VARS:
        assert f"`{var}`" in docs, f"docs/deploy.md does not explain {var}"


# --------------------------------------------------------------------------------------------
# qdrant.env: a template of every setting, with the real defaults and no secret


def test_qdrant_env_lists_every_setting_once_with_a_comment() -> None:
    lines = qdrant_env_lines()
    keys = [key for key, _, _ in lines]
    assert len(keys) == len(set(keys)), "a setting appears twice"
    assert set(keys) == set(ENV_NAMES.values())
    for key, _, comment in lines:
        assert comment, f"qdrant.env: {key} has no comment saying what it does"


def test_qdrant_env_holds_the_code_defaults_and_no_secret() -> None:
    values = {key: value for key, value, _ in qdrant_env_lines()}
    assert values["QDRANT_API_KEY"] == "" and values["QDRANT_URL"] == ""
    # The template is the truth about the defaults: read alone it gives exactly Settings(), except that
    # the repository keeps its data in its own data/ folder (beside the file), not the user's data folder.
    repo_data = {
        "qdrant_path": ROOT / "data" / "qdrant",
        "upload_dir": ROOT / "data" / "uploads",
        "model_cache_dir": ROOT / "data" / "model-cache",
        "thumb_dir": ROOT / "data" / "thumbnails",
    }
    assert Settings.from_env(environ={}, env_file=ROOT / "qdrant.env") == replace(Settings(), **repo_data)
    # And the documented way to set the key works over it.
    assert Settings.from_env(environ={"QDRANT_API_KEY": "k"}, env_file=ROOT / "qdrant.env").qdrant_api_key == "k"


def test_docs_table_lists_every_setting() -> None:
    docs = (ROOT / "docs" / "deploy.md").read_text()
    rows = {m[1] for m in re.finditer(r"^\| `([A-Z_]+)`", docs, re.M)}
    assert set(ENV_NAMES.values()) <= rows, f"docs/deploy.md's table misses {set(ENV_NAMES.values()) - rows}"
    defaults = Settings().env()
    for var, default in defaults.items():
        row = next(line for line in docs.splitlines() if line.startswith(f"| `{var}`"))
        if default.startswith(str(DATA_DIR)):  # the user's data folder: the docs name it, not this machine's path
            assert "data folder" in row, f"{var}: the table does not say it defaults to the user's data folder"
            continue
        assert f"`{default}`" in row or (default == "" and "—" in row), f"{var}: the table's default is not {default!r}"


# --------------------------------------------------------------------------------------------
# Dockerfile and .dockerignore


def test_dockerfile_copies_only_what_exists_and_reaches_the_build() -> None:
    sources = []
    for args in instructions("COPY") + instructions("ADD"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        assert len(words) >= 2, args
        sources += words[:-1]
    assert sources, "the Dockerfile copies the app in"
    for source in sources:
        assert source == "." or (ROOT / source).exists(), f"COPY {source}: no such file in the repo"
        assert source == "." or in_build_context(source), f"COPY {source}: .dockerignore keeps it out"
    # Dependencies come in before the code, so a code change does not reinstall them.
    copies = [(i, args) for i, (word, args) in enumerate(dockerfile()) if word == "COPY"]
    installs = [i for i, (word, args) in enumerate(dockerfile()) if word == "RUN" and "-r requirements.txt" in args]
    assert copies[0][1].split()[0] == "requirements.txt" and copies[0][0] < installs[0] < copies[-1][0]


@pytest.mark.parametrize(
    "path",
    [
        "requirements.txt",
        "embedder/config.py",
        "embedder/__main__.py",
        "main_app.py",
        "main_qdrant.py",
        ".streamlit/config.toml",
    ],
)
def test_the_build_context_holds_what_the_app_runs(path: str) -> None:
    assert in_build_context(path)


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        "data/qdrant/collection/x",
        "data/uploads/ab/cd.jpg",
        ".git/config",
        ".venv/bin/python",
        "tests/conftest.py",
        "tests/fixtures/tiny-clip/model.safetensors",
        "images/cat.jpg",
        "models/clip/x",
        "embedder/__pycache__/config.cpython-311.pyc",
        "embedder/.env",
        "qdrant.env",
        "data_exploration.ipynb",
    ],
)
def test_the_build_context_keeps_secrets_data_and_tests_out(path: str) -> None:
    assert not in_build_context(path)


def test_local_modules_the_pages_import_reach_the_image() -> None:
    for page in ("main_app.py", "main_qdrant.py"):
        if not (ROOT / page).exists():
            continue
        tree = ast.parse((ROOT / page).read_text())
        names = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        names |= {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and not node.level
        }
        for name in names:
            for local in (ROOT / f"{name}.py", ROOT / name):
                if local.exists():
                    probe = local.name if local.is_file() else f"{name}/__init__.py"
                    assert in_build_context(probe), f"{page} imports {name}, which .dockerignore leaves out"


def test_cmd_runs_the_app_on_all_interfaces_on_the_exposed_port() -> None:
    (cmd,) = instructions("CMD")
    argv = exec_form(cmd)
    assert argv[:2] == ["streamlit", "run"]
    assert (ROOT / argv[2]).is_file(), f"CMD runs {argv[2]}, which is not in the repo"
    assert in_build_context(argv[2])
    options = dict(zip(argv[3::2], argv[4::2]))
    assert options["--server.address"] == "0.0.0.0"
    assert int(options["--server.port"]) == APP_PORT
    assert [int(p) for p in instructions("EXPOSE")] == [APP_PORT]


def test_the_app_runs_as_a_user_of_its_own() -> None:
    args = build_args()
    (user,) = instructions("USER")
    uid = interpolate(user, args).split(":")[0]
    assert uid not in ("", "0", "root"), f"USER {user} is root"
    steps = dockerfile()
    user_at = steps.index(("USER", user))
    assert not any(word == "RUN" for word, _ in steps[user_at:]), "everything installed as root comes before USER"
    assert any(word == "RUN" and "useradd" in a and '--uid "${APP_UID}"' in a for word, a in steps[:user_at])
    assert uid == args["APP_UID"]
    # The folders the app writes to are the ones the compose files mount volumes on.
    chown = next(a for word, a in steps if word == "RUN" and "chown" in a)
    assert "/app/data" in chown and env_defaults()["HF_HOME"] in chown


def test_torch_is_pinned_alike_everywhere_and_build_args_are_declared() -> None:
    pin = requirement_pin("torch")
    assert build_args()["TORCH_VERSION"] == pin
    assert f"torch=={pin}" in (ROOT / "Makefile").read_text()
    torch_step = next(i for i, (w, a) in enumerate(dockerfile()) if w == "RUN" and "torch==" in a)
    req_step = next(i for i, (w, a) in enumerate(dockerfile()) if w == "RUN" and "-r requirements.txt" in a)
    assert torch_step < req_step, "torch first, on its own layer"
    assert build_args()["TORCH_INDEX_URL"] == "", "PyPI's build by default; the CPU-only index is opt-in"
    for name in BASES:
        for key, svc in app_services(name).items():
            declared = set((svc["build"].get("args") or {})) if isinstance(svc["build"], dict) else set()
            assert declared <= set(build_args()), f"{name}:{key} passes build args the Dockerfile lacks"
            assert svc["build"]["context"] == "."


# --------------------------------------------------------------------------------------------
# GPU override and cluster


def test_gpu_override_only_reserves_nvidia_gpus_for_the_app() -> None:
    doc = compose(GPU)
    assert set(doc) == {"services"} and set(doc["services"]) == {"app"}
    assert doc["services"]["app"] == {
        "deploy": {
            "resources": {"reservations": {"devices": [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]}}
        }
    }
    for name in BASES:  # it layers on either file
        assert "app" in services(name)
    # The device is left to EMBEDDER_DEVICE=auto (cuda when torch sees one, else the CPU).
    assert all(app_settings(name).device == "auto" for name in BASES)


def test_cluster_nodes_bootstrap_from_the_first() -> None:
    nodes = qdrant_services(CLUSTER)
    commands = {key: svc["command"] for key, svc in nodes.items()}
    firsts = [key for key, argv in commands.items() if "--bootstrap" not in argv]
    assert firsts == ["qdrant-1"]
    first_uri = f"http://qdrant-1:{QDRANT_P2P}"
    assert commands["qdrant-1"] == ["./qdrant", "--uri", first_uri]
    for key, argv in commands.items():
        options = dict(zip(argv[1::2], argv[2::2]))
        assert argv[0] == "./qdrant"
        assert options["--uri"] == f"http://{key}:{QDRANT_P2P}", "each peer names itself, stable across restarts"
        if key != "qdrant-1":
            assert options["--bootstrap"] == first_uri


def test_cluster_collection_settings_fit_three_nodes() -> None:
    settings = app_settings(CLUSTER)
    nodes = len(qdrant_services(CLUSTER))
    assert settings.shard_number >= nodes and settings.shard_number % nodes == 0, "shards spread evenly"
    assert 2 <= settings.replication_factor <= nodes, "a copy of every shard survives losing a node"
    assert 1 <= settings.write_consistency_factor <= settings.replication_factor
    # The single server keeps the plain defaults.
    single = app_settings(SINGLE)
    assert (single.shard_number, single.replication_factor, single.write_consistency_factor) == (1, 1, 1)


def test_cluster_indexing_workers_split_the_same_folder_into_every_share() -> None:
    workers = {k: s for k, s in services(CLUSTER).items() if k.startswith("index-") and k != "index-init"}
    shards, folders = [], set()
    for svc in workers.values():
        argv = svc["command"]
        assert argv[:4] == ["python", "-m", "embedder", "index"]
        at = argv.index("--shard")
        index, count = (int(x) for x in argv[at + 1].split("/"))
        shards.append((index, count))
        folders.add(tuple(a for a in argv[4:] if a not in ("--shard", argv[at + 1])))
        assert svc["profiles"] == ["index"], "workers run on demand, not with `up`"
    counts = {count for _, count in shards}
    assert len(counts) == 1, f"every worker must split by the same N, got {counts}"
    assert sorted(index for index, _ in shards) == list(range(counts.pop())), "each share exactly once"
    assert folders == {("/images",)}, "all workers walk the same folders, as the app sees them"
    init = services(CLUSTER)["index-init"]
    assert init["command"] == ["python", "-m", "embedder", "info"] and init["profiles"] == ["index"]
