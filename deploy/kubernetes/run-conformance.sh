#!/usr/bin/env bash
# Runs the conformance suite's k3s lane against an existing Kubernetes cluster, unchanged on any
# vendor machine. Expected output: deploy/kubernetes/README.md ("What to expect").
#
#   KUBECONFIG=~/.kube/config [GATEWAY=http://HOST:PORT] [NAMESPACE=openshell-conformance] \
#   [REPORT_DIR=osc-report] [HOST_NETWORK=1] deploy/kubernetes/run-conformance.sh
#
# GATEWAY: your gateway (its driver on this cluster, reachable by the sandbox Pods). Without it
# the suite starts the reference gateway on 127.0.0.1, which only Pods on this machine's network
# reach: set HOST_NETWORK=1 when the cluster's nodes are this machine (k3s with host networking).
# The fixture images must be on the nodes first (step 1 prints how).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${KUBECONFIG:?set KUBECONFIG to the kubeconfig of the cluster}"
namespace=${NAMESPACE:-openshell-conformance}
report_dir=${REPORT_DIR:-osc-report}
bin=${OSC_BIN_DIR:-target/x86_64-unknown-linux-gnu/debug}
say() { echo "run-conformance.sh: $*"; }

[ -x "$bin/openshell-conformance" ] || { say "building (cargo build --workspace)"; cargo build --workspace; }

# 1. The fixture images the cases use, and whether this machine's Docker engine has them.
say "fixture images (put them on every node: a registry push, or \`ctr -n k8s.io images import\` of \`$bin/openshell-conformance images --build --export fixtures.tar\`)"
"$bin/openshell-conformance" images

# 2. The namespace and RBAC (deploy/kubernetes/namespace.yaml, rbac.yaml), when kubectl is here.
if command -v kubectl >/dev/null 2>&1; then
  for check in "create pods" "delete pods" "watch pods" "get pods --subresource=log" \
               "create secrets" "patch secrets" "delete secrets" "list secrets"; do
    # shellcheck disable=SC2086
    answer=$(kubectl auth can-i $check -n "$namespace" 2>/dev/null || true)
    say "can-i $check in $namespace: ${answer:-no}"
  done
else
  say "kubectl not found: not checking RBAC (deploy/kubernetes/rbac.yaml)"
fi

# 3. The lane.
args=(run --driver k3s --kubeconfig "$KUBECONFIG" --namespace "$namespace" --report-dir "$report_dir")
[ -n "${GATEWAY:-}" ] && args+=(--gateway "$GATEWAY")
[ "${HOST_NETWORK:-0}" = 1 ] && args+=(--host-network)
say "openshell-conformance ${args[*]}"
set +e
"$bin/openshell-conformance" "${args[@]}"
code=$?
set -e
case $code in
  0) say "exit 0: every case passed or behaved as expected; reports in $report_dir" ;;
  1) say "exit 1: a case failed or resources leaked; read $report_dir/report.md and diagnostics/" ;;
  *) say "exit $code: the run could not start or ran nothing (see the SKIPPED line or the error above)" ;;
esac
exit "$code"
