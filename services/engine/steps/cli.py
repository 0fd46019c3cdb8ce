"""The ``cli`` step: render a command from the context, run it, keep its output.

The output is ``{stdout, stderr, exit_code}`` (so ``{{ steps.look.output.stdout }}``
works), plus the parsed fields when the step says ``output: json``. A non-zero exit
is a temporary failure (the step's ``retries`` apply) that keeps the output, so a
``continueOnError`` step still shows what the command said. Commands that cannot
start, templates that do not render and stdout that is not the promised JSON are
permanent.

Templates in an argv list render each element separately: a label value stays one
argument whatever it contains. With ``shell: true`` each ``{{ ... }}`` value is
shell-quoted, so a label cannot inject a command.
"""

from __future__ import annotations

import json
from typing import Any

from services.engine.steps import registries
from shared.errors import PermanentError


@registries.register()
class CliExecutor(registries.StepExecutor):
    type = "cli"

    def execute(self, ctx: registries.StepContext) -> registries.Result:
        config = ctx.step.config
        shell = bool(config.get("shell", False))
        raw = config.get("command")
        if shell:
            if not isinstance(raw, str):
                raise PermanentError(f"{ctx.where('command')}: with shell: true, give one string")
            argv: tuple[str, ...] = (
                ctx.templates.render(raw, ctx.namespace, where=ctx.where("command"), quote=True),
            )
        else:
            if not isinstance(raw, list) or not raw:
                raise PermanentError(
                    f"{ctx.where('command')}: must be an argv list (or set shell: true)"
                )
            argv = tuple(
                ctx.templates.render(str(part), ctx.namespace, where=ctx.where(f"command[{i}]"))
                for i, part in enumerate(raw)
            )
        env = {
            **ctx.workflow.runtime.environment,
            **{
                str(key): ctx.templates.render(
                    str(value), ctx.namespace, where=ctx.where(f"env.{key}")
                )
                for key, value in (config.get("env") or {}).items()
            },
        }
        runner_name = str(config.get("runner", "local"))
        runner = ctx.runners.get(runner_name)
        if runner is None:
            raise PermanentError(
                f"{ctx.where()}: runner {runner_name!r} is not configured in this engine"
            )
        completed = runner.run(
            registries.Command(
                argv=argv,
                env=env,
                timeout=ctx.timeout,
                output_limit=ctx.output_limit,
                shell=shell,
                image=ctx.workflow.runtime.image,
                label=f"{ctx.run_id}-{ctx.step.index}-{ctx.attempt}",
                labels={
                    "run-id": ctx.run_id,
                    "step": ctx.step.name,
                    "step-index": str(ctx.step.index),
                    "attempt": str(ctx.attempt),
                },
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
