#!/usr/bin/env bash
# The GPU check: every method's CUDA path, MixUnlearn against its anchor, evaluation's share of a trial,
# packing and real forgetting, measured in one command on a bare GPU machine, within 8 minutes.
#
# On the CPU machine, once per checkout (PyPI reachable):
#     python benchmarks/gpu_carry.py prepare        # .gpu-wheels/ (27.1 MiB) + .gpu-data/ (18.7 MiB) + the tree:
#                                                   # 47.1 MiB of the 64 MiB that may travel
#     bash benchmarks/gpu_check.sh --rehearse       # the same six parts on the CPU, tiny, in under 3 minutes
# Then, in a session whose task is lent a GPU, the device tool's call (from this checkout's root):
#     run(command="bash benchmarks/gpu_check.sh", carry=[".gpu-wheels", ".gpu-data"], timeout_s=540)
# It writes 8 files under $OUT (part1-setup.json .. part6-forgetting.json, summary.md, gpu_check.log) and
# stops by itself within 475 s whatever happens (the runner's budget is 450 s; the timeout below backs it).
# With the machine's start that is about 10 of the session's 15 device minutes. Keep the files in
# benchmarks/results/gpu_check-<card>/ and put the figures, card and versions in the README.
# A rerun of some parts, at once while the machine is warm (it reuses /tmp/gpu_check-work), else give_back:
#     run(command="bash benchmarks/gpu_check.sh --parts setup,anchor,packing --budget 180",
#         carry=[".gpu-wheels", ".gpu-data"], timeout_s=240)
# Every option: python3 benchmarks/gpu_check.py --help.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cd "$root"

# The interpreter: $PYTHON; else the first python3 / python on PATH that has torch (the GPU image's python3
# does; looked up, not imported); else the first one found. The runner hands the same one to every part.
pick_python() {
    if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
    local first="" candidate found
    for candidate in python3 python; do
        found=$(command -v "$candidate") || continue
        [ -n "$first" ] || first=$found
        if "$found" -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is None)" >/dev/null 2>&1; then
            echo "$found"; return
        fi
    done
    echo "${first:-python3}"
}
python=$(pick_python)

# The outer guard: the runner's budget (450 s; 160 s rehearsing; or --budget) plus 15 s, then SIGKILL 10 s
# later: 475 s at most. The runner stops its parts itself well before; this ends a runner that could not.
budget=450
previous=""
for arg in "$@"; do
    [ "$arg" = "--rehearse" ] && [ "$budget" = 450 ] && budget=160
    [ "$previous" = "--budget" ] && budget=${arg%.*}
    case $arg in --budget=*) budget=${arg#--budget=}; budget=${budget%.*} ;; esac
    previous=$arg
done
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec timeout --kill-after=10 $((budget + 15)) "$python" "$here/gpu_check.py" "$@"
