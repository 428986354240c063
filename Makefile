# The one entry point for humans and CI.
VENV := .venv
PY := $(VENV)/bin/python
SCENARIO ?= scenarios/quickstart.yaml

.PHONY: setup demo demo-image test test-fast lint bench constraints clean

setup:
	@bash scripts/setup.sh

demo: setup  ## set up, run the quickstart scenario, print the report path
	$(PY) -m harness run $(SCENARIO)

# the image-classifier case study: MobileNetV2 in torch (TorchServe) and TensorFlow (in-process);
# the first run trains both models (about 3 minutes each on 2 cores), later runs load them
demo-image: setup  ## set up, run both image-classifier scenarios, print the report paths
	@codes=""; for s in scenarios/image_classifier_torch.yaml scenarios/image_classifier_tf.yaml; do \
	  $(PY) -m harness run $$s; codes="$$codes $$?"; done; \
	  for c in $$codes; do case $$c in 0|1|2|3) ;; *) exit $$c;; esac; done; \
	  for c in 2 1 3; do case " $$codes " in *" $$c "*) exit $$c;; esac; done

test: setup  ## set up and run the whole test suite
	$(PY) -m pytest

test-fast: setup  ## unit tests only
	$(PY) -m pytest tests/unit

lint: setup
	$(VENV)/bin/ruff check harness tests benchmarks
	$(VENV)/bin/mypy harness

bench: setup  ## wall time of each pipeline stage on the quickstart scenario
	$(PY) benchmarks/pipeline.py $(SCENARIO)

constraints: setup  ## re-pin every dependency after changing pyproject.toml
	$(PY) -m pip freeze --exclude-editable | sed 's/+cpu$$//' > constraints.tmp && \
	  { sed -n '1,3p' constraints.txt; cat constraints.tmp; } > constraints.new && \
	  rm constraints.tmp && mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) reports/*/ .pytest_cache
