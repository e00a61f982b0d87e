#!/usr/bin/env bash
# Builds the deliberately broken reference (cargo feature `mutants`, never default) into
# target/mutants/, beside a normal probe, then restores the normal binaries. The conformance
# suite's mutant test (conformance/tests/mutants.rs) runs the suite against them.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/x86_64-unknown-linux-gnu/debug
out=target/mutants
cargo build -p openshell-gateway -p openshell-supervisor -p openshell-probe \
    --features openshell-gateway/mutants,openshell-supervisor/mutants
mkdir -p "$out"
for b in openshell-gateway openshell-supervisor openshell-probe; do
    cp -f "$bin/$b" "$out/$b"
done
# Restore the default (non-mutant) binaries with the workspace build's own feature unification
# (a `-p` build can link different bytes, which would change every fixture image hash).
cargo build --workspace --all-targets
# The VM driver's guest init has no mutants; the vm lane finds it beside the gateway.
cp -f "$bin/openshell-vm-init" "$out/openshell-vm-init"
echo "mutant binaries in $out"
