#!/usr/bin/env bash
# One rank of `mpirun -np 3 xntk compute --resume` killed with SIGKILL in the middle of the run (usage:
# check_mpi_kill.sh MPIEXEC XNTK PYTHON WORK): the launcher ends the job with a non-zero exit status, no final
# kernel file appears, the partial file and the journals stay; the same command with 2 ranks then finishes the
# run, and its kernel equals a one-process run's byte for byte, with no file left over (docs/cli.md, "MPI").
set -euo pipefail
mpiexec=$1 xntk=$2 python=$3 work=$4
fail() {
  echo "check_mpi_kill: $*" >&2
  [ -f "$work/run.log" ] && cat "$work/run.log" >&2
  exit 1
}
rm -rf "$work"
mkdir -p "$work"
cd "$work"
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cat >model.json <<'EOF'
{"input": [16], "layers": [{"type": "linear", "out_features": 64}, {"type": "relu"},
 {"type": "linear", "out_features": 3}]}
EOF
# 600 inputs in tiles of 6: 5050 tile pairs, each synced to disk and journaled by the rank that computed it
"$python" -c "import numpy as np; np.save('x.npy', np.random.default_rng(3).standard_normal((600, 16)))"
compute=("$xntk" compute model.json --x1 x.npy --tile 6 --threads 1 --mode trace)
"${compute[@]}" -o one.npy

"$mpiexec" --oversubscribe -np 3 "${compute[@]}" -o k.npy --resume >run.log 2>&1 &
launcher=$!
# rank 1 is the process whose environment holds OMPI_COMM_WORLD_RANK=1 (found in /proc: no procps needed)
victim=""
for _ in $(seq 1 3000); do
  if [ -z "$victim" ]; then
    for env in $(grep -lzx OMPI_COMM_WORLD_RANK=1 /proc/[0-9]*/environ 2>/dev/null || true); do
      p=${env#/proc/}
      p=${p%/environ}
      if [ "$p" != "$launcher" ] && tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -q "compute model.json"; then
        victim=$p
      fi
    done
  fi
  # the header and at least 3 finished pairs in rank 1's journal
  if [ -n "$victim" ] && [ -f k.npy.xntk-journal.1 ] && [ "$(wc -l <k.npy.xntk-journal.1)" -ge 4 ]; then break; fi
  kill -0 "$launcher" 2>/dev/null || fail "the run ended before rank 1 could be killed"
  sleep 0.01
done
[ -n "$victim" ] || fail "rank 1 was not found"
kill -KILL "$victim"
set +e
wait "$launcher"
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "mpirun exited 0 after rank 1 was killed"
[ ! -e k.npy ] || fail "a final k.npy exists after the killed run"
[ -e k.npy.xntk-partial ] || fail "the partial file is gone after the killed run"
[ -e k.npy.xntk-journal ] || fail "rank 0's journal is gone after the killed run"
# the finished pairs: every journal line but each journal's header
journals=$(ls k.npy.xntk-journal* | wc -l)
done_before=$(($(cat k.npy.xntk-journal* | wc -l) - journals))

"$mpiexec" --oversubscribe -np 2 "${compute[@]}" -o k.npy --resume --progress >run.log 2>&1 || fail "the resumed run failed"
cmp -s one.npy k.npy || fail "the resumed kernel differs from the one-process run's"
# it computed only the pairs no journal held (2 steps a pair: its kernel block and the mirrored one)
steps=0
for n in $(grep -oE 'of [0-9]+ steps \(100%\)' run.log | grep -oE '[0-9]+ steps' | grep -oE '[0-9]+'); do
  steps=$((steps + n))
done
[ "$steps" -eq $((2 * (5050 - done_before))) ] ||
  fail "the resumed ranks took $steps steps, not the $((2 * (5050 - done_before))) of the unjournaled pairs"
left=$(ls -d ./*xntk-* 2>/dev/null || true)
[ -z "$left" ] || fail "left behind: $left"
echo "rank 1 killed (mpirun exit $rc, $done_before pairs journaled); resumed on 2 ranks ($steps steps): equal to one process"
