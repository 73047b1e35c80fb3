#!/usr/bin/env bash
# The main job on the embedded default store (./.weft): check the example
# flows, show a plan, draw diagrams, and run the Foreman host creation.
set -euo pipefail
cd "$(dirname "$0")/.."
weft=.venv/bin/weft
mkdir -p out

echo "== weft check examples"
$weft check examples --extensions examples/extension

echo
echo "== weft plan examples/foreman/host.flow"
$weft plan examples/foreman/host.flow

echo
echo "== weft graph: diagrams in out/"
$weft graph examples/foreman/host.flow -o out/create_host.svg
$weft graph examples/foreman/host.flow --extensions examples/extension -o out/create_host_audited.png
$weft graph examples/katello/organization.flow -o out/organization.svg
$weft graph examples/bulk/hosts.flow --flow bulk_create -o out/bulk_create.svg

echo
echo "== weft run examples/foreman/host.flow (store: ./.weft)"
export WEFT_PROXY_STATE="$PWD/.weft-proxy/state.json"
n=$(( $(date +%s) % 100000 ))
mac=$(printf '52:54:00:%02x:%02x:%02x' $((n / 65536 % 256)) $((n / 256 % 256)) $((n % 256)))
set +e
$weft run examples/foreman/host.flow -i name="web$n" -i mac="$mac" -i subnet=10.0.0.0/24 | tee out/run.txt
code=${PIPESTATUS[0]}
set -e
run=$(awk '/^run /{print $2; exit}' out/run.txt)
if [ -n "$run" ]; then
  echo
  echo "== weft graph $run (the run, coloured by step state)"
  $weft graph "$run" -o out/run.svg
fi
exit "$code"
