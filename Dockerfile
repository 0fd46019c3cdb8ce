# One image for every deployable; the command picks which (`punchingfist ingest`,
# `punchingfist engine`, ...). docs/deploy.md says how to build and run it.
#
# The base is pinned by version tag: the interpreter the test suite runs on
# (3.11.7, Debian bookworm). Pin it by digest as well on a builder that can reach
# the registry (the digest cannot be resolved offline, where this file is written):
#   docker buildx imagetools inspect python:3.11.7-slim-bookworm --format '{{json .Manifest.Digest}}'
#   then: ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# --- build: the project and its dependencies in a virtualenv copied whole to the runtime.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/punchingfist
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
# [flower]: the same image runs the Flower dashboard (k8s and compose).
RUN /opt/punchingfist/bin/pip install ".[flower]"

# --- kubectl: the examples' cli steps call it. The official release binary, checked
# against the checksum published beside it (https://kubernetes.io/docs/tasks/tools/).
FROM ${PYTHON_IMAGE} AS kubectl
ARG KUBECTL_VERSION=v1.32.4
ARG TARGETARCH=amd64
ADD https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl /kubectl
ADD https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl.sha256 /kubectl.sha256
RUN echo "$(cat /kubectl.sha256)  /kubectl" | sha256sum --check --strict \
    && chmod 0755 /kubectl

# --- runtime
FROM ${PYTHON_IMAGE}
# A fixed numeric uid/gid so that runAsNonRoot can check it and volumes can be chowned.
# Its home is the one writable directory: PF_VAR_DIR (the metrics folders of ingest
# and of the workers' pool processes, SQLite when no database is configured) and
# gunicorn's control socket ($HOME/.gunicorn).
RUN groupadd --system --gid 10001 punchingfist \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/punchingfist --shell /usr/sbin/nologin punchingfist \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/punchingfist
COPY --from=build /opt/punchingfist /opt/punchingfist
COPY --from=kubectl /kubectl /usr/local/bin/kubectl
ENV PATH=/opt/punchingfist/bin:$PATH \
    PF_VAR_DIR=/var/lib/punchingfist \
    HOME=/var/lib/punchingfist \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The working directory is the writable one too: a relative path (PF_SECRETS_DIR's
# default `secrets`) must not point into a root-owned folder.
WORKDIR /var/lib/punchingfist
USER 10001:10001
# 8080: ingest (and its /metrics); 9100: /metrics of the workers and the controller
# when PF_*_METRICS_BIND is set (the manifests set 0.0.0.0:9100).
EXPOSE 8080 9100
ENTRYPOINT ["punchingfist"]
CMD ["ingest", "--bind", "0.0.0.0:8080"]
