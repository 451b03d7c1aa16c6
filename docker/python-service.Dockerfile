# syntax=docker/dockerfile:1
# The images of the four Python services: simulator, scorer, alert-api, notifier. Build from the repository root:
#   docker build -f docker/python-service.Dockerfile --build-arg SERVICE=notifier -t citysense/notifier .
# (`make images` does this for all four and also passes `--target <SERVICE>`: the classic builder, unlike BuildKit,
# builds every stage up to the one it outputs, and the target stops it at the service's own stage. A --target must
# name the same service as SERVICE.)
#
# Stages:
#   build           a virtualenv with only SERVICE's dependencies plus citysense-common: the third-party ones from
#                   locks/SERVICE.txt (pinned, sha256-checked) in a layer of their own, reused until the lock changes,
#                   byte-compiled because the root filesystem is read-only at run time; then non-editable
#                   installs of the two citysense projects
#   python-service  runtime of simulator, alert-api and notifier: the venv, user citysense (uid 10001), config
#   simulator, alert-api, notifier
#                   each service's entry point, ports and settings on top of python-service
#   scorer          the Spark Structured Streaming job (see the stage's comment): a JRE, Spark's entrypoint scripts,
#                   the official Spark image layout, user spark (uid 185)
#   (final)         the stage named SERVICE
# The root filesystem may be read-only: the services write only to /var/lib/citysense (data) and /tmp, both volumes
# in the Helm chart (the scorer also to /opt/spark/work-dir).
# Base images: tags by default. Pin them with --build-arg: `python:3.11-slim@sha256:<manifest digest>` for an image
# from a registry, or `sha256:<image ID>` for a local one (the classic builder resolves an ID in FROM; the e2e run
# builds from its stand-ins that way, docker/README.md "Base images").
ARG SERVICE
ARG PYTHON_IMAGE=python:3.11-slim
ARG SPARK_IMAGE=apache/spark:4.1.2

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PIP_FIND_LINKS=/wheels
RUN python3 -m venv /opt/venv
ARG SERVICE
# Optional local wheelhouse, empty in git: a normal build downloads from PyPI. Offline/CI builds fill
# docker/wheelhouse/<SERVICE>/ on the host (docker/wheelhouse.sh) and pass --build-arg PIP_NO_INDEX=1.
ARG PIP_NO_INDEX
RUN case "$SERVICE" in simulator|scorer|alert-api|notifier) ;; \
      *) echo "--build-arg SERVICE= one of simulator, scorer, alert-api, notifier (got '$SERVICE')" >&2; exit 1 ;; \
    esac
COPY docker/wheelhouse/${SERVICE}/ /wheels/
# The lock files (locks/README.md): build.txt is pip and setuptools, SERVICE.txt the service's third-party
# dependencies, each a pinned version with the sha256 of every file PyPI has for it; pip refuses anything else
# (--require-hashes). With the locked setuptools installed first, the source-only packages (pyspark) and the citysense
# projects build without build isolation, so no unpinned build backend is fetched. Which services get
# citysense-common's Cassandra extra (all but the simulator) is decided by their lock. Spark's example files and data
# are not needed in the scorer.
COPY locks/build.txt locks/${SERVICE}.txt /src/locks/
RUN /opt/venv/bin/pip install --no-compile --require-hashes -r /src/locks/build.txt \
 && /opt/venv/bin/pip install --no-compile --require-hashes --no-build-isolation -r "/src/locks/$SERVICE.txt" \
 && rm -rf /opt/venv/lib/python3*/site-packages/pyspark/examples /opt/venv/lib/python3*/site-packages/pyspark/data \
 && /opt/venv/bin/python -m compileall -q -j 0 /opt/venv/lib
COPY libs/common /src/libs/common
COPY services/${SERVICE} /src/services/${SERVICE}
# Non-editable installs: the venv is self-contained and /src is not needed at run time. The citizen map's static
# files: services/alert-api/pyproject.toml declares no package data yet, so a non-editable install leaves them out
# (StaticFiles then refuses to start); a service's static/ directory is copied explicitly until it does.
RUN /opt/venv/bin/pip install --no-compile --no-deps --no-build-isolation /src/libs/common "/src/services/$SERVICE" \
 && package="citysense_$(echo "$SERVICE" | tr - _)" \
 && site=$(echo /opt/venv/lib/python3*/site-packages) \
 && if [ -d "/src/services/$SERVICE/src/$package/static" ]; then \
      cp -rn "/src/services/$SERVICE/src/$package/static" "$site/$package/"; fi \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/python -m compileall -q -j 0 "$site"/citysense_* \
 && { /opt/venv/bin/pip uninstall -y pip setuptools >/dev/null 2>&1 || true; }

FROM ${PYTHON_IMAGE} AS python-service
RUN groupadd --system --gid 10001 citysense \
 && useradd --system --uid 10001 --gid citysense --home-dir /var/lib/citysense --no-create-home \
      --shell /usr/sbin/nologin citysense \
 && install -d -o citysense -g citysense -m 0750 /var/lib/citysense
COPY --from=build /opt/venv /opt/venv
# Default configuration (the chart mounts its ConfigMap over /etc/citysense).
COPY config/ /etc/citysense/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CITYSENSE_CONFIG_DIR=/etc/citysense \
    CITYSENSE_METRICS_FILE=/etc/citysense/metrics.yaml \
    CITYSENSE_DATA_DIR=/var/lib/citysense \
    CITYSENSE_ENV=production
