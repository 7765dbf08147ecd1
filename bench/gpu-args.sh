# Sourced by the GPU benchmark scripts that take "GPUS [ARGS for GptThroughput...]": sets n (the
# GPU count, default $default_gpus), args (default the 1.3B GPT at micro-batch 8, seq 2048), logs
# (the device's return folder, else /tmp), tag (a file-name tag of both), the JVM's heap, and
# prints the GPU and the arguments.
n="${1:-$default_gpus}"
shift || true
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--model 1.3b --micro-batch 8 --seq 2048)
logs="${OUT:-/tmp}"
export BMT_JAVA_OPTS="${BMT_JAVA_OPTS:--Xmx16g}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1
echo "arguments: ${args[*]}"
tag="$(echo "${args[*]}" | tr -c 'a-z0-9.' '_')-$n"
