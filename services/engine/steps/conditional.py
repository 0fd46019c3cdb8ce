"""The ``conditional`` step: a sandboxed expression choosing ``then`` or ``else``.

The condition is a Jinja expression over the run context, so it can compare
numbers, test membership and use filters (``steps.look.output.restarts | int > 3``,
``'OOMKilled' in steps.look.output.stdout``), not only strings. Its value is taken
for its truth. The chosen branch may skip later steps, gate the other branch's
steps, or stop the run (see ``core.outcomes.choose_branch``).
"""

from __future__ import annotations

from services.engine.core import outcomes
from services.engine.steps import registries
from shared.errors import PermanentError


@registries.register()
class ConditionalExecutor(registries.StepExecutor):
    type = "conditional"
    pure = True

    def execute(self, ctx: registries.StepContext) -> registries.Result:
        condition = ctx.step.config.get("condition")
        if not isinstance(condition, str):
            raise PermanentError(f"{ctx.where('condition')}: must be an expression string")
        value = ctx.templates.evaluate(condition, ctx.namespace, where=ctx.where("condition"))
        result = bool(value)
        directive = outcomes.choose_branch(ctx.step, result)
        output: dict[str, object] = {"result": result, "branch": "then" if result else "else"}
        if directive.message is not None:
            output["message"] = directive.message
        if directive.stop is not None:
            output["stop"] = directive.stop
        if directive.skip:
            output["skipped"] = sorted(directive.skip)
        return registries.Result(output=output, directive=directive)
