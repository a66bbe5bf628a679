# Sourced by scripts/test and scripts/demo: create .venv and install modelvc with EXTRA.
# torch is installed first and pinned, so nothing pulls a multi-GB CUDA build.
ensure_venv() {
    local extra=$1
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    # shellcheck disable=SC1091
    . .venv/bin/activate
    local stamp=".venv/.modelvc-$extra-$(cat pyproject.toml setup.py src/modelvc/codec/_kernels.c | sha256sum | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        echo "== installing modelvc[$extra] into .venv" >&2
        python -m pip install -q --upgrade pip >&2
        if [ "$extra" = test ]; then
            python -m pip install -q torch==2.13.0 >&2
        fi
        # (re)builds the C kernels too: the stamp covers their source
        python -m pip install -q -e ".[$extra]" >&2
        touch "$stamp"
    fi
}
