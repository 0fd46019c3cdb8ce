"""Punching Fist's custom resources: Source, Workflow and Sink.

The marshmallow schemas in this package are the one definition of the resources.
They validate resources from files and from the cluster, produce the normalized
spec that the services read from the database, and generate the CRD manifests in
``k8s/crds/`` (``make crds``). Nothing here does I/O except ``files`` (reading YAML)
and ``crds`` (writing manifests when run as a script).
"""