WORKDIR /var/lib/citysense
USER 10001:10001
LABEL org.opencontainers.image.source="https://github.com/citysense/citysense" \
      org.opencontainers.image.licenses="Apache-2.0"

FROM python-service AS simulator
LABEL org.opencontainers.image.title="citysense-simulator" \
      org.opencontainers.image.description="citysense station simulator"
EXPOSE 9101
ENTRYPOINT ["citysense-simulator"]
CMD ["run"]

FROM python-service AS alert-api
LABEL org.opencontainers.image.title="citysense-alert-api" \
      org.opencontainers.image.description="citysense alert API (FastAPI on uvicorn, port 8000)"
ENV CITYSENSE_API_HOST=0.0.0.0
EXPOSE 8000
ENTRYPOINT ["citysense-alert-api"]

FROM python-service AS notifier
LABEL org.opencontainers.image.title="citysense-notifier" \
      org.opencontainers.image.description="citysense webhook notifier"
ENV CITYSENSE_NOTIFIER_METRICS_HOST=0.0.0.0 \
    CITYSENSE_NOTIFIER_METRICS_PORT=9102
EXPOSE 9102
ENTRYPOINT ["citysense-notifier"]

FROM ${SPARK_IMAGE} AS spark

# The scorer: run by the Spark operator as a SparkApplication (driver and executors from this same image) and
# locally as `citysense-scorer stream`. Layout (the contract of the official Apache Spark images that the Spark
# operator relies on):
#   /opt/entrypoint.sh, /opt/decom.sh  Spark's Kubernetes entrypoint, copied from the official apache/spark image:
#                                      `driver` runs spark-submit in client mode inside the driver pod,
#                                      `executor` starts KubernetesExecutorBackend; anything else is exec'd.
#   SPARK_HOME=/opt/spark              -> the pyspark package's own distribution (bin/, jars/ incl.
#                                      spark-kubernetes), so the JVM side is exactly the pinned pyspark version.
#   /opt/spark/work-dir                working directory (an emptyDir in the chart: the root FS is read-only).
#   user spark, uid/gid 185            as in the official images (chart: scorer.podSecurityContext).
#   /opt/citysense/scorer_main.py      mainApplicationFile: runs `citysense-scorer <arguments>`.
#   /opt/venv                          Python 3.11 virtualenv (PYSPARK_PYTHON) with citysense-scorer and its deps.
# /tmp must be writable and exec-capable: the JVM extracts its JNI libraries (RocksDB, zstd, snappy) there.
# Why not FROM apache/spark:*-python3: those images ship Ubuntu 22.04's Python 3.10 and citysense needs >= 3.11;
# so the runtime is python:3.11-slim plus a Debian JRE, and only the entrypoint scripts come from the Spark image.
FROM ${PYTHON_IMAGE} AS scorer
# JRE for Spark (17 on bookworm, 21 on trixie: both supported by Spark 4), tini as PID 1 (used by entrypoint.sh),
# procps for Spark's scripts. (slim images have no /usr/share/man, which the JRE's update-alternatives needs.)
# docker/broker/Dockerfile repeats this instruction exactly, so the build cache holds the layer once for both.
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends default-jre-headless tini procps \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s "$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")" /opt/java
RUN groupadd --system --gid 185 spark \
 && useradd --system --uid 185 --gid spark --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin spark
COPY --from=build /opt/venv /opt/venv
COPY --from=spark /opt/entrypoint.sh /opt/decom.sh /opt/
RUN test -d /opt/venv/lib/python3*/site-packages/pyspark \
 && ln -s "$(echo /opt/venv/lib/python3*/site-packages/pyspark)" /opt/spark \
 && install -d -o spark -g spark -m 0775 /opt/spark-work-dir /var/lib/citysense \
 && ln -s /opt/spark-work-dir /opt/spark/work-dir \
 && install -d /opt/citysense \
 && printf '%s\n' \
      '"""SparkApplication mainApplicationFile: runs `citysense-scorer <arguments>` in the driver."""' \
      'import sys' \
      'from citysense_scorer.cli import main' \
      'sys.exit(main(sys.argv[1:]))' > /opt/citysense/scorer_main.py
COPY config/ /etc/citysense/
# Spark's Kafka connector and the real-time alert classes, prepared on the host (docker/scorer/prepare.py): the
# scorer neither fetches nor compiles anything at start.
COPY docker/scorer/jvm/ /opt/citysense/jvm/
ENV JAVA_HOME=/opt/java \
    CITYSENSE_JVM_CACHE=/opt/citysense/jvm \
    SPARK_HOME=/opt/spark \
    PATH=/opt/venv/bin:/opt/spark/bin:$PATH \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/venv/bin/python \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CITYSENSE_CONFIG_DIR=/etc/citysense \
    CITYSENSE_METRICS_FILE=/etc/citysense/metrics.yaml \
    CITYSENSE_DATA_DIR=/var/lib/citysense \
    CITYSENSE_ENV=production
WORKDIR /opt/spark/work-dir
USER 185:185
LABEL org.opencontainers.image.title="citysense-scorer" \
      org.opencontainers.image.description="citysense scorer (Spark Structured Streaming; SparkApplication image)" \
      org.opencontainers.image.source="https://github.com/citysense/citysense" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/opt/entrypoint.sh"]
# Outside Kubernetes the entrypoint passes other commands through: `docker run citysense/scorer citysense-scorer stream`.
CMD ["citysense-scorer", "stream"]

FROM ${SERVICE}
