"""The Dockerfile, checked statically (no Docker engine here; hadolint has no Debian package).

Multi-stage, a pinned base, a numeric non-root user, ``punchingfist`` as the entry
point with a real subcommand, a writable PF_VAR_DIR owned by that user, and kubectl
verified against its published checksum. tests/functional/deploy runs ingest the way
the image does, as a non-root user.
"""

from __future__ import annotations

import json
import re
import shlex

from tests.unit.deploy.deploykit import ROOT, check_punchingfist_argv

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    result = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def final_stage_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in final_stage():
        if keyword == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def _args() -> dict[str, str]:
    defaults = {}
    for keyword, rest in instructions():
        if keyword == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            defaults[key] = value
    return defaults


def test_multi_stage_from_a_pinned_base() -> None:
    froms = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert len(froms) >= 2
    image = _args()["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)
    assert "digest" in DOCKERFILE.read_text()  # says how to pin the digest


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [rest for keyword, rest in final_stage() if keyword == "USER"]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0


def test_entrypoint_and_cmd_name_a_real_subcommand() -> None:
    stage = dict(final_stage())
    assert json.loads(stage["ENTRYPOINT"]) == ["punchingfist"]
    check_punchingfist_argv(json.loads(stage["CMD"]), "Dockerfile CMD")


def test_var_dir_is_absolute_and_owned_by_the_user() -> None:
    """Issue 9 item 10: ingest wrote var/ in a root-owned /app and died."""
    env = final_stage_env()
    var_dir = env["PF_VAR_DIR"]
    assert var_dir.startswith("/")
    assert env["HOME"] == var_dir  # gunicorn's control socket goes under $HOME
    uid = [rest for keyword, rest in final_stage() if keyword == "USER"][-1].split(":")[0]
    runs = " ".join(rest for keyword, rest in final_stage() if keyword == "RUN")
    assert re.search(rf"install -d -o {uid} -g \d+ -m 07\d0 {re.escape(var_dir)}", runs)
    assert dict(final_stage())["WORKDIR"] == var_dir


def test_kubectl_comes_from_the_release_with_its_checksum_checked() -> None:
    text = " ".join(f"{keyword} {rest}" for keyword, rest in instructions())
    assert "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl " in text
    assert "kubectl.sha256" in text
    assert "sha256sum --check" in text
    assert re.fullmatch(r"v\d+\.\d+\.\d+", _args()["KUBECTL_VERSION"])
    copies = [rest for keyword, rest in final_stage() if keyword == "COPY"]
    assert any(c.endswith("/usr/local/bin/kubectl") for c in copies)


def test_installs_the_project_with_the_flower_extra() -> None:
    runs = [rest for keyword, rest in instructions() if keyword == "RUN"]
    assert any('pip install ".[flower]"' in run for run in runs)
    assert "PATH=/opt/punchingfist/bin:$PATH" in " ".join(
        rest for keyword, rest in final_stage() if keyword == "ENV"
    )
