# Kubernetes: kind cluster with the operators, the citysense chart, chart checks, and the container end-to-end run.
# Operator charts come from their official Helm repositories at pinned versions.
KIND          ?= kind
HELM          ?= $(BIN)/helm
KUBECTL       ?= $(BIN)/kubectl
DOCKER        ?= docker
KIND_CLUSTER  ?= citysense
NAMESPACE     ?= citysense
RELEASE       ?= citysense
IMAGE_TAG     ?= 0.1.0

CERT_MANAGER_VERSION   ?= v1.18.2
STRIMZI_VERSION        ?= 1.2.0
K8SSANDRA_VERSION      ?= 1.32.5
SPARK_OPERATOR_VERSION ?= 2.5.2

CITYSENSE_IMAGES := simulator scorer alert-api notifier

.PHONY: chart-lint images images-offline base-images wheelhouse kind-up kind-down kind-load e2e-containers \
        e2e-containers-ci

$(HELM): $(STAMP)
	@scripts/bootstrap.d/40-helm

chart-lint: $(STAMP) $(HELM)  ## helm lint --strict + template every ci/*-values.yaml + kubernetes-validate
	@$(HELM) lint --strict charts/citysense
	@for f in charts/citysense/ci/*-values.yaml; do \
	  echo "==> $$f"; \
	  $(HELM) lint --strict charts/citysense -f $$f >/dev/null && \
	  $(HELM) template $(RELEASE) charts/citysense -n $(NAMESPACE) -f $$f > .citysense-chart-render.yaml && \
	  $(BIN)/kubernetes-validate -k 1.34.0 --strict --quiet .citysense-chart-render.yaml 2>&1 \
	    | grep -v "Couldn't find schema for kind" || true; \
	done; rm -f .citysense-chart-render.yaml
	@$(BIN)/python -m pytest -q tests/charts

base-images:  ## build local stand-ins for python:3.11-slim and apache/spark (offline CI; debootstrap + docker import)
	@docker/build-base-images.sh

wheelhouse: $(STAMP)  ## host-built wheels for offline image builds (docker/wheelhouse/<image>/, never committed)
	@docker/wheelhouse.sh

# Real users: `make images` pulls the upstream base images and pip downloads from PyPI inside the build.
# IMAGE_BUILD_ARGS passes extra `docker build` arguments (images-offline sets PIP_NO_INDEX=1).
IMAGE_BUILD_ARGS ?=
# One Dockerfile for the four: SERVICE picks the service, --target stops the classic builder at its stage.
images:  ## build the four service images (tag $(IMAGE_TAG)) from the repository root
	@for svc in $(CITYSENSE_IMAGES); do \
	  echo "==> citysense/$$svc:$(IMAGE_TAG)"; \
	  $(DOCKER) build --network host $(IMAGE_BUILD_ARGS) -f docker/python-service.Dockerfile \
	    --build-arg SERVICE=$$svc --target $$svc -t citysense/$$svc:$(IMAGE_TAG) . || exit 1; \
	done

images-offline: base-images wheelhouse  ## build the images with no registry/PyPI access (local base stand-ins + wheelhouse)
	@$(MAKE) --no-print-directory images IMAGE_BUILD_ARGS="--build-arg PIP_NO_INDEX=1"

e2e-containers: $(STAMP)  ## build all images, run broker + services as containers, check a signed alert webhook arrives
	@docker/e2e-containers.sh $(E2E_ARGS)

# For CI (`.ci/run` runs it by default): the same run under a hard wall-clock cap. Measured cold (no images, no build
# cache, base-image bootstrap included) about 6 min on 2 cores, warm about 1 min (docker/README.md); the cap keeps a
# hung run from eating the CI budget.
E2E_CI_TIMEOUT ?= 1200
e2e-containers-ci: $(STAMP)  ## e2e-containers with a $(E2E_CI_TIMEOUT)s cap, for CI
	@timeout --kill-after=30 $(E2E_CI_TIMEOUT) docker/e2e-containers.sh $(E2E_ARGS)

kind-up: $(STAMP) $(HELM)  ## create the kind cluster, install operators (pinned), apply k8s/, install citysense
	@command -v $(KIND) >/dev/null || { echo "kind not found: install it (https://kind.sigs.k8s.io) or set KIND=" >&2; exit 1; }
	@$(KIND) get clusters 2>/dev/null | grep -qx $(KIND_CLUSTER) || $(KIND) create cluster --config k8s/kind-cluster.yaml
	$(KUBECTL) config use-context kind-$(KIND_CLUSTER)
	$(KUBECTL) apply -f k8s/namespace.yaml
	$(HELM) repo add jetstack https://charts.jetstack.io --force-update
	$(HELM) repo add strimzi https://strimzi.io/charts/ --force-update
	$(HELM) repo add k8ssandra https://helm.k8ssandra.io/stable --force-update
	$(HELM) repo add spark-operator https://kubeflow.github.io/spark-operator --force-update
	$(HELM) repo update
	$(HELM) upgrade --install cert-manager jetstack/cert-manager --version $(CERT_MANAGER_VERSION) \
	  --namespace cert-manager --create-namespace --set crds.enabled=true --wait
	$(HELM) upgrade --install strimzi strimzi/strimzi-kafka-operator --version $(STRIMZI_VERSION) \
	  --namespace strimzi --create-namespace --set 'watchNamespaces={$(NAMESPACE)}' --wait
	$(HELM) upgrade --install k8ssandra-operator k8ssandra/k8ssandra-operator --version $(K8SSANDRA_VERSION) \
	  --namespace $(NAMESPACE) --wait
	$(HELM) upgrade --install spark-operator spark-operator/spark-operator --version $(SPARK_OPERATOR_VERSION) \
	  --namespace spark-operator --create-namespace -f spark-operator/values.yaml --wait
	$(KUBECTL) apply -f spark-operator/driver-rbac.yaml
	$(KUBECTL) apply -f k8s/kafka.yaml -f k8s/kafka-topics.yaml -f k8s/k8ssandra-cluster.yaml
	$(KUBECTL) -n $(NAMESPACE) wait kafka/citysense --for=condition=Ready --timeout=600s
	$(KUBECTL) -n $(NAMESPACE) wait k8ssandracluster/citysense --for=condition=CassandraInitialized --timeout=900s
	$(MAKE) --no-print-directory images kind-load
	$(HELM) upgrade --install $(RELEASE) charts/citysense --namespace $(NAMESPACE) \
	  -f charts/citysense/ci/kind-values.yaml --set image.tag=$(IMAGE_TAG) --wait --timeout 10m
	@echo
	@echo "citysense is up. API: http://localhost:8080/v1/stations  (token: see 'helm status $(RELEASE) -n $(NAMESPACE)')"
	@echo "Runbook: docs/operations.md"

kind-load:  ## load the locally built images into the kind nodes
	@for svc in $(CITYSENSE_IMAGES); do $(KIND) load docker-image citysense/$$svc:$(IMAGE_TAG) --name $(KIND_CLUSTER); done

kind-down:  ## delete the kind cluster (all data in it is lost)
	$(KIND) delete cluster --name $(KIND_CLUSTER)
