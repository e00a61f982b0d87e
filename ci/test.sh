#!/usr/bin/env bash
# The project's test command (README: "Tests"). On a fresh machine of this kind it installs and
# starts what the lanes need, builds everything, runs every test with nextest's `ci` profile
# (no retries), then runs the conformance runner once on the process lane and checks its exit
# code and report, so the README's main command is exercised too.
#
# Lanes: OPENSHELL_REQUIRE_LANES (default process,docker,docker-runsc,vm) turns a missing lane
# prerequisite into a failure instead of a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
say() { echo "ci/test.sh [$(( $(date +%s) - started ))s]: $*"; }

export OPENSHELL_REQUIRE_LANES=${OPENSHELL_REQUIRE_LANES:-process,docker,docker-runsc,vm}
export CARGO_TERM_COLOR=never

# 1. Prerequisites: dockerd + runsc + busybox-static (and the apt packages behind them); QEMU
#    and the guest kernel for the vm lane.
say "setting up docker, runsc and busybox"
bash ci/setup-docker.sh
say "setting up QEMU and the guest kernel"
bash ci/setup-vm.sh
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest

# 2. The project's own rules, first, so every change is held to them: formatting, and clippy
#    with every feature (the `mutants` code included) and every target, warnings as errors.
say "cargo fmt --check and clippy -D warnings"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings

# 3. Build every binary first: tests start the real gateway, supervisor, probe and CLI.
say "building"
# The deliberately broken reference first (target/mutants/; never a default build), then the
# default workspace build, so the binaries the tests and images use are the workspace's own.
bash ci/build-mutants.sh
export OPENSHELL_MUTANTS_DIR=$PWD/target/mutants
cargo build --workspace --all-targets
# The fixture images for the Docker lanes (idempotent: only missing tags are built).
target/x86_64-unknown-linux-gnu/debug/openshell-conformance images --build >/dev/null

# 4. Every test, no retries.
say "running the test suite"
cargo nextest run --workspace --profile ci

# 5. The README's main command: a conformance run on the process lane, checked from outside.
say "conformance runner on the process lane"
report_dir=$(mktemp -d)
bin=target/x86_64-unknown-linux-gnu/debug
set +e
"$bin/openshell-conformance" run --driver process --report-dir "$report_dir" --require-lanes process
code=$?
set -e
if [ "$code" -ne 0 ]; then
    echo "conformance runner exited $code"
    cat "$report_dir/report.md" 2>/dev/null
    # The failing cases' diagnostics (gateway log, sandbox output), so a flake can be explained.
    find "$report_dir/diagnostics" -type f 2>/dev/null | while read -r f; do
        echo "----- $f (last 60 lines)"; tail -n 60 "$f"
    done
    exit 1
fi
python3 - "$report_dir/report.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
summary = report["summary"]
assert summary["failed"] == 0 and summary["xpass"] == 0, summary
assert summary["passed"] > 0, summary
print(f"conformance report: {summary}")
PY
say "all green"
