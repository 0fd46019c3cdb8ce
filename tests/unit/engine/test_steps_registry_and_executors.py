"""The step registry and the cli / conditional executors (local runner, no worker)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from services.engine.runners import bases
from services.engine.runners.local import DisabledRunner, LocalRunner
from services.engine.steps import registries
from services.engine.steps.cli import CliExecutor
from services.engine.steps.conditional import ConditionalExecutor
from shared.domain.templates import Templates
from shared.errors import PermanentError
from shared.resources.schemas import load_workflow


def context_for(
    step: dict[str, Any], *, timeout: float = 5.0, limit: int = 1000
) -> registries.StepContext:
    flow = load_workflow(
        "ns", "wf", {"runtime": {"environment": {"REGION": "eu"}}, "steps": [step]}
    )
    return registries.StepContext(
        run_id="run-1",
        workflow=flow,
        step=flow.steps[0],
        attempt=1,
        namespace={"alert": {"labels": {"pod": "web 1; reboot"}}, "env": {"REGION": "eu"}},
        templates=Templates(),
        timeout=timeout,
        output_limit=limit,
        runners={"local": LocalRunner()},
    )


def run_cli(step: dict[str, Any], **kwargs: Any) -> Any:
    return registries.invoke(
        CliExecutor(), context_for({"name": "s", "type": "cli", **step}, **kwargs)
    )


def test_registry_refuses_duplicates_and_reports_missing_executors() -> None:
    registry = registries.StepRegistry(known_types={"cli", "agent"})
    registries.register(registry)(CliExecutor)
    with pytest.raises(ValueError, match="already registered"):
        registry.add(CliExecutor())
    with pytest.raises(registries.StepNotAvailableError, match="'agent' is not available"):
        registry.get("agent")
    with pytest.raises(registries.StepNotAvailableError, match="unknown step type 'x'"):
        registry.get("x")
    assert registry.known_types == {"cli", "agent"}


def test_default_registry_has_cli_and_conditional() -> None:
    assert isinstance(registries.default_registry.get("cli"), CliExecutor)
    assert isinstance(registries.default_registry.get("conditional"), ConditionalExecutor)


def test_argv_elements_stay_single_arguments() -> None:
    outcome = run_cli({"command": ["printf", "%s|", "{{ alert.labels.pod }}", "{{ env.REGION }}"]})
    assert outcome.ok
    assert outcome.output == {"stdout": "web 1; reboot|eu|", "stderr": "", "exit_code": 0}


def test_shell_mode_quotes_values_and_sees_env() -> None:
    outcome = run_cli(
        {
            "shell": True,
            "command": "echo {{ alert.labels.pod }} $REGION $EXTRA",
            "env": {"EXTRA": "{{ env.REGION }}!"},
        }
    )
    assert outcome.output["stdout"] == "web 1; reboot eu eu!\n"


def test_the_worker_environment_is_not_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PF_DATABASE_URL", "postgresql://secret@db/x")
    outcome = registries.invoke(
        CliExecutor(),
        context_for(
            {"name": "s", "type": "cli", "shell": True, "command": "echo ${PF_DATABASE_URL:-none}"}
        ),
    )
    assert outcome.output["stdout"] == "none\n"


def test_json_output_adds_fields() -> None:
    outcome = run_cli(
        {"command": ["echo", '{"restarts": 3, "stdout": "shadow"}'], "output": "json"}
    )
    assert outcome.output["restarts"] == 3
    assert outcome.output["stdout"].startswith("{")
    assert outcome.output["json"] == {"restarts": 3, "stdout": "shadow"}


def test_json_output_that_is_not_json_is_permanent() -> None:
    outcome = run_cli({"command": ["echo", "nope"], "output": "json"})
    assert (outcome.ok, outcome.temporary) == (False, False)
    assert "stdout is not JSON" in (outcome.error or "")


def test_non_zero_exit_is_temporary_and_keeps_output() -> None:
    outcome = run_cli({"command": ["sh", "-c", "echo out; echo err >&2; exit 4"]})
    assert (outcome.ok, outcome.temporary) == (False, True)
    assert outcome.output == {"stdout": "out\n", "stderr": "err\n", "exit_code": 4}
    assert outcome.error == "command exited with code 4: err"


def test_output_is_bounded() -> None:
    outcome = run_cli({"command": ["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a"]}, limit=100)
    assert outcome.output["stdout"] == "a" * 100
    assert outcome.output["truncated_bytes"] == 99900


def test_timeout_kills_the_process_group() -> None:
    outcome = run_cli({"shell": True, "command": "sleep 30 & sleep 30"}, timeout=0.2)
    assert (outcome.ok, outcome.temporary) == (False, True)
    assert "timed out after 0.2s" in (outcome.error or "")


def test_missing_command_is_permanent() -> None:
    outcome = run_cli({"command": ["/no/such/binary"]})
    assert (outcome.ok, outcome.temporary) == (False, False)


def test_unconfigured_runner_is_permanent() -> None:
    outcome = run_cli({"command": ["true"], "runner": "kubernetes"})
    assert outcome.error == "step 's': runner 'kubernetes' is not configured in this engine"


def test_conditional_chooses_a_branch() -> None:
    ctx = context_for(
        {
            "name": "c",
            "type": "conditional",
            "condition": "alert.labels.pod is string",
            "then": {"stop": "succeeded", "message": "fine"},
        }
    )
    outcome = registries.invoke(ConditionalExecutor(), ctx)
    assert outcome.output == {
        "result": True,
        "branch": "then",
        "message": "fine",
        "stop": "succeeded",
    }
    assert outcome.directive is not None
    assert outcome.directive.stop == "succeeded"


def test_conditional_errors_are_permanent() -> None:
    ctx = context_for({"name": "c", "type": "conditional", "condition": "alert.nope"})
    outcome = registries.invoke(ConditionalExecutor(), ctx)
    assert (outcome.ok, outcome.temporary) == (False, False)
    assert "step 'c' condition: expression 'alert.nope'" in (outcome.error or "")


def test_permanent_error_type_is_shared() -> None:
    assert issubclass(registries.StepNotAvailableError, PermanentError)


# -- values stay data (issue 8) ---------------------------------------------------------


def test_shell_values_are_passed_in_variables_not_in_the_script() -> None:
    seen: list[bases.Command] = []

    class Recorder:
        def run(self, command: bases.Command) -> bases.Completed:
            seen.append(command)
            return bases.Completed(exit_code=0, stdout="", stderr="")

    ctx = context_for(
        {
            "name": "s",
            "type": "cli",
            "shell": True,
            "command": "echo 'a' \"{{ alert.labels.pod }}\"",
        }
    )
    ctx = dataclasses.replace(ctx, runners={"local": Recorder()})
    assert registries.invoke(CliExecutor(), ctx).ok
    [command] = seen
    assert command.argv == ("echo 'a' \"${PF_T1}\"",)
    assert command.env["PF_T1"] == "web 1; reboot"
    assert "reboot" not in command.argv[0]


def run_stored(step: dict[str, Any]) -> Any:
    """Run a step as stored before validation refused it (an older controller wrote it)."""
    spec = load_workflow("ns", "wf", {"steps": [{"name": "s", "type": "cli", "command": ["true"]}]})
    stored = dataclasses.replace(
        spec.steps[0], config={**spec.steps[0].config, "shell": False, **step}
    )
    flow = dataclasses.replace(spec, steps=(stored,))
    ctx = dataclasses.replace(context_for({"name": "s", "type": "cli", "command": ["true"]}))
    return registries.invoke(CliExecutor(), dataclasses.replace(ctx, workflow=flow, step=stored))


def test_a_shell_template_that_cannot_be_protected_fails_permanently() -> None:
    outcome = run_stored({"shell": True, "command": "echo '{{ alert.labels.pod }}'"})
    assert (outcome.ok, outcome.temporary) == (False, False)
    assert "inside single quotes" in (outcome.error or "")


def test_an_argv_sh_c_script_with_a_template_fails_permanently() -> None:
    outcome = run_stored({"command": ["sh", "-c", "echo {{ alert.labels.pod }}"]})
    assert (outcome.ok, outcome.temporary) == (False, False)
    assert "script of a shell's -c" in (outcome.error or "")


def option_context(step: dict[str, Any]) -> registries.StepContext:
    ctx = context_for({"name": "s", "type": "cli", **step})
    return dataclasses.replace(ctx, namespace={"alert": {"labels": {"pod": "--all"}}})


@pytest.mark.parametrize(
    "step",
    [
        {"command": ["echo", "delete", "{{ alert.labels.pod }}"]},
        {"command": ["echo", "{{ alert.labels.pod }}-x"]},
        {"shell": True, "command": "echo delete {{ alert.labels.pod }}"},
        {"shell": True, "command": 'echo delete "{{ alert.labels.pod }}"'},
    ],
)
def test_a_value_that_would_be_an_option_fails_the_step(step: dict[str, Any]) -> None:
    outcome = registries.invoke(CliExecutor(), option_context(step))
    assert (outcome.ok, outcome.temporary) == (False, False)
    assert "', which starts with '-' and would be read as an option" in (outcome.error or "")
    assert outcome.output == {}  # nothing ran


@pytest.mark.parametrize(
    ("step", "stdout"),
    [
        ({"command": ["echo", "--", "{{ alert.labels.pod }}"]}, "-- --all\n"),
        ({"command": ["echo", "--pod={{ alert.labels.pod }}"]}, "--pod=--all\n"),
        ({"command": ["echo", "{{ alert.labels.pod }}"], "allowOptionLikeValues": True}, "--all\n"),
        ({"shell": True, "command": "echo -- {{ alert.labels.pod }}"}, "-- --all\n"),
        ({"shell": True, "command": 'echo "pod {{ alert.labels.pod }}"'}, "pod --all\n"),
    ],
)
def test_option_like_values_pass_after_double_dash_inside_a_word_or_when_allowed(
    step: dict[str, Any], stdout: str
) -> None:
    outcome = registries.invoke(CliExecutor(), option_context(step))
    assert outcome.ok, outcome.error
    assert outcome.output["stdout"] == stdout


def test_background_children_end_with_the_step() -> None:
    started = time.monotonic()
    outcome = run_cli({"shell": True, "command": "sleep 20 & echo $!"}, timeout=3)
    assert time.monotonic() - started < 2
    assert outcome.ok, outcome.error
    assert not alive(int(outcome.output["stdout"]))


def test_a_timeout_kills_background_children_too() -> None:
    started = time.monotonic()
    outcome = run_cli({"shell": True, "command": "sleep 30 & echo $!; sleep infinity"}, timeout=0.5)
    assert time.monotonic() - started < 2
    assert "timed out after 0.5s" in (outcome.error or "")


def test_a_nul_byte_in_a_value_is_permanent() -> None:
    ctx = dataclasses.replace(
        context_for({"name": "s", "type": "cli", "command": ["echo", "{{ alert.labels.pod }}"]}),
        namespace={"alert": {"labels": {"pod": "a\x00b"}}},
    )
    outcome = registries.invoke(CliExecutor(), ctx)
    assert (outcome.ok, outcome.temporary) == (False, False)
    assert "null byte" in (outcome.error or "")


def test_a_disabled_runner_says_why() -> None:
    ctx = dataclasses.replace(
        context_for({"name": "s", "type": "cli", "command": ["true"]}),
        runners={"local": DisabledRunner("runner 'local' is turned off")},
    )
    outcome = registries.invoke(CliExecutor(), ctx)
    assert (outcome.ok, outcome.temporary, outcome.error) == (
        False,
        False,
        "runner 'local' is turned off",
    )


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False
