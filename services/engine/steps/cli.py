"""The ``cli`` step: render a command from the context, run it, keep its output.

The output is ``{stdout, stderr, exit_code}`` (so ``{{ steps.look.output.stdout }}``
works), plus the parsed fields when the step says ``output: json``. A non-zero exit
is a temporary failure (the step's ``retries`` apply) that keeps the output, so a
``continueOnError`` step still shows what the command said. Commands that cannot
start, templates that do not render or cannot be passed safely, option-like values
and stdout that is not the promised JSON are permanent.

Values from templates are data, never code (``shared.domain.shellscripts``):

* an argv renders each element separately, so a label stays one argument; an
  element that is the script of ``sh -c`` may not hold a template;
* with ``shell: true`` no value enters the script: each ``{{ }}`` becomes a
  reference to an environment variable (``"${PF_T1}"``) that carries the value;
* a value that starts a word and begins with ``-`` would be read as an option
  (``kubectl delete pod --all``): the step fails unless a literal ``--`` comes
  before it or the step says ``allowOptionLikeValues: true``.
"""

from __future__ import annotations

import json
from typing import Any

from services.engine.runners import bases
from services.engine.steps import registries
from shared.domain import shellscripts
from shared.errors import PermanentError


class OptionInjectionError(PermanentError):
    """A value from a template would be read as an option by the program."""


@registries.register()
class CliExecutor(registries.StepExecutor):
    type = "cli"

    def execute(self, ctx: registries.StepContext) -> registries.Result:
        config = ctx.step.config
        shell = bool(config.get("shell", False))
        allow_options = bool(config.get("allowOptionLikeValues", False))
        raw = config.get("command")
        values: dict[str, str] = {}
        if shell:
            if not isinstance(raw, str):
                raise PermanentError(f"{ctx.where('command')}: with shell: true, give one string")
            argv, values = self._shell(ctx, raw, allow_options)
        else:
            if not isinstance(raw, list) or not raw:
                raise PermanentError(
                    f"{ctx.where('command')}: must be an argv list (or set shell: true)"
                )
            argv = self._argv(ctx, [str(part) for part in raw], allow_options)
        env = {
            **ctx.workflow.runtime.environment,
            **{
                str(key): ctx.templates.render(
                    str(value), ctx.namespace, where=ctx.where(f"env.{key}")
                )
                for key, value in (config.get("env") or {}).items()
            },
            # Last: a step's env cannot replace a value the script refers to.
            **values,
        }
        runner_name = str(config.get("runner", "local"))
        runner = ctx.runners.get(runner_name)
        if runner is None:
            raise PermanentError(
                f"{ctx.where()}: runner {runner_name!r} is not configured in this engine"
            )
        runtime = ctx.workflow.runtime
        completed = runner.run(
            bases.Command(
                argv=argv,
                env=env,
                timeout=ctx.timeout,
                output_limit=ctx.output_limit,
                shell=shell,
                image=runtime.image,
                label=f"{ctx.run_id}-{ctx.step.index}-{ctx.attempt}",
                labels={
                    "run-id": ctx.run_id,
                    "step": ctx.step.name,
                    "step-index": str(ctx.step.index),
                    "attempt": str(ctx.attempt),
                },
                namespace=ctx.workflow.namespace,
                service_account=runtime.service_account_name,
                automount_token=runtime.automount_service_account_token,
                resources=runtime.resources,
            )
        )
        output: dict[str, Any] = {
            "stdout": completed.stdout,
            "stderr": completed.stderr,
            "exit_code": completed.exit_code,
        }
        if completed.truncated:
            output["truncated_bytes"] = completed.truncated
        if completed.exit_code != 0:
            tail = completed.stderr.strip()[-500:] or completed.stdout.strip()[-500:]
            raise registries.StepFailedError(
                f"command exited with code {completed.exit_code}" + (f": {tail}" if tail else ""),
                output,
            )
        if config.get("output") == "json":
            output = {**self._parse_json(ctx, completed.stdout), **output}
        return registries.Result(output=output)

    @staticmethod
    def _argv(
        ctx: registries.StepContext, parts: list[str], allow_options: bool
    ) -> tuple[str, ...]:
        # Validation refuses these too; a spec stored before that check still may not run.
        problems = shellscripts.argv_problems(parts)
        if problems:
            raise PermanentError(f"{ctx.where('command')}: {problems[0]}")
        guards = shellscripts.argv_option_guards(parts)
        argv = []
        for i, (part, guarded) in enumerate(zip(parts, guards, strict=True)):
            where = ctx.where(f"command[{i}]")
            value = ctx.templates.render(part, ctx.namespace, where=where)
            if guarded and not allow_options:
                _refuse_option(where, part, value)
            argv.append(value)
        return tuple(argv)

    @staticmethod
    def _shell(
        ctx: registries.StepContext, source: str, allow_options: bool
    ) -> tuple[tuple[str, ...], dict[str, str]]:
        try:
            built = shellscripts.construct(source)
        except shellscripts.ShellTemplateError as exc:
            raise PermanentError(f"{ctx.where('command')}: " + "; ".join(exc.problems)) from exc
        values = {}
        for placeholder in built.placeholders:
            where = ctx.where(f"command line {placeholder.line}")
            value = ctx.templates.render(placeholder.tag, ctx.namespace, where=where)
            if placeholder.starts_word and not allow_options:
                _refuse_option(where, placeholder.tag, value)
            values[placeholder.variable] = value
        return (built.script,), values

    @staticmethod
    def _parse_json(ctx: registries.StepContext, stdout: str) -> dict[str, Any]:
        try:
            parsed = json.loads(stdout)
        except ValueError as exc:
            raise registries.StepFailedError(
                f"{ctx.where()}: output: json, but stdout is not JSON ({exc})",
                {"stdout": stdout},
                temporary=False,
            ) from exc
        fields = dict(parsed) if isinstance(parsed, dict) else {}
        # Lists and scalars are kept whole under ``json``.
        fields["json"] = parsed
        return fields


def _refuse_option(where: str, template: str, value: str) -> None:
    if value.startswith("-"):
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise OptionInjectionError(
            f"{where}: {template.strip()} gave {shown!r}, which starts with '-' and would "
            "be read as an option; put a literal '--' before it (kubectl delete pod -- "
            "{{ alert.labels.pod }}), write the option yourself (--namespace={{ ... }}), "
            "or set allowOptionLikeValues: true on the step"
        )
