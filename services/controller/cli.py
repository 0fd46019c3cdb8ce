"""``punchingfist controller`` and ``punchingfist validate``.

``register`` adds the subcommands to the project's command line; ``main`` runs them
alone (``python -m services.controller.cli``), which the tests and the controller's
container use so that the controller does not depend on the other services' code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared import commands, settings
from shared.resources import checks, files


def _validate(args: argparse.Namespace) -> int:
    paths = [Path(name) for name in args.files]
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        print(f"punchingfist validate: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    loaded = files.load_files(paths)
    problems = [*loaded.errors, *loaded.conflicts, *files.unresolved_references(loaded)]
    if not loaded.resources and not problems:
        # An empty file is more likely the wrong file than a valid configuration.
        print(
            f"punchingfist validate: no resources found in {', '.join(map(str, paths))} "
            "(YAML documents with apiVersion, kind, metadata and spec)",
            file=sys.stderr,
        )
        return 1
    for error in problems:
        print(error)
    warnings = 0
    for resource in loaded.resources:
        for advisory in checks.advisories(resource):
            if advisory.problem is not None:
                warnings += 1
                print(f"warning  {resource}  ({resource.origin}): {advisory.problem.message}")
    if problems:
        wrong = {error.resource for error in problems}
        valid = [resource for resource in loaded.resources if str(resource) not in wrong]
        print(f"{len(problems)} error(s); {len(valid)} resource(s) valid")
        return 1
    for resource in loaded.resources:
        print(f"ok  {resource}  ({resource.origin})")
    print(
        f"{len(loaded.resources)} resource(s) valid"
        + (f", {warnings} warning(s)" if warnings else "")
    )
    return 0


def _controller(args: argparse.Namespace) -> int:
    from services.controller.app import run_files, run_kubernetes

    config = settings.from_env()
    config_dir = Path(args.config_dir) if args.config_dir else config.config_dir
    ready_file = Path(args.ready_file) if args.ready_file else None
    if config_dir is not None:
        return run_files(config, config_dir, ready_file=ready_file)
    return run_kubernetes(config, standalone=args.standalone, ready_file=ready_file)


def register(subparsers: Any) -> None:
    controller = subparsers.add_parser(
        "controller",
        help="watch Source/Workflow/Sink resources and store them for the services",
        description=(
            "In a cluster: watch the punchingfist.io custom resources, check them, "
            "store them in $PF_DATABASE_URL and report their status. With --config-dir "
            "(or $PF_CONFIG_DIR): load the same resources from YAML files instead and "
            "reload them when the files change."
        ),
    )
    controller.add_argument(
        "--config-dir",
        metavar="DIR",
        help="load resources from the YAML files in DIR, no cluster (default: $PF_CONFIG_DIR)",
    )
    controller.add_argument(
        "--standalone",
        action="store_true",
        help="do not coordinate with other replicas (no peering); for development",
    )
    controller.add_argument(
        "--ready-file",
        metavar="PATH",
        help=(
            "create PATH once the resources are stored (file mode: after the first pass "
            "over the folder); `punchingfist run` starts ingest only then"
        ),
    )
    controller.set_defaults(handler=_controller)

    validate = subparsers.add_parser(
        "validate",
        help="check resource files offline; errors name the file and the field",
        description=(
            "Validate Source/Workflow/Sink YAML files against the schemas (every template "
            "and expression compiled, step references checked) and check that the "
            "resources given together refer to each other correctly (a Source's "
            "Workflow, a Workflow's Sinks)."
        ),
    )
    validate.add_argument(
        "-f",
        "--filename",
        dest="files",
        metavar="FILE",
        nargs="+",
        action="extend",
        required=True,
        help="YAML files or folders (a folder's own YAML files, as kubectl apply -f)",
    )
    validate.set_defaults(handler=_validate)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="punchingfist")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return commands.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
