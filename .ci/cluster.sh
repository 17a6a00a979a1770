#!/usr/bin/env bash
# CI: the remote-worker tests, required. Installs what they need (Debian's openssh-server,
# slurm-wlm and munge; kubectl if missing), then runs them with WASMPOOL_REQUIRE_CLUSTER=1, so
# that a missing program fails instead of skipping. The tests start and stop their own daemons
# (an sshd on 127.0.0.1 with throwaway keys, a munged, slurmctld and slurmd on ports of their
# own, two network namespaces joined by a veth for the partition test; see
# tests/all/cluster.rs), by pid; nothing is left running. Needs root (sshd's privilege
# separation, munged and slurmd as root, `ip netns`). About 60 s on two cores after the test
# build: the installs 20 s, the tests 30 s.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server openssh-client)
[ -x /usr/sbin/slurmctld ] || need+=(slurm-wlm)
[ -x /usr/sbin/munged ] || need+=(munge)
if [ "${#need[@]}" -gt 0 ]; then
    # With /usr/sbin/policy-rc.d exiting 101 (as in containers) the packages start no daemon.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${need[@]}" >/dev/null
fi
if ! command -v kubectl >/dev/null; then
    # The client only: the test runs it against an API server that is not there.
    mkdir -p target/ci-tools
    arch=$(dpkg --print-architecture)
    curl -fsSLo target/ci-tools/kubectl "https://dl.k8s.io/release/v1.31.4/bin/linux/$arch/kubectl"
    chmod +x target/ci-tools/kubectl
    export PATH="$PWD/target/ci-tools:$PATH"
fi
echo "installs: $((SECONDS - started)) s"

export WASMPOOL_REQUIRE_CLUSTER=1
cargo test --release --test all -- remote:: remote_shared::
cargo test --release --test remote

# Nothing of the tests' is left: no remote worker, no daemon started from a test's directory.
# (A worker ends within milliseconds of its link: a second's grace for the last to exit.)
for _ in $(seq 20); do
    leftover=$(grep -lszx 'WASMPOOL_WORKER=remote' /proc/[0-9]*/environ 2>/dev/null || true)
    [ -z "$leftover" ] && break
    sleep 0.1
done
if [ -n "$leftover" ]; then echo "remote workers left behind: $leftover" >&2; exit 1; fi
# Live ones only: an orphan's zombie waits for an init that may not reap (in containers).
live=$(ps -eo pid=,stat=,args= | awk '$2 !~ /^Z/' | grep -E 'wasmpool-(sshd|slurm)-|slurmstepd' \
    | grep -v grep || true)
if [ -n "$live" ]; then
    echo "daemons left behind:" >&2; echo "$live" >&2; exit 1
fi
if ip netns list 2>/dev/null | grep -qE '^wp[hf][0-9]'; then
    echo "network namespaces left behind:" >&2; ip netns list >&2; exit 1
fi
echo "cluster step: $((SECONDS - started)) s"
