"""The controller: turns Source, Workflow and Sink resources into stored specs.

In a cluster it watches the custom resources with kopf and reports their status;
without one (``--config-dir``) it loads the same resources from YAML files. Either
way it is the only writer of the ``resources`` table that the services read.
"""
