#!/usr/bin/env bash
# CPU benchmark: the example GPT, plain libtorch against bmtrain4j at world sizes 1, 2 and 4 for
# the same global batch. World sizes above 1 start one JVM per rank with torchrun's variables.
# Usage: [WORLDS="1 2 4"] bench/cpu.sh [BENCHMARK ARGS...]   (from the project root, after mvn install)
set -euo pipefail
cd "$(dirname "$0")/.."
mvn -B -q -pl examples dependency:build-classpath -Dmdep.outputFile=target-cp.txt >/dev/null
cp="$(cat examples/target-cp.txt):examples/target/classes"
cores=$(nproc)
for world in ${WORLDS:-1 2 4}; do
  # One core is left for the JVM and Gloo: on this 2-core VM libtorch's 2 threads made a step
  # 2.3x slower than 1 thread (docs/BENCHMARKS.md).
  threads=$(( cores / world - 1 )); (( threads >= 1 )) || threads=1
  echo "== world $world ($threads libtorch thread(s) per rank, $cores cores)"
  port=$(( 20000 + RANDOM % 20000 ))
  pids=()
  for (( rank = 0; rank < world; rank++ )); do
    RANK=$rank WORLD_SIZE=$world LOCAL_RANK=$rank LOCAL_WORLD_SIZE=$world MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      java -cp "$cp" io.bmtrain4j.examples.Benchmark --threads "$threads" "$@" 2>&1 | { grep -v '^\[Gloo\]' || true; } &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
done
