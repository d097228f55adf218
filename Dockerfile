# syntax=docker/dockerfile:1
# The dorgu operator (and CLI): `make image`. Multi-stage: wheels are built in the first stage; the final
# stage has the virtualenv only — no compiler, no pip — and runs as 65532 on a read-only root filesystem
# (deploy/operator/statefulset.yaml mounts an emptyDir at /tmp, the only place it writes). The venv holds
# the runtime dependencies only: `pip install .` without extras (matplotlib is the `bench` extra's).
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# Compilers only for a dependency without a wheel for this platform (uvloop, msgspec, cryptography have them).
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dorgu ./dorgu
COPY controllers ./controllers
COPY webhook ./webhook
COPY cli ./cli
COPY certs ./certs
# Package data of the wheel (cli/deploy/): the CRDs, samples and demo app the CLI reads at run time.
COPY deploy/crds ./deploy/crds
COPY deploy/samples ./deploy/samples
COPY deploy/demo-app ./deploy/demo-app
RUN python -m venv /opt/dorgu \
 && /opt/dorgu/bin/pip install --upgrade pip \
 && /opt/dorgu/bin/pip install . \
 && /opt/dorgu/bin/pip uninstall -y pip setuptools wheel \
 && find /opt/dorgu -name '__pycache__' -prune -exec rm -rf {} + \
 && /opt/dorgu/bin/python -m compileall -q /opt/dorgu/lib

FROM python:${PYTHON_VERSION}-slim
# No package manager leftovers and no pip in the runtime image.
RUN python -m pip uninstall -y pip setuptools wheel >/dev/null 2>&1 || true
COPY --from=build /opt/dorgu /opt/dorgu
ENV PATH=/opt/dorgu/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    HOME=/tmp
USER 65532:65532
EXPOSE 8080 9443 9090
ENTRYPOINT ["dorgu"]
CMD ["operator"]
